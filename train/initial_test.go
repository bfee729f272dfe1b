package train

import (
	"context"
	"math"
	"slices"
	"testing"

	_ "github.com/maddr-project/maddr/baselines/all"
	"github.com/maddr-project/maddr/dataset"
	"github.com/maddr-project/maddr/evaluate"
	"github.com/maddr-project/maddr/metrics"
)

// TestInitialIsWhereRunStarts scores the network Initial builds on the validation images of the training groups
// and compares it with the iteration-0 point of Run's learning curve, which scores the network Run starts from.
func TestInitialIsWhereRunStarts(t *testing.T) {
	cfg, samples := smallConfig(t)
	cfg.Iterations = 2
	ctx := context.Background()
	res, err := Run(ctx, cfg, t.TempDir(), Options{Samples: samples})
	if err != nil {
		t.Fatal(err)
	}
	if len(res.Validation) == 0 || res.Validation[0].Iter != 0 {
		t.Fatalf("no iteration-0 point on the learning curve: %+v", res.Validation)
	}
	want := res.Validation[0].AUC

	m, err := Initial(ctx, cfg, samples)
	if err != nil {
		t.Fatal(err)
	}
	defer m.Framework.Base.Store().Free()
	val := dataset.Filter(samples, dataset.Val)
	scores, err := evaluate.ScoreSamples(ctx, m, val, 32, false)
	if err != nil {
		t.Fatal(err)
	}
	for g, auc := range want {
		var s []float64
		var l []bool
		for i, smp := range val {
			if smp.Group == g {
				s, l = append(s, scores[i]), append(l, smp.Label == dataset.Abnormal)
			}
		}
		got, err := metrics.AUC(s, l)
		if err != nil {
			t.Fatalf("group %s: %v", g, err)
		}
		if math.Abs(got-auc) > 1e-9 {
			t.Errorf("group %s: the initial network's validation AUC is %.6f, Run's iteration 0 had %.6f", g, got, auc)
		}
	}
	if len(want) == 0 {
		t.Fatal("the learning curve scored no group")
	}

	// A seed is part of the initial network.
	other := cfg
	other.Seed++
	m2, err := Initial(ctx, other, samples)
	if err != nil {
		t.Fatal(err)
	}
	defer m2.Framework.Base.Store().Free()
	scores2, err := evaluate.ScoreSamples(ctx, m2, val, 32, false)
	if err != nil {
		t.Fatal(err)
	}
	if slices.Equal(scores, scores2) {
		t.Error("another seed gave the same initial network")
	}
}
