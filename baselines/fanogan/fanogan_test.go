package fanogan

import (
	"encoding/json"
	"math"
	"reflect"
	"runtime/debug"
	"slices"
	"sort"
	"testing"

	"github.com/maddr-project/maddr/baselines"
	"github.com/maddr-project/maddr/nn"
	"github.com/maddr-project/maddr/torch"
)

// smallModel is a 16x16 f-AnoGAN, 2 channels wide, for fast behaviour tests.
func smallModel(t *testing.T, iterations int, raw string) *Model {
	t.Helper()
	if raw == "" {
		raw = `{"width": 2}`
	}
	m, err := New(baselines.Options{ImageSize: 16, LatentDim: 8, Iterations: iterations, Seed: 3, Raw: json.RawMessage(raw)})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(m.Store().Free)
	return m
}

// batch returns a B x 1 x S x S batch in [-1, 1] owned by s.
func batch(s *torch.Scope, g *torch.Generator, b, size int64) *torch.Tensor {
	return s.Adopt(torch.Rand(g, b, 1, size, size)).MulScalar(2).SubScalar(1)
}

func snapshot(t *testing.T, params []*nn.Param) map[string][]float32 {
	t.Helper()
	out := map[string][]float32{}
	for _, p := range params {
		v, err := p.T.Float32s()
		if err != nil {
			t.Fatal(err)
		}
		out[p.Name] = v
	}
	return out
}

func changed(a, b map[string][]float32) []string {
	var out []string
	for k := range a {
		if !slices.Equal(a[k], b[k]) {
			out = append(out, k)
		}
	}
	sort.Strings(out)
	return out
}

func keys(l baselines.Losses) []string {
	var out []string
	for k := range l {
		out = append(out, k)
	}
	sort.Strings(out)
	return out
}

func TestRegisteredAsFanogan(t *testing.T) {
	b, err := baselines.New("fanogan", baselines.Options{ImageSize: 16, LatentDim: 8, Raw: json.RawMessage(`{"width": 1}`)})
	if err != nil {
		t.Fatal(err)
	}
	defer b.Store().Free()
	if b.Name() != "fanogan" || b.LatentDim() != 8 || b.DefaultIterations() != 150000 {
		t.Fatalf("name %q latent %d default iterations %d", b.Name(), b.LatentDim(), b.DefaultIterations())
	}
}

// TestPaperWidthShapes builds the paper's network (64x64, width 64, z 128)
// and checks the layer shapes METHODS 3.4 gives and one forward pass.
func TestPaperWidthShapes(t *testing.T) {
	m, err := New(baselines.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer m.Store().Free()
	want := map[string][]int64{
		"gen.fc.weight":                {8192, 128},
		"gen.up_8.conv1.weight":        {512, 512, 3, 3},
		"gen.up_16.conv1.weight":       {256, 512, 3, 3},
		"gen.up_32.skip.weight":        {128, 256, 1, 1},
		"gen.up_64.conv2.weight":       {64, 64, 3, 3},
		"gen.out_conv.weight":          {1, 64, 3, 3},
		"critic.stem.weight":           {64, 1, 3, 3},
		"critic.down_32.conv1.weight":  {64, 64, 3, 3},
		"critic.down_32.conv2.weight":  {128, 64, 3, 3},
		"critic.down_4.norm1.weight":   {512, 1, 1},
		"critic.down_4.conv2.weight":   {512, 512, 3, 3},
		"critic.fc.weight":             {1, 8192},
		"enc.down_4.norm2.running_var": {512},
		"enc.fc.weight":                {128, 8192},
	}
	for name, shape := range want {
		p := m.Store().Get(name)
		if p == nil {
			t.Errorf("no parameter %s", name)
			continue
		}
		if got := p.T.Shape(); !slices.Equal(got, shape) {
			t.Errorf("%s has shape %v, want %v", name, got, shape)
		}
	}
	for _, absent := range []string{"gen.up_8.conv2.bias", "gen.up_8.skip.bias", "critic.down_8.conv1.bias", "gen.up_128.conv1.weight"} {
		if m.Store().Get(absent) != nil {
			t.Errorf("unexpected parameter %s", absent)
		}
	}
	sc := torch.NewScope()
	defer sc.Close()
	g, _ := torch.NewGenerator(1)
	x := batch(sc, g, 2, 64)
	z := sc.Adopt(m.Latent(x, false))
	score := sc.Adopt(m.Score(x))
	amap := sc.Adopt(m.AnomalyMap(x))
	sample := sc.Adopt(m.Sample(2))
	var feat *torch.Tensor
	_ = torch.NoGrad(func() error { _, feat = m.crit.forward(x); return nil })
	for _, c := range []struct {
		name  string
		t     *torch.Tensor
		shape []int64
	}{{"z", z, []int64{2, 128}}, {"score", score, []int64{2}}, {"anomaly map", amap, []int64{2, 1, 64, 64}},
		{"sample", sample, []int64{2, 1, 64, 64}}, {"features", feat, []int64{2, 8192}}} {
		if err := c.t.Err(); err != nil {
			t.Fatalf("%s: %v", c.name, err)
		}
		if got := c.t.Shape(); !slices.Equal(got, c.shape) {
			t.Errorf("%s has shape %v, want %v", c.name, got, c.shape)
		}
	}
	if v, _ := z.Abs().Max().Item(); v > 1 {
		t.Errorf("|z| reaches %v; tanh bounds it by 1", v)
	}
	if v, _ := sample.Abs().Max().Item(); v > 1 {
		t.Errorf("|G(z)| reaches %v; tanh bounds it by 1", v)
	}
}

func TestImageSizesDeriveTheNetwork(t *testing.T) {
	for _, c := range []struct {
		size     int
		upBlocks int
		features int64
	}{{8, 1, 16 * 2 * 2}, {32, 3, 16 * 8 * 2}, {128, 5, 16 * 8 * 2}} {
		m, err := New(baselines.Options{ImageSize: c.size, LatentDim: 4, Raw: json.RawMessage(`{"width": 2}`)})
		if err != nil {
			t.Fatalf("size %d: %v", c.size, err)
		}
		geo := geometry{size: int64(c.size), width: 2}
		if len(m.gen.blocks) != c.upBlocks || len(m.enc.trunk.blocks) != c.upBlocks || geo.features() != c.features {
			t.Errorf("size %d: %d up blocks, %d down blocks, %d features", c.size, len(m.gen.blocks), len(m.enc.trunk.blocks), geo.features())
		}
		sc := torch.NewScope()
		g, _ := torch.NewGenerator(2)
		if got := sc.Adopt(m.AnomalyMap(batch(sc, g, 2, int64(c.size)))).Shape(); !slices.Equal(got, []int64{2, 1, int64(c.size), int64(c.size)}) {
			t.Errorf("size %d: anomaly map %v", c.size, got)
		}
		sc.Close()
		m.Store().Free()
	}
	for _, bad := range []int{4, 48, 2048} {
		if _, err := New(baselines.Options{ImageSize: bad}); err == nil {
			t.Errorf("image size %d accepted", bad)
		}
	}
}

func TestSettings(t *testing.T) {
	m := smallModel(t, 30, `{"width": 2, "n_critic": 3}`)
	c := m.Settings()
	if c.WGANIters != 20 || c.Iterations != 30 || c.NCritic != 3 || c.GPWeight != 10 || c.FeatureWeight != 1 {
		t.Fatalf("resolved %+v", c)
	}
	// Config fed back as Raw rebuilds the same model.
	raw, err := json.Marshal(m.Config())
	if err != nil {
		t.Fatal(err)
	}
	again, err := New(baselines.Options{ImageSize: 16, Raw: raw})
	if err != nil {
		t.Fatal(err)
	}
	defer again.Store().Free()
	again.cfg.Seed = c.Seed
	if again.Settings() != c {
		t.Fatalf("rebuilt %+v, want %+v", again.Settings(), c)
	}
	for _, bad := range []struct {
		o   baselines.Options
		why string
	}{
		{baselines.Options{ImageSize: 64, Raw: raw}, "stored size 16 used at 64"},
		{baselines.Options{Raw: json.RawMessage(`{"widht": 2}`)}, "misspelt key"},
		{baselines.Options{Iterations: 1}, "no room for stage 2"},
		{baselines.Options{Iterations: 10, Raw: json.RawMessage(`{"wgan_iters": 10}`)}, "stage 1 fills the budget"},
		{baselines.Options{Raw: json.RawMessage(`{"wgan_fraction": 1.5}`)}, "fraction above 1"},
		{baselines.Options{Raw: json.RawMessage(`{"n_critic": 0}`)}, "no critic steps"},
	} {
		if m, err := New(bad.o); err == nil {
			m.Store().Free()
			t.Errorf("accepted: %s", bad.why)
		}
	}
}

// TestStages trains a few iterations of each stage and checks who is
// updated when, the loss names, that the hook runs only in stage 2, and that
// attached heads are trained with the encoder.
func TestStages(t *testing.T) {
	m := smallModel(t, 6, `{"width": 2, "n_critic": 2, "wgan_iters": 4}`)
	hs, _ := nn.NewStore(9)
	head := nn.NewLinear(hs, "head", 8, 2, nn.LinearConfig{})
	if err := m.AttachParams(hs.Trainable()); err != nil {
		t.Fatal(err)
	}
	defer hs.Free()
	var hookIters []int
	iter := 0
	hook := func(z *torch.Tensor) (*torch.Tensor, map[string]float64, error) {
		hookIters = append(hookIters, iter)
		if got := z.Shape(); !slices.Equal(got, []int64{4, 8}) {
			t.Errorf("hook got z of shape %v", got)
		}
		return head.Forward(z).Square().Mean(), map[string]float64{"head": 1}, nil
	}
	g, _ := torch.NewGenerator(4)
	step := func(i int) baselines.Losses {
		iter = i
		var l baselines.Losses
		err := torch.Run(func(s *torch.Scope) error {
			var err error
			l, err = m.TrainStep(s, baselines.Step{Iter: i, X: batch(s, g, 4, 16), Hook: hook})
			return err
		})
		if err != nil {
			t.Fatalf("iteration %d: %v", i, err)
		}
		for k, v := range l {
			if math.IsNaN(v) || math.IsInf(v, 0) {
				t.Errorf("iteration %d: %s = %v", i, k, v)
			}
		}
		return l
	}
	gan := append(m.Store().Sub("gen").Trainable(), m.Store().Sub("critic").Trainable()...)
	encBefore, headBefore := snapshot(t, m.Store().Sub("enc").All()), snapshot(t, hs.All())
	for i := 1; i <= 4; i++ {
		l := step(i)
		want := []string{"d_wgan", "gp"}
		if i%2 == 0 {
			want = []string{"d_wgan", "g", "gp"}
		}
		if !slices.Equal(keys(l), want) {
			t.Errorf("iteration %d reports %v, want %v", i, keys(l), want)
		}
	}
	if m.Stage() != 1 || m.state.CriticSteps != 4 || m.state.GeneratorSteps != 2 {
		t.Fatalf("after stage 1: %+v", m.state)
	}
	if c := changed(encBefore, snapshot(t, m.Store().Sub("enc").All())); len(c) > 0 {
		t.Errorf("stage 1 changed the encoder: %v", c)
	}
	ganBefore := snapshot(t, gan)
	genBuffers := snapshot(t, m.Store().Sub("gen").All())
	for i := 5; i <= 6; i++ {
		if l := step(i); !slices.Equal(keys(l), []string{"head", "izif_feat", "izif_img"}) {
			t.Errorf("iteration %d reports %v", i, keys(l))
		}
	}
	if !slices.Equal(hookIters, []int{5, 6}) {
		t.Errorf("hook called on iterations %v, want [5 6]", hookIters)
	}
	if m.Stage() != 2 || m.state.EncoderSteps != 2 {
		t.Fatalf("after stage 2: %+v", m.state)
	}
	if c := changed(ganBefore, snapshot(t, gan)); len(c) > 0 {
		t.Errorf("stage 2 changed the GAN: %v", c)
	}
	if c := changed(genBuffers, snapshot(t, m.Store().Sub("gen").All())); len(c) > 0 {
		t.Errorf("stage 2 ran the generator in training mode (changed %v)", c)
	}
	if len(changed(encBefore, snapshot(t, m.Store().Sub("enc").Trainable()))) == 0 {
		t.Error("stage 2 did not train the encoder")
	}
	if c := changed(headBefore, snapshot(t, hs.All())); len(c) != 2 {
		t.Errorf("attached head parameters changed: %v, want weight and bias", c)
	}
	if err := m.AttachParams(nil); err == nil {
		t.Error("AttachParams accepted after training started")
	}
	err := torch.Run(func(s *torch.Scope) error {
		_, err := m.TrainStep(s, baselines.Step{Iter: 3, X: batch(s, g, 4, 16)})
		return err
	})
	if err == nil {
		t.Error("a stage-1 iteration was accepted in stage 2")
	}
	err = torch.Run(func(s *torch.Scope) error {
		_, err := m.TrainStep(s, baselines.Step{Iter: 7, X: batch(s, g, 4, 32)})
		return err
	})
	if err == nil {
		t.Error("a 32x32 batch was accepted by a 16x16 model")
	}
}

// TestTrainStepDoesNotLeak checks that, once the optimizers have created
// their state, training steps of both stages leave no tensor handle behind.
func TestTrainStepDoesNotLeak(t *testing.T) {
	// Finalizers would free leaked handles behind the count's back.
	defer debug.SetGCPercent(debug.SetGCPercent(-1))
	m := smallModel(t, 20, `{"width": 2, "wgan_iters": 10}`)
	g, _ := torch.NewGenerator(5)
	hook := func(z *torch.Tensor) (*torch.Tensor, map[string]float64, error) {
		return z.Square().Mean(), nil, nil
	}
	run := func(from, to int) {
		for i := from; i <= to; i++ {
			err := torch.Run(func(s *torch.Scope) error {
				_, err := m.TrainStep(s, baselines.Step{Iter: i, X: batch(s, g, 3, 16), Hook: hook})
				return err
			})
			if err != nil {
				t.Fatalf("iteration %d: %v", i, err)
			}
		}
	}
	run(1, 5) // critic and generator optimizers create their state
	torch.SettleFinalizers()
	before := torch.LiveTensors()
	run(6, 10)
	if after := torch.LiveTensors(); after != before {
		t.Errorf("GAN steps leaked %d tensors", after-before)
	}
	run(11, 11) // the encoder's optimizer creates its state
	torch.SettleFinalizers()
	before = torch.LiveTensors()
	run(12, 15)
	sc := torch.NewScope()
	sc.Adopt(m.Score(batch(sc, g, 3, 16)))
	sc.Adopt(m.AnomalyMap(batch(sc, g, 3, 16)))
	sc.Close()
	if after := torch.LiveTensors(); after != before {
		t.Errorf("encoder steps and scoring leaked %d tensors", after-before)
	}
}

func TestRestoreResumesTheStage(t *testing.T) {
	a := smallModel(t, 6, `{"width": 2, "wgan_iters": 3}`)
	g, _ := torch.NewGenerator(6)
	for i := 1; i <= 4; i++ {
		err := torch.Run(func(s *torch.Scope) error {
			_, err := a.TrainStep(s, baselines.Step{Iter: i, X: batch(s, g, 2, 16)})
			return err
		})
		if err != nil {
			t.Fatal(err)
		}
	}
	opt := a.OptimizerState()
	for _, prefix := range []string{"adam_gen.", "adam_critic.", "rmsprop_enc."} {
		if _, ok := opt[prefix+"enc.fc.weight.square_avg"]; prefix == "rmsprop_enc." && !ok {
			t.Errorf("no %senc.fc.weight.square_avg in %d optimizer tensors", prefix, len(opt))
		}
	}
	state, err := a.TrainingState()
	if err != nil {
		t.Fatal(err)
	}
	b := smallModel(t, 6, `{"width": 2, "wgan_iters": 3}`)
	if err := b.Restore(opt, state); err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(b.state, a.state) || b.Stage() != 2 {
		t.Fatalf("restored state %+v, want %+v", b.state, a.state)
	}
	// The noise stream continues where it was saved.
	na, nb := torch.Randn(a.noise, 2, 3), torch.Randn(b.noise, 2, 3)
	va, _ := na.Float32s()
	vb, _ := nb.Float32s()
	na.Free()
	nb.Free()
	if !reflect.DeepEqual(va, vb) {
		t.Error("restored model draws different latent noise")
	}
	if b.Store().Get("gen.fc.weight").T.RequiresGrad() || b.Store().Get("critic.fc.weight").T.RequiresGrad() {
		t.Error("restoring into stage 2 left the GAN trainable")
	}
	got := b.OptimizerState()
	if len(got) != len(opt) {
		t.Fatalf("restored %d optimizer tensors, want %d", len(got), len(opt))
	}
	for k, want := range opt {
		wv, _ := want.Float32s()
		gv, err := got[k].Float32s()
		if err != nil || !slices.Equal(wv, gv) {
			t.Errorf("optimizer tensor %s differs after restore (%v)", k, err)
		}
	}
	if err := b.Restore(opt, json.RawMessage(`{"stage": 3}`)); err == nil {
		t.Error("stage 3 accepted")
	}
}

// benchmarkStage times TrainStep at the paper's width on batches of 16.
func benchmarkStage(b *testing.B, iter int) {
	m, err := New(baselines.Options{Iterations: 10, Raw: json.RawMessage(`{"wgan_iters": 5, "n_critic": 1000000}`)})
	if err != nil {
		b.Fatal(err)
	}
	defer m.Store().Free()
	g, _ := torch.NewGenerator(7)
	const n = 16
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		err := torch.Run(func(s *torch.Scope) error {
			_, err := m.TrainStep(s, baselines.Step{Iter: iter, X: batch(s, g, n, 64)})
			return err
		})
		if err != nil {
			b.Fatal(err)
		}
	}
	b.ReportMetric(float64(n*b.N)/b.Elapsed().Seconds(), "img/s")
}

// BenchmarkCriticStep is one WGAN-GP critic step (no generator step).
func BenchmarkCriticStep(b *testing.B) { benchmarkStage(b, 1) }

// BenchmarkEncoderStep is one izif encoder step.
func BenchmarkEncoderStep(b *testing.B) { benchmarkStage(b, 6) }
