package phantom

import (
	"math"
	"math/rand/v2"
)

// canvas is a square float64 image addressed in normalised coordinates: x and y run from -1 to 1 across the
// field of view (y down). A pose (scale, rotation, shift) maps anatomy coordinates to the field of view, so
// every structure of one case moves together and the whole patient varies in position and orientation.
type canvas struct {
	n   int
	pix []float64
	// pose: field-of-view point = shift + scale * R(angle) * anatomy point
	scale, cos, sin, dx, dy float64
}

func newCanvas(n int, fill float64, scale, angleDeg, dx, dy float64) *canvas {
	c := &canvas{n: n, pix: make([]float64, n*n), scale: scale, dx: dx, dy: dy}
	a := angleDeg * math.Pi / 180
	c.cos, c.sin = math.Cos(a), math.Sin(a)
	for i := range c.pix {
		c.pix[i] = fill
	}
	return c
}

// pixelToAnatomy returns the anatomy coordinates of the centre of pixel (px, py).
func (c *canvas) pixelToAnatomy(px, py int) (float64, float64) {
	fx := (float64(px)+0.5)/float64(c.n)*2 - 1 - c.dx
	fy := (float64(py)+0.5)/float64(c.n)*2 - 1 - c.dy
	// inverse rotation, then inverse scale
	return (c.cos*fx + c.sin*fy) / c.scale, (-c.sin*fx + c.cos*fy) / c.scale
}

// pixelsPerUnit converts an anatomy length to pixels.
func (c *canvas) pixelsPerUnit() float64 { return c.scale * float64(c.n) / 2 }

// box returns the pixel rectangle covering an anatomy-space disc of the given centre and radius.
func (c *canvas) box(cx, cy, r float64) (x0, y0, x1, y1 int) {
	fx := c.dx + c.scale*(c.cos*cx-c.sin*cy)
	fy := c.dy + c.scale*(c.sin*cx+c.cos*cy)
	pr := r * c.pixelsPerUnit()
	px := (fx+1)/2*float64(c.n) - 0.5
	py := (fy+1)/2*float64(c.n) - 0.5
	x0 = max(0, int(math.Floor(px-pr))-1)
	y0 = max(0, int(math.Floor(py-pr))-1)
	x1 = min(c.n-1, int(math.Ceil(px+pr))+1)
	y1 = min(c.n-1, int(math.Ceil(py+pr))+1)
	return
}

// blob is an ellipse whose radius is modulated by a few harmonics, giving organ-like outlines.
type blob struct {
	cx, cy, rx, ry float64
	angle          float64 // radians
	harm           []harmonic
}

type harmonic struct{ k, amp, phase float64 }

// randomHarmonics gives an outline irregularity of about amp with harmonics 2..kmax.
func randomHarmonics(rng *rand.Rand, amp float64, kmax int) []harmonic {
	var h []harmonic
	for k := 2; k <= kmax; k++ {
		h = append(h, harmonic{float64(k), amp * (rng.Float64()*2 - 1) / math.Sqrt(float64(k-1)), rng.Float64() * 2 * math.Pi})
	}
	return h
}

// scaled returns the blob grown by factor f about its centre.
func (b blob) scaled(f float64) blob {
	b.rx *= f
	b.ry *= f
	return b
}

func (b blob) bound() float64 {
	m := 1.0
	for _, h := range b.harm {
		m += math.Abs(h.amp)
	}
	return math.Max(b.rx, b.ry) * m
}

// rho returns the normalised radius of anatomy point (x, y): < 1 inside, 1 on the outline; and the outline's
// radius along that direction in anatomy units (for soft edges of constant pixel width).
func (b blob) rho(x, y float64) (rho, radius float64) {
	ca, sa := math.Cos(b.angle), math.Sin(b.angle)
	u := ca*(x-b.cx) + sa*(y-b.cy)
	v := -sa*(x-b.cx) + ca*(y-b.cy)
	nu, nv := u/b.rx, v/b.ry
	r0 := math.Hypot(nu, nv)
	mod := 1.0
	var ct, st float64 = 1, 0
	if r0 > 0 {
		ct, st = nu/r0, nv/r0
	}
	if len(b.harm) > 0 {
		t := math.Atan2(nv, nu)
		for _, h := range b.harm {
			mod += h.amp * math.Cos(h.k*t+h.phase)
		}
		mod = math.Max(mod, 0.2)
	}
	return r0 / mod, mod * math.Hypot(b.rx*ct, b.ry*st)
}

// coverage returns how much of pixel-sized neighbourhoods at (x, y) lies inside the blob, with an edge
// ramp edgePx pixels wide (1 = a sharp, antialiased outline).
func (c *canvas) coverage(b blob, x, y, edgePx float64) float64 {
	r, rad := b.rho(x, y)
	d := (r - 1) * rad * c.pixelsPerUnit() // signed distance to the outline in pixels, approximately
	return clamp01(0.5 - d/edgePx)
}

// paint blends value into the blob. clip (if not nil) restricts it to the inside of another blob.
func (c *canvas) paint(b blob, edgePx float64, clip *blob, value func(x, y float64) float64) {
	x0, y0, x1, y1 := c.box(b.cx, b.cy, b.bound()+2*edgePx/c.pixelsPerUnit())
	for py := y0; py <= y1; py++ {
		for px := x0; px <= x1; px++ {
			x, y := c.pixelToAnatomy(px, py)
			a := c.coverage(b, x, y, edgePx)
			if a > 0 && clip != nil {
				a *= c.coverage(*clip, x, y, 1)
			}
			if a <= 0 {
				continue
			}
			i := py*c.n + px
			c.pix[i] += a * (value(x, y) - c.pix[i])
		}
	}
}

func (c *canvas) fill(b blob, edgePx float64, clip *blob, v float64) {
	c.paint(b, edgePx, clip, func(float64, float64) float64 { return v })
}

// add adds amount*profile(rho) inside the blob; profile falls from 1 at the centre to 0 at the outline.
func (c *canvas) add(b blob, clip *blob, amount float64, profile func(rho float64) float64) {
	x0, y0, x1, y1 := c.box(b.cx, b.cy, b.bound())
	for py := y0; py <= y1; py++ {
		for px := x0; px <= x1; px++ {
			x, y := c.pixelToAnatomy(px, py)
			r, _ := b.rho(x, y)
			if r >= 1 {
				continue
			}
			a := profile(r)
			if clip != nil {
				a *= c.coverage(*clip, x, y, 1)
			}
			c.pix[py*c.n+px] += amount * a
		}
	}
}

// Profiles for add: a projected ellipsoid (thickness through a solid body) and a smooth bump.
func ellipsoid(r float64) float64 { return math.Sqrt(math.Max(0, 1-r*r)) }
func bump(r float64) float64 {
	s := 1 - r*r
	return s * s
}

// noiseField returns an n x n field of smooth random values (roughly unit variance) made of octaves of value
// noise starting at cells x cells lattice cells, each octave halving the amplitude.
func noiseField(rng *rand.Rand, n, cells, octaves int) []float64 {
	out := make([]float64, n*n)
	amp := 1.0
	for o := 0; o < octaves; o++ {
		g := cells + 1
		lattice := make([]float64, g*g)
		for i := range lattice {
			lattice[i] = rng.NormFloat64()
		}
		step := float64(cells) / float64(n)
		for y := 0; y < n; y++ {
			fy := (float64(y) + 0.5) * step
			iy := min(int(fy), cells-1)
			ty := smooth(fy - float64(iy))
			for x := 0; x < n; x++ {
				fx := (float64(x) + 0.5) * step
				ix := min(int(fx), cells-1)
				tx := smooth(fx - float64(ix))
				a := lattice[iy*g+ix]*(1-tx) + lattice[iy*g+ix+1]*tx
				b := lattice[(iy+1)*g+ix]*(1-tx) + lattice[(iy+1)*g+ix+1]*tx
				out[y*n+x] += amp * (a*(1-ty) + b*ty)
			}
		}
		amp *= 0.5
		cells *= 2
		if cells > n {
			break
		}
	}
	return out
}

func smooth(t float64) float64 { return t * t * (3 - 2*t) }

// blur applies a separable Gaussian of standard deviation sigma pixels (edges clamped).
func blur(pix []float64, n int, sigma float64) {
	if sigma <= 0 {
		return
	}
	r := int(math.Ceil(3 * sigma))
	k := make([]float64, 2*r+1)
	var s float64
	for i := range k {
		d := float64(i - r)
		k[i] = math.Exp(-d * d / (2 * sigma * sigma))
		s += k[i]
	}
	for i := range k {
		k[i] /= s
	}
	tmp := make([]float64, len(pix))
	for y := 0; y < n; y++ {
		for x := 0; x < n; x++ {
			var a float64
			for i, w := range k {
				xx := min(max(x+i-r, 0), n-1)
				a += w * pix[y*n+xx]
			}
			tmp[y*n+x] = a
		}
	}
	for y := 0; y < n; y++ {
		for x := 0; x < n; x++ {
			var a float64
			for i, w := range k {
				yy := min(max(y+i-r, 0), n-1)
				a += w * tmp[yy*n+x]
			}
			pix[y*n+x] = a
		}
	}
}

// ctNoise adds reconstruction-like noise (Gaussian, slightly correlated so it has CT's grain rather than
// salt-and-pepper) of standard deviation sigma HU, and a few faint streaks through (sx, sy) in field-of-view
// coordinates, like the streaks dense bone throws across a CT slice.
func ctNoise(rng *rand.Rand, pix []float64, n int, sigma, streakHU float64, sx, sy float64) {
	noise := make([]float64, n*n)
	for i := range noise {
		noise[i] = rng.NormFloat64()
	}
	blur(noise, n, 0.6)
	// a Gaussian blur of 0.6 px keeps about 0.42 of the standard deviation; restore sigma
	for i := range pix {
		pix[i] += noise[i] * sigma / 0.42
	}
	streaks := 2 + rng.IntN(4)
	for s := 0; s < streaks; s++ {
		theta := rng.Float64() * math.Pi
		amp := streakHU * (rng.Float64()*2 - 1)
		nx, ny := -math.Sin(theta), math.Cos(theta)
		width := 0.6 + rng.Float64()
		for y := 0; y < n; y++ {
			fy := (float64(y)+0.5)/float64(n)*2 - 1
			for x := 0; x < n; x++ {
				fx := (float64(x)+0.5)/float64(n)*2 - 1
				d := ((fx-sx)*nx + (fy-sy)*ny) * float64(n) / 2
				if d > 4*width || d < -4*width {
					continue
				}
				pix[y*n+x] += amp * math.Exp(-d*d/(2*width*width))
			}
		}
	}
}

// insidePoint samples a point uniformly inside the blob shrunk to fraction f of its size.
func insidePoint(rng *rand.Rand, b blob, f float64) (float64, float64) {
	for range 1000 {
		x := b.cx + (rng.Float64()*2-1)*b.bound()
		y := b.cy + (rng.Float64()*2-1)*b.bound()
		if r, _ := b.rho(x, y); r < f {
			return x, y
		}
	}
	return b.cx, b.cy
}

func clamp01(v float64) float64 { return math.Min(1, math.Max(0, v)) }

func lerp(a, b, t float64) float64 { return a + (b-a)*t }

func uniform(rng *rand.Rand, lo, hi float64) float64 { return lo + (hi-lo)*rng.Float64() }
