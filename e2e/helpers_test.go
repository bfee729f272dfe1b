package e2e

import (
	"context"
	"encoding/json"
	"fmt"
	"path/filepath"
	"slices"
	"syscall"
	"testing"
	"time"

	"github.com/maddr-project/maddr/baselines"
	_ "github.com/maddr-project/maddr/baselines/all"
	"github.com/maddr-project/maddr/dataset"
	"github.com/maddr-project/maddr/evaluate"
	"github.com/maddr-project/maddr/maddr"
	"github.com/maddr-project/maddr/metrics"
	"github.com/maddr-project/maddr/modelfile"
	"github.com/maddr-project/maddr/torch"
	"github.com/maddr-project/maddr/train"
)

// detectionCase is one baseline, alone or wrapped by MADDR, with the
// schedule that makes it detect the generated anomaly.
type detectionCase struct {
	model string
	maddr bool
	// options is the baseline's JSON settings (small widths, learning rate).
	options string
	// latent is the latent width (0: the baseline's default).
	latent     int
	iterations int
	batch      int
	// minGain, when set, replaces minGainOverUntrained.
	minGain float64
}

// untrainedIterations is the shortest run the baseline accepts: one update
// (f-AnoGAN needs one per stage).
func (c detectionCase) untrainedIterations() int {
	if c.model == "fanogan" {
		return 2
	}
	return 1
}

func (c detectionCase) name() string {
	if c.maddr {
		return "maddr+" + c.model
	}
	return c.model
}

// config is what `maddr train --model M --size 32 --resize 0 --crop 0
// --latent L --iterations N --batch B --seed S --model-options O
// [--baseline-only]`
// builds: the paper's MADDR switches with its mixup window scaled to the run.
func (c detectionCase) config(iterations int) train.Config {
	cfg := train.Defaults(c.model)
	cfg.Sources = nil
	cfg.Preprocess.Size, cfg.Preprocess.Resize, cfg.Preprocess.Crop = genSize, 0, 0
	cfg.Iterations, cfg.BatchSize, cfg.Seed, cfg.LatentDim = iterations, c.batch, 8499, c.latent
	cfg.CheckpointEvery = iterations
	// One libtorch thread: on a 2-core machine shared with other jobs, two
	// intra-op threads made a 300-step AE run cost 100 CPU seconds instead
	// of 6 (they spin waiting for each other while descheduled).
	cfg.Threads, cfg.Workers = 1, 1
	if c.options != "" {
		cfg.ModelOptions = json.RawMessage(c.options)
	}
	mc := maddr.Paper()
	if !c.maddr {
		mc.Organ, mc.Modality, mc.Center = false, false, false
	}
	cfg.MADDR = mc.ScaleMixup(iterations)
	return cfg
}

// outcome is what one train-then-evaluate run measured.
type outcome struct {
	auc map[string]float64 // test AUC per group
	// organAcc and modalityAcc are the heads' accuracy on the test images
	// (NaN-free; -1 when the model has no such head).
	organAcc, modalityAcc float64
	wall, cpu             time.Duration
}

func (o outcome) meanAUC() float64 {
	s := 0.0
	for _, v := range o.auc {
		s += v
	}
	return s / float64(len(o.auc))
}

func (o outcome) String() string {
	groups := make([]string, 0, len(o.auc))
	for g := range o.auc {
		groups = append(groups, g)
	}
	slices.Sort(groups)
	s := ""
	for _, g := range groups {
		s += fmt.Sprintf("%s %.3f, ", g, o.auc[g])
	}
	return fmt.Sprintf("AUC %sorgan head acc %.3f, modality head acc %.3f (wall %.1f s, cpu %.1f s)",
		s, o.organAcc, o.modalityAcc, o.wall.Seconds(), o.cpu.Seconds())
}

// trainAndEvaluate trains c for iterations steps through train.Run, then
// loads the saved model file and evaluates it through evaluate.Evaluate.
func trainAndEvaluate(t *testing.T, c detectionCase, iterations int, samples []dataset.Sample) outcome {
	t.Helper()
	ctx := context.Background()
	wall0, cpu0 := time.Now(), processCPU()
	dir := filepath.Join(t.TempDir(), fmt.Sprintf("%s-%d", c.name(), iterations))
	res, err := train.Run(ctx, c.config(iterations), dir, train.Options{Samples: samples})
	if err != nil {
		t.Fatalf("%s: training: %v", c.name(), err)
	}
	m, err := modelfile.Load(res.ModelPath)
	if err != nil {
		t.Fatalf("%s: %v", c.name(), err)
	}
	defer freeModel(m)
	rep, err := evaluate.Evaluate(ctx, m, samples, metrics.SelectOptions{}, false)
	if err != nil {
		t.Fatalf("%s: evaluating %s: %v", c.name(), res.ModelPath, err)
	}
	out := outcome{auc: map[string]float64{}, organAcc: -1, modalityAcc: -1}
	for _, g := range rep.Results.Groups {
		if g.Test.AUC == nil {
			t.Fatalf("%s: group %s has no test AUC", c.name(), g.Group)
		}
		out.auc[g.Group] = *g.Test.AUC
	}
	if len(out.auc) != len(genGroups) {
		t.Fatalf("%s: evaluated %d groups, want %d", c.name(), len(out.auc), len(genGroups))
	}
	out.organAcc, out.modalityAcc = headAccuracy(t, m, samples)
	out.wall, out.cpu = time.Since(wall0), processCPU()-cpu0
	return out
}

// headAccuracy classifies every test image with the model's heads (through
// the model's own preprocessing) and returns the fraction of correct organ
// and modality predictions; -1 for a head the model does not have.
func headAccuracy(t *testing.T, m *modelfile.Model, samples []dataset.Sample) (organ, modality float64) {
	t.Helper()
	fw := m.Framework
	if !fw.HasOrganHead() && !fw.HasModalityHead() {
		return -1, -1
	}
	pp := m.Manifest.Preprocess
	var test []dataset.Sample
	var pix []float32
	for _, s := range samples {
		if s.Split != dataset.Test {
			continue
		}
		x, err := pp.Apply(*s.Image, s.Organ)
		if err != nil {
			t.Fatalf("preprocessing %s: %v", s.Where(), err)
		}
		test = append(test, s)
		pix = append(pix, x...)
	}
	side := int64(pp.Size)
	x := torch.FromFloat32(pix, int64(len(test)), 1, side, side)
	defer x.Free()
	pred, err := fw.Classify(x)
	if err != nil {
		t.Fatalf("classifying the test images: %v", err)
	}
	accuracy := func(probs [][]float32, classes []string, label func(dataset.Sample) string) float64 {
		if probs == nil {
			return -1
		}
		right := 0
		for i, p := range probs {
			best := 0
			for k := range p {
				if p[k] > p[best] {
					best = k
				}
			}
			if classes[best] == label(test[i]) {
				right++
			}
		}
		return float64(right) / float64(len(probs))
	}
	organ = accuracy(pred.Organ, fw.Classes.Organs, func(s dataset.Sample) string { return s.Organ })
	modality = accuracy(pred.Modality, fw.Classes.Modalities, func(s dataset.Sample) string { return s.Modality })
	return organ, modality
}

func freeModel(m *modelfile.Model) {
	m.Framework.Base.Store().Free()
	if fz, ok := m.Framework.Base.(baselines.FrozenNetworks); ok {
		fz.Frozen().Free()
	}
}

// processCPU is the user+system CPU time this process has used.
func processCPU() time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}
