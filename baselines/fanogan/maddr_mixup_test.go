package fanogan

import (
	"fmt"
	"strings"
	"testing"

	"github.com/maddr-project/maddr/baselines"
	"github.com/maddr-project/maddr/maddr"
	"github.com/maddr-project/maddr/torch"
)

// stepRecorder passes every call to f-AnoGAN and records, per iteration,
// whether the batch was mixed and whether the step trained the encoder.
type stepRecorder struct {
	*Model
	mixed, encoder map[int]bool
}

func (r *stepRecorder) TrainStep(s *torch.Scope, step baselines.Step) (baselines.Losses, error) {
	before := r.state.EncoderSteps
	losses, err := r.Model.TrainStep(s, step)
	r.mixed[step.Iter] = step.Mixup
	r.encoder[step.Iter] = r.state.EncoderSteps == before+1
	return losses, err
}

// TestMADDRMixesOnlyWhileTheEncoderTrains runs f-AnoGAN wrapped by MADDR with
// the paper's window scaled to the run, as `maddr train` and the experiments
// configure it. Scaled to the whole run (12 iterations) that window is 6..8,
// inside the GAN stage (1..8), where there is no latent for MADDR's losses;
// every mixed step must instead be an encoder step, and some must mix.
func TestMADDRMixesOnlyWhileTheEncoderTrains(t *testing.T) {
	const iterations = 12
	m := smallModel(t, iterations, `{"width": 2, "wgan_iters": 8}`)
	rec := &stepRecorder{Model: m, mixed: map[int]bool{}, encoder: map[int]bool{}}
	cfg := maddr.Paper().ScaleMixup(iterations)
	if cfg.Mixup.Start != 6 || cfg.Mixup.End != 8 {
		t.Fatalf("scaled window %d..%d, want 6..8 (the case this test is about)", cfg.Mixup.Start, cfg.Mixup.End)
	}
	cfg.ModalityDims, cfg.OrganDims = 2, 2
	classes := maddr.Classes{Organs: []string{"liver", "lung"}, Modalities: []string{"ct", "xray"}}
	fw, err := maddr.New(rec, cfg, classes, 1)
	if err != nil {
		t.Fatal(err)
	}
	if w := fw.MixupWarning(iterations); w != "" {
		t.Errorf("unexpected warning %q", w)
	}
	g, err := torch.NewGenerator(5)
	if err != nil {
		t.Fatal(err)
	}
	var mixedIters []int
	for it := 1; it <= iterations; it++ {
		var losses baselines.Losses
		err := torch.Run(func(s *torch.Scope) error {
			var err error
			losses, err = fw.Step(s, it, maddr.Batch{X: batch(s, g, 4, 16), Organ: []int64{0, 1, 1, 0}, Modality: []int64{0, 0, 1, 1}})
			return err
		})
		if err != nil {
			t.Fatalf("iteration %d: %v", it, err)
		}
		if !rec.mixed[it] {
			continue
		}
		mixedIters = append(mixedIters, it)
		if !rec.encoder[it] {
			t.Errorf("iteration %d mixed its batch but trained the GAN, not the encoder", it)
		}
		if _, ok := losses["focal_organ"]; !ok {
			t.Errorf("iteration %d mixed its batch without MADDR's losses: %v", it, losses)
		}
	}
	if len(mixedIters) == 0 {
		t.Fatal("no iteration mixed its batch")
	}
	first, last := fw.MixupWindow()
	if fmt.Sprint(mixedIters) != fmt.Sprint(seq(first, last)) || first <= m.cfg.WGANIters {
		t.Errorf("mixed iterations %v, window %d..%d; want the window, inside the encoder stage %d..%d",
			mixedIters, first, last, m.cfg.WGANIters+1, iterations)
	}
	t.Logf("mixed iterations %v; notes %v", mixedIters, fw.Notes())
}

func seq(a, b int) []int {
	var out []int
	for i := a; i <= b; i++ {
		out = append(out, i)
	}
	return out
}

// TestMADDRWarnsWhenMixupMissesTheEncoderStage checks the warning `maddr
// train` prints when the window, placed in the encoder stage, is empty.
func TestMADDRWarnsWhenMixupMissesTheEncoderStage(t *testing.T) {
	m := smallModel(t, 12, `{"width": 2, "wgan_iters": 8}`)
	cfg := maddr.Paper()
	cfg.ModalityDims, cfg.OrganDims = 2, 2
	cfg.Mixup.Start, cfg.Mixup.End = 20, 30 // past the run's end
	fw, err := maddr.New(m, cfg, maddr.Classes{Organs: []string{"liver", "lung"}, Modalities: []string{"ct", "xray"}}, 1)
	if err != nil {
		t.Fatal(err)
	}
	w := fw.MixupWarning(12)
	if !strings.Contains(w, "no batch is mixed") || !strings.Contains(w, "latent stage (iterations 9..12)") {
		t.Errorf("warning %q, want one saying the window misses the encoder stage 9..12", w)
	}
	for it := 1; it <= 12; it++ {
		if fw.MixupActive(it) {
			t.Errorf("iteration %d mixes", it)
		}
	}
}
