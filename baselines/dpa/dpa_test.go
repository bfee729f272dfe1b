package dpa

import (
	"encoding/json"
	"fmt"
	"math"
	"strings"
	"testing"

	"github.com/maddr-project/maddr/baselines"
	"github.com/maddr-project/maddr/internal/parity"
	"github.com/maddr-project/maddr/nn"
	"github.com/maddr-project/maddr/perceptual"
	"github.com/maddr-project/maddr/safetensors"
	"github.com/maddr-project/maddr/torch"
)

// The fixture comes from tools/reference/dpa_parity.py; the small-width fake
// VGG it uses is the perceptual package's (tools/reference/dpa_fake_vgg.py).
const (
	parityFixture = "testdata/dpa_parity.safetensors"
	fakeVGG       = "../../perceptual/testdata/vgg19_div16.pth"
	parityTol     = parity.Tol
)

func build(t *testing.T, size int, raw string) *DPA {
	t.Helper()
	b, err := baselines.New("dpa", baselines.Options{ImageSize: size, Seed: 1, Raw: json.RawMessage(raw)})
	if err != nil {
		t.Fatal(err)
	}
	d := b.(*DPA)
	t.Cleanup(d.free)
	return d
}

// smallRaw selects the committed small-width fake VGG.
var smallRaw = fmt.Sprintf(`{"vgg_weights": %q, "vgg_width_divisor": 16}`, fakeVGG)

// fixedValues reproduces dpa_parity.py's fixed_values: splitmix64 over the
// element counter, seeded by the FNV-1a hash of the parameter name.
func fixedValues(name string, n int, bound float64) []float32 {
	h := uint64(0xCBF29CE484222325)
	for _, b := range []byte(name) {
		h ^= uint64(b)
		h *= 0x100000001B3
	}
	out := make([]float32, n)
	for i := range out {
		z := h + uint64(i+1)*0x9E3779B97F4A7C15
		z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9
		z = (z ^ (z >> 27)) * 0x94D049BB133111EB
		z ^= z >> 31
		u := float64(z>>11) * (1.0 / (1 << 53))
		out[i] = float32((2*u - 1) * bound)
	}
	return out
}

func fillFixed(t *testing.T, d *DPA) {
	t.Helper()
	for _, p := range d.params {
		shape := p.T.Shape()
		var bound float64
		if len(shape) == 4 {
			bound = math.Sqrt(6.0 / 1.04 / float64(shape[0]*shape[2]*shape[3]))
		} else {
			w := d.store.Get(strings.TrimSuffix(p.Name, "bias") + "weight").T.Shape()
			bound = 1.0 / math.Sqrt(float64(w[1]*w[2]*w[3]))
		}
		src := torch.FromFloat32(fixedValues(p.Name, int(p.T.Numel()), bound), shape...)
		if err := p.T.CopyFrom(src); err != nil {
			t.Fatal(err)
		}
		src.Free()
	}
}

// compare checks a tensor against the fixture: whole, or (for large tensors)
// its strided subsample and L2 norm, as dpa_parity.py stored it.
func compare(t *testing.T, f safetensors.File, prefix, name string, got *torch.Tensor) {
	t.Helper()
	compareTol(t, f, prefix, name, got, parityTol)
}

// compareTol is compare with an explicit relative tolerance.
func compareTol(t *testing.T, f safetensors.File, prefix, name string, got *torch.Tensor, tol float64) {
	t.Helper()
	g, err := got.Float32s()
	if err != nil {
		t.Fatalf("%s %s: %v", prefix, name, err)
	}
	check := func(label string, got, want []float32) {
		t.Helper()
		parity.Check(t, label, parity.Float64s(got), parity.Float64s(want), tol)
	}
	whole := name
	if prefix != "" {
		whole = prefix + "." + name
	}
	if w, ok := f.Tensors[whole]; ok {
		check(whole, g, w.F32)
		return
	}
	sub, ok := f.Tensors[prefix+"_sub."+name]
	if !ok {
		t.Errorf("NOT OK %s.%s: not in the fixture", prefix, name)
		return
	}
	stride := (len(g) + 2047) / 2048
	var picked []float32
	var sq float64
	for i, v := range g {
		if i%stride == 0 {
			picked = append(picked, v)
		}
		sq += float64(v) * float64(v)
	}
	check(prefix+"_sub."+name, picked, sub.F32)
	check(prefix+"_norm."+name, []float32{float32(math.Sqrt(sq))}, f.Tensors[prefix+"_norm."+name].F32)
}

func TestParityWithPyTorch(t *testing.T) {
	f, err := safetensors.ReadFile(parityFixture)
	if err != nil {
		t.Fatal(err)
	}
	d := build(t, 32, smallRaw)
	fillFixed(t, d)
	if n := f.Tensors["num_params"].I64[0]; d.store.Sub("enc").NumParams()+d.store.Sub("dec").NumParams() != n {
		t.Fatalf("%d parameters, PyTorch has %d", d.cfg.NumParams, n)
	}
	if n := f.Tensors["num_tensors"].I64[0]; int64(len(d.params)) != n {
		t.Fatalf("%d parameter tensors, PyTorch has %d", len(d.params), n)
	}
	s := torch.NewScope()
	defer s.Close()
	in := f.Tensors["input"]
	x := s.Adopt(torch.FromFloat32(in.F32, in.Shape...))

	var z, recon, score *torch.Tensor
	if err := torch.NoGrad(func() error {
		z = d.Latent(x, false)
		recon = d.Reconstruct(x)
		score = d.Score(x)
		return score.Err()
	}); err != nil {
		t.Fatal(err)
	}
	compare(t, f, "", "z", z)
	compare(t, f, "", "recon", recon)
	rp, l1 := f.Tensors["rp"].F32, f.Tensors["l1"].F32
	wantScore := []float32{rp[0] + 0.1*l1[0], rp[1] + 0.1*l1[1]}
	parity.Tensor(t, "score", score, parity.Float64s(wantScore), parityTol)

	hook := func(z *torch.Tensor) (*torch.Tensor, map[string]float64, error) {
		h := z.Square().Mean().MulScalar(0.01)
		v, err := h.Item()
		return h, map[string]float64{"hook": v}, err
	}
	losses, err := d.TrainStep(s, baselines.Step{Iter: 1, X: x, Hook: hook})
	if err != nil {
		t.Fatal(err)
	}
	for name, want := range map[string]float64{
		"rp":    float64(rp[0]+rp[1]) / 2,
		"l1":    float64(l1[0]+l1[1]) / 2,
		"hook":  float64(f.Tensors["hook"].F32[0]),
		"total": float64(f.Tensors["total"].F32[0]),
	} {
		parity.Value(t, "loss "+name, losses[name], want, parityTol)
	}
	for _, p := range d.params {
		compare(t, f, "grad", p.Name, s.Adopt(p.T.Grad()))
	}
	for _, p := range d.params {
		compare(t, f, "adam1", p.Name, p.T)
	}
}

func TestArchitectureAt64(t *testing.T) {
	d := build(t, 64, `{"vgg_random_init": true, "vgg_width_divisor": 16}`)
	for _, name := range []string{
		"enc.from_image.conv.weight", "enc.from_image.pre2.conv2.bias",
		"enc.res_64.down.conv1.weight", "enc.res_64.down.skip.weight", "enc.res_64.pre.conv2.weight",
		"enc.res_8.down.skip.weight", "enc.res_4.conv.weight",
		"dec.res_4.conv.weight", "dec.res_8.up.skip.weight", "dec.res_64.up.skip.weight", "dec.to_image.conv.weight",
		"perceptual.r32.mean", "perceptual.r42.divisor",
	} {
		if d.store.Get(name) == nil {
			t.Errorf("no parameter %s", name)
		}
	}
	// 64->16, 32->32, 16->32, 8->32, 4->64: the 32->32 and 16->32 Down blocks need no 1x1 skip.
	for _, name := range []string{"enc.res_32.down.skip.weight", "enc.res_16.down.skip.weight", "enc.from_image.pre1.skip.weight"} {
		if d.store.Get(name) != nil {
			t.Errorf("unexpected %s", name)
		}
	}
	if got := d.store.Get("enc.res_4.conv.weight").T.Shape(); fmt.Sprint(got) != "[128 64 4 4]" {
		t.Errorf("latent conv %v", got)
	}
	if d.cfg.NumParams != 644609 {
		t.Errorf("%d parameters, want 644609 (PyTorch port)", d.cfg.NumParams)
	}
	// Kaiming-normal, fan_out, leaky_relu a=0.2 on a 128x64x4x4 weight.
	w, _ := d.store.Get("enc.res_4.conv.weight").T.Float32s()
	var sq float64
	for _, v := range w {
		sq += float64(v) * float64(v)
	}
	std, want := math.Sqrt(sq/float64(len(w))), math.Sqrt(2/1.04)/math.Sqrt(128*16)
	if math.Abs(std-want)/want > 0.05 {
		t.Errorf("latent conv std %.5f, want %.5f", std, want)
	}
	s := torch.NewScope()
	defer s.Close()
	g, _ := torch.NewGenerator(0)
	x := s.Adopt(torch.Rand(g, 3, 1, 64, 64)).MulScalar(2).SubScalar(1)
	if got := d.Latent(x, true).Shape(); fmt.Sprint(got) != "[3 128]" {
		t.Errorf("z %v", got)
	}
	if got := d.Reconstruct(x).Shape(); fmt.Sprint(got) != "[3 1 64 64]" {
		t.Errorf("reconstruction %v", got)
	}
	if got := d.AnomalyMap(x).Shape(); fmt.Sprint(got) != "[3 1 64 64]" {
		t.Errorf("anomaly map %v", got)
	}
	sc, err := d.Score(x).Float32s()
	if err != nil || len(sc) != 3 || sc[0] <= 0 {
		t.Errorf("score %v (%v)", sc, err)
	}
	if err := d.Latent(s.Adopt(torch.Zeros(2, 1, 32, 32)), false).Err(); err == nil {
		t.Error("accepted 32x32 images in a 64x64 model")
	}
}

func TestImageSizesAndLatent(t *testing.T) {
	for _, size := range []int{8, 16, 128} {
		d := build(t, size, `{"vgg_random_init": true, "vgg_width_divisor": 16}`)
		s := torch.NewScope()
		x := s.Adopt(torch.Zeros(1, 1, int64(size), int64(size)))
		if got := d.Reconstruct(x).Shape(); fmt.Sprint(got) != fmt.Sprintf("[1 1 %d %d]", size, size) {
			t.Errorf("size %d: reconstruction %v", size, got)
		}
		s.Close()
	}
	for _, size := range []int{4, 48} {
		if _, err := baselines.New("dpa", baselines.Options{ImageSize: size, Raw: json.RawMessage(`{"vgg_random_init": true}`)}); err == nil {
			t.Errorf("size %d accepted", size)
		}
	}
	b, err := baselines.New("dpa", baselines.Options{ImageSize: 16, LatentDim: 24, Raw: json.RawMessage(`{"vgg_random_init": true, "vgg_width_divisor": 16}`)})
	if err != nil {
		t.Fatal(err)
	}
	if b.LatentDim() != 24 || fmt.Sprint(b.Store().Get("enc.res_4.conv.weight").T.Shape()) != "[24 64 4 4]" {
		t.Errorf("latent override ignored")
	}
}

func TestMissingVGGWeightsIsExplained(t *testing.T) {
	t.Setenv(perceptual.WeightsEnv, "")
	_, err := baselines.New("dpa", baselines.Options{})
	if err == nil || !strings.Contains(err.Error(), perceptual.WeightsURL) || !strings.Contains(err.Error(), "--vgg-random-init") {
		t.Fatalf("error %v", err)
	}
}

// trainBatch is a small deterministic batch of 16x16 images.
func trainBatch(s *torch.Scope, seed uint64) *torch.Tensor {
	g, _ := torch.NewGenerator(seed)
	return s.Adopt(torch.Rand(g, 2, 1, 16, 16)).MulScalar(2).SubScalar(1)
}

func TestTrainStepLeavesNoTensorsBehind(t *testing.T) {
	d := build(t, 16, smallRaw)
	step := func(i int) {
		err := torch.Run(func(s *torch.Scope) error {
			_, err := d.TrainStep(s, baselines.Step{Iter: i, X: trainBatch(s, uint64(i))})
			return err
		})
		if err != nil {
			t.Fatal(err)
		}
	}
	step(1) // creates Adam's state
	torch.SettleFinalizers()
	live := torch.LiveTensors()
	for i := 2; i <= 4; i++ {
		step(i)
	}
	if got := torch.LiveTensors(); got != live {
		t.Fatalf("%d live tensors after 3 more steps, had %d", got, live)
	}
}

func TestScheduleScalesAndSkipsMixup(t *testing.T) {
	b, err := baselines.New("dpa", baselines.Options{ImageSize: 16, Iterations: 1600, Raw: json.RawMessage(smallRaw)})
	if err != nil {
		t.Fatal(err)
	}
	d := b.(*DPA)
	defer d.free()
	if d.cfg.LRStepSize != 1000 {
		t.Fatalf("step size %d for 1600 iterations, want 1000", d.cfg.LRStepSize)
	}
	s := torch.NewScope()
	defer s.Close()
	for i, mixed := range []bool{false, true, true} {
		if _, err := d.TrainStep(s, baselines.Step{Iter: i + 1, X: trainBatch(s, 9), Mixup: mixed}); err != nil {
			t.Fatal(err)
		}
	}
	raw, _ := d.TrainingState()
	var st trainingState
	_ = json.Unmarshal(raw, &st)
	if st.Steps != 3 || st.LRSteps != 1 {
		t.Fatalf("state %s: want 3 steps, 1 LR step", raw)
	}
	// Resuming at 1000 non-mixup steps lands on the decayed rate.
	e := build(t, 16, smallRaw)
	e.cfg.LRStepSize = 1000
	e.newOptimizer()
	if err := e.Restore(d.OptimizerState(), json.RawMessage(`{"steps": 1200, "lr_steps": 1000}`)); err != nil {
		t.Fatal(err)
	}
	if !(math.Abs(e.LR()-8e-4) <= 1e-12) {
		t.Fatalf("lr after restore %v, want 8e-4", e.LR())
	}
	if len(e.OptimizerState()) != len(d.OptimizerState()) {
		t.Fatalf("restored %d optimizer tensors of %d", len(e.OptimizerState()), len(d.OptimizerState()))
	}
}

func TestAttachedHeadsTrainWithTheEncoder(t *testing.T) {
	d := build(t, 16, smallRaw)
	heads, _ := nn.NewStore(3)
	head := nn.NewLinear(heads, "head", 128, 2, nn.LinearConfig{})
	if err := d.AttachParams(heads.Trainable()); err != nil {
		t.Fatal(err)
	}
	before, _ := head.W.Float32s()
	s := torch.NewScope()
	defer s.Close()
	hook := func(z *torch.Tensor) (*torch.Tensor, map[string]float64, error) {
		return head.Forward(z).Square().Mean(), nil, nil
	}
	if _, err := d.TrainStep(s, baselines.Step{Iter: 1, X: trainBatch(s, 2), Hook: hook}); err != nil {
		t.Fatal(err)
	}
	after, _ := head.W.Float32s()
	if before[0] == after[0] {
		t.Error("the attached head was not updated")
	}
	if err := d.AttachParams(heads.Trainable()); err == nil {
		t.Error("attaching after training started was accepted")
	}
}

func TestRandomVGGIsLabelledAndCalibrated(t *testing.T) {
	d := build(t, 16, `{"vgg_random_init": true, "vgg_width_divisor": 16, "vgg_norm": "train-mean-std"}`)
	joined := strings.Join(d.Notes(), "\n")
	if !strings.Contains(joined, perceptual.RandomNote) || !strings.Contains(joined, "calibrate") {
		t.Fatalf("notes %q", joined)
	}
	s := torch.NewScope()
	defer s.Close()
	if err := d.Calibrate(trainBatch(s, 4)); err != nil {
		t.Fatal(err)
	}
	cfg := d.Config().(Config)
	if !cfg.VGGRandom || !cfg.Calibrated || !strings.Contains(strings.Join(cfg.Notes, "\n"), "measured on 2 training images") {
		t.Fatalf("config %+v", cfg)
	}
	// A stored Config rebuilds the same model.
	raw, _ := json.Marshal(cfg)
	b, err := baselines.New("dpa", baselines.Options{ImageSize: cfg.ImageSize, LatentDim: cfg.LatentDim, Seed: cfg.Seed, Raw: raw})
	if err != nil {
		t.Fatal(err)
	}
	e := b.(*DPA)
	defer e.free()
	w1, _ := d.vgg.Store().Get("features.0.weight").T.Float32s()
	w2, _ := e.vgg.Store().Get("features.0.weight").T.Float32s()
	if w1[0] != w2[0] || !e.vgg.Random || e.cfg.VGGWidthDivisor != 16 {
		t.Fatal("rebuilt model differs")
	}
	// With real weights calibration changes nothing.
	r := build(t, 16, smallRaw)
	before, _, _ := r.rp.Stats()
	if err := r.Calibrate(trainBatch(s, 4)); err != nil || r.rp.Calibrated {
		t.Fatalf("calibrated real VGG: %v", err)
	}
	after, _, _ := r.rp.Stats()
	if before[0][0] != after[0][0] || len(r.Notes()) != 1 {
		t.Fatalf("real VGG: stats changed or notes %q", r.Notes())
	}
}

// BenchmarkTrainStep measures one DPA update at the paper's batch 32 and
// 64x64, with a full-width (random) VGG19: go test -bench TrainStep -benchtime 5x
func BenchmarkTrainStep(b *testing.B) {
	m, err := baselines.New("dpa", baselines.Options{Raw: json.RawMessage(`{"vgg_random_init": true}`)})
	if err != nil {
		b.Fatal(err)
	}
	d := m.(*DPA)
	defer d.free()
	g, _ := torch.NewGenerator(0)
	x := torch.Rand(g, 32, 1, 64, 64).MulScalar(2).SubScalar(1)
	if err := d.Calibrate(x); err != nil {
		b.Fatal(err)
	}
	step := func(i int) {
		if err := torch.Run(func(s *torch.Scope) error {
			_, err := d.TrainStep(s, baselines.Step{Iter: i, X: x})
			return err
		}); err != nil {
			b.Fatal(err)
		}
	}
	step(0) // Adam state and allocator warm-up
	b.ResetTimer()
	for i := range b.N {
		step(i + 1)
	}
	b.ReportMetric(float64(32*b.N)/b.Elapsed().Seconds(), "img/s")
}

// BenchmarkScore measures test-time scoring of 32 images at 64x64.
func BenchmarkScore(b *testing.B) {
	m, err := baselines.New("dpa", baselines.Options{Raw: json.RawMessage(`{"vgg_random_init": true}`)})
	if err != nil {
		b.Fatal(err)
	}
	d := m.(*DPA)
	defer d.free()
	g, _ := torch.NewGenerator(0)
	x := torch.Rand(g, 32, 1, 64, 64).MulScalar(2).SubScalar(1)
	b.ResetTimer()
	for range b.N {
		if err := torch.Run(func(s *torch.Scope) error { return d.Score(s.AliasIn(x)).Err() }); err != nil {
			b.Fatal(err)
		}
	}
	b.ReportMetric(float64(32*b.N)/b.Elapsed().Seconds(), "img/s")
}

func TestVGGInitAndNormalisationOptions(t *testing.T) {
	// Defaults are resolved into the Config, so a model file names them.
	d := build(t, 16, `{"vgg_random_init": true, "vgg_width_divisor": 16}`)
	if d.cfg.VGGInit != string(DefaultRandomInit) || d.cfg.VGGNorm != string(DefaultRandomNorm) {
		t.Fatalf("random defaults: init %q norm %q", d.cfg.VGGInit, d.cfg.VGGNorm)
	}
	r := build(t, 16, smallRaw)
	if r.cfg.VGGNorm != string(perceptual.NormImageNet) || r.cfg.VGGInit != "" {
		t.Fatalf("real weights: init %q norm %q", r.cfg.VGGInit, r.cfg.VGGNorm)
	}
	for _, bad := range []struct{ raw, want string }{
		{fmt.Sprintf(`{"vgg_weights": %q, "vgg_width_divisor": 16, "vgg_norm": "train-rms"}`, fakeVGG), "only to a random VGG"},
		{fmt.Sprintf(`{"vgg_weights": %q, "vgg_width_divisor": 16, "vgg_init": "torchvision"}`, fakeVGG), "only to a random VGG"},
		{`{"vgg_random_init": true, "vgg_width_divisor": 16, "vgg_norm": "zscore"}`, "zscore"},
		{`{"vgg_random_init": true, "vgg_width_divisor": 16, "vgg_init": "orthogonal"}`, "orthogonal"},
	} {
		_, err := baselines.New("dpa", baselines.Options{ImageSize: 16, Raw: json.RawMessage(bad.raw)})
		if err == nil || !strings.Contains(err.Error(), bad.want) {
			t.Errorf("%s: error %v, want one naming %q", bad.raw, err, bad.want)
		}
	}

	s := torch.NewScope()
	defer s.Close()
	// ImageNet statistics on a random VGG: nothing is measured, and the notes say so.
	in := build(t, 16, `{"vgg_random_init": true, "vgg_width_divisor": 16, "vgg_init": "torchvision", "vgg_norm": "imagenet"}`)
	before, _, _ := in.rp.Stats()
	if err := in.Calibrate(trainBatch(s, 4)); err != nil {
		t.Fatal(err)
	}
	after, _, _ := in.rp.Stats()
	notes := strings.Join(in.Notes(), "\n")
	if in.rp.Calibrated || before[0][0] != after[0][0] || !strings.Contains(notes, perceptual.RandomNote) ||
		!strings.Contains(notes, "torchvision") || !strings.Contains(notes, "ImageNet statistics") {
		t.Fatalf("imagenet norm: calibrated %v, notes %q", in.rp.Calibrated, notes)
	}

	// RMS scaling: measured, uncentred, named in the notes, and a stored
	// Config rebuilds the same initialisation and normalisation.
	rms := build(t, 16, `{"vgg_random_init": true, "vgg_width_divisor": 16, "vgg_init": "torchvision", "vgg_norm": "train-rms"}`)
	if err := rms.Calibrate(trainBatch(s, 4)); err != nil {
		t.Fatal(err)
	}
	r32, _, _ := rms.rp.Stats()
	cfg := rms.Config().(Config)
	notes = strings.Join(cfg.Notes, "\n")
	if !rms.rp.Calibrated || r32[0][0] != 0 || cfg.CalibrationImages == 0 || !strings.Contains(notes, "root mean square") {
		t.Fatalf("train-rms: calibrated %v, mean %v, config %+v", rms.rp.Calibrated, r32[0][0], cfg)
	}
	raw, _ := json.Marshal(cfg)
	b, err := baselines.New("dpa", baselines.Options{ImageSize: cfg.ImageSize, LatentDim: cfg.LatentDim, Seed: cfg.Seed, Raw: raw})
	if err != nil {
		t.Fatal(err)
	}
	again := b.(*DPA)
	defer again.free()
	bias, _ := again.vgg.Store().Get("features.0.bias").T.Float32s()
	if again.cfg.VGGInit != "torchvision" || again.cfg.VGGNorm != "train-rms" || bias[0] != 0 {
		t.Fatalf("rebuilt: init %q norm %q bias %v", again.cfg.VGGInit, again.cfg.VGGNorm, bias[0])
	}
}

func TestOldModelFilesKeepTheirRandomMode(t *testing.T) {
	// A config stored before vgg_init/vgg_norm existed names neither.
	raw := `{"vgg_random_init": true, "vgg_width_divisor": 16, "vgg_random": true, "vgg_stats_calibrated": true, "vgg_calibration_images": 7}`
	b, err := baselines.New("dpa", baselines.Options{ImageSize: 16, Raw: json.RawMessage(raw), FrozenFromModelFile: true})
	if err != nil {
		t.Fatal(err)
	}
	d := b.(*DPA)
	defer d.free()
	notes := strings.Join(d.Notes(), "\n")
	if d.cfg.VGGInit != string(perceptual.InitPyTorchDefault) || d.cfg.VGGNorm != string(perceptual.NormTrainMeanStd) ||
		!strings.Contains(notes, perceptual.RandomNote) || !strings.Contains(notes, "measured on 7 training images") {
		t.Fatalf("init %q norm %q notes %q", d.cfg.VGGInit, d.cfg.VGGNorm, notes)
	}
}
