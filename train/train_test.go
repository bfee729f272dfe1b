package train

import (
	"context"
	"errors"
	"fmt"
	"math"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/maddr-project/maddr/baselines"
	_ "github.com/maddr-project/maddr/baselines/ae"
	"github.com/maddr-project/maddr/dataset"
	"github.com/maddr-project/maddr/loader"
	"github.com/maddr-project/maddr/maddr"
	"github.com/maddr-project/maddr/modelfile"
	"github.com/maddr-project/maddr/nn"
	"github.com/maddr-project/maddr/phantom"
	"github.com/maddr-project/maddr/preprocess"
	"github.com/maddr-project/maddr/torch"
)

func smallConfig(t *testing.T) (Config, []dataset.Sample) {
	t.Helper()
	pc := phantom.DefaultConfig()
	pc.Scale, pc.Size = 0.04, 64
	cases, err := phantom.Generate(pc)
	if err != nil {
		t.Fatal(err)
	}
	samples, _, err := dataset.PhantomSamples(cases, dataset.AllSplits)
	if err != nil {
		t.Fatal(err)
	}
	cfg := Defaults("ae")
	cfg.Sources = nil
	cfg.Preprocess.Size, cfg.Preprocess.Resize, cfg.Preprocess.Crop = 32, 0, 0
	cfg.Iterations, cfg.BatchSize, cfg.CheckpointEvery = 12, 4, 5
	cfg.MADDR = maddr.Paper().ScaleMixup(cfg.Iterations)
	cfg.Threads = 1
	return cfg, samples
}

func weights(t *testing.T, path string) map[string][]float32 {
	t.Helper()
	ck, err := nn.ReadCheckpoint(path)
	if err != nil {
		t.Fatal(err)
	}
	out := map[string][]float32{}
	for k, v := range ck.File.Tensors {
		out[k] = v.F32
	}
	return out
}

// TestResumeGivesTheSameWeights interrupts a run after a checkpoint, resumes
// it, and compares the final weights with an uninterrupted run.
func TestResumeGivesTheSameWeights(t *testing.T) {
	cfg, samples := smallConfig(t)
	whole := t.TempDir()
	if _, err := Run(context.Background(), cfg, whole, Options{Samples: samples}); err != nil {
		t.Fatal(err)
	}

	split := t.TempDir()
	ctx, cancel := context.WithCancel(context.Background())
	_, err := Run(ctx, cfg, split, Options{Samples: samples, AfterStep: func(it int, _ baselines.Losses) {
		if it == 7 {
			cancel()
		}
	}})
	if !errors.Is(err, context.Canceled) {
		t.Fatalf("interrupted run: %v", err)
	}
	if _, err := Run(context.Background(), cfg, split, Options{Samples: samples}); err == nil || !strings.Contains(err.Error(), "--resume") {
		t.Fatalf("a second run into a directory with a checkpoint must ask for --resume, got %v", err)
	}
	res, err := Run(context.Background(), cfg, split, Options{Samples: samples, Resume: true})
	if err != nil {
		t.Fatal(err)
	}
	a, b := weights(t, filepath.Join(whole, CheckpointFile)), weights(t, filepath.Join(split, CheckpointFile))
	for name, wa := range a {
		wb := b[name]
		if len(wa) != len(wb) {
			t.Fatalf("%s: sizes differ", name)
		}
		for i := range wa {
			if wa[i] != wb[i] {
				t.Fatalf("%s[%d]: resumed %v, uninterrupted %v", name, i, wb[i], wa[i])
			}
		}
	}
	m, err := modelfile.Load(res.ModelPath)
	if err != nil {
		t.Fatal(err)
	}
	if m.Manifest.Model != "ae" || len(m.Manifest.Vocabs.Organ) != 2 || m.Manifest.Preprocess.Size != 32 {
		t.Fatalf("model manifest: %+v", m.Manifest)
	}

	changed := cfg
	changed.Seed++
	if _, err := Run(context.Background(), changed, split, Options{Samples: samples, Resume: true}); err == nil || !strings.Contains(err.Error(), "another configuration") {
		t.Fatalf("resume with another config: %v", err)
	}
}

func TestBadInputsAreClearErrors(t *testing.T) {
	cfg, samples := smallConfig(t)
	cfg.BatchSize = 1
	if _, err := Run(context.Background(), cfg, t.TempDir(), Options{Samples: samples}); err == nil || !strings.Contains(err.Error(), "at least 2") {
		t.Fatalf("batch 1: %v", err)
	}
	cfg, _ = smallConfig(t)
	cfg.Groups = []string{"brain-mri"}
	if _, err := Run(context.Background(), cfg, t.TempDir(), Options{Samples: samples}); err == nil || !strings.Contains(err.Error(), "no normal training images") {
		t.Fatalf("unknown group: %v", err)
	}
	cfg, _ = smallConfig(t)
	cfg.BatchSize = 500
	if _, err := Run(context.Background(), cfg, t.TempDir(), Options{Samples: samples}); err == nil || !strings.Contains(err.Error(), "fewer than one batch") {
		t.Fatalf("batch larger than the data: %v", err)
	}
	cfg, _ = smallConfig(t)
	cfg.Model = "nope"
	if _, err := Run(context.Background(), cfg, t.TempDir(), Options{Samples: samples}); err == nil || !strings.Contains(err.Error(), "unknown model") {
		t.Fatalf("unknown model: %v", err)
	}
	// A truncated checkpoint is refused with its name, never a panic.
	cfg, _ = smallConfig(t)
	dir := t.TempDir()
	os.WriteFile(filepath.Join(dir, CheckpointFile), []byte("garbage"), 0o644)
	if _, err := Run(context.Background(), cfg, dir, Options{Samples: samples, Resume: true}); err == nil || !strings.Contains(err.Error(), CheckpointFile) {
		t.Fatalf("corrupt checkpoint: %v", err)
	}
}

func TestResumeTrimsTheLogAndTemporaryFiles(t *testing.T) {
	cfg, samples := smallConfig(t)
	dir := t.TempDir()
	ctx, cancel := context.WithCancel(context.Background())
	_, err := Run(ctx, cfg, dir, Options{Samples: samples, AfterStep: func(it int, _ baselines.Losses) {
		if it == 8 {
			cancel()
		}
	}})
	if !errors.Is(err, context.Canceled) {
		t.Fatal(err)
	}
	stale := filepath.Join(dir, "."+CheckpointFile+".tmp-123")
	os.WriteFile(stale, []byte("half"), 0o644)
	if _, err := Run(context.Background(), cfg, dir, Options{Samples: samples, Resume: true}); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(stale); err == nil {
		t.Error("stale temporary file survived the resume")
	}
	data, _ := os.ReadFile(filepath.Join(dir, LogFile))
	lines := strings.Split(strings.TrimSpace(string(data)), "\n")
	// Line 0 is the validation of the untrained model.
	if len(lines) != cfg.Iterations+1 {
		t.Fatalf("log has %d lines after resume, want one per iteration (%d) and one before training", len(lines), cfg.Iterations)
	}
	for i, l := range lines {
		if !strings.Contains(l, fmt.Sprintf(`"iter":%d,`, i)) {
			t.Fatalf("line %d is %s", i+1, l)
		}
	}
}

// recordingCalibrator keeps the images it is shown.
type recordingCalibrator struct{ seen []float32 }

func (r *recordingCalibrator) Calibrate(x *torch.Tensor) error {
	v, err := x.Float32s()
	r.seen = v
	return err
}

func TestCalibrationSampleCoversEveryGroupInProportion(t *testing.T) {
	// A multi-group training set in group order, with unequal groups.
	var all []dataset.Sample
	for _, g := range []struct {
		name string
		n    int
	}{{"chest-xray", 700}, {"liver-ct", 150}, {"lung-ct", 250}} {
		for i := range g.n {
			all = append(all, dataset.Sample{Group: g.name, Split: dataset.Train, Label: dataset.Normal, ID: fmt.Sprintf("%s/%d", g.name, i)},
				dataset.Sample{Group: g.name, Split: dataset.Val, Label: dataset.Abnormal})
		}
	}
	trainSet := selectTrain(all, nil)
	share := map[string]int{}
	for _, s := range trainSet {
		share[s.Group]++
	}
	if len(share) < 3 || len(trainSet) <= 2*calibrationImages {
		t.Fatalf("want >= 3 groups and > %d training images, got %v", 2*calibrationImages, share)
	}
	idx := CalibrationSample(len(trainSet), 8499)
	if len(idx) != calibrationImages {
		t.Fatalf("%d images sampled, want %d", len(idx), calibrationImages)
	}
	got := map[string]int{}
	for j, i := range idx {
		if j > 0 && i <= idx[j-1] {
			t.Fatalf("indices not distinct and increasing at %d: %v", j, idx[j-1:j+1])
		}
		got[trainSet[i].Group]++
	}
	n, k := float64(len(trainSet)), float64(calibrationImages)
	for g, c := range share {
		// Hypergeometric mean and spread of the group's count; 4 standard
		// deviations (plus one image) is far outside sampling noise, while the
		// first 256 images in group order miss whole groups.
		p := float64(c) / n
		mean, sd := k*p, math.Sqrt(k*p*(1-p)*(n-k)/(n-1))
		if math.Abs(float64(got[g])-mean) > 4*sd+1 {
			t.Errorf("group %s: %d of %d calibration images, want %.1f +- %.1f (its share of the training set is %d/%d)",
				g, got[g], calibrationImages, mean, 4*sd+1, c, len(trainSet))
		}
	}
	again, other := CalibrationSample(len(trainSet), 8499), CalibrationSample(len(trainSet), 8500)
	if fmt.Sprint(again) != fmt.Sprint(idx) {
		t.Error("the same seed drew another sample")
	}
	if fmt.Sprint(other) == fmt.Sprint(idx) {
		t.Error("another seed drew the same sample")
	}
	if small := CalibrationSample(10, 1); len(small) != 10 || small[9] != 9 {
		t.Errorf("a set smaller than the sample must be used whole, got %v", small)
	}

	// The train loop shows the Calibrator exactly those images (a small
	// phantom set repeated past the sample size).
	_, samples := smallConfig(t)
	var small []dataset.Sample
	for len(small) < 300 {
		small = append(small, selectTrain(samples, nil)...)
	}
	small = small[:300]
	ld, err := loader.New(context.Background(), small, loader.Config{Size: 16, Transform: loader.Preprocess(preprocess.Config{Size: 16}), BatchSize: 4, Workers: 1})
	if err != nil {
		t.Fatal(err)
	}
	defer ld.Close()
	rec := &recordingCalibrator{}
	if err := calibrate(rec, ld, 16, 3); err != nil {
		t.Fatal(err)
	}
	want := CalibrationSample(300, 3)
	if len(rec.seen) != len(want)*16*16 {
		t.Fatalf("calibrator saw %d values, want %d images", len(rec.seen), len(want))
	}
	for j, i := range want {
		x, err := ld.Input(i)
		if err != nil {
			t.Fatal(err)
		}
		for p := range x {
			if rec.seen[j*256+p] != x[p] {
				t.Fatalf("calibration image %d is not training image %d", j, i)
			}
		}
	}
}
