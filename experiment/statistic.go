package experiment

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"time"

	"github.com/maddr-project/maddr/dataset"
	"github.com/maddr-project/maddr/evaluate"
	"github.com/maddr-project/maddr/loader"
	"github.com/maddr-project/maddr/metrics"
	"github.com/maddr-project/maddr/preprocess"
)

// StatisticFile holds an experiment directory's training-free reference (Statistic).
const StatisticFile = "statistic.json"

// Bootstrap settings of the statistic's AUC interval: it has no training seeds to repeat, so its spread is the
// resampling spread of its test AUC. The seed is fixed so a rerun prints the same interval.
const (
	StatisticResamples     = 2000
	StatisticBootstrapSeed = 8499
)

// Statistic is the training-free reference row of an experiment: every image scored by MeanImageScores and
// measured by the cells' protocol (thresholds on each group's validation images, metrics on the scored split).
type Statistic struct {
	// Key identifies the data, preprocessing, scored split, groups and threshold rule it was computed with.
	Key string `json:"key"`
	Evaluation
	// AUC95 is each group's 95% bootstrap interval of the AUC (StatisticResamples resamples within each class).
	AUC95   map[string][2]float64 `json:"auc_bootstrap_95"`
	Seconds float64               `json:"seconds"`
}

// statisticKey identifies what the statistic of the settings on groups computes.
func statisticKey(s Settings, groups []string) string {
	split := s.Split
	if split == string(dataset.Test) {
		split = ""
	}
	b, _ := json.Marshal(struct {
		Sources    []dataset.Spec        `json:"sources"`
		Preprocess preprocess.Config     `json:"preprocess"`
		Split      string                `json:"split,omitempty"`
		Groups     []string              `json:"groups"`
		Select     metrics.SelectOptions `json:"select"`
	}{s.Sources, s.Preprocess, split, groups, s.selectOptions()})
	h := sha256.Sum256(b)
	return hex.EncodeToString(h[:8])
}

// ensureStatistic computes the statistic of the settings into dir unless dir holds it already. It costs one pass
// of preprocessing over the groups' images and no training.
func ensureStatistic(ctx context.Context, s Settings, dir string, samples []dataset.Sample, groups []string, o Options) error {
	key := statisticKey(s, groups)
	if prev, err := readStatistic(dir); err == nil && prev.Key == key {
		return nil
	}
	start := time.Now()
	scored := dataset.Test
	if s.Split == SplitVal {
		scored = dataset.Val
	}
	ev, err := MeanImageStatistic(ctx, s.Preprocess, samples, groups, scored, s.selectOptions())
	if err != nil {
		if s.SkipBad && ctx.Err() == nil {
			// The cells skip unreadable images; the reference row is left out rather than failing the run.
			o.logf("warning: the training-free statistic is left out of the report: %v", err)
			if err := os.Remove(filepath.Join(dir, StatisticFile)); err != nil && !errors.Is(err, os.ErrNotExist) {
				return err
			}
			return nil
		}
		return fmt.Errorf("training-free statistic: %w", err)
	}
	st := &Statistic{Key: key, Evaluation: *ev, AUC95: map[string][2]float64{}}
	for _, gr := range ev.Results.Groups {
		scores, abnormal := labelled(ev.Scores[gr.Group])
		lo, hi := metrics.BootstrapAUC(scores, abnormal, StatisticResamples, StatisticBootstrapSeed)
		st.AUC95[gr.Group] = [2]float64{lo, hi}
	}
	st.Seconds = time.Since(start).Seconds()
	o.logf("training-free statistic (distance to each group's mean training image) in %.1f s", st.Seconds)
	return writeJSON(filepath.Join(dir, StatisticFile), st)
}

func readStatistic(dir string) (*Statistic, error) {
	b, err := os.ReadFile(filepath.Join(dir, StatisticFile))
	if err != nil {
		return nil, err
	}
	var st Statistic
	if err := json.Unmarshal(b, &st); err != nil {
		return nil, fmt.Errorf("%s: %w", filepath.Join(dir, StatisticFile), err)
	}
	return &st, nil
}

// LoadStatistic reads the training-free statistic of the experiment s on groups from the first of dirs that holds
// it; nil when none does (an experiment run before the statistic existed, or with --skip-bad on bad images).
func LoadStatistic(s Settings, groups []string, dirs ...string) (*Statistic, error) {
	key := statisticKey(s, groups)
	for _, d := range dirs {
		st, err := readStatistic(d)
		if errors.Is(err, os.ErrNotExist) {
			continue
		}
		if err != nil {
			return nil, err
		}
		if st.Key == key {
			return st, nil
		}
	}
	return nil, nil
}

// MeanImageStatistic is the training-free reference: an image's score is the mean squared difference between its
// preprocessed pixels and the mean preprocessed normal training image of its group (the error an L2
// reconstruction baseline would get from a decoder that always outputs the average normal image). The scores are
// measured as a cell's are: each group's threshold chosen on its validation images by sel, the scored split's
// images measured with it.
func MeanImageStatistic(ctx context.Context, pp preprocess.Config, samples []dataset.Sample, groups []string, scoredSplit dataset.Split, sel metrics.SelectOptions) (*Evaluation, error) {
	var val, scored []dataset.Sample
	var vs, ts []float64
	for _, g := range groups {
		var trainSet []dataset.Sample
		for _, smp := range samples {
			if smp.Group == g && smp.Split == dataset.Train && smp.Label == dataset.Normal {
				trainSet = append(trainSet, smp)
			}
		}
		if len(trainSet) == 0 {
			return nil, fmt.Errorf("group %s: no normal training images", g)
		}
		tx, err := Inputs(ctx, pp, trainSet)
		if err != nil {
			return nil, err
		}
		mean := make([]float64, len(tx[0]))
		for _, x := range tx {
			for i, v := range x {
				mean[i] += float64(v) / float64(len(tx))
			}
		}
		score := func(set []dataset.Sample) ([]float64, error) {
			xs, err := Inputs(ctx, pp, set)
			if err != nil {
				return nil, err
			}
			s := make([]float64, len(xs))
			for k, x := range xs {
				for i, v := range x {
					d := float64(v) - mean[i]
					s[k] += d * d / float64(len(x))
				}
			}
			return s, nil
		}
		gv, gs := SplitOf(samples, g, dataset.Val), SplitOf(samples, g, scoredSplit)
		v, err := score(gv)
		if err != nil {
			return nil, err
		}
		val, vs = append(val, gv...), append(vs, v...)
		if scoredSplit != dataset.Val {
			if v, err = score(gs); err != nil {
				return nil, err
			}
		}
		scored, ts = append(scored, gs...), append(ts, v...)
	}
	results, err := evaluate.GroupsFromScores(val, scored, vs, ts, sel)
	if err != nil {
		return nil, err
	}
	return evaluationOf(results, scored, ts), nil
}

// SplitOf lists group's samples in split, in order.
func SplitOf(samples []dataset.Sample, group string, split dataset.Split) []dataset.Sample {
	var out []dataset.Sample
	for _, s := range samples {
		if s.Group == group && s.Split == split {
			out = append(out, s)
		}
	}
	return out
}

// Inputs returns the network inputs of samples through the preprocessing pp, in order (a model sees its own
// manifest's preprocessing: its inputs are Inputs(ctx, m.Manifest.Preprocess, samples)).
func Inputs(ctx context.Context, pp preprocess.Config, samples []dataset.Sample) ([][]float32, error) {
	ld, err := loader.New(ctx, samples, loader.Config{Size: pp.Size, Transform: loader.Preprocess(pp),
		BatchSize: 64, Lazy: true, CacheBytes: -1})
	if err != nil {
		return nil, err
	}
	defer ld.Close()
	out := make([][]float32, len(samples))
	px := pp.Size * pp.Size
	for batch, err := range ld.Eval(ctx) {
		if err != nil {
			return nil, err
		}
		for j, idx := range batch.Index {
			out[idx] = slices.Clone(batch.X[j*px : (j+1)*px])
		}
	}
	for i, x := range out {
		if x == nil {
			return nil, fmt.Errorf("%s: not preprocessed", samples[i].Where())
		}
	}
	return out, nil
}
