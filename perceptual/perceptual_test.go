package perceptual

import (
	"fmt"
	"math"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/maddr-project/maddr/internal/parity"
	"github.com/maddr-project/maddr/nn"
	"github.com/maddr-project/maddr/safetensors"
	"github.com/maddr-project/maddr/torch"
)

// The fixtures come from tools/reference/dpa_fake_vgg.py and dpa_parity.py
// (PyTorch 1.13 on the same kernels).
const (
	fakeVGG    = "testdata/vgg19_div16.pth"
	rpFixture  = "testdata/rp_parity.safetensors"
	parityTol  = parity.Tol
	fakeDivide = 16
)

func smallVGG(t *testing.T) *VGG {
	t.Helper()
	v, err := NewVGG(Options{Weights: fakeVGG, WidthDivisor: fakeDivide})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(v.Free)
	return v
}

// compare checks got against want, logging OK / NOT OK per tensor.
func compare(t *testing.T, name string, got *torch.Tensor, want []float32) {
	t.Helper()
	parity.Tensor(t, name, got, parity.Float64s(want), parityTol)
}

func writeFile(t *testing.T, name string, data []byte) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), name)
	if err := os.WriteFile(p, data, 0o644); err != nil {
		t.Fatal(err)
	}
	return p
}

func TestWeightFileErrors(t *testing.T) {
	zipData, err := os.ReadFile(fakeVGG)
	if err != nil {
		t.Fatal(err)
	}
	legacy, err := os.ReadFile("../pthfile/testdata/small_legacy.pth")
	if err != nil {
		t.Fatal(err)
	}
	cases := []struct {
		name string
		opts Options
		want []string
	}{
		{"missing file", Options{Weights: filepath.Join(t.TempDir(), "nope.pth")}, []string{"no such file", WeightsURL, "--vgg-random-init"}},
		{"not configured", Options{}, []string{WeightsURL, "--vgg-weights", WeightsEnv, "--vgg-random-init"}},
		{"neither format", Options{Weights: writeFile(t, "x.pth", []byte("this is not a weights file at all"))}, []string{"neither a PyTorch .pth"}},
		{"truncated zip", Options{Weights: writeFile(t, "t.pth", zipData[:len(zipData)/2]), WidthDivisor: fakeDivide}, []string{"not a readable PyTorch zip archive"}},
		{"truncated legacy", Options{Weights: writeFile(t, "l.pth", legacy[:len(legacy)-9])}, []string{"truncated"}},
		{"real widths, small file", Options{Weights: fakeVGG}, []string{"wrong shape", "features.0.weight (file [4 3 3 3], VGG19 [64 3 3 3])"}},
		{"not a VGG", Options{Weights: "../pthfile/testdata/small_zip.pth", WidthDivisor: fakeDivide}, []string{"missing features.0.bias"}},
		{"bad divisor", Options{Weights: fakeVGG, WidthDivisor: 3}, []string{"does not divide"}},
	}
	t.Setenv(WeightsEnv, "")
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			v, err := NewVGG(c.opts)
			if err == nil {
				v.Free()
				t.Fatal("no error")
			}
			for _, w := range c.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error %q does not mention %q", err, w)
				}
			}
		})
	}
}

func TestWeightsFromEnvironment(t *testing.T) {
	t.Setenv(WeightsEnv, fakeVGG)
	v, err := NewVGG(Options{WidthDivisor: fakeDivide})
	if err != nil {
		t.Fatal(err)
	}
	defer v.Free()
	if v.Random || v.Source != fakeVGG {
		t.Fatalf("random %v source %q", v.Random, v.Source)
	}
}

// features runs the VGG on the parity fixture's target under NoGrad.
func features(t *testing.T, v *VGG, s *torch.Scope, f safetensors.File) (r32, r42 *torch.Tensor) {
	t.Helper()
	in := f.Tensors["target"]
	x := s.Adopt(torch.FromFloat32(in.F32, in.Shape...))
	if err := torch.NoGrad(func() error {
		r32, r42 = v.Features(x)
		return r42.Err()
	}); err != nil {
		t.Fatal(err)
	}
	return r32, r42
}

func TestSafetensorsWeightsMatchPth(t *testing.T) {
	v := smallVGG(t)
	named := map[string]*torch.Tensor{}
	for _, p := range v.Store().All() {
		named[p.Name] = p.T
	}
	file, err := nn.TensorsToFile(named)
	if err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(t.TempDir(), "vgg.safetensors")
	if err := safetensors.WriteFile(path, file); err != nil {
		t.Fatal(err)
	}
	w, err := NewVGG(Options{Weights: path, WidthDivisor: fakeDivide})
	if err != nil {
		t.Fatal(err)
	}
	defer w.Free()
	f, err := safetensors.ReadFile(rpFixture)
	if err != nil {
		t.Fatal(err)
	}
	s := torch.NewScope()
	defer s.Close()
	a, _ := features(t, v, s, f)
	b, _ := features(t, w, s, f)
	diff, err := a.Sub(b).Abs().Max().Item()
	if err != nil || diff != 0 {
		t.Fatalf("features differ by %v (%v)", diff, err)
	}
}

func TestRelativePerceptualLossMatchesPyTorch(t *testing.T) {
	f, err := safetensors.ReadFile(rpFixture)
	if err != nil {
		t.Fatal(err)
	}
	v := smallVGG(t)
	store, _ := nn.NewStore(0)
	loss, err := NewLoss(v, store)
	if err != nil {
		t.Fatal(err)
	}
	s := torch.NewScope()
	defer s.Close()
	r32, r42 := features(t, v, s, f)
	compare(t, "r32_target", r32, f.Tensors["r32_target"].F32)
	compare(t, "r42_target", r42, f.Tensors["r42_target"].F32)

	tg, rc := f.Tensors["target"], f.Tensors["recon"]
	target := s.Adopt(torch.FromFloat32(tg.F32, tg.Shape...)).SetRequiresGrad(true)
	recon := s.Adopt(torch.FromFloat32(rc.F32, rc.Shape...)).SetRequiresGrad(true)
	rp := loss.PerImage(target, recon)
	compare(t, "rp", rp, f.Tensors["rp"].F32)
	if err := rp.Sum().Backward(); err != nil {
		t.Fatal(err)
	}
	compare(t, "grad_recon", s.Adopt(recon.Grad()), f.Tensors["grad_recon"].F32)
	if g := target.Grad(); g != nil {
		t.Error("the target received a gradient; its VGG pass must not be recorded")
	}
	same, err := loss.PerImage(target, target).Max().Item()
	if err != nil || same != 0 {
		t.Errorf("RP(x, x) = %v (%v), want 0", same, err)
	}
}

func TestRandomInitIsSeededAndLabelled(t *testing.T) {
	a, err := NewVGG(Options{RandomInit: true, Seed: 5, WidthDivisor: 8})
	if err != nil {
		t.Fatal(err)
	}
	defer a.Free()
	b, _ := NewVGG(Options{RandomInit: true, Seed: 5, WidthDivisor: 8})
	defer b.Free()
	if !a.Random || !strings.Contains(a.Source, "random") {
		t.Fatalf("random VGG not labelled: %v %q", a.Random, a.Source)
	}
	wa, _ := a.Store().Get("features.21.weight").T.Float32s()
	wb, _ := b.Store().Get("features.21.weight").T.Float32s()
	var sq float64
	for i := range wa {
		if wa[i] != wb[i] {
			t.Fatal("same seed, different weights")
		}
		sq += float64(wa[i]) * float64(wa[i])
	}
	// PyTorch's default conv init: U(-1/sqrt(fan_in), 1/sqrt(fan_in)), fan_in = (512/8)*9.
	std, want := math.Sqrt(sq/float64(len(wa))), 1/math.Sqrt(3*64*9)
	if math.Abs(std-want)/want > 0.05 {
		t.Errorf("weight std %.4f, want %.4f", std, want)
	}
	for _, p := range a.Store().All() {
		if p.Trainable || p.T.RequiresGrad() {
			t.Fatalf("%s is not frozen", p.Name)
		}
	}
}

func TestCalibrateNormalisesTrainingFeatures(t *testing.T) {
	v, err := NewVGG(Options{RandomInit: true, Seed: 1, WidthDivisor: 8})
	if err != nil {
		t.Fatal(err)
	}
	defer v.Free()
	store, _ := nn.NewStore(0)
	loss, err := NewLoss(v, store)
	if err != nil {
		t.Fatal(err)
	}
	g, _ := torch.NewGenerator(3)
	s := torch.NewScope()
	defer s.Close()
	x := s.Adopt(torch.Rand(g, 40, 1, 16, 16)).MulScalar(2).SubScalar(1) // two chunks: 32 + 8
	before, _, _ := loss.Stats()
	if err := loss.Calibrate(x); err != nil {
		t.Fatal(err)
	}
	if !loss.Calibrated || loss.CalibrationImages != 40 {
		t.Fatalf("calibrated %v on %d images", loss.Calibrated, loss.CalibrationImages)
	}
	after, _, _ := loss.Stats()
	if after[0][0] == before[0][0] {
		t.Fatal("statistics unchanged")
	}
	// The normalised r32 features of the calibration images have mean ~0 and,
	// where the channel is alive, standard deviation ~1.
	var r32 *torch.Tensor
	_ = torch.NoGrad(func() error { r32, _ = v.Features(x); return nil })
	n := r32.Sub(loss.mean[0]).Div(loss.div[0])
	means, _ := n.MeanDims([]int64{0, 2, 3}, false).Float32s()
	stds, _ := n.Std([]int64{0, 2, 3}, false, false).Float32s()
	alive := 0
	for c := range means {
		if math.Abs(float64(means[c])) > 1e-3 {
			t.Errorf("channel %d: normalised mean %v", c, means[c])
		}
		if stds[c] > 0.1 {
			alive++
			if math.Abs(float64(stds[c])-1) > 1e-3 {
				t.Errorf("channel %d: normalised std %v", c, stds[c])
			}
		}
	}
	if alive == 0 {
		t.Error("no live channel")
	}
}

func TestLossLeavesNoTensorsBehind(t *testing.T) {
	v := smallVGG(t)
	store, _ := nn.NewStore(0)
	loss, err := NewLoss(v, store)
	if err != nil {
		t.Fatal(err)
	}
	g, _ := torch.NewGenerator(1)
	step := func() {
		err := torch.Run(func(s *torch.Scope) error {
			x := s.Adopt(torch.Rand(g, 2, 1, 16, 16))
			y := s.Adopt(torch.Rand(g, 2, 1, 16, 16)).SetRequiresGrad(true)
			return loss.Mean(x, y).Backward()
		})
		if err != nil {
			t.Fatal(err)
		}
	}
	step()
	torch.SettleFinalizers()
	live := torch.LiveTensors()
	for range 3 {
		step()
	}
	if got := torch.LiveTensors(); got != live {
		t.Fatalf("%d live tensors after 3 more steps, had %d", got, live)
	}
}

// TestConfiguredWeights loads the real-width weights named by
// $MADDR_VGG19_WEIGHTS when set (torchvision's file, or a fake from
// dpa_fake_vgg.py --full), and is skipped otherwise.
func TestConfiguredWeights(t *testing.T) {
	path := os.Getenv(WeightsEnv)
	if path == "" {
		t.Skip("$" + WeightsEnv + " not set")
	}
	v, err := NewVGG(Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer v.Free()
	s := torch.NewScope()
	defer s.Close()
	r32, r42 := v.Features(s.Adopt(torch.Zeros(1, 1, 64, 64)))
	if fmt.Sprint(r32.Shape(), r42.Shape()) != "[1 256 16 16] [1 512 8 8]" {
		t.Fatalf("feature shapes %v %v", r32.Shape(), r42.Shape())
	}
}

func TestTorchvisionInitIsKaimingFanOutWithZeroBiases(t *testing.T) {
	v, err := NewVGG(Options{RandomInit: true, Init: InitTorchvision, Seed: 5, WidthDivisor: 8})
	if err != nil {
		t.Fatal(err)
	}
	defer v.Free()
	if v.Init != InitTorchvision || !strings.Contains(v.Source, string(InitTorchvision)) {
		t.Fatalf("initialisation not recorded: %q %q", v.Init, v.Source)
	}
	w, _ := v.Store().Get("features.21.weight").T.Float32s()
	var sum, sq float64
	for _, x := range w {
		sum += float64(x)
		sq += float64(x) * float64(x)
	}
	n := float64(len(w))
	// kaiming_normal_(mode="fan_out", nonlinearity="relu"): std sqrt(2 / fan_out),
	// fan_out = (512/8) * 9; PyTorch's default would give 1/sqrt(3 * 64 * 9), 2.4x smaller.
	mean, std := sum/n, math.Sqrt(sq/n-(sum/n)*(sum/n))
	want := math.Sqrt(2.0 / (64 * 9))
	if math.Abs(std-want)/want > 0.05 || math.Abs(mean) > 3*want/math.Sqrt(n) {
		t.Errorf("weight mean %.5f std %.4f, want 0 and %.4f", mean, std, want)
	}
	for _, p := range v.Store().All() {
		if !strings.HasSuffix(p.Name, ".bias") {
			continue
		}
		b, _ := p.T.Float32s()
		for _, x := range b {
			if x != 0 {
				t.Fatalf("%s has %v, want zero biases", p.Name, x)
			}
		}
	}
}

func TestInitSchemeNeedsRandomWeights(t *testing.T) {
	if _, err := NewVGG(Options{Weights: "vgg.pth", Init: InitTorchvision}); err == nil || !strings.Contains(err.Error(), "random VGG") {
		t.Errorf("init scheme with a weights file: %v", err)
	}
	if _, err := NewVGG(Options{RandomInit: true, Init: "xavier", WidthDivisor: 8}); err == nil || !strings.Contains(err.Error(), "xavier") {
		t.Errorf("unknown init scheme: %v", err)
	}
	if _, err := ParseNormalisation("batch"); err == nil {
		t.Error("unknown normalisation accepted")
	}
}

func TestCalibrateRMSScalesWithoutCentring(t *testing.T) {
	v, err := NewVGG(Options{RandomInit: true, Seed: 1, WidthDivisor: 8})
	if err != nil {
		t.Fatal(err)
	}
	defer v.Free()
	store, _ := nn.NewStore(0)
	loss, err := NewLoss(v, store)
	if err != nil {
		t.Fatal(err)
	}
	g, _ := torch.NewGenerator(3)
	s := torch.NewScope()
	defer s.Close()
	x := s.Adopt(torch.Rand(g, 40, 1, 16, 16)).MulScalar(2).SubScalar(1)
	if err := loss.CalibrateWith(NormTrainRMS, x); err != nil {
		t.Fatal(err)
	}
	if !loss.Calibrated || loss.Norm != NormTrainRMS || loss.CalibrationImages != 40 {
		t.Fatalf("calibrated %v norm %q on %d images", loss.Calibrated, loss.Norm, loss.CalibrationImages)
	}
	r32, r42, _ := loss.Stats()
	for _, m := range append(append([]float32{}, r32[0]...), r42[0]...) {
		if m != 0 {
			t.Fatalf("mean %v: RMS scaling must not centre", m)
		}
	}
	// Every live channel's normalised features have mean square 1 on the
	// calibration images; their mean stays positive (ReLU outputs).
	var f32 *torch.Tensor
	_ = torch.NoGrad(func() error { f32, _ = v.Features(x); return nil })
	n := f32.Div(loss.div[0])
	ms, _ := n.Square().MeanDims([]int64{0, 2, 3}, false).Float32s()
	means, _ := n.MeanDims([]int64{0, 2, 3}, false).Float32s()
	alive := 0
	for c := range ms {
		if ms[c] > 0.01 {
			alive++
			if math.Abs(float64(ms[c])-1) > 1e-3 || means[c] <= 0 {
				t.Errorf("channel %d: normalised mean square %v, mean %v", c, ms[c], means[c])
			}
		}
	}
	if alive == 0 {
		t.Error("no live channel")
	}
	// ImageNet statistics need no measurement and stay as they are.
	before, _, _ := loss.Stats()
	if err := loss.CalibrateWith(NormImageNet, x); err != nil {
		t.Fatal(err)
	}
	after, _, _ := loss.Stats()
	if before[1][0] != after[1][0] {
		t.Error("imagenet normalisation changed the statistics")
	}
}
