package report

import (
	"fmt"
	"math"
	"math/rand/v2"
)

// TSNEOptions tune TSNE; the zero value gives the usual settings.
type TSNEOptions struct {
	// Perplexity is the effective number of neighbours each point keeps
	// (0: 30, lowered to (n-1)/3 for small inputs).
	Perplexity float64
	// Iterations of gradient descent (0: 1000).
	Iterations int
	// Seed fixes the random initial layout.
	Seed uint64
}

// The optimisation schedule of van der Maaten and Hinton (2008): exaggerated
// attractions and low momentum first, so clusters form before they settle.
const (
	exaggeration     = 12.0
	exaggerationIter = 250
	momentumEarly    = 0.5
	momentumLate     = 0.8
	minGain          = 0.01
)

// TSNE embeds the rows of x in 2-D with exact t-SNE (van der Maaten and
// Hinton, 2008): Gaussian neighbourhoods calibrated to a perplexity in the
// input, a Student-t kernel in the plane, and gradient descent on the
// Kullback-Leibler divergence with momentum and per-coordinate gains. The
// cost is O(n^2) per iteration, fine for the few hundred latents a report
// shows. The result is deterministic for a seed.
func TSNE(x [][]float64, o TSNEOptions) ([][2]float64, error) {
	if err := checkTSNEInput(x); err != nil {
		return nil, err
	}
	n := len(x)
	perp := o.Perplexity
	if perp <= 0 {
		perp = 30
	}
	perp = math.Min(perp, float64(n-1)/3)
	iters := o.Iterations
	if iters <= 0 {
		iters = 1000
	}

	p := affinities(x, perp)
	// The learning rate of Belkina et al. (2019), which scikit-learn uses
	// as "auto": large data sets need larger steps.
	lr := math.Max(float64(n)/exaggeration/4, 50)
	e := newLayout(n, o.Seed)
	for it := 0; it < iters; it++ {
		ex, mom := 1.0, momentumLate
		if it < exaggerationIter {
			ex, mom = exaggeration, momentumEarly
		}
		e.gradient(p, ex)
		e.descend(lr, mom)
	}
	return e.y, nil
}

// checkTSNEInput wants at least 4 rows of one length, all finite.
func checkTSNEInput(x [][]float64) error {
	n := len(x)
	if n < 4 {
		return fmt.Errorf("t-SNE needs at least 4 points, got %d", n)
	}
	d := len(x[0])
	for i, row := range x {
		if len(row) != d {
			return fmt.Errorf("t-SNE: row %d has %d values, row 0 has %d", i, len(row), d)
		}
		for _, v := range row {
			if math.IsNaN(v) || math.IsInf(v, 0) {
				return fmt.Errorf("t-SNE: row %d holds a non-finite value", i)
			}
		}
	}
	return nil
}

// layout is the embedding being optimised: the points y and, per
// coordinate, the momentum velocity, the adaptive gain and the gradient;
// num is scratch for the Student-t kernel (n x n).
type layout struct {
	n                  int
	y, vel, gain, grad [][2]float64
	num                []float64
}

// newLayout places n points at random near the origin (seeded), at rest
// and with unit gains.
func newLayout(n int, seed uint64) *layout {
	rng := rand.New(rand.NewPCG(seed, 0x74736e65))
	e := &layout{n: n, y: make([][2]float64, n), vel: make([][2]float64, n), gain: make([][2]float64, n),
		grad: make([][2]float64, n), num: make([]float64, n*n)}
	for i := range e.y {
		e.y[i] = [2]float64{rng.NormFloat64() * 1e-4, rng.NormFloat64() * 1e-4}
	}
	for i := range e.gain {
		e.gain[i] = [2]float64{1, 1}
	}
	return e
}

// gradient computes the KL divergence's gradient at y into grad, with the
// input affinities p exaggerated by ex.
func (e *layout) gradient(p []float64, ex float64) {
	n, y, num := e.n, e.y, e.num
	// Student-t kernel between all embedded points.
	var sum float64
	for i := 0; i < n; i++ {
		num[i*n+i] = 0
		for j := i + 1; j < n; j++ {
			dx, dy := y[i][0]-y[j][0], y[i][1]-y[j][1]
			v := 1 / (1 + dx*dx + dy*dy)
			num[i*n+j], num[j*n+i] = v, v
			sum += 2 * v
		}
	}
	for i := 0; i < n; i++ {
		var gx, gy float64
		for j := 0; j < n; j++ {
			if i == j {
				continue
			}
			w := (ex*p[i*n+j] - num[i*n+j]/sum) * num[i*n+j]
			gx += w * (y[i][0] - y[j][0])
			gy += w * (y[i][1] - y[j][1])
		}
		e.grad[i] = [2]float64{4 * gx, 4 * gy}
	}
}

// descend moves every point one momentum step down the gradient with
// learning rate lr and momentum mom, then centres the layout.
func (e *layout) descend(lr, mom float64) {
	n, y, vel, gain, grad := e.n, e.y, e.vel, e.gain, e.grad
	var mean [2]float64
	for i := 0; i < n; i++ {
		for k := 0; k < 2; k++ {
			// Gains grow where the gradient keeps its direction and shrink where it flips.
			if (grad[i][k] > 0) != (vel[i][k] > 0) {
				gain[i][k] += 0.2
			} else {
				gain[i][k] *= 0.8
			}
			gain[i][k] = math.Max(gain[i][k], minGain)
			vel[i][k] = mom*vel[i][k] - lr*gain[i][k]*grad[i][k]
			y[i][k] += vel[i][k]
			mean[k] += y[i][k]
		}
	}
	for i := range y {
		y[i][0] -= mean[0] / float64(n)
		y[i][1] -= mean[1] / float64(n)
	}
}

// affinities returns the symmetric joint probabilities p_ij (row-major n x n):
// each row's Gaussian bandwidth is found by bisection so that its
// conditional distribution has the wanted perplexity.
func affinities(x [][]float64, perp float64) []float64 {
	n := len(x)
	dist := make([]float64, n*n)
	for i := 0; i < n; i++ {
		for j := i + 1; j < n; j++ {
			var s float64
			for k := range x[i] {
				t := x[i][k] - x[j][k]
				s += t * t
			}
			dist[i*n+j], dist[j*n+i] = s, s
		}
	}
	target := math.Log(perp)
	cond := make([]float64, n*n)
	row := make([]float64, n)
	for i := 0; i < n; i++ {
		beta, lo, hi := 1.0, 0.0, math.Inf(1)
		// Distances are shifted by the row's nearest neighbour so exp()
		// never underflows to an all-zero row for far-away points.
		nearest := math.Inf(1)
		for j := 0; j < n; j++ {
			if j != i {
				nearest = math.Min(nearest, dist[i*n+j])
			}
		}
		for try := 0; try < 100; try++ {
			var sum, weighted float64
			for j := 0; j < n; j++ {
				if j == i {
					row[j] = 0
					continue
				}
				dd := dist[i*n+j] - nearest
				row[j] = math.Exp(-beta * dd)
				sum += row[j]
				weighted += dd * row[j]
			}
			// Shannon entropy (nats) of the row distribution.
			h := math.Log(sum) + beta*weighted/sum
			if math.Abs(h-target) < 1e-5 {
				break
			}
			if h > target {
				lo = beta
				if math.IsInf(hi, 1) {
					beta *= 2
				} else {
					beta = (beta + hi) / 2
				}
			} else {
				hi = beta
				beta = (beta + lo) / 2
			}
		}
		var sum float64
		for j := 0; j < n; j++ {
			sum += row[j]
		}
		for j := 0; j < n; j++ {
			cond[i*n+j] = row[j] / sum
		}
	}
	p := make([]float64, n*n)
	for i := 0; i < n; i++ {
		for j := 0; j < n; j++ {
			p[i*n+j] = math.Max((cond[i*n+j]+cond[j*n+i])/(2*float64(n)), 1e-12)
		}
	}
	return p
}

// NeighbourAgreement is the fraction of points whose k nearest neighbours in
// emb mostly share their label: a check that an embedding kept clusters.
func NeighbourAgreement(emb [][2]float64, labels []int, k int) float64 {
	n := len(emb)
	if n == 0 || k <= 0 {
		return 0
	}
	agree := 0
	type nb struct {
		d float64
		j int
	}
	for i := 0; i < n; i++ {
		best := make([]nb, 0, k+1)
		for j := 0; j < n; j++ {
			if j == i {
				continue
			}
			dx, dy := emb[i][0]-emb[j][0], emb[i][1]-emb[j][1]
			c := nb{dx*dx + dy*dy, j}
			if len(best) < k {
				best = append(best, c)
			} else if c.d < best[k-1].d {
				best[k-1] = c
			} else {
				continue
			}
			for m := len(best) - 1; m > 0 && best[m].d < best[m-1].d; m-- {
				best[m], best[m-1] = best[m-1], best[m]
			}
		}
		same := 0
		for _, b := range best {
			if labels[b.j] == labels[i] {
				same++
			}
		}
		if 2*same > len(best) {
			agree++
		}
	}
	return float64(agree) / float64(n)
}
