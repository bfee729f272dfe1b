package nn

import (
	"fmt"
	"math"
	"testing"

	"github.com/maddr-project/maddr/internal/parity"
	"github.com/maddr-project/maddr/safetensors"
	"github.com/maddr-project/maddr/torch"
)

// The fixture comes from tools/reference/nn_parity.py (PyTorch 1.13 on the
// same kernels); regenerate it with `make reference`.
const parityFixture = "testdata/parity_small_net.safetensors"

const parityTol = parity.Tol

// smallNet mirrors SmallNet in nn_parity.py layer for layer.
type smallNet struct {
	conv1, conv2, head *Conv2d
	bn1, bnFC          *BatchNorm
	fc1, fc2           *Linear
	deconv             *ConvTranspose2d
}

func newSmallNet(s *Store) *smallNet {
	return &smallNet{
		conv1:  NewConv2d(s, "conv1", 1, 8, 3, ConvConfig{Padding: 1, NoBias: true}),
		bn1:    NewBatchNorm(s, "bn1", 8),
		conv2:  NewConv2d(s, "conv2", 8, 8, 3, ConvConfig{Padding: 2, Dilation: 2, Groups: 2}),
		fc1:    NewLinear(s, "fc1", 128, 16, LinearConfig{NoBias: true}),
		bnFC:   NewBatchNorm(s, "bn_fc", 16),
		fc2:    NewLinear(s, "fc2", 16, 128, LinearConfig{}),
		deconv: NewConvTranspose2d(s, "deconv", 8, 4, 4, ConvConfig{Stride: 2, Padding: 1}),
		head:   NewConv2d(s, "head", 4, 1, 1, ConvConfig{NoBias: true}),
	}
}

func (n *smallNet) forward(x *torch.Tensor, train bool) *torch.Tensor {
	h := n.bn1.Forward(n.conv1.Forward(x), train).LeakyRelu(0.2)
	h = h.MaxPool2d(2, 2, 0, 1)
	h = n.conv2.Forward(h).Relu().AvgPool2d(2, 2, 0)
	z := n.fc2.Forward(n.bnFC.Forward(n.fc1.Forward(h.Flatten(1, -1)), train).Tanh())
	h = z.Reshape(-1, 8, 4, 4).UpsampleNearest2d(8, 8)
	h = n.deconv.Forward(h).Sigmoid()
	h = h.UpsampleBilinear2d(32, 32, false).AvgPool2d(2, 2, 0)
	return n.head.Forward(h)
}

func parityLoss(y, x *torch.Tensor) *torch.Tensor {
	d := y.Sub(x)
	return d.Abs().Mean().Add(d.Square().Mean().MulScalar(0.5))
}

// compare checks got against the fixture entry name, logging OK / NOT OK
// per tensor as llm.c does.
func compare(t *testing.T, f safetensors.File, name string, got *torch.Tensor) {
	t.Helper()
	parity.Tensor(t, name, got, parity.Entry(t, f, name), parityTol)
}

func loadParityNet(t *testing.T) (safetensors.File, *Store, *smallNet) {
	t.Helper()
	f, err := safetensors.ReadFile(parityFixture)
	if err != nil {
		t.Fatal(err)
	}
	s, err := NewStore(1)
	if err != nil {
		t.Fatal(err)
	}
	net := newSmallNet(s)
	if err := s.Err(); err != nil {
		t.Fatal(err)
	}
	for _, p := range s.All() {
		st, ok := f.Tensors["init."+p.Name]
		if !ok {
			t.Fatalf("fixture lacks init.%s", p.Name)
		}
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
	return f, s, net
}

func TestParityWithPyTorch(t *testing.T) {
	f, s, net := loadParityNet(t)
	defer s.Free()
	in := f.Tensors["input"]
	sc := torch.NewScope()
	defer sc.Close()
	x := sc.Adopt(torch.FromFloat32(in.F32, in.Shape...))
	xin := sc.Adopt(x.Clone()).SetRequiresGrad(true)
	y := net.forward(xin, true)
	loss := parityLoss(y, xin)
	if err := loss.Backward(); err != nil {
		t.Fatal(err)
	}
	compare(t, f, "output", y)
	compare(t, f, "loss", loss.Reshape(1))
	compare(t, f, "grad.input", sc.Adopt(xin.Grad()))
	for _, p := range s.Trainable() {
		compare(t, f, "grad."+p.Name, sc.Adopt(p.T.Grad()))
	}

	opt, err := NewAdam(s.Trainable(), AdamConfig{LR: 1e-2, WeightDecay: 1e-4})
	if err != nil {
		t.Fatal(err)
	}
	if err := opt.Step(); err != nil {
		t.Fatal(err)
	}
	for i := 0; i < 2; i++ {
		if err := opt.ZeroGrad(); err != nil {
			t.Fatal(err)
		}
		err := torch.Run(func(step *torch.Scope) error {
			x := step.AliasIn(x)
			return parityLoss(net.forward(x, true), x).Backward()
		})
		if err != nil {
			t.Fatal(err)
		}
		if err := opt.Step(); err != nil {
			t.Fatal(err)
		}
	}
	for _, p := range s.All() {
		compare(t, f, "adam3."+p.Name, p.T)
	}
	var eval *torch.Tensor
	if err := torch.NoGrad(func() error {
		eval = net.forward(x, false)
		return eval.Err()
	}); err != nil {
		t.Fatal(err)
	}
	compare(t, f, "eval_output", eval)
}

func TestOptimizersMatchPyTorch(t *testing.T) {
	f, err := safetensors.ReadFile(parityFixture)
	if err != nil {
		t.Fatal(err)
	}
	cases := map[string]func([]*Param) (Optimizer, error){
		"sgd":          func(ps []*Param) (Optimizer, error) { return NewSGD(ps, 0.05, 0.9, 0.01, false) },
		"sgd_nesterov": func(ps []*Param) (Optimizer, error) { return NewSGD(ps, 0.05, 0.9, 0, true) },
		"rmsprop": func(ps []*Param) (Optimizer, error) {
			return NewRMSprop(ps, RMSpropConfig{LR: 0.01, WeightDecay: 0.01})
		},
		"rmsprop_momentum": func(ps []*Param) (Optimizer, error) {
			return NewRMSprop(ps, RMSpropConfig{LR: 0.01, Momentum: 0.5})
		},
		"adam_betas": func(ps []*Param) (Optimizer, error) {
			return NewAdam(ps, AdamConfig{LR: 0.1, Beta1: 0, ZeroBeta1: true, Beta2: 0.9})
		},
	}
	cData := f.Tensors["quad.c"]
	p0 := f.Tensors["quad.p0"]
	for name, make := range cases {
		t.Run(name, func(t *testing.T) {
			s, _ := NewStore(0)
			p := s.NewParam("p", p0.Shape, nil)
			if err := p.CopyFrom(torch.FromFloat32(p0.F32, p0.Shape...)); err != nil {
				t.Fatal(err)
			}
			c := torch.FromFloat32(cData.F32, cData.Shape...)
			opt, err := make(s.Trainable())
			if err != nil {
				t.Fatal(err)
			}
			for i := 0; i < 3; i++ {
				if err := opt.ZeroGrad(); err != nil {
					t.Fatal(err)
				}
				err := torch.Run(func(sc *torch.Scope) error {
					pp := sc.AliasIn(p)
					return pp.Mul(pp).Mul(c).Sum().Backward()
				})
				if err != nil {
					t.Fatal(err)
				}
				if err := opt.Step(); err != nil {
					t.Fatal(err)
				}
			}
			compare(t, f, "quad."+name, p)
		})
	}
}

func TestStepLRAndClipping(t *testing.T) {
	s, _ := NewStore(0)
	p := s.NewParam("p", []int64{3}, Constant(1))
	opt, err := NewAdam(s.Trainable(), AdamConfig{LR: 1e-3})
	if err != nil {
		t.Fatal(err)
	}
	sched := NewStepLR(opt, 10000, 0.8)
	for i := 0; i < 13000; i++ {
		sched.Step()
	}
	if got := opt.LR(); !(math.Abs(got-8e-4) <= 1e-12) {
		t.Fatalf("lr after 13000 steps = %v, want 8e-4", got)
	}
	sched.SetCount(9999)
	if opt.LR() != 1e-3 {
		t.Fatalf("lr at 9999 = %v", opt.LR())
	}
	// gradient (3, 4, 0) has norm 5; clipping to 1 scales it by 1/5.
	err = torch.Run(func(sc *torch.Scope) error {
		w := sc.Adopt(torch.FromFloat32([]float32{3, 4, 0}, 3))
		return sc.AliasIn(p).Mul(w).Sum().Backward()
	})
	if err != nil {
		t.Fatal(err)
	}
	norm, err := ClipGradNorm(s.Trainable(), 1)
	if err != nil || !(math.Abs(norm-5) <= 1e-6) {
		t.Fatalf("norm %v err %v", norm, err)
	}
	g, _ := p.Grad().Float32s()
	if !(math.Abs(float64(g[0])-0.6) <= 1e-5) || !(math.Abs(float64(g[1])-0.8) <= 1e-5) {
		t.Fatalf("clipped grad %v", g)
	}
	if err := ClipGradValue(s.Trainable(), 0.7); err != nil {
		t.Fatal(err)
	}
	g, _ = p.Grad().Float32s()
	if !(math.Abs(float64(g[1])-0.7) <= 1e-6) {
		t.Fatalf("value-clipped grad %v", g)
	}
}

func TestInitialisersHaveTheRightSpread(t *testing.T) {
	s, _ := NewStore(3)
	shape := []int64{64, 32, 3, 3} // fan_in 288, fan_out 576
	cases := []struct {
		name    string
		init    Init
		wantStd float64
	}{
		{"default", DefaultWeight(), 1 / math.Sqrt(288) / math.Sqrt(3)},
		{"kaiming_normal_fan_out_lrelu", KaimingNormal(0.2, FanOut, "leaky_relu"), math.Sqrt(2/(1+0.04)) / math.Sqrt(576)},
		{"kaiming_uniform_relu", KaimingUniform(0, FanIn, "relu"), math.Sqrt2 / math.Sqrt(288)},
		{"xavier_uniform", XavierUniform(1), math.Sqrt(2.0 / (288 + 576))},
		{"normal", Normal(0, 0.02), 0.02},
	}
	for i, c := range cases {
		w := s.NewParam(fmt.Sprintf("w%d", i), shape, c.init)
		v, err := w.Float32s()
		if err != nil {
			t.Fatal(err)
		}
		var sum, sq float64
		for _, x := range v {
			sum += float64(x)
			sq += float64(x) * float64(x)
		}
		n := float64(len(v))
		std := math.Sqrt(sq/n - (sum/n)*(sum/n))
		if math.Abs(std-c.wantStd)/c.wantStd > 0.05 {
			t.Errorf("%s: std %.5f, want %.5f", c.name, std, c.wantStd)
		}
	}
	// Same seed, same weights.
	a, _ := NewStore(7)
	b, _ := NewStore(7)
	wa, _ := a.NewParam("w", []int64{10}, nil).Float32s()
	wb, _ := b.NewParam("w", []int64{10}, nil).Float32s()
	for i := range wa {
		if wa[i] != wb[i] {
			t.Fatal("same seed gave different initial weights")
		}
	}
}

// TestOptimizerClipping checks that ClipNorm rescales the gradient before the
// update: SGD with lr 1 on gradient (3, 4, 0) clipped to norm 1 moves the
// parameter by exactly (0.6, 0.8, 0).
func TestOptimizerClipping(t *testing.T) {
	s, _ := NewStore(0)
	p := s.NewParam("p", []int64{3}, Constant(1))
	opt, err := NewSGD(s.Trainable(), 1, 0, 0, false)
	if err != nil {
		t.Fatal(err)
	}
	opt.SetClipNorm(1)
	err = torch.Run(func(sc *torch.Scope) error {
		w := sc.Adopt(torch.FromFloat32([]float32{3, 4, 0}, 3))
		return sc.AliasIn(p).Mul(w).Sum().Backward()
	})
	if err != nil {
		t.Fatal(err)
	}
	if err := opt.Step(); err != nil {
		t.Fatal(err)
	}
	v, _ := p.Float32s()
	want := []float64{0.4, 0.2, 1}
	for i := range want {
		if !(math.Abs(float64(v[i])-want[i]) <= 1e-6) {
			t.Fatalf("clipped SGD step gave %v, want %v", v, want)
		}
	}
	a, err := NewAdam(s.Trainable(), AdamConfig{LR: 1, ClipNorm: 0.5})
	if err != nil {
		t.Fatal(err)
	}
	if a.clipNorm != 0.5 {
		t.Fatal("AdamConfig.ClipNorm not kept")
	}
	r, err := NewRMSprop(s.Trainable(), RMSpropConfig{LR: 1, ClipNorm: 0.25})
	if err != nil {
		t.Fatal(err)
	}
	if r.clipNorm != 0.25 {
		t.Fatal("RMSpropConfig.ClipNorm not kept")
	}
}
