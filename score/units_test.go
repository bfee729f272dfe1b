package score_test

import (
	"bytes"
	"context"
	"math"
	"math/rand/v2"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"

	"github.com/maddr-project/maddr/dataset"
	"github.com/maddr-project/maddr/medimg"
	"github.com/maddr-project/maddr/modelfile"
	"github.com/maddr-project/maddr/score"
	"github.com/maddr-project/maddr/score/scoretest"
)

func TestParseShard(t *testing.T) {
	for _, c := range []struct {
		in   string
		want score.Shard
		ok   bool
	}{{"1/3", score.Shard{Index: 1, Count: 3}, true}, {" 3/3 ", score.Shard{Index: 3, Count: 3}, true}, {"0/3", score.Shard{}, false},
		{"4/3", score.Shard{}, false}, {"-1/3", score.Shard{}, false}, {"1/0", score.Shard{}, false}, {"1", score.Shard{}, false}, {"a/b", score.Shard{}, false}} {
		got, err := score.ParseShard(c.in)
		if (err == nil) != c.ok || got != c.want {
			t.Errorf("ParseShard(%q) = %v, %v", c.in, got, err)
		}
	}
	// Every key lands in exactly one shard, and shards are roughly even.
	counts := make([]int, 4)
	for i := 0; i < 4000; i++ {
		key := filepath.Join("archive", "patient"+string(rune('a'+i%26)), strings.Repeat("x", i%7), "img"+string(rune('0'+i%10))+".png") + string(rune(i))
		owners := 0
		for s := 1; s <= 4; s++ {
			if (score.Shard{Index: s, Count: 4}).OwnsKey(key) {
				owners++
				counts[s-1]++
			}
		}
		if owners != 1 {
			t.Fatalf("%q owned by %d shards", key, owners)
		}
	}
	for s, c := range counts {
		if c < 800 || c > 1200 {
			t.Errorf("shard %d got %d of 4000 keys", s, c)
		}
	}
}

func TestExpand(t *testing.T) {
	dir := t.TempDir()
	write := func(rel string) {
		p := filepath.Join(dir, rel)
		os.MkdirAll(filepath.Dir(p), 0o755)
		os.WriteFile(p, []byte("x"), 0o644)
	}
	for _, f := range []string{"b.png", "a/x.jpg", "a/vol.nii.gz", "s1/IM1", "s1/IM2.dcm", "s1/notes.txt",
		".hidden/c.png", "a/.d.png", "s2/1.DCM"} {
		write(f)
	}
	ex, err := score.Expand([]string{dir, filepath.Join(dir, "b.png"), filepath.Join(dir, "a", "x.jpg")})
	if err != nil {
		t.Fatal(err)
	}
	var keys []string
	for _, u := range ex.Units {
		rel, _ := filepath.Rel(dir, u.Key)
		keys = append(keys, rel)
		if u.Series != strings.HasPrefix(rel, "s") {
			t.Errorf("%s: series %v", rel, u.Series)
		}
	}
	want := []string{"a/vol.nii.gz", "a/x.jpg", "b.png", "s1", "s2"}
	if !reflect.DeepEqual(keys, want) {
		t.Errorf("units %v, want %v", keys, want)
	}
	if len(ex.Units[3].Files) != 2 || len(ex.Skipped) != 1 || !strings.HasSuffix(ex.Skipped[0], "notes.txt") {
		t.Errorf("series files %v, skipped %v", ex.Units[3].Files, ex.Skipped)
	}
	if _, err := score.Expand([]string{filepath.Join(dir, "missing.png")}); err == nil || !strings.Contains(err.Error(), "does not exist") {
		t.Errorf("missing path: %v", err)
	}
}

func TestNormaliseAndSummarise(t *testing.T) {
	th := modelfile.Threshold{Value: 2, Scale: 0.5}
	if th.Normalise(2) != 0.5 || th.Normalise(2.5) < 0.73 || th.Normalise(2.5) > 0.74 || th.Normalise(0) > 0.02 {
		t.Errorf("normalise: %v %v %v", th.Normalise(2), th.Normalise(2.5), th.Normalise(0))
	}
	if (modelfile.Threshold{Value: 1}).Normalise(1) != 1 || (modelfile.Threshold{Value: 1}).Normalise(0.9) != 0 {
		t.Error("a threshold without scale must act as a step")
	}
	f := func(v float64) *float64 { return &v }
	slices := []score.Result{
		{Slice: 0, Raw: f(1), Normalised: f(0.2), Decision: score.Normal, Group: "liver-ct", Organ: "liver"},
		{Slice: 1, Raw: f(9), Normalised: f(0.99), Decision: score.OutOfScope, Group: "lung-ct", Organ: "lung"},
		{Slice: 2, Raw: f(3), Normalised: f(0.8), Decision: score.Abnormal, Group: "liver-ct", Organ: "liver"},
		{Slice: 3, Decision: score.Failed},
	}
	s := score.Summarise("v.nii", slices)
	if s.Decision != score.Abnormal || s.Slice != 2 || *s.Raw != 3 || s.Group != "liver-ct" || s.Slices != 4 ||
		s.AbnormalSlices != 1 || s.OutOfScope != 1 || s.Level != score.LevelVolume || len(s.Notes) != 2 {
		t.Errorf("summary %+v", s)
	}
	s = score.Summarise("v.nii", slices[1:2])
	if s.Decision != score.OutOfScope || s.Slice != 1 {
		t.Errorf("all out of scope: %+v", s)
	}
	// Mostly out of scope: a slice that slipped through does not decide.
	s = score.Summarise("v.nii", []score.Result{slices[1], slices[1], slices[2]})
	if s.Decision != score.OutOfScope || s.AbnormalSlices != 1 {
		t.Errorf("mostly out of scope: %+v", s)
	}
	s = score.Summarise("v.nii", slices[3:])
	if s.Decision != score.Failed || s.Raw != nil {
		t.Errorf("all unreadable: %+v", s)
	}
}

func TestOutputRoundTrip(t *testing.T) {
	f := func(v float64) *float64 { return &v }
	rs := []score.Result{
		{Level: score.LevelImage, Path: "a, b.png", Raw: f(0.1 + 0.2), Normalised: f(1e-300), Decision: score.Normal, Group: "g",
			GroupFrom: score.FromHeads, Organ: "liver", OrganProb: f(0.999), Modality: "ct", ModalityProb: f(1), Threshold: f(0.25),
			ThresholdMethod: "grid", Notes: []string{"one, with \"quotes\"", "two"}},
		{Level: score.LevelVolume, Path: "v.nii", Volume: "v.nii", Slice: 3, Decision: score.Failed, Slices: 5, AbnormalSlices: 2, OutOfScope: 1},
	}
	h := score.Header{Format: score.OutputFormat, Model: "m", ModelSHA256: "abc", Shard: &score.Shard{Index: 1, Count: 2},
		Settings: score.Settings{Options: score.DefaultOptions(), Group: "g", Precision: "bf16"}}
	for _, format := range []string{"csv", "json"} {
		var b bytes.Buffer
		w, err := score.NewWriter(&b, format, h)
		if err != nil {
			t.Fatal(err)
		}
		for _, r := range rs {
			w.Write(r)
		}
		w.Close()
		p := filepath.Join(t.TempDir(), "out."+format)
		os.WriteFile(p, b.Bytes(), 0o644)
		gh, got, err := score.ReadOutput(p)
		if err != nil {
			t.Fatalf("%s: %v", format, err)
		}
		if !reflect.DeepEqual(gh, h) || !reflect.DeepEqual(got, rs) {
			t.Errorf("%s round trip:\n%+v\n%+v\n%+v", format, gh, got[0], rs[0])
		}
	}
	p := filepath.Join(t.TempDir(), "x.csv")
	os.WriteFile(p, []byte("path,score\na,1\n"), 0o644)
	if _, _, err := score.ReadOutput(p); err == nil || !strings.Contains(err.Error(), "not a maddr score output") {
		t.Errorf("foreign CSV: %v", err)
	}
	h.Format = score.OutputFormat + 1
	var b bytes.Buffer
	w, _ := score.NewWriter(&b, "csv", h)
	w.Close()
	os.WriteFile(p, b.Bytes(), 0o644)
	if _, _, err := score.ReadOutput(p); err == nil || !strings.Contains(err.Error(), "newer maddr") {
		t.Errorf("newer output: %v", err)
	}
}

func TestHeatmapName(t *testing.T) {
	for _, c := range []struct {
		path   string
		slice  int
		volume bool
		want   string
	}{
		{"/data/x.png", 0, false, "out/data/x.png.heatmap.png"},
		{"../up/v.nii.gz", 7, true, "out/__/up/v.nii.gz.slice0007.heatmap.png"},
	} {
		if got := filepath.ToSlash(score.HeatmapName("out", c.path, c.slice, c.volume)); got != c.want {
			t.Errorf("HeatmapName(%q) = %q, want %q", c.path, got, c.want)
		}
	}
}

// TestScoreDoesNotDependOnCompany: an image scores the same alone and among
// many others, in any order, which is what makes shards and the server agree
// with a batch run bit for bit.
func TestScoreDoesNotDependOnCompany(t *testing.T) {
	mod := model(t)
	sc, err := score.New(scoretest.Load(t, mod.Path), score.DefaultOptions())
	if err != nil {
		t.Fatal(err)
	}
	var inputs []score.Input
	for _, s := range mod.Samples {
		if s.Split == dataset.Test {
			inputs = append(inputs, score.Input{Image: *s.Image, Path: s.ID})
		}
	}
	ctx := context.Background()
	all, err := sc.Score(ctx, inputs, score.Request{})
	if err != nil {
		t.Fatal(err)
	}
	rng := rand.New(rand.NewPCG(1, 2))
	perm := rng.Perm(len(inputs))
	shuffled := make([]score.Input, len(inputs))
	for i, p := range perm {
		shuffled[i] = inputs[p]
	}
	again, err := sc.Score(ctx, shuffled, score.Request{})
	if err != nil {
		t.Fatal(err)
	}
	for i, p := range perm {
		if *again[i].Raw != *all[p].Raw || *again[i].OrganProb != *all[p].OrganProb {
			t.Fatalf("%s: %v among others, %v in another order", inputs[p].Path, *all[p].Raw, *again[i].Raw)
		}
	}
	for _, i := range []int{0, len(inputs) / 2, len(inputs) - 1} {
		alone, err := sc.Score(ctx, inputs[i:i+1], score.Request{})
		if err != nil {
			t.Fatal(err)
		}
		if *alone[0].Raw != *all[i].Raw {
			t.Errorf("%s: %v alone, %v among others", inputs[i].Path, *alone[0].Raw, *all[i].Raw)
		}
	}

	// Noise is nothing like the training data: with the heads' confidence
	// check off, the score alone must rule it out.
	lenient := score.DefaultOptions()
	lenient.MinConfidence = 0
	sc2, _ := score.New(scoretest.Load(t, mod.Path), lenient)
	noise := medimg.Image{Width: 64, Height: 64, Pix: make([]float32, 64*64), Lo: 0, Hi: 1}
	for i := range noise.Pix {
		noise.Pix[i] = rng.Float32()
	}
	rs, err := sc2.Score(ctx, []score.Input{{Image: noise, Path: "noise"}}, score.Request{})
	if err != nil {
		t.Fatal(err)
	}
	th := sc2.Model().Manifest.Thresholds[rs[0].Group]
	t.Logf("noise: %s raw %.4g (%s threshold %.4g, spread %.3g): %v", rs[0].Decision, *rs[0].Raw, rs[0].Group, th.Value, th.Scale, rs[0].Notes)
	if rs[0].Decision != score.OutOfScope || !strings.Contains(strings.Join(rs[0].Notes, " "), "times the") {
		t.Errorf("noise image: %s %v", rs[0].Decision, rs[0].Notes)
	}
	if math.IsNaN(*rs[0].Raw) {
		t.Error("NaN score")
	}
}

// TestFormat1ShardsCountedFromZero: outputs written before shards counted
// from 1 still read, with their shard renumbered.
func TestFormat1ShardsCountedFromZero(t *testing.T) {
	p := filepath.Join(t.TempDir(), "old.csv")
	header := `# maddr-score {"format":1,"model":"m","model_sha256":"abc","settings":{"min_confidence":0.9,"ood_factor":5,"batch_size":32},"shard":{"index":0,"count":3}}`
	if err := os.WriteFile(p, []byte(header+"\n"+strings.Join(score.Columns, ",")+"\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	h, _, err := score.ReadOutput(p)
	if err != nil {
		t.Fatal(err)
	}
	if h.Shard == nil || *h.Shard != (score.Shard{Index: 1, Count: 3}) {
		t.Errorf("format 1 shard 0/3 read as %v, want 1/3", h.Shard)
	}
}

// TestMergeRefusesMixedPrecision: bf16 rounds the scores, so shards scored
// in fp32 and in bf16 are not one job's outputs.
func TestMergeRefusesMixedPrecision(t *testing.T) {
	dir := t.TempDir()
	var paths []string
	for i, precision := range []string{"fp32", "bf16"} {
		h := score.Header{Format: score.OutputFormat, Model: "m", ModelSHA256: "abc", Shard: &score.Shard{Index: i + 1, Count: 2},
			Settings: score.Settings{Options: score.DefaultOptions(), Precision: precision}}
		var b bytes.Buffer
		w, err := score.NewWriter(&b, "csv", h)
		if err != nil {
			t.Fatal(err)
		}
		w.Close()
		p := filepath.Join(dir, precision+".csv")
		if err := os.WriteFile(p, b.Bytes(), 0o644); err != nil {
			t.Fatal(err)
		}
		paths = append(paths, p)
	}
	if _, _, err := score.Merge(paths, score.MergeOptions{}); err == nil || !strings.Contains(err.Error(), "scored in bf16 but") {
		t.Errorf("merging fp32 and bf16 shards: %v, want a refusal naming the settings", err)
	}
}
