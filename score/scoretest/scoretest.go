// Package scoretest trains the tiny model that the scoring, serving and CLI
// tests share: a 32-pixel plain autoencoder wrapped by MADDR on a small
// phantom data set, evaluated so that it carries per-group thresholds. It
// takes a couple of seconds on two cores.
package scoretest

import (
	"context"
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"encoding/json"
	"math"
	"path/filepath"
	"testing"

	_ "github.com/maddr-project/maddr/baselines/ae" // the model's baseline
	"github.com/maddr-project/maddr/dataset"
	"github.com/maddr-project/maddr/evaluate"
	"github.com/maddr-project/maddr/maddr"
	"github.com/maddr-project/maddr/metrics"
	"github.com/maddr-project/maddr/modelfile"
	"github.com/maddr-project/maddr/phantom"
	"github.com/maddr-project/maddr/train"
)

// Model is a trained test model with the data it was trained and evaluated on.
type Model struct {
	Path    string
	Samples []dataset.Sample
}

// Phantom returns the small phantom data set the model uses.
func Phantom(t testing.TB) []dataset.Sample {
	t.Helper()
	pc := phantom.DefaultConfig()
	pc.Scale, pc.Size = 0.06, 64
	cases, err := phantom.Generate(pc)
	if err != nil {
		t.Fatal(err)
	}
	samples, _, err := dataset.PhantomSamples(cases, dataset.AllSplits)
	if err != nil {
		t.Fatal(err)
	}
	return samples
}

// Train trains and evaluates the model in dir/run. With baselineOnly the
// model has no heads and is trained on group only.
func Train(t testing.TB, dir string, baselineOnly bool, group string) Model {
	t.Helper()
	return trainTweaked(t, dir, baselineOnly, group, nil)
}

// TrainSmall trains the model with a 64-wide bottleneck and latent and 60
// iterations instead of 1024, 128 and 80: a file small enough (under 1 MB)
// to commit as a fixture.
func TrainSmall(t testing.TB, dir string) Model {
	t.Helper()
	return trainTweaked(t, dir, false, "", func(cfg *train.Config) {
		cfg.Iterations, cfg.LatentDim, cfg.ModelOptions = 60, 64, json.RawMessage(`{"hidden":64}`)
	})
}

// trainTweaked is Train with tweak applied to the configuration before the
// MADDR schedule is scaled to its iterations.
func trainTweaked(t testing.TB, dir string, baselineOnly bool, group string, tweak func(*train.Config)) Model {
	t.Helper()
	samples := Phantom(t)
	cfg := train.Defaults("ae")
	cfg.Sources = nil
	cfg.Preprocess.Size, cfg.Preprocess.Resize, cfg.Preprocess.Crop = 32, 0, 0
	cfg.Iterations, cfg.BatchSize, cfg.Threads, cfg.CheckpointEvery = 80, 8, 0, 1000
	if tweak != nil {
		tweak(&cfg)
	}
	cfg.MADDR = maddr.Paper().ScaleMixup(cfg.Iterations)
	evalSamples := samples
	if baselineOnly {
		cfg.MADDR = maddr.BaselineOnly()
		cfg.Groups = []string{group}
		evalSamples = nil
		for _, s := range samples {
			if s.Group == group {
				evalSamples = append(evalSamples, s)
			}
		}
	}
	ctx := context.Background()
	res, err := train.Run(ctx, cfg, filepath.Join(dir, "run"), train.Options{Samples: samples})
	if err != nil {
		t.Fatal(err)
	}
	m, err := modelfile.Load(res.ModelPath)
	if err != nil {
		t.Fatal(err)
	}
	rep, err := evaluate.Evaluate(ctx, m, evalSamples, metrics.SelectOptions{}, false)
	if err != nil {
		t.Fatal(err)
	}
	th := rep.Thresholds()
	if err := modelfile.UpdateManifest(res.ModelPath, func(mf *modelfile.Manifest) error { mf.Thresholds = th; return nil }); err != nil {
		t.Fatal(err)
	}
	return Model{Path: res.ModelPath, Samples: samples}
}

// Load loads a model file or fails the test.
func Load(t testing.TB, path string) *modelfile.Model {
	t.Helper()
	m, err := modelfile.Load(path)
	if err != nil {
		t.Fatal(err)
	}
	return m
}

// BitsSHA256 hashes the exact bits of v: golden tests compare outputs with
// it, so one ulp of difference shows.
func BitsSHA256(v []float32) string {
	h := sha256.New()
	var buf [4]byte
	for _, f := range v {
		binary.LittleEndian.PutUint32(buf[:], math.Float32bits(f))
		h.Write(buf[:])
	}
	return hex.EncodeToString(h.Sum(nil))
}
