package perceptual

import (
	"math"
	"math/rand/v2"
	"testing"

	"github.com/maddr-project/maddr/torch"
)

// randomVGG is a narrow VGG (width / 8) with seeded random weights.
func randomVGG(t *testing.T) *VGG {
	t.Helper()
	v, err := NewVGG(Options{RandomInit: true, Seed: 3, WidthDivisor: 8})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(v.Free)
	return v
}

// inScope runs fn in a fresh scope and fails the test on its error.
func inScope(t *testing.T, fn func(s *torch.Scope) error) {
	t.Helper()
	if err := torch.Run(fn); err != nil {
		t.Fatal(err)
	}
}

func randomImages(s *torch.Scope, seed uint64, n, side int) *torch.Tensor {
	rng := rand.New(rand.NewPCG(seed, 1))
	xs := make([]float32, n*side*side)
	for i := range xs {
		xs[i] = 2*rng.Float32() - 1
	}
	return s.Adopt(torch.FromFloat32(xs, int64(n), 1, int64(side), int64(side)))
}

// featuresOf runs v on x under NoGrad (and under autocast to dtype unless
// it is Float32) and returns r32 and r42 as float32 values.
func featuresOf(t *testing.T, v *VGG, x *torch.Tensor, dtype torch.DType) (r32, r42 []float32) {
	t.Helper()
	run := func() error {
		return torch.NoGrad(func() error {
			return torch.Run(func(s *torch.Scope) error {
				a, b := v.Features(s.AliasIn(x))
				var err error
				if r32, err = a.Float32s(); err != nil {
					return err
				}
				r42, err = b.Float32s()
				return err
			})
		})
	}
	var err error
	if dtype == torch.Float32 {
		err = run()
	} else {
		err = torch.Autocast(dtype, run)
	}
	if err != nil {
		t.Fatal(err)
	}
	return r32, r42
}

func sameBits(t *testing.T, what string, got, want []float32) {
	t.Helper()
	if len(got) != len(want) {
		t.Fatalf("%s: %d values, want %d", what, len(got), len(want))
	}
	for i := range want {
		if math.Float32bits(got[i]) != math.Float32bits(want[i]) {
			t.Fatalf("%s[%d] = %v fused, %v as convolution then ReLU", what, i, got[i], want[i])
		}
	}
}

// The fused convolution+ReLU must give exactly the features of the two
// separate ops, in float32 and under bfloat16 autocast, for the batch size
// it was prepacked for and for others.
func TestFusedConvReLUFeaturesAreBitIdentical(t *testing.T) {
	v := randomVGG(t)
	inScope(t, func(s *torch.Scope) error {
		for _, dtype := range []torch.DType{torch.Float32, torch.BFloat16} {
			for _, n := range []int{4, 3} {
				x := randomImages(s, uint64(n), n, 32)
				v.NoFusion = true
				want32, want42 := featuresOf(t, v, x, dtype)
				v.NoFusion = false
				got32, got42 := featuresOf(t, v, x, dtype)
				sameBits(t, dtype.String()+" r32", got32, want32)
				sameBits(t, dtype.String()+" r42", got42, want42)
				if v.fused[fusedKey{h: 32, w: 32, dtype: dtype}] == nil {
					t.Fatalf("%v: no fused convolutions were built", dtype)
				}
			}
		}
		if len(v.fused) != 2 {
			t.Errorf("%d sets of fused convolutions, want one per element type (batch sizes share them)", len(v.fused))
		}
		return nil
	})
}

// Weights written through Store must reach the fused path, which holds
// prepacked copies of them.
func TestFusedConvReLUFollowsNewWeights(t *testing.T) {
	v := randomVGG(t)
	inScope(t, func(s *torch.Scope) error {
		x := randomImages(s, 9, 2, 16)
		before, _ := featuresOf(t, v, x, torch.Float32)
		w := v.Store().Get("features.0.weight").T
		if err := torch.NoGrad(func() error { return w.MulScalarInPlace(2) }); err != nil {
			return err
		}
		after, _ := featuresOf(t, v, x, torch.Float32)
		v.NoFusion = true
		want, _ := featuresOf(t, v, x, torch.Float32)
		sameBits(t, "r32 after new weights", after, want)
		same := true
		for i := range before {
			same = same && before[i] == after[i]
		}
		if same {
			t.Error("doubling conv1_1's weights left the features unchanged")
		}
		return nil
	})
}

// With autograd recording, the features keep their gradient (the fused op
// has none, so it must not be used).
func TestFeaturesKeepTheirGradientWithFusionOn(t *testing.T) {
	v := randomVGG(t)
	inScope(t, func(s *torch.Scope) error {
		x := randomImages(s, 5, 2, 16).SetRequiresGrad(true)
		_, r42 := v.Features(x)
		if err := r42.Sum().Backward(); err != nil {
			return err
		}
		g := x.Grad()
		if g == nil {
			t.Fatal("no gradient reached the images")
		}
		defer g.Free()
		vals, err := g.Float32s()
		if err != nil {
			return err
		}
		for _, f := range vals {
			if f != 0 {
				return nil
			}
		}
		t.Error("the images' gradient is all zero")
		return nil
	})
}
