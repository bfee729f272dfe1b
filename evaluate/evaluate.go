// Package evaluate applies the paper's protocol to a trained model: score
// every validation and test image with the preprocessing stored in the model,
// choose each organ/modality group's threshold on its validation images
// (grid search on macro-F1), and report AUC, AUPR, ACC and the F1 variants
// per group and pooled, as JSON and Markdown.
package evaluate

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"math"
	"sort"
	"strings"

	"github.com/maddr-project/maddr/dataset"
	"github.com/maddr-project/maddr/infer"
	"github.com/maddr-project/maddr/loader"
	"github.com/maddr-project/maddr/metrics"
	"github.com/maddr-project/maddr/modelfile"
	"github.com/maddr-project/maddr/preprocess"
)

// ScoreSamples returns the model's raw anomaly score for every sample, in
// order, through exactly the preprocessing recorded in the model.
func ScoreSamples(ctx context.Context, m *modelfile.Model, samples []dataset.Sample, batchSize int, skipBad bool) ([]float64, error) {
	if len(samples) == 0 {
		return nil, nil
	}
	ld, err := NewScoringLoader(ctx, samples, m.Manifest.Preprocess, ScoringOptions{BatchSize: batchSize, SkipBad: skipBad, CacheBytes: -1})
	if err != nil {
		return nil, err
	}
	defer ld.Close()
	scores, err := ScoreLoader(ctx, m, ld)
	if err != nil {
		return nil, err
	}
	for i, s := range scores {
		if math.IsNaN(s) && !skipBad {
			return nil, fmt.Errorf("%s: no score (the image was skipped or the model produced NaN)", samples[i].Where())
		}
	}
	return scores, nil
}

// ScoringOptions tune a scoring loader. Batches are always BatchSize images
// in sample order, so the same model scores the same images identically
// whoever calls (evaluation, the validation during training).
type ScoringOptions struct {
	// BatchSize of the forward passes (0: infer.DefaultBatchSize).
	BatchSize int
	SkipBad   bool
	// CacheBytes bounds the memory of cached preprocessed images (negative:
	// no cache, 0: the loader's default). Scoring the same images
	// repeatedly, as validation during training does, decodes them once.
	CacheBytes int64
	// Workers decoding in parallel (0: all cores).
	Workers int
	// Verify decodes every image up front and reports the bad ones together
	// (with SkipBad: leaves them out and logs them, so the loader's Samples
	// are the survivors); without it a bad image stops scoring when reached.
	Verify bool
	Logf   func(format string, args ...any)
}

// NewScoringLoader prepares samples for ScoreLoader with the preprocessing pp.
func NewScoringLoader(ctx context.Context, samples []dataset.Sample, pp preprocess.Config, o ScoringOptions) (*loader.Loader, error) {
	if o.BatchSize <= 0 {
		o.BatchSize = infer.DefaultBatchSize
	}
	return loader.New(ctx, samples, loader.Config{
		Size: pp.Size, Transform: loader.Preprocess(pp), BatchSize: o.BatchSize, SkipBad: o.SkipBad, Lazy: !o.Verify,
		CacheBytes: o.CacheBytes, Workers: o.Workers, Logf: o.Logf,
	})
}

// ImageScorer turns a batch of images into per-image anomaly scores: a
// baseline in fp32, or a loaded model file at its chosen precision.
type ImageScorer = infer.Scorer

// ScoreLoader returns model's raw anomaly score for every sample of ld
// (parallel to ld.Samples()), computed by package infer in the loader's
// batches; NaN marks an image that was skipped or that the model scored NaN.
func ScoreLoader(ctx context.Context, model ImageScorer, ld *loader.Loader) ([]float64, error) {
	out, err := infer.ForScorer(model, ld.Size()).Stream(ctx, ld, infer.Scores)
	if err != nil {
		return nil, err
	}
	return out.Scores, nil
}

// Report is the evaluation of one model.
type Report struct {
	Model string `json:"model"`
	Path  string `json:"path"`
	// Precision is the arithmetic the scores came from, "fp32" or "bf16"
	// (eval --precision); thresholds are only exact for the same one.
	Precision string                    `json:"precision"`
	Notes     []string                  `json:"notes,omitempty"`
	F1Note    string                    `json:"f1_note"`
	Results   metrics.GroupedReport     `json:"results"`
	Counts    map[string]map[string]int `json:"counts"`

	// normalVal holds each group's normal validation scores for Thresholds.
	normalVal map[string][]float64
}

// F1Explanation says which F1 the tables show.
const F1Explanation = "F1 is macro-F1 (mean of the normal-class and abnormal-class F1), used both to choose the threshold " +
	"on validation and in the tables; binary (abnormal-positive) and support-weighted F1 are in the JSON."

// valAndTest picks the validation and test images out of samples, in order.
func valAndTest(samples []dataset.Sample) (val, test []dataset.Sample) {
	return dataset.Filter(samples, dataset.Val), dataset.Filter(samples, dataset.Test)
}

// Evaluate scores the validation and test samples of every group and applies the protocol.
func Evaluate(ctx context.Context, m *modelfile.Model, samples []dataset.Sample, opts metrics.SelectOptions, skipBad bool) (*Report, error) {
	val, test := valAndTest(samples)
	if len(test) == 0 {
		return nil, fmt.Errorf("no test images to evaluate")
	}
	if len(val) == 0 {
		return nil, fmt.Errorf("no validation images: thresholds are chosen on validation, so every group needs some")
	}
	vs, err := ScoreSamples(ctx, m, val, 32, skipBad)
	if err != nil {
		return nil, err
	}
	ts, err := ScoreSamples(ctx, m, test, 32, skipBad)
	if err != nil {
		return nil, err
	}
	return FromScores(m, val, test, vs, ts, opts)
}

// FromScores applies the protocol to scores already computed by
// ScoreSamples (NaN marks a skipped image), so a caller that needs the
// scores themselves (plots, picking images for heat maps) scores each image
// once. valScores and testScores are parallel to val and test.
func FromScores(m *modelfile.Model, val, test []dataset.Sample, valScores, testScores []float64, opts metrics.SelectOptions) (*Report, error) {
	if len(valScores) != len(val) || len(testScores) != len(test) {
		return nil, fmt.Errorf("evaluating: %d/%d validation and %d/%d test scores for the samples", len(valScores), len(val), len(testScores), len(test))
	}
	vs := valScores
	res, err := GroupsFromScores(val, test, vs, testScores, opts)
	if err != nil {
		return nil, err
	}
	counts := splitCounts(append(append([]dataset.Sample{}, val...), test...))
	normalVal := map[string][]float64{}
	for i, s := range val {
		if s.Label == dataset.Normal && !math.IsNaN(vs[i]) {
			normalVal[s.Group] = append(normalVal[s.Group], vs[i])
		}
	}
	return &Report{Model: m.Manifest.Model, Path: m.Path, Precision: modelfile.PrecisionName(m.Precision), Notes: m.Manifest.Notes, F1Note: F1Explanation, Results: res, Counts: counts, normalVal: normalVal}, nil
}

// GroupsFromScores is the evaluation protocol on scores of val and test (NaN: not scored): each group's threshold
// chosen on its validation scores by opts, its test scores measured with it. FromScores reports a model's scores
// with it, and a score that comes from no model (a training-free statistic) is measured the same way.
func GroupsFromScores(val, test []dataset.Sample, valScores, testScores []float64, opts metrics.SelectOptions) (metrics.GroupedReport, error) {
	return metrics.EvaluateGroups(scored(val, valScores), scored(test, testScores), opts)
}

// splitCounts is the data set's own tally (dataset.Counts) keyed as the
// report shows it: group, then "split/label"; empty cells are left out.
func splitCounts(samples []dataset.Sample) map[string]map[string]int {
	out := map[string]map[string]int{}
	for _, c := range dataset.Counts(samples) {
		if out[c.Group] == nil {
			out[c.Group] = map[string]int{}
		}
		for label, n := range map[dataset.Label]int{dataset.Normal: c.Normal, dataset.Abnormal: c.Abnormal} {
			if n > 0 {
				out[c.Group][string(c.Split)+"/"+label.String()] = n
			}
		}
	}
	return out
}

func scored(samples []dataset.Sample, scores []float64) metrics.Scored {
	var out metrics.Scored
	for i, s := range samples {
		if math.IsNaN(scores[i]) {
			continue
		}
		out.Scores = append(out.Scores, scores[i])
		out.Labels = append(out.Labels, s.Label == dataset.Abnormal)
		out.Groups = append(out.Groups, s.Group)
	}
	return out
}

// Thresholds turns the report's per-group thresholds into the model's
// decision rules. The scale of the 0..1 normalisation is the spread
// (interquartile range / 1.349, a robust standard deviation) of the normal
// validation scores, so 0.5 sits at the threshold and one such spread above
// it reads about 0.73.
func (r *Report) Thresholds() map[string]modelfile.Threshold {
	out := map[string]modelfile.Threshold{}
	for _, g := range r.Results.Groups {
		scale := robustSpread(r.normalVal[g.Group])
		out[g.Group] = modelfile.Threshold{Value: g.Threshold.Value, Method: g.Threshold.Method, Reason: g.Threshold.Reason, Scale: scale,
			Precision: r.Precision}
	}
	return out
}

func robustSpread(v []float64) float64 {
	if len(v) < 2 {
		return 1
	}
	s := append([]float64{}, v...)
	sort.Float64s(s)
	iqr := metrics.Percentile(s, 75) - metrics.Percentile(s, 25)
	if iqr <= 0 || math.IsNaN(iqr) {
		return 1
	}
	return iqr / 1.349
}

// WriteJSON writes the report as indented JSON.
func (r *Report) WriteJSON(w io.Writer) error {
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	return enc.Encode(r)
}

func pct(p *float64) string {
	if p == nil {
		return "n/a"
	}
	return fmt.Sprintf("%.2f", 100**p)
}

// WriteMarkdown writes the per-group table.
func (r *Report) WriteMarkdown(w io.Writer) error {
	var b strings.Builder
	fmt.Fprintf(&b, "# Evaluation of %s (%s), scored in %s\n\n", r.Model, r.Path, r.Precision)
	for _, n := range r.Notes {
		fmt.Fprintf(&b, "> **Note:** %s\n\n", n)
	}
	b.WriteString("| group | test normal/abnormal | threshold (method) | AUC % | AUPR % | ACC % | F1 % |\n|---|---|---|---|---|---|---|\n")
	for _, g := range r.Results.Groups {
		t := g.Test
		fmt.Fprintf(&b, "| %s | %d/%d | %.5g (%s) | %s | %s | %.2f | %.2f |\n", g.Group, t.Normal, t.Abnormal,
			g.Threshold.Value, g.Threshold.Method, pct(t.AUC), pct(t.AUPR), 100*t.Accuracy, 100*t.MacroF1)
	}
	o := r.Results.Overall
	fmt.Fprintf(&b, "| **all** | %d/%d | per group | %s | %s | %.2f | %.2f |\n\n", o.Normal, o.Abnormal, pct(o.AUC), pct(o.AUPR), 100*o.Accuracy, 100*o.MacroF1)
	b.WriteString(F1Explanation + "\n")
	for _, g := range r.Results.Groups {
		if g.Threshold.Method != metrics.MethodGrid {
			fmt.Fprintf(&b, "\n%s: %s\n", g.Group, g.Threshold.Reason)
		}
	}
	_, err := io.WriteString(w, b.String())
	return err
}
