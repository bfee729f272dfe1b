package evaluate

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"math"
	"time"

	"github.com/maddr-project/maddr/dataset"
	"github.com/maddr-project/maddr/metrics"
	"github.com/maddr-project/maddr/modelfile"
	"github.com/maddr-project/maddr/torch"
)

// MaxPrecisionAUCLoss is the largest test-AUC difference (in points, i.e.
// AUC x 100) between fp32 and bf16 scoring on any group for which bf16 may
// be recommended.
const MaxPrecisionAUCLoss = 0.5

// PrecisionGroup compares one group's test AUC under both precisions.
type PrecisionGroup struct {
	Group   string   `json:"group"`
	Samples int      `json:"samples"`
	AUCFP32 *float64 `json:"auc_fp32,omitempty"`
	AUCBF16 *float64 `json:"auc_bf16,omitempty"`
	// DiffPoints is (AUC bf16 - AUC fp32) x 100; nil without AUC.
	DiffPoints *float64 `json:"diff_points,omitempty"`
	// RankCorrelation is Spearman's correlation between the fp32 and the
	// bf16 test scores (1: bf16 orders the images exactly as fp32 does); it
	// is measured without labels, so it also speaks for groups without AUC.
	// Nil with fewer than two scores or when one side is constant.
	RankCorrelation *float64 `json:"rank_correlation,omitempty"`
	// DecisionFlips counts the test images whose decision at the fp32
	// threshold (chosen on validation in fp32) changes when the image is
	// scored in bf16: what switching a model evaluated in fp32 to bf16
	// without re-running eval does to its decisions.
	DecisionFlips int `json:"decision_flips"`
}

// PrecisionComparison is what CompareShow prints and writes.
type PrecisionComparison struct {
	Model  string           `json:"model"`
	Groups []PrecisionGroup `json:"groups"`
	// Overall is the pooled test set.
	Overall PrecisionGroup `json:"overall"`
	// MaxScoreRelDiff is the largest |s_bf16 - s_fp32| / |s_fp32| over
	// every scored image.
	MaxScoreRelDiff float64 `json:"max_score_rel_diff"`
	// Seconds is the wall time of scoring val+test in each precision.
	SecondsFP32 float64 `json:"seconds_fp32"`
	SecondsBF16 float64 `json:"seconds_bf16"`
	// WithinLimit is true when every group's |DiffPoints| <= MaxPrecisionAUCLoss.
	WithinLimit bool `json:"within_limit"`
}

// ComparePrecision scores the validation and test samples in fp32 and in
// bf16 and compares the per-group test AUC (thresholds do not enter AUC).
func ComparePrecision(ctx context.Context, m *modelfile.Model, samples []dataset.Sample, opts metrics.SelectOptions, skipBad bool) (*PrecisionComparison, error) {
	keep := m.Precision
	defer func() { m.Precision = keep }()
	var reports [2]*Report
	var scores [2][]float64
	var seconds [2]float64
	val, test := valAndTest(samples)
	for i, p := range []torch.DType{torch.Float32, torch.BFloat16} {
		m.Precision = p
		t0 := time.Now()
		vs, err := ScoreSamples(ctx, m, val, 32, skipBad)
		if err != nil {
			return nil, fmt.Errorf("%s scoring: %w", modelfile.PrecisionName(p), err)
		}
		ts, err := ScoreSamples(ctx, m, test, 32, skipBad)
		if err != nil {
			return nil, fmt.Errorf("%s scoring: %w", modelfile.PrecisionName(p), err)
		}
		seconds[i] = time.Since(t0).Seconds()
		if reports[i], err = FromScores(m, val, test, vs, ts, opts); err != nil {
			return nil, err
		}
		scores[i] = append(vs, ts...)
	}
	c := &PrecisionComparison{Model: m.Path, SecondsFP32: seconds[0], SecondsBF16: seconds[1], WithinLimit: true}
	for i, a := range scores[0] {
		b := scores[1][i]
		if math.IsNaN(a) || math.IsNaN(b) {
			continue
		}
		if d := math.Abs(b-a) / math.Max(math.Abs(a), 1e-30); d > c.MaxScoreRelDiff {
			c.MaxScoreRelDiff = d
		}
	}
	testFP32, testBF16 := scores[0][len(val):], scores[1][len(val):]
	// compare fills a row from the group's test reports and from its test
	// images' scores; inGroup picks those images, threshold judges them.
	compare := func(name string, a, b metrics.Report, inGroup func(dataset.Sample) bool, threshold func(dataset.Sample) float64) PrecisionGroup {
		g := PrecisionGroup{Group: name, Samples: a.Samples, AUCFP32: a.AUC, AUCBF16: b.AUC}
		if a.AUC != nil && b.AUC != nil {
			d := (*b.AUC - *a.AUC) * 100
			g.DiffPoints = &d
		}
		var x, y []float64
		for i, s := range test {
			if !inGroup(s) || math.IsNaN(testFP32[i]) || math.IsNaN(testBF16[i]) {
				continue
			}
			x, y = append(x, testFP32[i]), append(y, testBF16[i])
			if t := threshold(s); (testFP32[i] >= t) != (testBF16[i] >= t) {
				g.DecisionFlips++
			}
		}
		if r, ok := metrics.RankCorrelation(x, y); ok {
			g.RankCorrelation = &r
		}
		return g
	}
	thresholds := map[string]float64{}
	for _, g := range reports[0].Results.Groups {
		thresholds[g.Group] = g.Threshold.Value
	}
	groupThreshold := func(s dataset.Sample) float64 { return thresholds[s.Group] }
	for i, g := range reports[0].Results.Groups {
		name := g.Group
		pg := compare(name, g.Test, reports[1].Results.Groups[i].Test, func(s dataset.Sample) bool { return s.Group == name }, groupThreshold)
		if pg.DiffPoints != nil && math.Abs(*pg.DiffPoints) > MaxPrecisionAUCLoss {
			c.WithinLimit = false
		}
		c.Groups = append(c.Groups, pg)
	}
	hasThreshold := func(s dataset.Sample) bool { _, ok := thresholds[s.Group]; return ok }
	c.Overall = compare("all", reports[0].Results.Overall, reports[1].Results.Overall, hasThreshold, groupThreshold)
	return c, nil
}

// WriteJSON writes c as indented JSON.
func (c *PrecisionComparison) WriteJSON(w io.Writer) error {
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	return enc.Encode(c)
}

// WriteMarkdown writes c as a table.
func (c *PrecisionComparison) WriteMarkdown(w io.Writer) error {
	auc := func(p *float64) string {
		if p == nil {
			return "-"
		}
		return fmt.Sprintf("%.4f", *p)
	}
	diff := func(p *float64) string {
		if p == nil {
			return "-"
		}
		return fmt.Sprintf("%+.2f", *p)
	}
	corr := func(p *float64) string {
		if p == nil {
			return "-"
		}
		return fmt.Sprintf("%.5f", *p)
	}
	fmt.Fprintf(w, "| group | test images | AUC fp32 | AUC bf16 | difference (points) | rank correlation | decision flips at the fp32 threshold |\n"+
		"|---|---|---|---|---|---|---|\n")
	for _, g := range append(append([]PrecisionGroup{}, c.Groups...), c.Overall) {
		fmt.Fprintf(w, "| %s | %d | %s | %s | %s | %s | %d |\n", g.Group, g.Samples, auc(g.AUCFP32), auc(g.AUCBF16), diff(g.DiffPoints),
			corr(g.RankCorrelation), g.DecisionFlips)
	}
	verdict := "within"
	if !c.WithinLimit {
		verdict = "NOT within"
	}
	_, err := fmt.Fprintf(w, "\nLargest relative score difference %.2g; scoring val+test took %.1f s in fp32, %.1f s in bf16. "+
		"Every group %s %.1f AUC points of fp32.\n", c.MaxScoreRelDiff, c.SecondsFP32, c.SecondsBF16, verdict, MaxPrecisionAUCLoss)
	return err
}
