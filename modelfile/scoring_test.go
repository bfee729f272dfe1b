package modelfile_test

import (
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/maddr-project/maddr/dataset"
	"github.com/maddr-project/maddr/maddr"
	"github.com/maddr-project/maddr/modelfile"
	"github.com/maddr-project/maddr/preprocess"
	"github.com/maddr-project/maddr/safetensors"
)

func validManifest() modelfile.Manifest {
	return modelfile.Manifest{
		Format: modelfile.FormatVersion, Kind: modelfile.Kind, Model: "ae", ImageSize: 32, MADDR: maddr.Paper(),
		Classes:    maddr.Classes{Organs: []string{"liver", "lung"}, Modalities: []string{"ct", "xray"}},
		Preprocess: preprocess.Config{Size: 32},
		Vocabs: dataset.Vocabs{Organ: dataset.Vocab{"liver", "lung"}, Modality: dataset.Vocab{"ct", "xray"},
			Group: dataset.Vocab{"chest-xray", "liver-ct", "lung-ct"}},
		Thresholds: map[string]modelfile.Threshold{"liver-ct": {Value: 0.1, Method: "grid", Scale: 0.01}},
	}
}

// writeManifest writes a model file holding only a manifest: enough for
// everything Load checks before it rebuilds the network.
func writeManifest(t *testing.T, m any) string {
	t.Helper()
	js, err := json.Marshal(m)
	if err != nil {
		t.Fatal(err)
	}
	p := filepath.Join(t.TempDir(), "model.safetensors")
	f := safetensors.File{Metadata: map[string]string{"maddr.model": string(js)}, Tensors: map[string]safetensors.Tensor{}}
	if err := safetensors.WriteFile(p, f); err != nil {
		t.Fatal(err)
	}
	return p
}

func TestWrongManifestsAreRefusedOnLoad(t *testing.T) {
	cases := map[string]struct {
		edit func(m *modelfile.Manifest)
		want string
	}{
		"no preprocessing":    {func(m *modelfile.Manifest) { m.Preprocess = preprocess.Config{} }, "output size 0"},
		"size mismatch":       {func(m *modelfile.Manifest) { m.ImageSize = 64 }, "network input 64 px but preprocessing produces 32"},
		"repeated organ":      {func(m *modelfile.Manifest) { m.Vocabs.Organ = dataset.Vocab{"liver", "liver"} }, "repeated"},
		"negative scale":      {func(m *modelfile.Manifest) { m.Thresholds["lung-ct"] = modelfile.Threshold{Value: 1, Scale: -2} }, "scale of group \"lung-ct\""},
		"zero scale":          {func(m *modelfile.Manifest) { m.Thresholds["lung-ct"] = modelfile.Threshold{Value: 1} }, "scale of group \"lung-ct\""},
		"no baseline":         {func(m *modelfile.Manifest) { m.Model = "" }, "no baseline"},
		"unknown baseline":    {func(m *modelfile.Manifest) { m.Model = "resnet" }, "unknown model \"resnet\""},
		"format 0":            {func(m *modelfile.Manifest) { m.Format = 0 }, "invalid model format 0"},
		"other kind of model": {func(m *modelfile.Manifest) { m.Kind = "onnx" }, "not a maddr model"},
	}
	for name, c := range cases {
		m := validManifest()
		m.Thresholds = map[string]modelfile.Threshold{"liver-ct": m.Thresholds["liver-ct"]}
		c.edit(&m)
		path := writeManifest(t, m)
		_, err := modelfile.Load(path)
		if err == nil || !strings.Contains(err.Error(), c.want) || !strings.Contains(err.Error(), path) {
			t.Errorf("%s: error %v, want it to name the file and say %q", name, err, c.want)
		}
	}
	// A manifest that is not JSON, and one from a newer maddr.
	p := writeManifest(t, validManifest())
	f, _ := safetensors.ReadFile(p)
	f.Metadata["maddr.model"] = `{"format": 1, "kind": "maddr-model", "model": `
	safetensors.WriteFile(p, f)
	if _, err := modelfile.Load(p); err == nil || !strings.Contains(err.Error(), "corrupt model manifest") {
		t.Errorf("corrupt manifest: %v", err)
	}
	newer := validManifest()
	newer.Format = modelfile.FormatVersion + 1
	newer.Preprocess = preprocess.Config{} // a newer layout may not even have our fields
	if _, err := modelfile.Load(writeManifest(t, newer)); err == nil || !strings.Contains(err.Error(), "newer maddr") {
		t.Errorf("newer format: %v", err)
	}
	// A valid manifest whose weights are missing names what is missing.
	if _, err := modelfile.Load(writeManifest(t, validManifest())); err == nil || !strings.Contains(err.Error(), "enc") {
		t.Errorf("missing weights: %v", err)
	}
	if err := os.WriteFile(p, nil, 0o644); err != nil {
		t.Fatal(err)
	}
	if _, err := modelfile.Load(p); err == nil {
		t.Error("an empty file loaded")
	}
}

func TestGroupsOfAManifest(t *testing.T) {
	m := validManifest()
	for _, c := range []struct{ organ, modality, group string }{
		{"liver", "ct", "liver-ct"}, {"lung", "ct", "lung-ct"}, {"lung", "xray", "chest-xray"}, {"liver", "xray", ""},
	} {
		g, ok := m.GroupOf(c.organ, c.modality)
		if g != c.group || ok != (c.group != "") {
			t.Errorf("GroupOf(%s, %s) = %q, %v; want %q", c.organ, c.modality, g, ok, c.group)
		}
	}
	// Recorded pairs win over names: here "chest-xray" stands for heart X-rays.
	m.GroupPairs = map[string]modelfile.GroupPair{"chest-xray": {Organ: "heart", Modality: "xray"}}
	if g, _ := m.GroupOf("lung", "xray"); g != "" {
		t.Errorf("recorded pair ignored: %q", g)
	}
	if p, ok := m.PairOf("chest-xray"); !ok || p.Organ != "heart" {
		t.Errorf("PairOf = %+v, %v", p, ok)
	}
	if _, ok := m.PairOf("brain-mr"); ok {
		t.Error("a group of another vocabulary resolved")
	}
	m.Training = json.RawMessage(`{"groups": ["liver-ct"]}`)
	if g := m.TrainedGroups(); len(g) != 1 || g[0] != "liver-ct" {
		t.Errorf("trained groups %v", g)
	}
	if g, ok := m.GroupOf("lung", "ct"); ok {
		t.Errorf("an untrained group is routed to: %q", g)
	}
	pairs := modelfile.GroupPairs([]dataset.Sample{{Group: "a", Organ: "liver", Modality: "ct"}, {Group: "a", Organ: "x", Modality: "y"}})
	if len(pairs) != 1 || pairs["a"].Organ != "liver" {
		t.Errorf("GroupPairs = %v", pairs)
	}
}

func TestDigest(t *testing.T) {
	p := filepath.Join(t.TempDir(), "m")
	os.WriteFile(p, []byte("abc"), 0o644)
	d, err := modelfile.Digest(p)
	if err != nil || d != "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad" {
		t.Errorf("Digest = %s, %v", d, err)
	}
	if _, err := modelfile.Digest(p + "x"); err == nil {
		t.Error("digest of a missing file")
	}
}
