package fanogan

import (
	"encoding/json"
	"strings"
	"testing"

	"github.com/maddr-project/maddr/baselines"
	"github.com/maddr-project/maddr/baselines/internal/backbone/fixture"
	"github.com/maddr-project/maddr/torch"
)

// The fixture comes from tools/reference/fanogan_parity.py (PyTorch 1.13, an
// independent implementation of the same text); the networks there are 4
// channels wide with a 16-d latent so that the file stays small.
const parityFixture = "testdata/fanogan_parity.safetensors"

// parityModel builds the fixture's small configuration and loads its weights;
// every parameter and buffer must be in the fixture and vice versa.
func parityModel(t *testing.T) (fixture.File, *Model) {
	t.Helper()
	f := fixture.Read(t, parityFixture)
	// Two iterations: the first is the GAN stage, the second the encoder's.
	m, err := New(baselines.Options{ImageSize: 64, LatentDim: 16, Iterations: 2, Seed: 1,
		Raw: json.RawMessage(`{"width": 4}`)})
	if err != nil {
		t.Fatal(err)
	}
	if m.cfg.WGANIters != 1 {
		t.Fatalf("stage 1 has %d iterations, want 1", m.cfg.WGANIters)
	}
	f.LoadStore(t, m.Store(), "init.")
	return f, m
}

// TestParityWithPyTorch runs one critic step, one generator step and one
// encoder step with the fixture's weights, batch and noise, and compares the
// outputs, every loss term, every gradient, the size of each update, and the
// evaluation-mode outputs afterwards.
func TestParityWithPyTorch(t *testing.T) {
	f, m := parityModel(t)
	defer m.Store().Free()
	sc := torch.NewScope()
	defer sc.Close()
	in := func(name string) *torch.Tensor {
		st := f.Tensors[name]
		return sc.Adopt(torch.FromFloat32(st.F32, st.Shape...))
	}
	x, z, eps, zGen := in("x"), in("z"), in("eps"), in("z_gen")
	before := map[string]*torch.Tensor{}
	for _, p := range m.Store().Trainable() {
		before[p.Name] = sc.Adopt(p.T.Detach().Clone())
	}

	fake, err := m.fakes(z)
	if err != nil {
		t.Fatal(err)
	}
	f.Compare(t, "fake", fake)
	err = torch.NoGrad(func() error {
		dReal, fReal := m.crit.forward(x)
		dFake, _ := m.crit.forward(fake)
		f.Compare(t, "critic_real", dReal)
		f.Compare(t, "features_real", fReal)
		f.Compare(t, "critic_fake", dFake)
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}

	losses, err := m.ganUpdate(sc, x, fake, eps, zGen)
	if err != nil {
		t.Fatal(err)
	}
	f.CompareValue(t, "d_wgan", losses["d_wgan"])
	f.CompareValue(t, "gp", losses["gp"])
	f.CompareValue(t, "d_loss", losses["d_wgan"]+m.cfg.GPWeight*losses["gp"])
	f.CompareValue(t, "g", losses["g"])
	for _, p := range m.Store().Sub("critic").Trainable() {
		f.Compare(t, "grad_d."+p.Name, sc.Adopt(p.T.Grad()))
	}
	for _, p := range m.Store().Sub("gen").Trainable() {
		f.Compare(t, "grad_g."+p.Name, sc.Adopt(p.T.Grad()))
	}

	losses, err = m.TrainStep(sc, baselines.Step{Iter: 2, X: x})
	if err != nil {
		t.Fatal(err)
	}
	if m.Stage() != 2 {
		t.Fatalf("stage %d after iteration 2, want 2", m.Stage())
	}
	f.CompareValue(t, "izif_img", losses["izif_img"])
	f.CompareValue(t, "izif_feat", losses["izif_feat"])
	for _, p := range m.Store().Sub("enc").Trainable() {
		f.Compare(t, "grad_e."+p.Name, sc.Adopt(p.T.Grad()))
	}

	for _, p := range m.Store().Trainable() {
		delta := sc.AliasIn(p.T).Detach().Sub(before[p.Name])
		moved := torch.Stack([]*torch.Tensor{delta.Abs().Sum(), delta.Sum()}, 0)
		f.Compare(t, "moved."+p.Name, moved)
	}

	genEval := sc.Adopt(eval(z, func(z *torch.Tensor) *torch.Tensor { return m.gen.forward(z, false) }))
	f.Compare(t, "gen_eval", genEval)
	f.Compare(t, "z_enc_eval", sc.Adopt(eval(x, func(x *torch.Tensor) *torch.Tensor { return m.Latent(x, false) })))
	f.Compare(t, "rec", sc.Adopt(m.Reconstruct(x)))
	f.Compare(t, "score", sc.Adopt(m.Score(x)))
	f.Compare(t, "anomaly_map", sc.Adopt(m.AnomalyMap(x)))
	for _, p := range m.Store().All() {
		if strings.Contains(p.Name, "running") {
			f.Compare(t, "final."+p.Name, p.T)
		}
	}
}
