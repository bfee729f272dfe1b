package ae

import (
	"encoding/json"
	"math"
	"strings"
	"testing"

	"github.com/maddr-project/maddr/baselines"
	"github.com/maddr-project/maddr/baselines/internal/backbone/fixture"
	"github.com/maddr-project/maddr/internal/parity"
	"github.com/maddr-project/maddr/torch"
)

// The fixture comes from tools/reference/ae_parity.py; regenerate it with
// `make reference`.
const parityFixture = "testdata/ae_parity.safetensors"

// small is the fixture's configuration.
func small() Config {
	c := DefaultConfig()
	c.ImageSize, c.BaseWidth, c.Hidden, c.Latent = 32, 8, 32, 16
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
	m.cfg.Loss = "l1"
	f.Compare(t, "score_l1", sc.Adopt(m.Score(x)))
	m.cfg.Loss = "l2"
	losses, out, err := m.trainStep(sc, baselines.Step{Iter: 1, X: x, Hook: fixture.StandInHook})
	if err != nil {
		t.Fatal(err)
	}
	f.Compare(t, "z", out.z)
	f.Compare(t, "x_hat", out.xHat)
	f.CompareValue(t, "loss.rec", losses["rec"])
	f.CompareValue(t, "loss.hook", losses["hook"])
	f.CompareValue(t, "loss.total", losses["loss"])
	for _, p := range m.store.Trainable() {
		if strings.HasSuffix(p.Name, "fc1.bias") { // feeds BatchNorm1d
			f.CompareZero(t, "grad."+p.Name, sc.Adopt(p.T.Grad()))
			continue
		}
		f.Compare(t, "grad."+p.Name, sc.Adopt(p.T.Grad()))
	}
	for _, name := range []string{"enc.fc2.weight", "dec.up0.conv.weight", "enc.down0.bn.weight", "dec.bn.running_mean"} {
		f.Compare(t, "after."+name, m.store.Get(name).T)
	}
}

func TestDefaultNetworkHasMedIAnomalysShape(t *testing.T) {
	f := fixture.Read(t, parityFixture)
	b, err := baselines.New("ae", baselines.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer b.Store().Free()
	if got, want := b.Store().NumParams(), f.Int(t, "default_num_params"); got != want {
		t.Errorf("default AE has %d parameters, the PyTorch reference %d", got, want)
	}
	if b.LatentDim() != 128 {
		t.Errorf("latent %d, want 128", b.LatentDim())
	}
	names := map[string][]int64{}
	for _, p := range b.Store().All() {
		names[p.Name] = p.T.Shape()
	}
	for name, shape := range map[string][]int64{
		"enc.down0.conv.weight": {16, 1, 4, 4},
		"enc.down3.conv.weight": {64, 64, 4, 4},
		"enc.fc1.weight":        {1024, 1024},
		"enc.fc2.weight":        {128, 1024},
		"dec.fc2.weight":        {1024, 1024},
		"dec.up3.conv.weight":   {16, 1, 4, 4},
	} {
		if got := names[name]; len(got) != len(shape) || got[0] != shape[0] || got[1] != shape[1] {
			t.Errorf("%s has shape %v, want %v", name, got, shape)
		}
	}
	if _, ok := names["dec.up3.bn.weight"]; ok {
		t.Error("the last up block must have no BatchNorm")
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
	b, err := baselines.New("ae", baselines.Options{ImageSize: 32, Seed: 1})
	if err != nil {
		t.Fatal(err)
	}
	defer b.Store().Free()
	step := func(i int) {
		err := torch.Run(func(sc *torch.Scope) error {
			_, err := b.TrainStep(sc, baselines.Step{Iter: i, X: randomBatch(t, sc, 4, 32, uint64(i)), Hook: fixture.StandInHook})
			return err
		})
		if err != nil {
			t.Fatal(err)
		}
	}
	step(1) // creates Adam's state
	torch.SettleFinalizers()
	before := torch.LiveTensors()
	for i := 2; i <= 4; i++ {
		step(i)
	}
	if after := torch.LiveTensors(); after != before {
		t.Fatalf("live tensors went from %d to %d over 3 steps", before, after)
	}
}

// gradOf returns the gradient of the named parameter after one step's backward.
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
	without := gradOf(t, zero, "enc.fc2.weight")
	with := gradOf(t, fixture.StandInHook, "enc.fc2.weight")
	if parity.MaxAbsDiff(with, without) < 1e-6 {
		t.Fatal("the hook's loss did not change the gradient of the layer producing z")
	}
	if d := parity.MaxAbsDiff(gradOf(t, zero, "dec.up2.conv.weight"), gradOf(t, fixture.StandInHook, "dec.up2.conv.weight")); !(d <= 1e-6) {
		t.Fatalf("the hook changed the decoder's gradient by %g", d)
	}
}

func TestStateRoundTripAndOptions(t *testing.T) {
	b, err := baselines.New("ae", baselines.Options{ImageSize: 32, Seed: 3, Raw: json.RawMessage(`{"loss":"l1","hidden":64}`)})
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
	cfg, err := json.Marshal(b.Config())
	if err != nil {
		t.Fatal(err)
	}
	again, err := baselines.New("ae", baselines.Options{ImageSize: 32, Raw: cfg})
	if err != nil {
		t.Fatalf("rebuilding from Config(): %v", err)
	}
	defer again.Store().Free()
	if got := again.Config().(Config); got.Loss != "l1" || got.Hidden != 64 || got.Seed != 3 {
		t.Fatalf("rebuilt config %+v", got)
	}
	st, err := b.TrainingState()
	if err != nil {
		t.Fatal(err)
	}
	if err := again.Restore(b.OptimizerState(), st); err != nil {
		t.Fatal(err)
	}
	if len(again.OptimizerState()) != len(b.OptimizerState()) || again.(*Model).iter != 1 {
		t.Fatalf("restored %d optimizer tensors (want %d), iter %d", len(again.OptimizerState()), len(b.OptimizerState()), again.(*Model).iter)
	}
	for _, bad := range []baselines.Options{
		{ImageSize: 48},
		{ImageSize: 64, Raw: json.RawMessage(`{"los":"l1"}`)},
		{ImageSize: 64, Raw: json.RawMessage(`{"loss":"huber"}`)},
		{ImageSize: 32, Raw: cfg},
	} {
		if bad.ImageSize == 32 {
			bad.ImageSize = 64 // cfg says 32
		}
		if b, err := baselines.New("ae", bad); err == nil {
			b.Store().Free()
			t.Errorf("options %+v accepted", bad)
		}
	}
}

func TestScoreAndMapShapes(t *testing.T) {
	b, err := baselines.New("ae", baselines.Options{ImageSize: 16, LatentDim: 8})
	if err != nil {
		t.Fatal(err)
	}
	defer b.Store().Free()
	err = torch.Run(func(sc *torch.Scope) error {
		x := randomBatch(t, sc, 3, 16, 2)
		s := sc.Adopt(b.Score(x))
		m := sc.Adopt(b.AnomalyMap(x))
		z := b.Latent(x, false)
		if got := s.Shape(); len(got) != 1 || got[0] != 3 {
			t.Errorf("score shape %v", got)
		}
		if got := m.Shape(); len(got) != 4 || got[1] != 1 || got[2] != 16 {
			t.Errorf("map shape %v", got)
		}
		if got := z.Shape(); len(got) != 2 || got[1] != 8 {
			t.Errorf("latent shape %v", got)
		}
		// The score is the mean of the map.
		want, _ := sc.Adopt(m.Flatten(1, -1).MeanDims([]int64{1}, false)).Float32s()
		got, _ := s.Float32s()
		for i := range got {
			if !(math.Abs(float64(got[i]-want[i])) <= 1e-6) {
				t.Errorf("score %v, mean of map %v", got, want)
			}
		}
		return z.Err()
	})
	if err != nil {
		t.Fatal(err)
	}
}

// TestMADDRStepMatchesPyTorch checks one step of the autoencoder wrapped by
// MADDR against tools/reference/ae_parity.py: every loss term, and the
// gradient and the Adam update of every parameter, heads included (which an
// optimizer holding the heads twice would move twice as far).
func TestMADDRStepMatchesPyTorch(t *testing.T) {
	f := fixture.Read(t, "testdata/ae_maddr_parity.safetensors")
	c := small()
	c.Seed = 3
	m, err := build(c)
	if err != nil {
		t.Fatal(err)
	}
	defer m.store.Free()
	n := f.CheckMADDRStep(t, m, fixture.MADDRStep{
		Iter:     1,
		Losses:   []string{"rec", "loss"},
		ZeroGrad: func(name string) bool { return strings.HasSuffix(name, "fc1.bias") },
	})
	if want := len(m.store.Trainable()); n != want {
		t.Errorf("compared %d parameters, want all %d", n, want)
	}
}
