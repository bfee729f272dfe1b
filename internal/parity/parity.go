// Package parity compares tensors computed here with the values a PyTorch
// reference generator (tools/reference/*.py) stored in a fixture, for the
// parity tests of every package: one rule for what "close" means, logged as
// OK / NOT OK per tensor.
//
// A tensor matches when its largest absolute difference from the reference,
// divided by the reference's largest magnitude, is at most the tolerance.
// NaN or Inf anywhere fails. A failure names the tensor and its worst element.
package parity

import (
	"math"
	"testing"

	"github.com/maddr-project/maddr/safetensors"
	"github.com/maddr-project/maddr/torch"
)

// Tol is the relative tolerance of a comparison unless a test needs another.
const Tol = 1e-4

// Diff is how far a result lies from its reference.
type Diff struct {
	// Worst is the largest absolute difference (NaN when an element is NaN
	// or both sides hold the same infinity), at element index At.
	Worst float64
	At    int
	// Got and Want are the two values at At.
	Got, Want float64
	// Scale is the reference's largest magnitude.
	Scale float64
}

// Relative is Worst relative to Scale (Scale is taken as at least 1e-12).
func (d Diff) Relative() float64 { return d.Worst / math.Max(d.Scale, 1e-12) }

// Within reports whether the relative difference is at most tol; NaN never is.
func (d Diff) Within(tol float64) bool { return d.Relative() <= tol }

// Measure finds the worst element of got against want (of equal length).
func Measure(got, want []float64) Diff {
	var d Diff
	for i := range want {
		d.Scale = math.Max(d.Scale, math.Abs(want[i]))
	}
	for i := range want {
		diff := math.Abs(got[i] - want[i])
		if diff > d.Worst || math.IsNaN(diff) {
			d.Worst, d.At, d.Got, d.Want = diff, i, got[i], want[i]
			if math.IsNaN(diff) {
				break
			}
		}
	}
	return d
}

// Check compares got with want at relative tolerance tol, logs OK with the
// relative difference or fails the test with NOT OK naming the tensor and
// its worst element, and reports whether it matched.
func Check(t testing.TB, name string, got, want []float64, tol float64) bool {
	t.Helper()
	if len(got) != len(want) {
		t.Errorf("NOT OK %s: %d values, want %d", name, len(got), len(want))
		return false
	}
	d := Measure(got, want)
	if !d.Within(tol) {
		t.Errorf("NOT OK %s: element %d is %.6g, PyTorch %.6g (max abs diff %.3g, relative %.3g > %g)",
			name, d.At, d.Got, d.Want, d.Worst, d.Relative(), tol)
		return false
	}
	t.Logf("OK %s (relative diff %.2g)", name, d.Relative())
	return true
}

// Tensor reads got and checks it against want, as Check does.
func Tensor(t testing.TB, name string, got *torch.Tensor, want []float64, tol float64) bool {
	t.Helper()
	if got == nil {
		t.Errorf("NOT OK %s: no tensor (missing gradient?)", name)
		return false
	}
	g, err := got.Float32s()
	if err != nil {
		t.Fatalf("%s: %v", name, err)
	}
	return Check(t, name, Float64s(g), want, tol)
}

// Value checks one number against its reference, as Check does.
func Value(t testing.TB, name string, got, want, tol float64) bool {
	t.Helper()
	return Check(t, name, []float64{got}, []float64{want}, tol)
}

// Entry is the fixture entry name of f as float64 values (from float32 or
// int64 storage); a missing entry fails the test at once.
func Entry(t testing.TB, f safetensors.File, name string) []float64 {
	t.Helper()
	st, ok := f.Tensors[name]
	if !ok {
		t.Fatalf("fixture has no %s", name)
	}
	return Values(st)
}

// Values widens a fixture tensor's elements to float64.
func Values(st safetensors.Tensor) []float64 {
	if st.I64 != nil {
		out := make([]float64, len(st.I64))
		for i, v := range st.I64 {
			out[i] = float64(v)
		}
		return out
	}
	return Float64s(st.F32)
}

// Float64s widens float32 values.
func Float64s(v []float32) []float64 {
	out := make([]float64, len(v))
	for i, x := range v {
		out[i] = float64(x)
	}
	return out
}

// MaxAbsDiff is the largest |a[i] - b[i]| of two results computed here (say
// a gradient with and without a hook), NaN when any difference is NaN.
func MaxAbsDiff(a, b []float32) float64 {
	return Measure(Float64s(a), Float64s(b)).Worst
}
