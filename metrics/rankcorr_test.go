package metrics

import (
	"math"
	"testing"
)

// Spearman's correlation against values worked out by hand, ties included.
func TestRankCorrelation(t *testing.T) {
	for _, c := range []struct {
		name string
		x, y []float64
		want float64
	}{
		{"same order, other values", []float64{1, 2, 3, 4}, []float64{10, 20, 30, 40}, 1},
		{"reversed", []float64{1, 2, 3, 4}, []float64{4, 3, 2, 1}, -1},
		// ranks x 1 2 3 4, y 1 2 4 3: 1 - 6*2/(4*15) = 0.8
		{"one swap", []float64{1, 2, 3, 4}, []float64{1, 2, 4, 3}, 0.8},
		// y ranks 1.5 1.5 3 4 (a tie made by rounding): Pearson of the ranks
		// = 4.5 / sqrt(5 * 4.5)
		{"tie", []float64{1, 2, 3, 4}, []float64{5, 5, 6, 7}, 4.5 / math.Sqrt(5*4.5)},
	} {
		got, ok := RankCorrelation(c.x, c.y)
		if !ok || math.Abs(got-c.want) > 1e-12 {
			t.Errorf("%s: got %g (defined %v), want %g", c.name, got, ok, c.want)
		}
	}
	if r, ok := RankCorrelation([]float64{1}, []float64{1}); ok {
		t.Errorf("one value: got %g, want undefined", r)
	}
	if r, ok := RankCorrelation([]float64{1, 2}, []float64{3, 3}); ok {
		t.Errorf("constant side: got %g, want undefined", r)
	}
}
