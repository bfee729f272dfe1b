package metrics

import (
	"math"
	"math/rand/v2"
)

// BootstrapAUC is the 95% percentile interval of the AUC of scores against the abnormal labels over resamples
// that keep each class's count, drawn from a generator seeded with seed (the same seed gives the same interval).
// It is the spread of a score that has no training seeds to repeat, such as a training-free statistic.
func BootstrapAUC(scores []float64, abnormal []bool, resamples int, seed uint64) (lo, hi float64) {
	var pos, neg []int
	for i, a := range abnormal {
		if a {
			pos = append(pos, i)
		} else {
			neg = append(neg, i)
		}
	}
	rng := rand.New(rand.NewPCG(seed, 0x5eed))
	aucs := make([]float64, 0, resamples)
	s := make([]float64, len(scores))
	l := make([]bool, len(scores))
	for range resamples {
		k := 0
		for _, class := range [][]int{pos, neg} {
			for range class {
				i := class[rng.IntN(len(class))]
				s[k], l[k] = scores[i], abnormal[i]
				k++
			}
		}
		if a, err := AUC(s, l); err == nil {
			aucs = append(aucs, a)
		}
	}
	if len(aucs) == 0 {
		return math.NaN(), math.NaN()
	}
	return Percentile(aucs, 2.5), Percentile(aucs, 97.5)
}
