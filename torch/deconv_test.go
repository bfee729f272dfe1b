package torch

import (
	"fmt"
	"math"
	"slices"
	"testing"
)

// relativeError is max|a-b| / max|b|.
func relativeError(t *testing.T, a, b *Tensor) float64 {
	t.Helper()
	av, bv := mustF32(t, a), mustF32(t, b)
	if len(av) != len(bv) {
		t.Fatalf("%d values against %d", len(av), len(bv))
	}
	var diff, scale float64
	for i := range av {
		diff = math.Max(diff, math.Abs(float64(av[i])-float64(bv[i])))
		scale = math.Max(scale, math.Abs(float64(bv[i])))
	}
	return diff / scale
}

type deconvCase struct {
	batch, in, out, side, kernel int64
	opts                         ConvOptions
	bias                         bool
}

// deconvOutputs runs one transposed convolution forward and backward with the
// gradient path on or off and returns the output and the gradients of x, w
// (and b), all detached from the scope's graph.
func deconvOutputs(t *testing.T, s *Scope, c deconvCase, byGradient bool) []*Tensor {
	t.Helper()
	SetConvTransposeByGradient(byGradient)
	defer SetConvTransposeByGradient(true)
	g, err := NewGenerator(7)
	if err != nil {
		t.Fatal(err)
	}
	x := s.Adopt(Randn(g, c.batch, c.in, c.side, c.side)).SetRequiresGrad(true)
	w := s.Adopt(Randn(g, c.in, c.out/max(c.opts.Groups, 1), c.kernel, c.kernel)).SetRequiresGrad(true)
	var b *Tensor
	if c.bias {
		b = s.Adopt(Randn(g, c.out)).SetRequiresGrad(true)
	}
	y := x.ConvTranspose2d(w, b, c.opts)
	upstream := s.Adopt(Randn(g, y.Shape()...))
	if err := y.Mul(upstream).Sum().Backward(); err != nil {
		t.Fatal(err)
	}
	got := []*Tensor{s.Adopt(y.Detach()), x.Grad(), w.Grad()}
	if b != nil {
		got = append(got, b.Grad())
	}
	return got
}

// The gradient path must compute the same function, with the same
// gradients, as at::conv_transpose2d on every option it accepts.
func TestConvTransposeByGradientMatchesDirect(t *testing.T) {
	cases := []deconvCase{
		{batch: 8, in: 32, out: 16, side: 8, kernel: 4, opts: ConvOptions{Stride: [2]int64{2, 2}, Padding: [2]int64{1, 1}}},
		{batch: 9, in: 12, out: 8, side: 1, kernel: 4, opts: ConvOptions{}, bias: true},
		{batch: 8, in: 8, out: 10, side: 5, kernel: 3, opts: ConvOptions{Stride: [2]int64{2, 2}, Padding: [2]int64{1, 1}, OutputPadding: [2]int64{1, 1}}, bias: true},
		{batch: 8, in: 8, out: 16, side: 6, kernel: 3, opts: ConvOptions{Stride: [2]int64{2, 1}, Dilation: [2]int64{2, 2}, Groups: 2}},
	}
	for _, c := range cases {
		t.Run(fmt.Sprintf("%dx%dto%d_side%d_k%d_%+v", c.batch, c.in, c.out, c.side, c.kernel, c.opts), func(t *testing.T) {
			s := NewScope()
			defer s.Close()
			if !transposedByGradient(s.Adopt(Zeros(c.batch, c.in, c.side, c.side)), s.Adopt(Zeros(c.in, c.out/max(c.opts.Groups, 1), c.kernel, c.kernel)), c.opts.normalised()) {
				t.Fatal("the case does not take the gradient path; it tests nothing")
			}
			direct := deconvOutputs(t, s, c, false)
			viaGradient := deconvOutputs(t, s, c, true)
			names := []string{"output", "x gradient", "weight gradient", "bias gradient"}
			for i := range direct {
				if !slices.Equal(direct[i].Shape(), viaGradient[i].Shape()) {
					t.Fatalf("%s: shape %v, direct %v", names[i], viaGradient[i].Shape(), direct[i].Shape())
				}
				if e := relativeError(t, viaGradient[i], direct[i]); e > 1e-5 {
					t.Errorf("%s: relative error %.2g against at::conv_transpose2d", names[i], e)
				}
			}
		})
	}
}

// Below the thresholds the GEMM kernel runs, so both settings agree bit for bit.
func TestSmallTransposedConvolutionsKeepTheDirectKernel(t *testing.T) {
	for _, c := range []deconvCase{
		{batch: minBatchForGradientDeconv - 1, in: 16, out: 16, side: 4, kernel: 4, opts: ConvOptions{Stride: [2]int64{2, 2}, Padding: [2]int64{1, 1}}},
		{batch: 32, in: 16, out: minChannelsForGradientDeconv - 1, side: 4, kernel: 4, opts: ConvOptions{Stride: [2]int64{2, 2}, Padding: [2]int64{1, 1}}},
	} {
		s := NewScope()
		direct := deconvOutputs(t, s, c, false)
		other := deconvOutputs(t, s, c, true)
		for i := range direct {
			if e := relativeError(t, other[i], direct[i]); e != 0 {
				t.Errorf("batch %d, %d output channels: result %d differs (%.2g) although the direct kernel should run", c.batch, c.out, i, e)
			}
		}
		s.Close()
	}
}

// Under bfloat16 autocast libtorch 1.13 runs conv_transpose2d in float32,
// casting a bfloat16 input (the output of an autocast convolution) up; the
// gradient path must do the same.
func TestConvTransposeByGradientUnderAutocast(t *testing.T) {
	c := deconvCase{batch: 8, in: 32, out: 16, side: 8, kernel: 4, opts: ConvOptions{Stride: [2]int64{2, 2}, Padding: [2]int64{1, 1}}, bias: true}
	s := NewScope()
	defer s.Close()
	run := func(byGradient bool) *Tensor {
		SetConvTransposeByGradient(byGradient)
		defer SetConvTransposeByGradient(true)
		g, err := NewGenerator(3)
		if err != nil {
			t.Fatal(err)
		}
		x := s.Adopt(s.Adopt(Randn(g, c.batch, c.in, c.side, c.side)).To(BFloat16))
		w := s.Adopt(Randn(g, c.in, c.out, c.kernel, c.kernel))
		b := s.Adopt(Randn(g, c.out))
		var y *Tensor
		if err := Autocast(BFloat16, func() error {
			y = s.Adopt(x.ConvTranspose2d(w, b, c.opts))
			return y.Err()
		}); err != nil {
			t.Fatal(err)
		}
		if y.DType() != Float32 {
			t.Fatalf("by gradient %v: output %v, want float32 as autocast gives", byGradient, y.DType())
		}
		return y
	}
	direct, viaGradient := run(false), run(true)
	if e := relativeError(t, viaGradient, direct); e > 1e-5 {
		t.Errorf("relative error %.2g against autocast at::conv_transpose2d", e)
	}
}
