// Package perceptual computes DPA's relative perceptual L1 loss: images go
// through a frozen VGG19 (torchvision's ImageNet weights, up to conv4_2),
// the features at r32 and r42 are normalised per channel, and the loss is the
// L1 distance of the normalised features relative to the target's magnitude.
//
// The VGG weights are read directly from torchvision's vgg19-dcbb9e9d.pth (or
// any torch.save'd state_dict, or a .safetensors file with the same names).
// Without them a network can be built with random weights on explicit request
// (PyTorch's default initialisation or torchvision's VGG initialisation, see
// InitScheme); it is then labelled everywhere, and its features can be
// normalised with statistics measured on the training images instead of the
// ImageNet ones (see Normalisation and docs/vgg-calibration.md).
package perceptual

import (
	"errors"
	"fmt"
	"io"
	"os"
	"sort"
	"strings"
	"sync"
	"sync/atomic"

	"github.com/maddr-project/maddr/nn"
	"github.com/maddr-project/maddr/pthfile"
	"github.com/maddr-project/maddr/safetensors"
	"github.com/maddr-project/maddr/torch"
)

// WeightsEnv names the environment variable read when no weights path is given.
const WeightsEnv = "MADDR_VGG19_WEIGHTS"

// WeightsURL is where torchvision's ImageNet VGG19 weights are published.
const WeightsURL = "https://download.pytorch.org/models/vgg19-dcbb9e9d.pth"

// RandomNote must accompany every log line, report and model file produced
// with a randomly initialised perceptual network.
const RandomNote = "perceptual network has RANDOM weights: results are not the paper's"

// The ten convolutions conv1_1..conv4_2 of VGG19, by their index in
// torchvision's vgg19().features, and their output widths.
var (
	convIndex  = [10]int{0, 2, 5, 7, 10, 12, 14, 16, 19, 21}
	convWidths = [10]int64{64, 64, 128, 128, 256, 256, 256, 256, 512, 512}
)

// Positions in the conv list: a 2x2 max-pool follows conv1_2, conv2_2 and
// conv3_4; r32 is the ReLU after conv3_2 and r42 the ReLU after conv4_2.
const (
	convR32 = 5
	convR42 = 9
)

func poolAfter(i int) bool { return i == 1 || i == 3 || i == 7 }

// ImageNet normalisation applied to the [0, 1] image, as torchvision expects.
var (
	imagenetMean = [3]float32{0.485, 0.456, 0.406}
	imagenetStd  = [3]float32{0.229, 0.224, 0.225}
)

// InitScheme is how a random VGG's convolutions are initialised.
type InitScheme string

// Initialisation schemes of a random VGG.
const (
	// InitPyTorchDefault is nn.Conv2d's own initialisation: weights
	// U(+-1/sqrt(fan_in)) (kaiming_uniform_ with a = sqrt 5), biases
	// U(+-1/sqrt(fan_in)).
	InitPyTorchDefault InitScheme = "pytorch-default"
	// InitTorchvision is what torchvision's VGG constructor applies before
	// loading weights: kaiming_normal_(mode="fan_out", nonlinearity="relu")
	// weights and zero biases. Its features keep their scale through the
	// ReLUs, so they are much closer in size to the ImageNet statistics.
	InitTorchvision InitScheme = "torchvision"
)

// ParseInitScheme accepts "" (PyTorch's default) and the InitScheme names.
func ParseInitScheme(s string) (InitScheme, error) {
	switch InitScheme(s) {
	case "", InitPyTorchDefault:
		return InitPyTorchDefault, nil
	case InitTorchvision:
		return InitTorchvision, nil
	}
	return "", fmt.Errorf("perceptual: unknown VGG initialisation %q (want %s or %s)", s, InitPyTorchDefault, InitTorchvision)
}

// Options select the VGG19 weights.
type Options struct {
	// Weights is a .pth (torch.save zip or legacy format) or .safetensors
	// file; empty means $MADDR_VGG19_WEIGHTS.
	Weights string
	// RandomInit builds the network with random weights drawn from Seed
	// instead of reading weights. It must be asked for explicitly.
	RandomInit bool
	// Init is the random initialisation ("": InitPyTorchDefault). Only
	// valid with RandomInit.
	Init InitScheme
	Seed uint64
	// WidthDivisor divides every VGG width (0 or 1: VGG19's own). Only tests
	// use it, to run on small committed weight files.
	WidthDivisor int
	// FromModelFile builds the network without weights because the caller
	// copies them in from a model file (which stores the VGG it was trained with).
	FromModelFile bool
}

// WeightsPath is the weights file o names, falling back to $MADDR_VGG19_WEIGHTS.
func (o Options) WeightsPath() string {
	if o.Weights != "" {
		return o.Weights
	}
	return os.Getenv(WeightsEnv)
}

// VGG is VGG19's feature extractor up to r42, frozen.
type VGG struct {
	store  *nn.Store
	convs  [10]*nn.Conv2d
	widths [10]int64
	// Random is true when the weights are random (RandomNote applies).
	Random bool
	// Init is the initialisation of a random VGG (empty otherwise).
	Init InitScheme
	// Source says where the weights came from (a path, or the random seed).
	Source string
	// inScale and inShift map a [-1, 1] grey image to ImageNet-normalised
	// input per RGB channel, (1, 3, 1, 1).
	inScale, inShift *torch.Tensor

	// Without autograd (scoring, the target side of the loss) each
	// convolution and its ReLU run as one prepacked oneDNN primitive, built
	// per input size and element type on first use. NoFusion turns this off;
	// so does SetTraining(true).
	NoFusion bool
	training atomic.Bool
	fusedMu  sync.Mutex
	fused    map[fusedKey]*[10]*torch.ConvReLU
}

// SetTraining says whether the network now serves a training loop. While it
// does, no-grad passes (the target side of the loss) run convolution and
// ReLU as two ops: with DPA's target cache they run once per image, so
// fusing them saves well under 1 % of training time, while the prepacked
// weights and their oneDNN primitives held 40-65 MiB more peak memory in a
// DPA training process (BENCHMARKS.md). Turning training on drops them;
// scoring (SetTraining(false)) builds them again on first use.
func (v *VGG) SetTraining(on bool) {
	if !v.training.Swap(on) && on {
		v.dropFused()
	}
}

// PrepackedSets is the number of prepacked weight sets the fused path holds
// (one per image size and element type scored), for memory diagnostics.
func (v *VGG) PrepackedSets() int {
	v.fusedMu.Lock()
	defer v.fusedMu.Unlock()
	return len(v.fused)
}

// fusedKey identifies the prepacked convolutions for one input size and
// element type (the batch size may vary).
type fusedKey struct {
	h, w  int64
	dtype torch.DType
}

// NewVGG builds the network and loads its weights.
func NewVGG(o Options) (*VGG, error) {
	div := int64(o.WidthDivisor)
	if div <= 0 {
		div = 1
	}
	scheme, err := ParseInitScheme(string(o.Init))
	if err != nil {
		return nil, err
	}
	if o.Init != "" && !o.RandomInit {
		return nil, fmt.Errorf("perceptual: VGG initialisation %q applies only to a random VGG (weights are read from a file otherwise)", o.Init)
	}
	convCfg := nn.ConvConfig{Padding: 1}
	if scheme == InitTorchvision {
		convCfg.WeightInit = nn.KaimingNormal(0, nn.FanOut, "relu")
		convCfg.BiasInit = nn.Constant(0)
	}
	store, err := nn.NewStore(o.Seed)
	if err != nil {
		return nil, err
	}
	v := &VGG{store: store}
	in := int64(3)
	for i, idx := range convIndex {
		w := convWidths[i] / div
		if w < 1 || convWidths[i]%div != 0 {
			return nil, fmt.Errorf("perceptual: width divisor %d does not divide VGG19's widths", div)
		}
		v.widths[i] = w
		// The initialisation matters only in random mode; loaded weights overwrite it.
		v.convs[i] = nn.NewConv2d(store, fmt.Sprintf("features.%d", idx), in, w, 3, convCfg)
		in = w
	}
	if err := store.Err(); err != nil {
		store.Free()
		return nil, fmt.Errorf("perceptual: building VGG19: %w", err)
	}
	store.Freeze()
	// oneDNN convolves NHWC (channels-last) data without reordering it on
	// every call; on a 2-core AVX-512 machine that made VGG's forward ~25%
	// and forward+backward ~20% cheaper than NCHW. The weights are converted
	// once here; loading weights copies values into this layout.
	for _, c := range v.convs {
		if err := c.W.Relayout(torch.ChannelsLast); err != nil {
			store.Free()
			return nil, fmt.Errorf("perceptual: %w", err)
		}
	}
	scale, shift := make([]float32, 3), make([]float32, 3)
	for c := range 3 {
		// (0.5*x + 0.5 - mean) / std, folded into one multiply-add.
		scale[c] = 0.5 / imagenetStd[c]
		shift[c] = (0.5 - imagenetMean[c]) / imagenetStd[c]
	}
	v.inScale = torch.FromFloat32(scale, 1, 3, 1, 1)
	v.inShift = torch.FromFloat32(shift, 1, 3, 1, 1)

	path := o.WeightsPath()
	switch {
	case o.FromModelFile:
		v.Source = "model file"
	case o.RandomInit:
		v.Random, v.Init = true, scheme
		v.Source = fmt.Sprintf("random %s initialisation, seed %d", scheme, o.Seed)
	case path == "":
		v.Free()
		return nil, errors.New("perceptual: VGG19 weights are needed for the perceptual loss: download torchvision's " +
			WeightsURL + " and pass --vgg-weights FILE or set $" + WeightsEnv +
			" (a .safetensors file with the same tensor names works too); --vgg-random-init trains with a random VGG instead, " +
			"which is labelled everywhere because results are not the paper's")
	default:
		if err := v.load(path); err != nil {
			v.Free()
			return nil, err
		}
		v.Source = path
	}
	return v, nil
}

// Free releases the network's tensors.
func (v *VGG) Free() {
	v.dropFused()
	v.store.Free()
	v.inScale.Free()
	v.inShift.Free()
}

// Store holds the VGG parameters under torchvision's names (features.N.weight).
// A caller may write weights through it, so the prepacked copies of the
// weights are dropped and rebuilt on the next use.
func (v *VGG) Store() *nn.Store {
	v.dropFused()
	return v.store
}

func (v *VGG) dropFused() {
	v.fusedMu.Lock()
	defer v.fusedMu.Unlock()
	for _, packs := range v.fused {
		if packs != nil {
			for _, p := range packs {
				p.Free()
			}
		}
	}
	v.fused = nil
}

// prepacked returns the fused convolutions for a channels-last input x of
// dtype, or nil when they cannot be built for it (the caller then runs
// convolution and ReLU separately, with the same results).
func (v *VGG) prepacked(x *torch.Tensor, dtype torch.DType) *[10]*torch.ConvReLU {
	shape := x.Shape()
	key := fusedKey{h: shape[2], w: shape[3], dtype: dtype}
	v.fusedMu.Lock()
	defer v.fusedMu.Unlock()
	if packs, ok := v.fused[key]; ok {
		return packs
	}
	if v.fused == nil {
		v.fused = map[fusedKey]*[10]*torch.ConvReLU{}
	}
	packs := new([10]*torch.ConvReLU)
	in := []int64{shape[0], shape[1], shape[2], shape[3]}
	err := torch.Run(func(s *torch.Scope) error {
		for i, c := range v.convs {
			w, b := c.W, c.B
			if dtype != torch.Float32 {
				w, b = s.Adopt(w.To(dtype)), s.Adopt(b.To(dtype))
			}
			p, err := torch.NewConvReLU(w, b, c.Opts, in)
			if err != nil {
				return err
			}
			packs[i] = p
			in = []int64{in[0], v.widths[i], in[2], in[3]}
			if poolAfter(i) {
				in[2], in[3] = in[2]/2, in[3]/2
			}
		}
		return nil
	})
	if err != nil {
		for _, p := range packs {
			p.Free()
		}
		packs = nil
	}
	v.fused[key] = packs
	return packs
}

// Channels returns the widths of r32 and r42.
func (v *VGG) Channels() (r32, r42 int64) { return v.widths[convR32], v.widths[convR42] }

// Features returns r32 and r42 for a batch of grey (B x 1 x H x W) or RGB
// images with values in [-1, 1], stored channels-last (their shape is NCHW
// as usual; only the strides differ). Autograd records the pass unless it runs
// under NoGrad, so a loss on the features has a gradient with respect to the
// images (never to the frozen weights). Results join x's scope.
func (v *VGG) Features(x *torch.Tensor) (r32, r42 *torch.Tensor) {
	if err := x.Err(); err != nil {
		return x, x
	}
	if x.Dim() != 4 || (x.Size(1) != 1 && x.Size(1) != 3) {
		bad := torch.Failed(fmt.Errorf("perceptual: want images B x 1 x H x W or B x 3 x H x W, got %v", x.Shape()))
		return bad, bad
	}
	h := x
	// Each activation is freed as soon as the next one exists: under NoGrad
	// nothing else refers to it, and in training autograd keeps its own
	// reference to what backward needs. So a batch's activations do not pile
	// up in the caller's scope until it closes.
	next := func(t *torch.Tensor) {
		if h != x && h != r32 {
			h.Free()
		}
		h = t
	}
	// A grey image broadcasts to the three channels VGG expects.
	next(h.Mul(v.inScale))
	next(h.Add(v.inShift))
	next(h.ContiguousAs(torch.ChannelsLast))
	var packs *[10]*torch.ConvReLU
	if !v.NoFusion && !v.training.Load() && !torch.GradEnabled() {
		// Under autocast the convolutions compute in its element type; the
		// fused ones are given their input in it, as autocast would.
		dtype := torch.Float32
		if torch.AutocastEnabled() {
			dtype = torch.AutocastDType()
		}
		if dtype == torch.Float32 || dtype == torch.BFloat16 {
			if packs = v.prepacked(h, dtype); packs != nil && dtype != torch.Float32 {
				next(h.To(dtype))
			}
		}
	}
	for i, c := range v.convs {
		if packs != nil {
			next(packs[i].Forward(h))
		} else {
			next(c.Forward(h))
			next(h.Relu())
		}
		if i == convR32 {
			r32 = h
		}
		if i == convR42 {
			r42 = h
			break
		}
		if poolAfter(i) {
			next(h.MaxPool2d(2, 2, 0, 1))
		}
	}
	return r32, r42
}

// paramNames lists the tensors VGG needs from a weights file.
func (v *VGG) paramNames() []string { return v.store.Names() }

// load reads the weights at path into the network.
func (v *VGG) load(path string) error {
	if _, err := os.Stat(path); err != nil {
		return fmt.Errorf("perceptual: VGG19 weights %s: %w (torchvision's file is at %s; --vgg-random-init runs without it)", path, err, WeightsURL)
	}
	kind, err := sniff(path)
	if err != nil {
		return fmt.Errorf("perceptual: VGG19 weights: %w", err)
	}
	want := v.paramNames()
	var got map[string]pthfile.Tensor
	var shapes map[string][]int64
	switch kind {
	case "pth":
		got, shapes, err = pthfile.ReadFile(path, want)
	case "safetensors":
		got, shapes, err = readSafetensors(path, want)
	}
	if err != nil {
		return fmt.Errorf("perceptual: VGG19 weights: %w", err)
	}
	var missing, wrong []string
	for _, p := range v.store.All() {
		t, ok := got[p.Name]
		if !ok {
			if s, known := shapes[p.Name]; known {
				wrong = append(wrong, fmt.Sprintf("%s (file %v)", p.Name, s))
			} else {
				missing = append(missing, p.Name)
			}
			continue
		}
		if !sameShape(t.Shape, p.T.Shape()) {
			wrong = append(wrong, fmt.Sprintf("%s (file %v, VGG19 %v)", p.Name, t.Shape, p.T.Shape()))
			continue
		}
		src := torch.FromFloat32(t.Data, t.Shape...)
		err := p.T.CopyFrom(src)
		src.Free()
		if err != nil {
			return fmt.Errorf("perceptual: loading %s from %s: %w", p.Name, path, err)
		}
	}
	if len(missing)+len(wrong) > 0 {
		var parts []string
		if len(missing) > 0 {
			sort.Strings(missing)
			parts = append(parts, "missing "+strings.Join(missing, ", "))
		}
		if len(wrong) > 0 {
			sort.Strings(wrong)
			parts = append(parts, "wrong shape "+strings.Join(wrong, ", "))
		}
		return fmt.Errorf("perceptual: %s is not a VGG19 state_dict (want torchvision's vgg19 names features.N.weight/bias): %s",
			path, strings.Join(parts, "; "))
	}
	return nil
}

// readSafetensors reads the wanted float tensors of a .safetensors file.
func readSafetensors(path string, want []string) (map[string]pthfile.Tensor, map[string][]int64, error) {
	f, err := safetensors.ReadFile(path)
	if err != nil {
		return nil, nil, err
	}
	out := map[string]pthfile.Tensor{}
	shapes := map[string][]int64{}
	for name, t := range f.Tensors {
		shapes[name] = t.Shape
	}
	for _, name := range want {
		t, ok := f.Tensors[name]
		if !ok {
			continue
		}
		if t.F32 == nil {
			return nil, nil, fmt.Errorf("%s: %s is %s, not a floating-point tensor", path, name, t.DType)
		}
		out[name] = pthfile.Tensor{Shape: t.Shape, Data: t.F32}
	}
	return out, shapes, nil
}

func sameShape(a, b []int64) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if a[i] != b[i] {
			return false
		}
	}
	return true
}

// sniff classifies a weights file by its first bytes: "pth" or "safetensors".
func sniff(path string) (string, error) {
	f, err := os.Open(path)
	if err != nil {
		return "", err
	}
	defer f.Close()
	head := make([]byte, 16)
	n, _ := io.ReadFull(f, head)
	head = head[:n]
	switch {
	case pthfile.Detect(head) != pthfile.NotPTH:
		return "pth", nil
	case n >= 9 && head[8] == '{':
		return "safetensors", nil
	}
	return "", fmt.Errorf("%s: neither a PyTorch .pth file (zip or legacy) nor a .safetensors file", path)
}
