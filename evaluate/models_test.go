package evaluate_test

import (
	"context"
	"encoding/json"
	"fmt"
	"math"
	"strings"
	"testing"

	"github.com/maddr-project/maddr/baselines"
	_ "github.com/maddr-project/maddr/baselines/all"
	"github.com/maddr-project/maddr/dataset"
	"github.com/maddr-project/maddr/evaluate"
	"github.com/maddr-project/maddr/loader"
	"github.com/maddr-project/maddr/maddr"
	"github.com/maddr-project/maddr/metrics"
	"github.com/maddr-project/maddr/modelfile"
	"github.com/maddr-project/maddr/phantom"
	"github.com/maddr-project/maddr/torch"
	"github.com/maddr-project/maddr/train"
)

// tinyOptions shrink each baseline so that a few iterations run in seconds.
// DPA normalises its random VGG's features on training images so that the
// perceptual term, not only the 0.1-weighted L1, decides the score's direction.
var tinyOptions = map[string]string{
	"dpa":      `{"vgg_random_init": true, "vgg_width_divisor": 16, "vgg_norm": "train-mean-std"}`,
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
				if withMADDR {
					// Every term of the last step must be logged and finite.
					for _, term := range []string{"focal_organ", "focal_modality", "center"} {
						if v, ok := res.Final[term]; !ok || math.IsNaN(v) || math.IsInf(v, 0) {
							t.Fatalf("MADDR term %s missing or not finite in the last step's losses: %v", term, res.Final)
						}
					}
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
				checkScoresAndReport(t, m, samples, rep)
				// GANomaly scores in latent space, (E1(x) - E2(G(E1(x))))^2:
				// after six iterations its two encoders have learnt nothing
				// that ranks noise above anatomy (measured: the corrupted
				// images score about 6% lower), so its direction is left to
				// the trained end-to-end tests. Every other score is a
				// reconstruction error, which noise raises from the start.
				if model != "ganomaly" {
					checkCorruptionScoresHigher(t, m, samples)
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

// directScores preprocesses each sample's in-memory image with the model's
// recorded preprocessing and scores them all in one batch with the model
// itself, bypassing evaluate's loader and batching.
func directScores(t *testing.T, m *modelfile.Model, samples []dataset.Sample) []float64 {
	t.Helper()
	pp := m.Manifest.Preprocess
	transform := loader.Preprocess(pp)
	var pix []float32
	for _, s := range samples {
		if s.Image == nil {
			t.Fatalf("%s has no in-memory image", s.Where())
		}
		x, err := transform(*s.Image, s)
		if err != nil {
			t.Fatalf("%s: %v", s.Where(), err)
		}
		pix = append(pix, x...)
	}
	var out []float64
	err := torch.NoGrad(func() error {
		return torch.Run(func(sc *torch.Scope) error {
			x := sc.Adopt(torch.FromFloat32(pix, int64(len(samples)), 1, int64(pp.Size), int64(pp.Size)))
			v, err := sc.Adopt(m.Framework.Base.Score(x)).Float32s()
			for _, f := range v {
				out = append(out, float64(f))
			}
			return err
		})
	})
	if err != nil {
		t.Fatal(err)
	}
	return out
}

// checkScoresAndReport checks the values evaluate reports, not just their
// presence: each test score equals the model's own score of the same image,
// and each group's test AUC is the AUC of those scores.
func checkScoresAndReport(t *testing.T, m *modelfile.Model, samples []dataset.Sample, rep *evaluate.Report) {
	t.Helper()
	var test []dataset.Sample
	for _, s := range samples {
		if s.Split == dataset.Test {
			test = append(test, s)
		}
	}
	got, err := evaluate.ScoreSamples(context.Background(), m, test, 32, false)
	if err != nil {
		t.Fatal(err)
	}
	want := directScores(t, m, test)
	for i := range test {
		if d := math.Abs(got[i] - want[i]); !(d <= 1e-4*math.Max(math.Abs(want[i]), 1e-6)) {
			t.Fatalf("%s: evaluate scores %v, the model %v", test[i].Where(), got[i], want[i])
		}
	}
	byGroup := map[string]metrics.Scored{}
	for i, s := range test {
		g := byGroup[s.Group]
		g.Scores, g.Labels = append(g.Scores, want[i]), append(g.Labels, s.Label == dataset.Abnormal)
		byGroup[s.Group] = g
	}
	for _, g := range rep.Results.Groups {
		auc, err := metrics.AUC(byGroup[g.Group].Scores, byGroup[g.Group].Labels)
		if err != nil {
			t.Fatalf("%s: %v", g.Group, err)
		}
		if g.Test.AUC == nil || !(math.Abs(*g.Test.AUC-auc) <= 1e-9) {
			t.Errorf("%s: reported test AUC %v, the model's scores give %v", g.Group, g.Test.AUC, auc)
		}
		if n := len(byGroup[g.Group].Scores); g.Test.Samples != n {
			t.Errorf("%s: report counts %d test samples, the split has %d", g.Group, g.Test.Samples, n)
		}
	}
}

// checkCorruptionScoresHigher checks the direction of the score through
// evaluate: a normal test image with half of it overwritten by noise must
// score higher than the image itself. A model that scores "normality" (a
// flipped sign) fails this even after a few iterations.
func checkCorruptionScoresHigher(t *testing.T, m *modelfile.Model, samples []dataset.Sample) {
	t.Helper()
	var clean, corrupt []dataset.Sample
	for _, s := range samples {
		if s.Split != dataset.Test || s.Label != dataset.Normal || len(clean) == 4 {
			continue
		}
		img := *s.Image
		img.Pix = append([]float32(nil), img.Pix...)
		// Deterministic full-range noise (a multiplicative hash) over the
		// bottom half of the image.
		span := img.Hi - img.Lo
		for i := len(img.Pix) / 2; i < len(img.Pix); i++ {
			h := uint32(i) * 2654435761
			img.Pix[i] = img.Lo + span*float32(h>>8)/float32(1<<24)
		}
		c := s
		c.Image, c.ID = &img, s.ID+"-corrupted"
		clean, corrupt = append(clean, s), append(corrupt, c)
	}
	if len(clean) == 0 {
		t.Fatal("no normal test image to corrupt")
	}
	before, err := evaluate.ScoreSamples(context.Background(), m, clean, 32, false)
	if err != nil {
		t.Fatal(err)
	}
	after, err := evaluate.ScoreSamples(context.Background(), m, corrupt, 32, false)
	if err != nil {
		t.Fatal(err)
	}
	for i := range clean {
		if !(after[i] > before[i]) {
			t.Errorf("%s: corrupted image scores %v, not above the clean image's %v", clean[i].Where(), after[i], before[i])
		}
	}
	t.Logf("clean %v, corrupted %v", before, after)
}
