package memae

import (
	"encoding/json"
	"strings"
	"testing"

	"github.com/maddr-project/maddr/baselines"
	"github.com/maddr-project/maddr/baselines/internal/backbone/fixture"
	"github.com/maddr-project/maddr/internal/parity"
	"github.com/maddr-project/maddr/torch"
)

// The fixture comes from tools/reference/memae_parity.py; regenerate it with
// `make reference`.
const parityFixture = "testdata/memae_parity.safetensors"

// small is the fixture's configuration.
func small() Config {
	c := DefaultConfig()
	c.ImageSize, c.BaseWidth, c.Hidden, c.Latent = 32, 8, 32, 16
	c.MemSize, c.ShrinkThreshold, c.EntropyWeight = 10, 0.095, 0.05
	return c
}

func TestParityWithPyTorch(t *testing.T) {
	f := fixture.Read(t, parityFixture)
	m, err := build(small())
	if err != nil {
		t.Fatal(err)
	}
	defer m.store.Free()
	f.LoadStore(t, m.store, "init.")
	sc := torch.NewScope()
	defer sc.Close()
	x := f.Tensor(t, sc, "input")
	// Eval-mode scores at the initial weights, as the generator takes them.
	f.Compare(t, "score", sc.Adopt(m.Score(x)))
	m.cfg.Addressing = "cosine"
	f.Compare(t, "cosine.att", sc.Adopt(evalWeights(m, x)))
	m.cfg.Addressing = "dot"
	losses, out, err := m.trainStep(sc, baselines.Step{Iter: 1, X: x, Hook: fixture.StandInHook})
	if err != nil {
		t.Fatal(err)
	}
	f.Compare(t, "z", out.z)
	f.Compare(t, "att", out.weights)
	f.Compare(t, "z_hat", out.zHat)
	f.Compare(t, "x_hat", out.xHat)
	for _, k := range []string{"rec", "entropy", "hook"} {
		f.CompareValue(t, "loss."+k, losses[k])
	}
	f.CompareValue(t, "loss.total", losses["loss"])
	for _, p := range m.store.Trainable() {
		if strings.HasSuffix(p.Name, "fc1.bias") { // feeds BatchNorm1d
			f.CompareZero(t, "grad."+p.Name, sc.Adopt(p.T.Grad()))
			continue
		}
		f.Compare(t, "grad."+p.Name, sc.Adopt(p.T.Grad()))
	}
	for _, name := range []string{"enc.fc2.weight", "dec.up1.conv.weight", "enc.bn.weight"} {
		f.Compare(t, "after."+name, m.store.Get(name).T)
	}
}

func evalWeights(m *Model, x *torch.Tensor) *torch.Tensor {
	var w *torch.Tensor
	_ = torch.NoGrad(func() error {
		sc := torch.NewScope()
		defer sc.Close()
		w = sc.Keep(m.forward(sc, sc.AliasIn(x), false).weights)
		return nil
	})
	return w
}

func TestDefaultNetwork(t *testing.T) {
	f := fixture.Read(t, parityFixture)
	b, err := baselines.New("memae", baselines.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer b.Store().Free()
	if got, want := b.Store().NumParams(), f.Int(t, "default_num_params"); got != want {
		t.Errorf("default MemAE has %d parameters, the PyTorch reference %d", got, want)
	}
	if p := b.Store().Get("mem.weight"); p == nil || p.T.Size(0) != 25 || p.T.Size(1) != 128 {
		t.Errorf("memory should be 25 x 128")
	}
	if b.LatentDim() != 128 {
		t.Errorf("latent %d", b.LatentDim())
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
	for _, addressing := range []string{"dot", "cosine"} {
		raw, _ := json.Marshal(map[string]string{"addressing": addressing})
		b, err := baselines.New("memae", baselines.Options{ImageSize: 32, Seed: 1, Raw: raw})
		if err != nil {
			t.Fatal(err)
		}
		step := func(i int) {
			err := torch.Run(func(sc *torch.Scope) error {
				x := randomBatch(t, sc, 4, 32, uint64(i))
				if _, err := b.TrainStep(sc, baselines.Step{Iter: i, X: x, Hook: fixture.StandInHook}); err != nil {
					return err
				}
				sc.Adopt(b.Score(x))
				sc.Adopt(b.AnomalyMap(x))
				return nil
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
			t.Errorf("%s: live tensors went from %d to %d over 3 steps", addressing, before, after)
		}
		b.Store().Free()
	}
}

func gradOf(t *testing.T, hook baselines.LatentHook, name string) []float32 {
	t.Helper()
	m, err := build(small())
	if err != nil {
		t.Fatal(err)
	}
	defer m.store.Free()
	var g []float32
	err = torch.Run(func(sc *torch.Scope) error {
		if _, _, err := m.trainStep(sc, baselines.Step{Iter: 1, X: randomBatch(t, sc, 4, 32, 5), Hook: hook}); err != nil {
			return err
		}
		g, err = sc.Adopt(m.store.Get(name).T.Grad()).Float32s()
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	return g
}

func TestHookLossReachesTheEncoder(t *testing.T) {
	zero := func(z *torch.Tensor) (*torch.Tensor, map[string]float64, error) {
		return z.Sum().MulScalar(0), nil, nil
	}
	if parity.MaxAbsDiff(gradOf(t, zero, "enc.fc2.weight"), gradOf(t, fixture.StandInHook, "enc.fc2.weight")) < 1e-6 {
		t.Fatal("the hook's loss did not change the gradient of the layer producing z")
	}
}

func TestRejectsBadSettings(t *testing.T) {
	for _, raw := range []string{`{"addressing":"l2"}`, `{"shrink_threshold":1.5}`, `{"mem_size":0}`, `{"slots":3}`} {
		if b, err := baselines.New("memae", baselines.Options{Raw: json.RawMessage(raw)}); err == nil {
			b.Store().Free()
			t.Errorf("%s accepted", raw)
		}
	}
}

// TestMADDRStepMatchesPyTorch checks one step of MemAE wrapped by MADDR
// against tools/reference/memae_parity.py: every loss term, and the gradient
// and the Adam update of every parameter (encoder, memory, decoder, heads),
// each of which must move exactly once.
func TestMADDRStepMatchesPyTorch(t *testing.T) {
	f := fixture.Read(t, "testdata/memae_maddr_parity.safetensors")
	c := small()
	c.Seed = 3
	m, err := build(c)
	if err != nil {
		t.Fatal(err)
	}
	defer m.store.Free()
	n := f.CheckMADDRStep(t, m, fixture.MADDRStep{
		Iter:     1,
		Losses:   []string{"rec", "entropy", "loss"},
		ZeroGrad: func(name string) bool { return strings.HasSuffix(name, "fc1.bias") },
	})
	if want := len(m.store.Trainable()); n != want {
		t.Errorf("compared %d parameters, want all %d", n, want)
	}
}
