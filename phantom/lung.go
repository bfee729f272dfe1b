package phantom

import (
	"math"
	"math/rand/v2"

	"github.com/maddr-project/maddr/medimg"
)

// lungCT draws an axial chest CT slice through both lungs (HU, non-contrast).
func lungCT(rng *rand.Rand, n int, abnormal, hideAnomaly bool, difficulty float64) (medimg.Image, []Lesion) {
	// Anomalies draw from their own stream, taken first, so hiding them (hideAnomaly) leaves the rest intact.
	arng := rand.New(rand.NewPCG(rng.Uint64(), rng.Uint64()))
	c := newCanvas(n, huAir, uniform(rng, 0.88, 1.04), uniform(rng, -6, 6), uniform(rng, -0.05, 0.05), uniform(rng, -0.04, 0.06))
	tex := noiseField(rng, n, 8, 4)
	level := rng.Float64() // 0 = apices, 1 = lung bases

	body := blob{cx: 0, cy: 0.02, rx: uniform(rng, 0.8, 0.92), ry: uniform(rng, 0.55, 0.66), harm: randomHarmonics(rng, 0.03, 4)}
	c.fill(body, 1, nil, huFat+uniform(rng, -15, 15))
	fat := uniform(rng, 0.03, 0.1)
	wall := body
	wall.rx -= fat
	wall.ry -= fat * 0.8
	c.fill(wall, 1.2, nil, huMuscle-10)
	thorax := wall
	thorax.rx -= 0.05
	thorax.ry -= 0.045

	// Ribs in cross-section just inside the muscle wall.
	ribRing := wall.scaled(0.97)
	for s := 0; s < 2; s++ {
		for range 6 + rng.IntN(4) {
			t := uniform(rng, -math.Pi*0.95, math.Pi*0.95)
			if s == 1 {
				t = math.Pi - t
			}
			x := ribRing.cx + ribRing.rx*math.Cos(t)*0.96
			y := ribRing.cy + ribRing.ry*math.Sin(t)*0.96
			if math.Abs(x) < 0.12 {
				continue // no ribs over the sternum and spine
			}
			r := blob{cx: x, cy: y, rx: uniform(rng, 0.02, 0.035), ry: uniform(rng, 0.012, 0.02), angle: t + math.Pi/2}
			c.fill(r, 1, nil, huBone*0.85)
			c.fill(r.scaled(0.55), 1, nil, huMarrow)
		}
	}
	spineY := thorax.cy + thorax.ry - 0.22
	spine(c, rng, spineY, 0.95)

	// Lungs, with denser dependent (posterior) parenchyma.
	lungHU := uniform(rng, -880, -820)
	gravity := uniform(rng, 20, 70)
	lungs := make([]blob, 2)
	for i, s := range []float64{-1, 1} {
		l := blob{
			cx: s * uniform(rng, 0.34, 0.4), cy: thorax.cy + uniform(rng, -0.03, 0.03),
			rx: thorax.rx*0.45 - uniform(rng, 0, 0.03), ry: thorax.ry*0.88 - uniform(rng, 0, 0.04),
			angle: s * uniform(rng, -0.15, 0.1), harm: randomHarmonics(rng, 0.06, 4),
		}
		lungs[i] = l
		c.paint(l, 1.2, &thorax, func(x, y float64) float64 {
			return lungHU + gravity*(y-l.cy)/l.ry + 10*texAt(c, tex, x, y)
		})
	}

	// Mediastinum: heart towards the bases, great vessels and trachea towards the apices.
	heart := blob{cx: uniform(rng, 0.02, 0.12), cy: thorax.cy - 0.08, rx: lerp(0.1, 0.24, level), ry: lerp(0.09, 0.2, level), angle: uniform(rng, -0.5, 0), harm: randomHarmonics(rng, 0.05, 3)}
	c.fill(heart, 1.2, &thorax, uniform(rng, 35, 50))
	c.fill(blob{cx: uniform(rng, 0.08, 0.14), cy: spineY - 0.11, rx: 0.045, ry: 0.045}, 1, &thorax, 40)
	if level < 0.5 {
		c.fill(blob{cx: uniform(rng, -0.02, 0.02), cy: heart.cy - 0.05, rx: 0.055, ry: 0.05}, 1, nil, -100)
		c.fill(blob{cx: uniform(rng, -0.02, 0.02), cy: heart.cy - 0.05, rx: 0.045, ry: 0.04}, 1, nil, huAir+30)
	}

	// Vessels and airways: many small branches, thicker near the hilum, thinning to the periphery.
	for i, l := range lungs {
		hx := l.cx + []float64{1, -1}[i]*l.rx*0.55
		hy := l.cy - 0.02
		for range 40 + rng.IntN(40) {
			x, y := insidePoint(rng, l, 0.95)
			d := math.Hypot(x-hx, y-hy) / l.ry
			r := lerp(0.022, 0.004, math.Min(1, d)) * uniform(rng, 0.6, 1.3)
			elong := 1.0
			if rng.Float64() < 0.5 {
				elong = uniform(rng, 1.5, 4)
			}
			v := blob{cx: x, cy: y, rx: r * elong, ry: r, angle: math.Atan2(y-hy, x-hx)}
			c.fill(v, 1.2, &l, uniform(rng, 0, 50))
		}
		for range 3 + rng.IntN(6) {
			x, y := insidePoint(rng, blob{cx: hx, cy: hy, rx: l.rx * 0.6, ry: l.ry * 0.5}, 1)
			r := uniform(rng, 0.012, 0.025)
			a := blob{cx: x, cy: y, rx: r, ry: r}
			c.fill(a, 1, &l, -80)
			c.fill(a.scaled(0.65), 1, &l, huAir+20)
		}
	}

	// Normal look-alikes: dependent subpleural density (atelectasis) along the posterior lung edge.
	if rng.Float64() < 0.35 {
		l := lungs[rng.IntN(2)]
		band := blob{cx: l.cx, cy: l.cy + l.ry*0.85, rx: l.rx * 0.7, ry: l.ry * 0.18, angle: l.angle}
		c.add(band, &l, uniform(rng, 100, 300), bump)
	}

	var lesions []Lesion
	if abnormal && !hideAnomaly {
		// Ground-glass opacities, sometimes with consolidation, peripheral and posterior by preference.
		count := 1 + int(math.Floor(math.Pow(arng.Float64(), 1.5)*5))
		patchy := noiseField(arng, n, 10, 3)
		for range count {
			l := lungs[arng.IntN(2)]
			x, y := insidePoint(arng, l, 0.9)
			if arng.Float64() < 0.6 {
				x, y = insidePoint(arng, l, 0.9)
				y = math.Max(y, l.cy) // prefer the posterior half
			}
			r := lerp(0.18, 0.06, difficulty) * uniform(arng, 0.6, 1.4)
			rise := lerp(450, 80, difficulty) * uniform(arng, 0.7, 1.3)
			consolidate := arng.Float64() < 0.3*(1-difficulty)
			g := blob{cx: x, cy: y, rx: r, ry: r * uniform(arng, 0.6, 1.1), angle: arng.Float64() * math.Pi, harm: randomHarmonics(arng, 0.15, 5)}
			lesions = append(lesions, Lesion{RadiusPx: math.Max(g.rx, g.ry) * c.pixelsPerUnit(), Contrast: rise})
			x0, y0, x1, y1 := c.box(g.cx, g.cy, g.bound())
			for py := y0; py <= y1; py++ {
				for px := x0; px <= x1; px++ {
					ax, ay := c.pixelToAnatomy(px, py)
					rr, _ := g.rho(ax, ay)
					if rr >= 1 {
						continue
					}
					w := bump(rr) * c.coverage(l, ax, ay, 2) * clamp01(0.6+0.5*patchy[py*n+px])
					i := py*n + px
					add := rise * w
					if consolidate && rr < 0.5 {
						add = math.Max(add, (40-c.pix[i])*w)
					}
					// Opacity fills air spaces: it cannot push tissue above soft-tissue density.
					c.pix[i] = math.Min(c.pix[i]+add, math.Max(c.pix[i], 40))
				}
			}
		}
	}

	ctNoise(rng, c.pix, n, uniform(rng, 15, 30), uniform(rng, 10, 30), 0, 0.3)
	return ctImage(c.pix, n), lesions
}
