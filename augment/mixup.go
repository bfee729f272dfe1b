package augment

import (
	"math"
	"math/rand/v2"
)

// MixupSchedule says on which training iterations mixup runs and with which Beta parameter. Iterations are
// numbered from 1 and the window is inclusive, as in the authors' code (7001..10000 of 16000).
type MixupSchedule struct {
	Start int     `json:"start"`
	End   int     `json:"end"`
	Alpha float64 `json:"alpha"` // lambda ~ Beta(Alpha, Alpha); 0 means 1 (uniform), the code's value
}

// DefaultMixup is the authors' schedule.
func DefaultMixup() MixupSchedule { return MixupSchedule{Start: 7001, End: 10000, Alpha: 1} }

// Active reports whether iteration iter (1-based) is a mixup iteration. The zero schedule is never active.
func (s MixupSchedule) Active(iter int) bool { return s.End > 0 && iter >= s.Start && iter <= s.End }

func (s MixupSchedule) alpha() float64 {
	if s.Alpha <= 0 {
		return 1
	}
	return s.Alpha
}

// Mix draws one lambda ~ Beta(alpha, alpha) and one permutation of the n images of batch (each pixels values
// long) and replaces the batch in place by x_mix[i] = lam*x[i] + (1-lam)*x[perm[i]], using the unmixed
// images on the right-hand side. It returns lam and perm, which the caller needs to mix the losses.
func (s MixupSchedule) Mix(batch []float32, n, pixels int, rng *rand.Rand) (lam float64, perm []int) {
	if len(batch) != n*pixels {
		panic("augment.Mix: batch length is not n*pixels") // a programming error, never user data
	}
	lam = Beta(rng, s.alpha(), s.alpha())
	perm = rng.Perm(n)
	orig := make([]float32, len(batch))
	copy(orig, batch)
	for i := 0; i < n; i++ {
		dst := batch[i*pixels : (i+1)*pixels]
		a := orig[i*pixels : (i+1)*pixels]
		b := orig[perm[i]*pixels : (perm[i]+1)*pixels]
		for k := range dst {
			dst[k] = float32(lam*float64(a[k]) + (1-lam)*float64(b[k]))
		}
	}
	return lam, perm
}

// Beta draws from the Beta(a, b) distribution (a, b > 0) as X/(X+Y) with X ~ Gamma(a), Y ~ Gamma(b).
// Beta(1, 1) is drawn directly as a uniform number, so the code's default costs one draw.
func Beta(rng *rand.Rand, a, b float64) float64 {
	if a == 1 && b == 1 {
		return rng.Float64()
	}
	x := Gamma(rng, a)
	y := Gamma(rng, b)
	if x+y == 0 {
		// Both underflowed (tiny shape parameters): the distribution piles up at 0 and 1.
		if rng.IntN(2) == 0 {
			return 0
		}
		return 1
	}
	return x / (x + y)
}

// Gamma draws from Gamma(shape, 1) with Marsaglia and Tsang's method; shapes below 1 use the boost
// Gamma(shape) = Gamma(shape+1) * U^(1/shape).
func Gamma(rng *rand.Rand, shape float64) float64 {
	if shape < 1 {
		u := rng.Float64()
		return Gamma(rng, shape+1) * math.Pow(u, 1/shape)
	}
	d := shape - 1.0/3
	c := 1 / math.Sqrt(9*d)
	for {
		x := rng.NormFloat64()
		v := 1 + c*x
		if v <= 0 {
			continue
		}
		v = v * v * v
		u := rng.Float64()
		if u < 1-0.0331*x*x*x*x || math.Log(u) < 0.5*x*x+d*(1-v+math.Log(v)) {
			return d * v
		}
	}
}
