package modelfile_test

import (
	"context"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/maddr-project/maddr/baselines"
	_ "github.com/maddr-project/maddr/baselines/all"
	"github.com/maddr-project/maddr/dataset"
	"github.com/maddr-project/maddr/maddr"
	"github.com/maddr-project/maddr/modelfile"
	"github.com/maddr-project/maddr/phantom"
	"github.com/maddr-project/maddr/safetensors"
	"github.com/maddr-project/maddr/torch"
	"github.com/maddr-project/maddr/train"
)

// tinyVersion is the build version trainTiny's model file must record: the
// one passed in train.Options, not a global.
const tinyVersion = "v0.0.0-modelfile-test"

// trainTiny trains a few steps of a small DPA (random narrow VGG) and returns the model path.
func trainTiny(t *testing.T) string {
	t.Helper()
	pc := phantom.DefaultConfig()
	pc.Scale, pc.Size = 0.03, 32
	cases, err := phantom.Generate(pc)
	if err != nil {
		t.Fatal(err)
	}
	samples, _, err := dataset.PhantomSamples(cases, dataset.AllSplits)
	if err != nil {
		t.Fatal(err)
	}
	cfg := train.Defaults("dpa")
	cfg.Sources = nil
	cfg.Preprocess.Size, cfg.Preprocess.Resize, cfg.Preprocess.Crop = 16, 0, 0
	cfg.Iterations, cfg.BatchSize, cfg.Threads = 3, 4, 1
	cfg.ModelOptions = json.RawMessage(`{"vgg_random_init": true, "vgg_width_divisor": 16}`)
	cfg.MADDR = maddr.Paper().ScaleMixup(3)
	dir := t.TempDir()
	res, err := train.Run(context.Background(), cfg, dir, train.Options{Samples: samples, Version: tinyVersion})
	if err != nil {
		t.Fatal(err)
	}
	return res.ModelPath
}

func TestModelFileCarriesEverythingScoringNeeds(t *testing.T) {
	path := trainTiny(t)
	m, err := modelfile.Load(path)
	if err != nil {
		t.Fatal(err)
	}
	if m.Manifest.Version != tinyVersion {
		t.Errorf("model file records version %q, want the one given in train.Options (%q)", m.Manifest.Version, tinyVersion)
	}
	if m.Manifest.Format != modelfile.FormatVersion || m.Manifest.Model != "dpa" || m.Manifest.Preprocess.Size != 16 {
		t.Fatalf("manifest %+v", m.Manifest)
	}
	if len(m.Manifest.Vocabs.Organ) != 2 || len(m.Manifest.Classes.Modalities) != 2 {
		t.Fatalf("vocabularies missing: %+v %+v", m.Manifest.Vocabs, m.Manifest.Classes)
	}
	if !strings.Contains(strings.Join(m.Manifest.Notes, " "), "RANDOM") && !strings.Contains(strings.Join(m.Manifest.Notes, " "), "random") {
		t.Fatalf("notes do not say the VGG was random: %v", m.Manifest.Notes)
	}
	// The loaded perceptual network is the one training used, read from the
	// file (not rebuilt from elsewhere): compare with a VGG rebuilt from the seed.
	fz, ok := m.Framework.Base.(baselines.FrozenNetworks)
	if !ok {
		t.Fatal("dpa does not expose its frozen network")
	}
	ref, err := baselines.New("dpa", m.Manifest.Options())
	if err != nil {
		t.Fatal(err)
	}
	want := ref.(baselines.FrozenNetworks).Frozen()
	for _, p := range fz.Frozen().All() {
		a, _ := p.T.Float32s()
		b, _ := want.Get(p.Name).T.Float32s()
		for i := range a {
			if a[i] != b[i] {
				t.Fatalf("%s differs from the training VGG", p.Name)
			}
		}
	}
	// Scores are reproducible across loads.
	score := func(m *modelfile.Model) []float32 {
		var v []float32
		err := torch.Run(func(s *torch.Scope) error {
			x := s.Adopt(torch.Zeros(2, 1, 16, 16))
			var err error
			v, err = s.Adopt(m.Framework.Base.Score(x)).Float32s()
			return err
		})
		if err != nil {
			t.Fatal(err)
		}
		return v
	}
	m2, err := modelfile.Load(path)
	if err != nil {
		t.Fatal(err)
	}
	a, b := score(m), score(m2)
	if a[0] != b[0] || a[1] != b[1] {
		t.Fatalf("scores differ between loads: %v vs %v", a, b)
	}

	// Thresholds can be added without touching the weights.
	err = modelfile.UpdateManifest(path, func(mf *modelfile.Manifest) error {
		mf.Thresholds = map[string]modelfile.Threshold{"liver-ct": {Value: 1.5, Method: "grid", Scale: 0.1}}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	m3, err := modelfile.Load(path)
	if err != nil || m3.Manifest.Thresholds["liver-ct"].Value != 1.5 {
		t.Fatalf("thresholds not stored: %v %+v", err, m3.Manifest.Thresholds)
	}
}

func TestBadModelFiles(t *testing.T) {
	dir := t.TempDir()
	path := trainTiny(t)
	data, _ := os.ReadFile(path)
	write := func(name string, b []byte) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, b, 0o644); err != nil {
			t.Fatal(err)
		}
		return p
	}
	cases := map[string]struct {
		path string
		want string
	}{
		"truncated": {write("trunc.safetensors", data[:len(data)/3]), "trunc.safetensors"},
		"garbage":   {write("junk.safetensors", []byte("not a model")), "junk.safetensors"},
		"missing":   {filepath.Join(dir, "none.safetensors"), "does not exist"},
	}
	// A plain checkpoint is a safetensors file but not a model.
	f, _ := safetensors.ReadFile(path)
	delete(f.Metadata, "maddr.model")
	plain := filepath.Join(dir, "plain.safetensors")
	safetensors.WriteFile(plain, f)
	cases["not a model"] = struct{ path, want string }{plain, "not a maddr model"}
	// A newer format is refused with a clear message.
	newer := filepath.Join(dir, "newer.safetensors")
	os.WriteFile(newer, data, 0o644)
	if err := modelfile.UpdateManifest(newer, func(m *modelfile.Manifest) error { m.Format = modelfile.FormatVersion + 1; return nil }); err != nil {
		t.Fatal(err)
	}
	cases["newer"] = struct{ path, want string }{newer, "newer maddr"}
	for name, c := range cases {
		_, err := modelfile.Load(c.path)
		if err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%s: error %v, want it to mention %q", name, err, c.want)
		}
	}
}
