package parity

import (
	"fmt"
	"math"
	"strings"
	"testing"
)

// recorder is a testing.TB that keeps the failure message instead of failing.
type recorder struct {
	testing.TB
	failure string
}

func (r *recorder) Errorf(format string, a ...any) { r.failure = fmt.Sprintf(format, a...) }
func (r *recorder) Fatalf(format string, a ...any) { r.failure = fmt.Sprintf(format, a...) }
func (r *recorder) Logf(string, ...any)            {}

func TestCheckFailsOnNaNInfAndNamesTheWorstElement(t *testing.T) {
	want := []float64{1, -2, 0.5, 4}
	for _, c := range []struct {
		name    string
		got     []float64
		failure string // "" when the comparison must pass
	}{
		{"equal", []float64{1, -2, 0.5, 4}, ""},
		{"within", []float64{1, -2, 0.5, 4 + 3e-4}, ""},
		{"worst", []float64{1.01, -2, 0.4, 4}, "NOT OK x: element 2 is 0.4, PyTorch 0.5"},
		{"NaN", []float64{1, math.NaN(), 0.5, 4}, "NOT OK x: element 1 is NaN"},
		{"Inf", []float64{1, -2, 0.5, math.Inf(1)}, "NOT OK x: element 3 is +Inf"},
		{"length", []float64{1, -2}, "NOT OK x: 2 values, want 4"},
	} {
		r := &recorder{TB: t}
		ok := Check(r, "x", c.got, want, 1e-4)
		if ok != (c.failure == "") || !strings.HasPrefix(r.failure, c.failure) {
			t.Errorf("%s: ok %v, failure %q, want %q", c.name, ok, r.failure, c.failure)
		}
	}
	// NaN in the reference fails too, as does the same infinity on both sides.
	for _, w := range [][]float64{{math.NaN()}, {math.Inf(-1)}} {
		r := &recorder{TB: t}
		if Check(r, "y", []float64{w[0]}, w, 1e-4) {
			t.Errorf("%v matched itself", w)
		}
	}
	if r := (&recorder{TB: t}); !Value(r, "v", 0.5, 0.5, 0) {
		t.Errorf("equal values: %s", r.failure)
	}
}
