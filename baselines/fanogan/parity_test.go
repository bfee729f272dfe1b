package fanogan

import (
	"encoding/json"
	"math"
	"strings"
	"testing"

	"github.com/maddr-project/maddr/baselines"
	"github.com/maddr-project/maddr/safetensors"
	"github.com/maddr-project/maddr/torch"
)

// The fixture comes from tools/reference/fanogan_parity.py (PyTorch 1.13, an
// independent implementation of the same text); the networks there are 4
// channels wide with a 16-d latent so that the file stays small.
const parityFixture = "testdata/fanogan_parity.safetensors"

const parityTol = 1e-4

// compareValues checks got against want with a tolerance relative to the
// largest |want|, logging OK / NOT OK per tensor.
func compareValues(t *testing.T, name string, got []float32, want []float64) {
	t.Helper()
	if len(got) != len(want) {
		t.Errorf("NOT OK %s: %d values, want %d", name, len(got), len(want))
		return
	}
	scale, worst := 0.0, 0.0
	for i := range want {
		scale = math.Max(scale, math.Abs(want[i]))
		worst = math.Max(worst, math.Abs(float64(got[i])-want[i]))
	}
	rel := worst / math.Max(scale, 1e-12)
	if rel > parityTol || math.IsNaN(rel) {
		t.Errorf("NOT OK %s: max abs diff %.3g, relative %.3g > %g", name, worst, rel, parityTol)
		return
	}
	t.Logf("OK %s (relative diff %.2g)", name, rel)
}

func fixtureValues(t *testing.T, f safetensors.File, name string) []float64 {
	t.Helper()
	st, ok := f.Tensors[name]
	if !ok {
		t.Fatalf("fixture has no %s", name)
	}
	var w []float64
	for _, v := range st.F32 {
		w = append(w, float64(v))
	}
	for _, v := range st.I64 {
		w = append(w, float64(v))
	}
	return w
}

func compareTensor(t *testing.T, f safetensors.File, name string, got *torch.Tensor) {
	t.Helper()
	g, err := got.Float32s()
	if err != nil {
		t.Fatalf("%s: %v", name, err)
	}
	compareValues(t, name, g, fixtureValues(t, f, name))
}

func compareScalar(t *testing.T, f safetensors.File, name string, got float64) {
	t.Helper()
	compareValues(t, name, []float32{float32(got)}, fixtureValues(t, f, name))
}

// parityModel builds the fixture's small configuration and loads its weights;
// every parameter and buffer must be in the fixture and vice versa.
func parityModel(t *testing.T) (safetensors.File, *Model) {
	t.Helper()
	f, err := safetensors.ReadFile(parityFixture)
	if err != nil {
		t.Fatal(err)
	}
	// Two iterations: the first is the GAN stage, the second the encoder's.
	m, err := New(baselines.Options{ImageSize: 64, LatentDim: 16, Iterations: 2, Seed: 1,
		Raw: json.RawMessage(`{"width": 4}`)})
	if err != nil {
		t.Fatal(err)
	}
	if m.cfg.WGANIters != 1 {
		t.Fatalf("stage 1 has %d iterations, want 1", m.cfg.WGANIters)
	}
	seen := map[string]bool{}
	for _, p := range m.Store().All() {
		st, ok := f.Tensors["init."+p.Name]
		if !ok {
			t.Fatalf("fixture lacks init.%s", p.Name)
		}
		seen["init."+p.Name] = true
		var src *torch.Tensor
		if st.I64 != nil {
			src = torch.FromInt64(st.I64, st.Shape...)
		} else {
			src = torch.FromFloat32(st.F32, st.Shape...)
		}
		if err := p.T.CopyFrom(src); err != nil {
			t.Fatalf("%s: %v", p.Name, err)
		}
		src.Free()
	}
	for name := range f.Tensors {
		if strings.HasPrefix(name, "init.") && !seen[name] {
			t.Errorf("fixture has %s, which the Go networks lack", name)
		}
	}
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
	compareTensor(t, f, "fake", fake)
	err = torch.NoGrad(func() error {
		dReal, fReal := m.crit.forward(x)
		dFake, _ := m.crit.forward(fake)
		compareTensor(t, f, "critic_real", dReal)
		compareTensor(t, f, "features_real", fReal)
		compareTensor(t, f, "critic_fake", dFake)
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}

	losses, err := m.ganUpdate(x, fake, eps, zGen)
	if err != nil {
		t.Fatal(err)
	}
	compareScalar(t, f, "d_wgan", losses["d_wgan"])
	compareScalar(t, f, "gp", losses["gp"])
	compareScalar(t, f, "d_loss", losses["d_wgan"]+m.cfg.GPWeight*losses["gp"])
	compareScalar(t, f, "g", losses["g"])
	for _, p := range m.Store().Sub("critic").Trainable() {
		compareTensor(t, f, "grad_d."+p.Name, sc.Adopt(p.T.Grad()))
	}
	for _, p := range m.Store().Sub("gen").Trainable() {
		compareTensor(t, f, "grad_g."+p.Name, sc.Adopt(p.T.Grad()))
	}

	losses, err = m.TrainStep(sc, baselines.Step{Iter: 2, X: x})
	if err != nil {
		t.Fatal(err)
	}
	if m.Stage() != 2 {
		t.Fatalf("stage %d after iteration 2, want 2", m.Stage())
	}
	compareScalar(t, f, "izif_img", losses["izif_img"])
	compareScalar(t, f, "izif_feat", losses["izif_feat"])
	for _, p := range m.Store().Sub("enc").Trainable() {
		compareTensor(t, f, "grad_e."+p.Name, sc.Adopt(p.T.Grad()))
	}

	for _, p := range m.Store().Trainable() {
		delta := sc.AliasIn(p.T).Detach().Sub(before[p.Name])
		moved := torch.Stack([]*torch.Tensor{delta.Abs().Sum(), delta.Sum()}, 0)
		compareTensor(t, f, "moved."+p.Name, moved)
	}

	genEval := sc.Adopt(eval(z, func(z *torch.Tensor) *torch.Tensor { return m.gen.forward(z, false) }))
	compareTensor(t, f, "gen_eval", genEval)
	compareTensor(t, f, "z_enc_eval", sc.Adopt(eval(x, func(x *torch.Tensor) *torch.Tensor { return m.Latent(x, false) })))
	compareTensor(t, f, "rec", sc.Adopt(m.Reconstruct(x)))
	compareTensor(t, f, "score", sc.Adopt(m.Score(x)))
	compareTensor(t, f, "anomaly_map", sc.Adopt(m.AnomalyMap(x)))
	for _, p := range m.Store().All() {
		if strings.Contains(p.Name, "running") {
			compareTensor(t, f, "final."+p.Name, p.T)
		}
	}
}
