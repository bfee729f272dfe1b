package maddr

import (
	"math"
	"testing"

	"github.com/maddr-project/maddr/internal/parity"
	"github.com/maddr-project/maddr/safetensors"
	"github.com/maddr-project/maddr/torch"
)

// Fixture from tools/reference/maddr_losses.py (literal PyTorch forms of
// paper eqs. 2-4 in float64); regenerate with `make reference`.
func readLossFixture(t *testing.T) safetensors.File {
	t.Helper()
	f, err := safetensors.ReadFile("testdata/losses.safetensors")
	if err != nil {
		t.Fatal(err)
	}
	return f
}

func tensorOf(s *torch.Scope, st safetensors.Tensor) *torch.Tensor {
	if st.I64 != nil {
		return s.Adopt(torch.FromInt64(st.I64, st.Shape...))
	}
	return s.Adopt(torch.FromFloat32(st.F32, st.Shape...))
}

func assertClose(t testing.TB, name string, got *torch.Tensor, want safetensors.Tensor, tol float64) {
	t.Helper()
	parity.Tensor(t, name, got, parity.Values(want), tol)
}

func TestFocalLossMatchesReference(t *testing.T) {
	f := readLossFixture(t)
	for _, name := range []string{"k2", "k3", "uniform"} {
		err := torch.Run(func(s *torch.Scope) error {
			logits := tensorOf(s, f.Tensors["focal."+name+".logits"]).SetRequiresGrad(true)
			y := tensorOf(s, f.Tensors["focal."+name+".targets"])
			alpha := f.Tensors["focal."+name+".alpha"].F32
			a := make([]float64, len(alpha))
			for i, v := range alpha {
				a[i] = float64(v)
			}
			loss := FocalLoss(logits, y, a, 2)
			if err := loss.Backward(); err != nil {
				return err
			}
			assertClose(t, "focal "+name, loss.Reshape(1), f.Tensors["focal."+name+".loss"], 1e-5)
			assertClose(t, "focal grad "+name, s.Adopt(logits.Grad()), f.Tensors["focal."+name+".grad"], 1e-5)
			return nil
		})
		if err != nil {
			t.Fatal(err)
		}
	}
	if got := AlphaVector(3, 0.25, false); got[0] != 0.25 || got[1] != 0.75 || got[2] != 0.75 {
		t.Fatalf("alpha vector %v", got)
	}
	if got := AlphaVector(2, 0.25, true); got[1] != 0.25 {
		t.Fatalf("uniform alpha %v", got)
	}
}

func TestCenterLossMatchesLeaveOneOutReference(t *testing.T) {
	f := readLossFixture(t)
	cases := map[string]func(*torch.Tensor) *torch.Tensor{
		"sum":  func(z *torch.Tensor) *torch.Tensor { return CenterLoss(z, SumDims) },
		"mean": func(z *torch.Tensor) *torch.Tensor { return CenterLoss(z, MeanDims) },
		"code": CodeCenterLoss,
	}
	for name, fn := range cases {
		err := torch.Run(func(s *torch.Scope) error {
			z := tensorOf(s, f.Tensors["center.z"]).SetRequiresGrad(true)
			loss := fn(z)
			if err := loss.Backward(); err != nil {
				return err
			}
			assertClose(t, "center "+name, loss.Reshape(1), f.Tensors["center."+name+".loss"], 1e-5)
			assertClose(t, "center grad "+name, s.Adopt(z.Grad()), f.Tensors["center."+name+".grad"], 1e-5)
			return nil
		})
		if err != nil {
			t.Fatal(err)
		}
	}
	if err := CenterLoss(torch.Zeros(1, 4), SumDims).Err(); err == nil {
		t.Fatal("center loss of a single sample must fail (leave-one-out is undefined)")
	}
}

// failureRecorder is a testing.TB that notes a failure instead of failing.
type failureRecorder struct {
	testing.TB
	failed bool
}

func (r *failureRecorder) Errorf(string, ...any) { r.failed = true }
func (r *failureRecorder) Fatalf(string, ...any) { r.failed = true }

// TestAssertCloseRejectsNaNAndInf makes sure the comparer above cannot be
// passed by a loss that has blown up: NaN compares false with everything, so
// a check written as "fail if diff > tol" would let it through.
func TestAssertCloseRejectsNaNAndInf(t *testing.T) {
	want := safetensors.Tensor{F32: []float32{0.5, -1.25}, Shape: []int64{2}}
	for _, c := range []struct {
		name string
		got  []float32
		fail bool
	}{
		{"equal", []float32{0.5, -1.25}, false},
		{"NaN", []float32{float32(math.NaN()), -1.25}, true},
		{"+Inf", []float32{0.5, float32(math.Inf(1))}, true},
		{"-Inf", []float32{float32(math.Inf(-1)), -1.25}, true},
		{"off", []float32{0.5, -1.3}, true},
	} {
		err := torch.Run(func(s *torch.Scope) error {
			r := &failureRecorder{TB: t}
			assertClose(r, c.name, s.Adopt(torch.FromFloat32(c.got, 2)), want, 1e-5)
			if r.failed != c.fail {
				t.Errorf("%s: assertClose failed = %v, want %v", c.name, r.failed, c.fail)
			}
			return nil
		})
		if err != nil {
			t.Fatal(err)
		}
	}
}
