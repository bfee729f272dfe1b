package fanogan

import (
	"encoding/json"
	"testing"

	"github.com/maddr-project/maddr/baselines"
	"github.com/maddr-project/maddr/baselines/internal/backbone/fixture"
)

// TestMADDRStepMatchesPyTorch checks the first encoder-stage iteration of
// f-AnoGAN wrapped by MADDR against tools/reference/fanogan_parity.py: every
// loss term, the gradient and the RMSprop update of every encoder and head
// parameter, and that the frozen generator and critic do not move.
func TestMADDRStepMatchesPyTorch(t *testing.T) {
	f := fixture.Read(t, "testdata/fanogan_maddr_parity.safetensors")
	m, err := New(baselines.Options{ImageSize: 64, LatentDim: 16, Iterations: 2, Seed: 3,
		Raw: json.RawMessage(`{"width": 4}`)})
	if err != nil {
		t.Fatal(err)
	}
	defer m.Store().Free()
	n := f.CheckMADDRStep(t, m, fixture.MADDRStep{
		Iter:   2,
		Losses: []string{"izif_img", "izif_feat"},
		// The stem bias reaches the loss through BatchNorm (which cancels it)
		// and the skip path: its gradient is a small remainder of sums over
		// 4 x 64 x 64 positions, rounded differently by the two libraries.
		GradTol: map[string]float64{"enc.stem.bias": 1e-3},
	})
	if m.Stage() != 2 {
		t.Fatalf("stage %d after iteration 2, want 2", m.Stage())
	}
	if want := len(m.Store().Sub("enc").Trainable()) + 4; n != want {
		t.Errorf("compared %d parameters, want %d (the encoder's and 4 head tensors)", n, want)
	}
}
