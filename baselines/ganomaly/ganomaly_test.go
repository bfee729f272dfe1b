package ganomaly

import (
	"encoding/json"
	"strings"
	"testing"

	"github.com/maddr-project/maddr/baselines"
	"github.com/maddr-project/maddr/baselines/internal/backbone/fixture"
	"github.com/maddr-project/maddr/internal/parity"
	"github.com/maddr-project/maddr/torch"
)

// The fixtures come from tools/reference/ganomaly_parity.py; regenerate them
// with `make reference`.
var variants = []struct {
	name, file string
	small      func() Config
	after      []string
}{
	{Original, "testdata/ganomaly_parity.safetensors", func() Config {
		c, _ := DefaultConfig(Original)
		c.ImageSize, c.Width, c.Latent = 32, 8, 16
		return c
	}, []string{"g.enc1.final.conv.weight", "g.dec.pyramid0.conv.weight", "d.pyramid1.conv.weight"}},
	{MedIAnomaly, "testdata/ganomaly_medianomaly_parity.safetensors", func() Config {
		c, _ := DefaultConfig(MedIAnomaly)
		c.ImageSize, c.Width, c.Hidden, c.Latent = 32, 4, 16, 16
		return c
	}, []string{"g.enc1.fc2.weight", "g.dec.up0.conv.weight", "d.feat.weight"}},
}

func TestParityWithPyTorch(t *testing.T) {
	for _, v := range variants {
		t.Run(v.name, func(t *testing.T) {
			f := fixture.Read(t, v.file)
			m, err := build(v.small())
			if err != nil {
				t.Fatal(err)
			}
			defer m.store.Free()
			f.LoadStore(t, m.store, "init.")
			sc := torch.NewScope()
			defer sc.Close()
			x := f.Tensor(t, sc, "input")
			f.Compare(t, "score", sc.Adopt(m.Score(x)))

			// Keep the G-step gradients: the D step does not touch G, but
			// read them before anything else could.
			losses, out, err := m.trainStep(sc, baselines.Step{Iter: 1, X: x, Hook: fixture.StandInHook})
			if err != nil {
				t.Fatal(err)
			}
			for name, got := range map[string]*torch.Tensor{"z": out.z, "x_hat": out.xHat, "z_hat": out.zHat,
				"pred_real": out.predReal, "feat_real": out.featReal, "feat_fake": out.featFake, "pred_fake": out.predFake} {
				f.Compare(t, name, got)
			}
			for _, k := range []string{"g_adv", "g_rec", "g_enc", "hook", "g", "d_real", "d_fake", "d"} {
				f.CompareValue(t, "loss."+k, losses[k])
			}
			for _, p := range m.store.Trainable() {
				f.Compare(t, "grad."+p.Name, sc.Adopt(p.T.Grad()))
			}
			for _, name := range v.after {
				f.Compare(t, "after."+name, m.store.Get(name).T)
			}
			if losses["d_reinit"] != 0 {
				t.Error("D was re-initialised although its loss is far above 1e-5")
			}
		})
	}
}

func TestDefaultNetworks(t *testing.T) {
	for _, v := range variants {
		f := fixture.Read(t, v.file)
		raw, _ := json.Marshal(map[string]string{"variant": v.name})
		b, err := baselines.New("ganomaly", baselines.Options{Raw: raw})
		if err != nil {
			t.Fatal(err)
		}
		if got, want := b.Store().NumParams(), f.Int(t, "default_num_params"); got != want {
			t.Errorf("%s: default network has %d parameters, the PyTorch reference %d", v.name, got, want)
		}
		want := map[string]int{Original: 100, MedIAnomaly: 128}[v.name]
		if b.LatentDim() != want {
			t.Errorf("%s: latent %d, want %d", v.name, b.LatentDim(), want)
		}
		b.Store().Free()
	}
	b, err := baselines.New("ganomaly", baselines.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer b.Store().Free()
	if c := b.Config().(Config); c.Variant != Original || c.LR != 2e-4 || c.Beta1 != 0.5 || c.Rec != "l1" || c.WRec != 50 {
		t.Errorf("default config %+v", c)
	}
	if p := b.Store().Get("d.pyramid2.conv.weight"); p == nil || p.T.Size(0) != 512 {
		t.Error("original D should end with a 256 -> 512 conv at 64x64")
	}
}

func randomBatch(t *testing.T, sc *torch.Scope, b, size int64, seed uint64) *torch.Tensor {
	t.Helper()
	g, err := torch.NewGenerator(seed)
	if err != nil {
		t.Fatal(err)
	}
	return sc.Adopt(torch.Rand(g, b, 1, size, size)).MulScalar(2).SubScalar(1)
}

func TestTrainStepFreesEverything(t *testing.T) {
	for _, v := range variants {
		m, err := build(v.small())
		if err != nil {
			t.Fatal(err)
		}
		step := func(i int) {
			err := torch.Run(func(sc *torch.Scope) error {
				x := randomBatch(t, sc, 4, 32, uint64(i))
				if _, err := m.TrainStep(sc, baselines.Step{Iter: i, X: x, Hook: fixture.StandInHook}); err != nil {
					return err
				}
				sc.Adopt(m.Score(x))
				sc.Adopt(m.AnomalyMap(x))
				return m.nets.reinitD(m.store) // exercise the re-init path too
			})
			if err != nil {
				t.Fatal(err)
			}
		}
		step(1)
		torch.SettleFinalizers()
		before := torch.LiveTensors()
		for i := 2; i <= 4; i++ {
			step(i)
		}
		if after := torch.LiveTensors(); after != before {
			t.Errorf("%s: live tensors went from %d to %d over 3 steps", v.name, before, after)
		}
		m.store.Free()
	}
}

func TestHookLossReachesE1Only(t *testing.T) {
	zero := func(z *torch.Tensor) (*torch.Tensor, map[string]float64, error) {
		return z.Sum().MulScalar(0), nil, nil
	}
	grads := func(hook baselines.LatentHook) map[string][]float32 {
		m, err := build(variants[0].small())
		if err != nil {
			t.Fatal(err)
		}
		defer m.store.Free()
		out := map[string][]float32{}
		err = torch.Run(func(sc *torch.Scope) error {
			if _, _, err := m.trainStep(sc, baselines.Step{Iter: 1, X: randomBatch(t, sc, 4, 32, 5), Hook: hook}); err != nil {
				return err
			}
			for _, name := range []string{"g.enc1.final.conv.weight", "g.enc2.final.conv.weight"} {
				g, err := sc.Adopt(m.store.Get(name).T.Grad()).Float32s()
				if err != nil {
					return err
				}
				out[name] = g
			}
			return nil
		})
		if err != nil {
			t.Fatal(err)
		}
		return out
	}
	a, b := grads(zero), grads(fixture.StandInHook)
	if parity.MaxAbsDiff(a["g.enc1.final.conv.weight"], b["g.enc1.final.conv.weight"]) < 1e-6 {
		t.Error("the hook's loss did not change the gradient of E1's last conv")
	}
	if d := parity.MaxAbsDiff(a["g.enc2.final.conv.weight"], b["g.enc2.final.conv.weight"]); !(d <= 1e-6) {
		t.Errorf("the hook changed E2's gradient by %g", d)
	}
}

func TestDiscriminatorReinitialisesWhenItWins(t *testing.T) {
	m, err := build(variants[0].small())
	if err != nil {
		t.Fatal(err)
	}
	defer m.store.Free()
	m.cfg.DReinitBelow = 100 // any D loss counts as a win
	before, _ := m.store.Get("d.pyramid0.conv.weight").T.Float32s()
	var losses baselines.Losses
	err = torch.Run(func(sc *torch.Scope) error {
		losses, err = m.TrainStep(sc, baselines.Step{Iter: 1, X: randomBatch(t, sc, 4, 32, 9)})
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	after, _ := m.store.Get("d.pyramid0.conv.weight").T.Float32s()
	if losses["d_reinit"] != 1 || m.dReinits != 1 {
		t.Fatalf("no re-init reported: %v", losses)
	}
	// An Adam step moves each weight by at most ~lr; a redraw moves it by ~0.02.
	if parity.MaxAbsDiff(before, after) < 10*m.cfg.LR {
		t.Error("D's weights were not redrawn")
	}
	st, _ := m.TrainingState()
	if !strings.Contains(string(st), `"d_reinits":1`) {
		t.Errorf("training state %s", st)
	}
}

func TestStateRoundTrip(t *testing.T) {
	b, err := baselines.New("ganomaly", baselines.Options{ImageSize: 32, Seed: 4, Raw: json.RawMessage(`{"width":8,"latent":16}`)})
	if err != nil {
		t.Fatal(err)
	}
	defer b.Store().Free()
	if err := torch.Run(func(sc *torch.Scope) error {
		_, err := b.TrainStep(sc, baselines.Step{Iter: 1, X: randomBatch(t, sc, 2, 32, 1)})
		return err
	}); err != nil {
		t.Fatal(err)
	}
	cfg, _ := json.Marshal(b.Config())
	again, err := baselines.New("ganomaly", baselines.Options{ImageSize: 32, Raw: cfg})
	if err != nil {
		t.Fatalf("rebuilding from Config(): %v", err)
	}
	defer again.Store().Free()
	st, _ := b.TrainingState()
	if err := again.Restore(b.OptimizerState(), st); err != nil {
		t.Fatal(err)
	}
	if got, want := len(again.OptimizerState()), len(b.OptimizerState()); got != want || got == 0 {
		t.Fatalf("restored %d optimizer tensors, want %d", got, want)
	}
	for _, raw := range []string{`{"variant":"dcgan"}`, `{"rec":"l3"}`, `{"wrec":50}`} {
		if b, err := baselines.New("ganomaly", baselines.Options{Raw: json.RawMessage(raw)}); err == nil {
			b.Store().Free()
			t.Errorf("%s accepted", raw)
		}
	}
}

// TestMADDRStepMatchesPyTorch checks one iteration (G step with MADDR's
// losses on z = E1(x), then D step) of the original GANomaly wrapped by MADDR
// against tools/reference/ganomaly_parity.py: every loss term, and the
// gradient and the Adam update of every parameter of G, D and the heads.
func TestMADDRStepMatchesPyTorch(t *testing.T) {
	f := fixture.Read(t, "testdata/ganomaly_maddr_parity.safetensors")
	m, err := build(variants[0].small())
	if err != nil {
		t.Fatal(err)
	}
	defer m.store.Free()
	n := f.CheckMADDRStep(t, m, fixture.MADDRStep{
		Iter:   1,
		Losses: []string{"g_adv", "g_rec", "g_enc", "g", "d"},
	})
	if want := len(m.store.Trainable()); n != want {
		t.Errorf("compared %d parameters, want all %d", n, want)
	}
}
