package phantom

import (
	"math"
	"math/rand/v2"
	"slices"

	"github.com/maddr-project/maddr/medimg"
)

// chestXray draws a posterior-anterior chest radiograph as a projection: attenuation line integrals of the
// body, lungs, heart, mediastinum, ribs and clavicles are summed, passed through quantum (Poisson-like)
// detector noise and blur, log-transformed and contrast-stretched to 8-bit grey levels (dense = bright).
func chestXray(rng *rand.Rand, n int, abnormal, hideAnomaly bool, difficulty float64) (medimg.Image, []Lesion) {
	// Anomalies draw from their own stream, taken first, so hiding them (hideAnomaly) leaves the rest intact.
	arng := rand.New(rand.NewPCG(rng.Uint64(), rng.Uint64()))
	c := newCanvas(n, 0, uniform(rng, 0.9, 1.05), uniform(rng, -4, 4), uniform(rng, -0.04, 0.04), uniform(rng, -0.03, 0.05))

	// Soft tissue of the trunk: thickest in the middle; neck and shoulders above.
	width := uniform(rng, 0.85, 0.98)
	c.add(blob{cx: 0, cy: 0.55, rx: width, ry: 1.7}, nil, 1.0, ellipsoid)
	c.add(blob{cx: 0, cy: -1.0, rx: 0.22, ry: 0.35}, nil, 0.5, ellipsoid)
	for _, s := range []float64{-1, 1} {
		// Arms and shoulders at the edges.
		c.add(blob{cx: s * (width + 0.03), cy: -0.2, rx: 0.12, ry: 1.0}, nil, 0.5, ellipsoid)
	}

	// Lung fields replace tissue by air, so they subtract; the diaphragm domes close them below.
	lungDepth := uniform(rng, 0.55, 0.75)
	var lungs []blob
	for _, s := range []float64{-1, 1} {
		l := blob{cx: s * uniform(rng, 0.38, 0.44), cy: uniform(rng, -0.12, -0.02), rx: uniform(rng, 0.27, 0.33), ry: uniform(rng, 0.52, 0.62), angle: s * uniform(rng, 0.0, 0.12), harm: randomHarmonics(rng, 0.06, 3)}
		if s > 0 {
			l.ry *= 0.95 // the left dome sits lower but the heart takes room
		}
		lungs = append(lungs, l)
		c.add(l, nil, -lungDepth, func(r float64) float64 { return math.Pow(ellipsoid(r), 0.6) })
	}
	// Heart (projecting mostly to the patient's left = image right), mediastinum and spine.
	heart := blob{cx: uniform(rng, 0.08, 0.16), cy: uniform(rng, 0.14, 0.22), rx: uniform(rng, 0.28, 0.36), ry: uniform(rng, 0.2, 0.26), angle: uniform(rng, -0.35, -0.1), harm: randomHarmonics(rng, 0.04, 3)}
	c.add(heart, nil, uniform(rng, 0.3, 0.4), ellipsoid)
	c.add(blob{cx: 0, cy: -0.3, rx: 0.12, ry: 0.7}, nil, 0.35, ellipsoid)
	c.add(blob{cx: 0.02, cy: -0.42, rx: 0.07, ry: 0.09}, nil, 0.15, ellipsoid) // aortic knob
	for y := -0.95; y < 1; y += 0.13 {
		c.add(blob{cx: 0, cy: y + uniform(rng, -0.01, 0.01), rx: 0.07, ry: 0.05}, nil, 0.12, bump)
	}
	// Hila and lung markings: vessels branching from the hila.
	for i, l := range lungs {
		hx := l.cx + []float64{1, -1}[i]*l.rx*0.55
		hy := l.cy + 0.05
		c.add(blob{cx: hx, cy: hy, rx: 0.07, ry: 0.11}, nil, 0.15, bump)
		for range 25 + rng.IntN(15) {
			x, y := insidePoint(rng, l, 0.9)
			d := math.Hypot(x-hx, y-hy)
			ln := uniform(rng, 0.06, 0.16)
			a := math.Atan2(y-hy, x-hx)
			c.add(blob{cx: x, cy: y, rx: ln, ry: lerp(0.02, 0.007, math.Min(1, d/0.5)), angle: a}, &l, uniform(rng, 0.04, 0.09), bump)
		}
	}

	// Posterior ribs: arcs leaving the spine and curving down laterally; anterior ribs fainter, sloping down
	// medially. Both are bands on ellipses.
	ribDensity := uniform(rng, 0.14, 0.22)
	first := uniform(rng, -0.78, -0.7)
	spacing := uniform(rng, 0.15, 0.18)
	for _, s := range []float64{-1, 1} {
		for k := range 10 {
			y := first + float64(k)*spacing
			rx := 0.42 + 0.04*float64(k)
			rib(c, 0.04*s, y+0.22, rx, 0.22, s, uniform(rng, 0.025, 0.032), ribDensity, true)
			rib(c, s*(rx*0.8), y+0.12, rx*0.7, 0.22, s, 0.025, ribDensity*0.45, false)
		}
		// Clavicle: a long bone from the sternum to the shoulder.
		c.add(blob{cx: s * 0.3, cy: -0.74 + uniform(rng, -0.03, 0.03), rx: 0.3, ry: 0.03, angle: s * uniform(rng, -0.25, -0.1)}, nil, 0.3, func(r float64) float64 { return math.Sqrt(ellipsoid(r)) })
	}

	var lesions []Lesion
	if abnormal && !hideAnomaly {
		strength := lerp(0.45, 0.07, difficulty)
		if arng.Float64() < 0.55 {
			// Patchy infiltrates, upper zones by preference (tuberculosis).
			patchy := noiseField(arng, n, 10, 3)
			for range 1 + arng.IntN(3) {
				l := lungs[arng.IntN(2)]
				x, y := insidePoint(arng, l, 0.8)
				if arng.Float64() < 0.7 {
					y = math.Min(y, l.cy-0.1)
				}
				r := lerp(0.22, 0.1, difficulty) * uniform(arng, 0.7, 1.3)
				g := blob{cx: x, cy: y, rx: r, ry: r * uniform(arng, 0.6, 1.2), harm: randomHarmonics(arng, 0.2, 5), angle: arng.Float64() * 3}
				x0, y0, x1, y1 := c.box(g.cx, g.cy, g.bound())
				amount := strength * uniform(arng, 0.7, 1.3)
				lesions = append(lesions, Lesion{RadiusPx: math.Max(g.rx, g.ry) * c.pixelsPerUnit(), Contrast: amount})
				for py := y0; py <= y1; py++ {
					for px := x0; px <= x1; px++ {
						ax, ay := c.pixelToAnatomy(px, py)
						if rr, _ := g.rho(ax, ay); rr < 1 {
							c.pix[py*n+px] += amount * bump(rr) * clamp01(0.5+0.6*patchy[py*n+px]) * c.coverage(l, ax, ay, 3)
						}
					}
				}
			}
		} else {
			// Nodules: round opacities about as dense as rib crossings and hilar vessels.
			for range 1 + arng.IntN(4) {
				l := lungs[arng.IntN(2)]
				x, y := insidePoint(arng, l, 0.85)
				r := lerp(0.08, 0.03, difficulty) * uniform(arng, 0.7, 1.3)
				nodule := blob{cx: x, cy: y, rx: r, ry: r * uniform(arng, 0.85, 1.15)}
				amount := strength * uniform(arng, 0.8, 1.4)
				c.add(nodule, nil, amount, ellipsoid)
				lesions = append(lesions, Lesion{RadiusPx: math.Max(nodule.rx, nodule.ry) * c.pixelsPerUnit(), Contrast: amount})
			}
		}
	}

	// Detector: quantum noise on the transmitted photon count, blur, log, contrast stretch.
	photons := uniform(rng, 800, 3000)
	mu := 2.2
	for i, a := range c.pix {
		count := photons * math.Exp(-mu*a)
		count = math.Max(1, count+math.Sqrt(count)*rng.NormFloat64())
		c.pix[i] = -math.Log(count / photons)
	}
	blur(c.pix, n, uniform(rng, 0.5, 1.1)*float64(n)/128)
	sorted := slices.Clone(c.pix)
	slices.Sort(sorted)
	lo := sorted[len(sorted)/100]
	hi := sorted[len(sorted)*995/1000]
	gamma := uniform(rng, 0.8, 1.2)
	black, white := uniform(rng, 0, 20), uniform(rng, 235, 255)
	out := make([]float32, len(c.pix))
	for i, v := range c.pix {
		t := math.Pow(clamp01((v-lo)/(hi-lo)), gamma)
		out[i] = float32(math.Round(black + (white-black)*t))
	}
	return medimg.Image{Width: n, Height: n, Pix: out, Kind: medimg.KindIntensity, Lo: 0, Hi: 255, Modality: "DX"}, lesions
}

// rib adds a band along the upper half of an ellipse centred at (cx, cy): posterior ribs (posterior=true)
// run from the medial top point outwards and down; anterior ribs from the lateral side down to the middle.
// side is -1 for the image left (patient right), +1 for the image right.
func rib(c *canvas, cx, cy, rx, ry, side, thick, density float64, posterior bool) {
	e := blob{cx: cx, cy: cy, rx: rx, ry: ry}
	x0, y0, x1, y1 := c.box(cx, cy, math.Max(rx, ry)+thick)
	for py := y0; py <= y1; py++ {
		for px := x0; px <= x1; px++ {
			x, y := c.pixelToAnatomy(px, py)
			if y > cy {
				continue // upper half only
			}
			dx := (x - cx) * side
			if posterior && dx < 0 || !posterior && dx > 0 {
				continue
			}
			r, rad := e.rho(x, y)
			d := (r - 1) * rad / thick // -1..1 across the band
			if d <= -1 || d >= 1 {
				continue
			}
			// Cortical bone makes the band's edges denser than its middle.
			p := math.Sqrt(1-d*d) * (0.7 + 0.3*d*d)
			// Fade out where the rib ends so there is no cut edge.
			t := math.Abs(x-cx) / rx
			if !posterior {
				t = 1 - t
			}
			c.pix[py*c.n+px] += density * p * clamp01((1-t)*6) * clamp01(t*8+0.2)
		}
	}
}
