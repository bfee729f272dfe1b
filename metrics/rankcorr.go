package metrics

import (
	"math"
	"sort"
)

// RankCorrelation is Spearman's rank correlation of the parallel scores x
// and y: the Pearson correlation of their ranks, tied values sharing their
// mean rank (rounding, as bf16 scoring does, makes ties common). It tells
// how far two scorings of the same images agree on their order without any
// label; ok is false when it is undefined (fewer than two pairs, or one side
// constant).
func RankCorrelation(x, y []float64) (r float64, ok bool) {
	if len(x) != len(y) || len(x) < 2 {
		return 0, false
	}
	rx, ry := ranks(x), ranks(y)
	mean := float64(len(x)+1) / 2
	var sxy, sxx, syy float64
	for i := range rx {
		dx, dy := rx[i]-mean, ry[i]-mean
		sxy += dx * dy
		sxx += dx * dx
		syy += dy * dy
	}
	if sxx == 0 || syy == 0 {
		return 0, false
	}
	return sxy / math.Sqrt(sxx*syy), true
}

// ranks gives each value its 1-based rank in v; equal values get the mean
// of the ranks they span.
func ranks(v []float64) []float64 {
	order := make([]int, len(v))
	for i := range order {
		order[i] = i
	}
	sort.SliceStable(order, func(a, b int) bool { return v[order[a]] < v[order[b]] })
	out := make([]float64, len(v))
	for start := 0; start < len(order); {
		end := start + 1
		for end < len(order) && v[order[end]] == v[order[start]] {
			end++
		}
		shared := float64(start+end+1) / 2 // mean of ranks start+1 .. end
		for _, i := range order[start:end] {
			out[i] = shared
		}
		start = end
	}
	return out
}
