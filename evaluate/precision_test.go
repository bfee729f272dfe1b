package evaluate_test

import (
	"context"
	"encoding/json"
	"math"
	"strings"
	"testing"

	"github.com/maddr-project/maddr/dataset"
	"github.com/maddr-project/maddr/evaluate"
	"github.com/maddr-project/maddr/maddr"
	"github.com/maddr-project/maddr/metrics"
	"github.com/maddr-project/maddr/modelfile"
	"github.com/maddr-project/maddr/phantom"
	"github.com/maddr-project/maddr/torch"
	"github.com/maddr-project/maddr/train"
)

func TestComparePrecisionScoresBothWays(t *testing.T) {
	pc := phantom.DefaultConfig()
	pc.Scale, pc.Size = 0.04, 32
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
	cfg.ModelOptions = json.RawMessage(tinyOptions["dpa"])
	cfg.Preprocess.Size, cfg.Preprocess.Resize, cfg.Preprocess.Crop = 32, 0, 0
	cfg.Iterations, cfg.BatchSize, cfg.Threads = 4, 4, 1
	cfg.MADDR = maddr.BaselineOnly()
	res, err := train.Run(context.Background(), cfg, t.TempDir(), train.Options{Samples: samples})
	if err != nil {
		t.Fatal(err)
	}
	m, err := modelfile.Load(res.ModelPath)
	if err != nil {
		t.Fatal(err)
	}
	c, err := evaluate.ComparePrecision(context.Background(), m, samples, metrics.SelectOptions{}, false)
	if err != nil {
		t.Fatal(err)
	}
	if m.Precision != torch.Float32 {
		t.Errorf("precision left at %v after the comparison", m.Precision)
	}
	if len(c.Groups) != 3 || c.Overall.DiffPoints == nil {
		t.Fatalf("comparison %+v: want 3 groups and an overall AUC difference", c)
	}
	// bf16 keeps 8 significant bits: scores must move (the path is really
	// taken) but only by rounding, not by a different computation.
	if c.MaxScoreRelDiff == 0 || c.MaxScoreRelDiff > 0.1 {
		t.Errorf("largest relative score difference %g, want in (0, 0.1]", c.MaxScoreRelDiff)
	}
	for _, g := range c.Groups {
		if g.DiffPoints != nil && (math.Abs(*g.DiffPoints) > 100 || (*g.AUCBF16-*g.AUCFP32)*100 != *g.DiffPoints) {
			t.Errorf("group %s: difference %v points from AUCs %v and %v", g.Group, *g.DiffPoints, *g.AUCFP32, *g.AUCBF16)
		}
	}
	// Rounding may swap images with nearly equal scores, not reorder the set.
	if r := c.Overall.RankCorrelation; r == nil || *r < 0.9 || *r > 1 {
		t.Errorf("overall rank correlation %v, want in [0.9, 1]", r)
	}
	if c.Overall.DecisionFlips > c.Overall.Samples {
		t.Errorf("%d decision flips among %d test images", c.Overall.DecisionFlips, c.Overall.Samples)
	}
	var md strings.Builder
	if err := c.WriteMarkdown(&md); err != nil || !strings.Contains(md.String(), "AUC bf16") || !strings.Contains(md.String(), "rank correlation") {
		t.Errorf("markdown %q, %v", md.String(), err)
	}
	if _, err := modelfile.ParsePrecision("fp8"); err == nil {
		t.Error("precision fp8 accepted")
	}
	// Thresholds remember the arithmetic of the scores they were chosen on,
	// so that scoring in another one can say so.
	m.Precision = torch.BFloat16
	rep, err := evaluate.Evaluate(context.Background(), m, samples, metrics.SelectOptions{}, false)
	if err != nil {
		t.Fatal(err)
	}
	th := rep.Thresholds()
	if len(th) != 3 {
		t.Fatalf("thresholds %v: want 3 groups", th)
	}
	for g, v := range th {
		if v.Precision != "bf16" {
			t.Errorf("group %s: threshold chosen on bf16 scores records precision %q", g, v.Precision)
		}
	}
}
