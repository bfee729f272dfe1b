package evaluate_test

import (
	"context"
	"encoding/json"
	"fmt"
	"strings"
	"testing"

	"github.com/maddr-project/maddr/baselines"
	_ "github.com/maddr-project/maddr/baselines/all"
	"github.com/maddr-project/maddr/dataset"
	"github.com/maddr-project/maddr/evaluate"
	"github.com/maddr-project/maddr/maddr"
	"github.com/maddr-project/maddr/metrics"
	"github.com/maddr-project/maddr/modelfile"
	"github.com/maddr-project/maddr/phantom"
	"github.com/maddr-project/maddr/train"
)

// tinyOptions shrink each baseline so that a few iterations run in seconds.
var tinyOptions = map[string]string{
	"dpa":      `{"vgg_random_init": true, "vgg_width_divisor": 16}`,
	"ae":       `{"base_width": 4, "hidden": 64}`,
	"memae":    `{"base_width": 4, "hidden": 64}`,
	"ganomaly": `{"width": 4}`,
	"fanogan":  `{"width": 2, "wgan_iters": 3}`,
}

// TestEveryBaselineTrainsAndEvaluatesWithAndWithoutMADDR runs the whole path
// (train -> model file -> load -> per-group evaluation) for every baseline,
// alone and wrapped by MADDR, on the phantom data.
func TestEveryBaselineTrainsAndEvaluatesWithAndWithoutMADDR(t *testing.T) {
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
	for model, raw := range tinyOptions {
		for _, withMADDR := range []bool{false, true} {
			t.Run(fmt.Sprintf("%s/maddr=%v", model, withMADDR), func(t *testing.T) {
				cfg := train.Defaults(model)
				cfg.Sources = nil
				cfg.ModelOptions = json.RawMessage(raw)
				cfg.Preprocess.Size, cfg.Preprocess.Resize, cfg.Preprocess.Crop = 32, 0, 0
				cfg.Iterations, cfg.BatchSize, cfg.Threads = 6, 4, 1
				cfg.MADDR = maddr.BaselineOnly()
				if withMADDR {
					cfg.MADDR = maddr.Paper()
					cfg.MADDR.Mixup.Start, cfg.MADDR.Mixup.End = 5, 6
				}
				res, err := train.Run(context.Background(), cfg, t.TempDir(), train.Options{Samples: samples})
				if err != nil {
					t.Fatal(err)
				}
				if withMADDR && res.Final["focal_organ"] == 0 && res.Final["center"] == 0 {
					t.Fatalf("MADDR terms missing from the last step's losses: %v", res.Final)
				}
				m, err := modelfile.Load(res.ModelPath)
				if err != nil {
					t.Fatal(err)
				}
				if m.Framework.HasOrganHead() != withMADDR {
					t.Fatalf("organ head present = %v, want %v", m.Framework.HasOrganHead(), withMADDR)
				}
				rep, err := evaluate.Evaluate(context.Background(), m, samples, metrics.SelectOptions{}, false)
				if err != nil {
					t.Fatal(err)
				}
				if len(rep.Results.Groups) != 3 || rep.Results.Overall.AUC == nil {
					t.Fatalf("report %+v", rep.Results)
				}
			})
		}
	}
}

// TestClipOptionReachesEveryBaseline checks that --clip-grad-norm is recorded
// by every baseline (which hands it to its optimizers).
func TestClipOptionReachesEveryBaseline(t *testing.T) {
	for model, raw := range tinyOptions {
		b, err := baselines.New(model, baselines.Options{ImageSize: 32, Raw: json.RawMessage(raw), ClipGradNorm: 0.5})
		if err != nil {
			t.Fatal(err)
		}
		js, _ := json.Marshal(b.Config())
		if !strings.Contains(string(js), `"clip_grad_norm":0.5`) {
			t.Errorf("%s config does not record the clipping: %s", model, js)
		}
		b.Store().Free()
	}
}
