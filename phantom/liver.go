package phantom

import (
	"math"
	"math/rand/v2"

	"github.com/maddr-project/maddr/medimg"
)

// HU values of the abdomen in the portal-venous phase (typical figures).
const (
	huAir    = -1000
	huFat    = -100
	huMuscle = 50
	huFluid  = 10
	huBone   = 700
	huMarrow = 220
)

// spine paints a vertebra (body, canal, posterior elements) and paraspinal muscles centred at (0, y).
func spine(c *canvas, rng *rand.Rand, y, size float64) {
	for _, s := range []float64{-1, 1} {
		c.fill(blob{cx: s * 0.12 * size, cy: y + 0.13*size, rx: 0.095 * size, ry: 0.07 * size, angle: s * 0.3}, 1.5, nil, huMuscle)
	}
	body := blob{cx: 0, cy: y, rx: 0.085 * size, ry: 0.075 * size, harm: randomHarmonics(rng, 0.03, 3)}
	c.fill(body, 1, nil, huBone)
	c.fill(body.scaled(0.8), 1.5, nil, huMarrow+uniform(rng, -40, 40))
	c.fill(blob{cx: 0, cy: y + 0.17*size, rx: 0.05 * size, ry: 0.04 * size}, 1, nil, huBone*0.8)
	c.fill(blob{cx: 0, cy: y + 0.115*size, rx: 0.032 * size, ry: 0.03 * size}, 1, nil, huFluid+5)
	c.fill(blob{cx: 0, cy: y + 0.23*size, rx: 0.018 * size, ry: 0.06 * size}, 1, nil, huBone*0.7)
}

// liverCT draws an axial abdominal CT slice at the level of the liver (HU).
func liverCT(rng *rand.Rand, n int, abnormal, hideAnomaly bool, difficulty float64) (medimg.Image, []Lesion) {
	// Anomalies draw from their own stream, taken first, so hiding them (hideAnomaly) leaves the rest intact.
	arng := rand.New(rand.NewPCG(rng.Uint64(), rng.Uint64()))
	c := newCanvas(n, huAir, uniform(rng, 0.88, 1.04), uniform(rng, -6, 6), uniform(rng, -0.05, 0.05), uniform(rng, -0.04, 0.06))
	tex := noiseField(rng, n, 6, 4)

	// Body outline, subcutaneous fat, muscle wall, abdominal cavity.
	body := blob{cx: 0, cy: 0.02, rx: uniform(rng, 0.78, 0.9), ry: uniform(rng, 0.56, 0.66), harm: randomHarmonics(rng, 0.03, 4)}
	c.fill(body, 1, nil, huFat+uniform(rng, -15, 15))
	fat := uniform(rng, 0.04, 0.14)
	wall := body
	wall.rx -= fat
	wall.ry -= fat * 0.8
	c.fill(wall, 1.2, nil, huMuscle-5)
	cavity := wall
	cavity.rx -= 0.04
	cavity.ry -= 0.035
	// Cavity: fat with soft-tissue strands (mesentery) whose amount varies between patients.
	visceralFat := uniform(rng, 0.2, 0.8)
	c.paint(cavity, 1.5, nil, func(x, y float64) float64 {
		return lerp(30, huFat, visceralFat) + 25*texAt(c, tex, x, y)
	})

	spineY := cavity.cy + cavity.ry - 0.27

	// Kidneys, seen at the lower liver levels (the slice level also shrinks the liver).
	level := rng.Float64() // 0 = dome of the liver, 1 = its lower tip
	if level > 0.35 {
		for _, s := range []float64{-1, 1} {
			k := blob{cx: s * uniform(rng, 0.24, 0.3), cy: spineY - 0.02, rx: uniform(rng, 0.05, 0.075), ry: uniform(rng, 0.08, 0.1), angle: s * uniform(rng, 0.2, 0.6), harm: randomHarmonics(rng, 0.05, 3)}
			c.fill(k, 1, &cavity, uniform(rng, 140, 190))
			c.fill(blob{cx: k.cx + s*0.02, cy: k.cy, rx: k.rx * 0.45, ry: k.ry * 0.5, angle: k.angle}, 1.5, &cavity, uniform(rng, 20, 60))
		}
	}
	// Spleen and stomach on the patient's left (image right).
	if rng.Float64() < 0.75 {
		c.fill(blob{cx: uniform(rng, 0.36, 0.46), cy: uniform(rng, 0.05, 0.2), rx: uniform(rng, 0.07, 0.13), ry: uniform(rng, 0.12, 0.2), angle: uniform(rng, -0.6, -0.2), harm: randomHarmonics(rng, 0.08, 3)}, 1, &cavity, uniform(rng, 100, 120))
	}
	stomach := blob{cx: uniform(rng, 0.15, 0.35), cy: uniform(rng, -0.3, -0.15), rx: uniform(rng, 0.1, 0.18), ry: uniform(rng, 0.08, 0.13), angle: uniform(rng, -0.5, 0.5), harm: randomHarmonics(rng, 0.1, 4)}
	c.fill(stomach, 1, &cavity, 45)
	gas := rng.Float64()
	c.paint(stomach.scaled(0.8), 1, &cavity, func(x, y float64) float64 {
		// Gas rises to the anterior (top) part, fluid settles below.
		if y < stomach.cy-stomach.ry*(0.8-1.6*gas) {
			return huAir
		}
		return huFluid + 10
	})
	// Bowel loops: small rings with gas, fluid or soft-tissue content.
	for range 2 + rng.IntN(6) {
		x, y := insidePoint(rng, cavity, 0.8)
		if y > spineY-0.1 {
			continue
		}
		r := uniform(rng, 0.03, 0.07)
		b := blob{cx: x, cy: y, rx: r, ry: r * uniform(rng, 0.7, 1.3), angle: rng.Float64() * 3, harm: randomHarmonics(rng, 0.1, 3)}
		c.fill(b, 1, &cavity, 40)
		content := []float64{huAir, huFluid, 30}[rng.IntN(3)]
		c.fill(b.scaled(0.7), 1, &cavity, content)
	}

	// Liver: right lobe on the image left, left lobe reaching across the midline at the upper levels.
	size := lerp(1.08, 0.6, level) * uniform(rng, 0.9, 1.1)
	right := blob{cx: cavity.cx - cavity.rx + 0.42*size, cy: uniform(rng, -0.05, 0.05), rx: 0.4 * size, ry: 0.44 * size, angle: uniform(rng, -0.5, -0.1), harm: randomHarmonics(rng, 0.07, 4)}
	liverHU := uniform(rng, 55, 75)
	liverTex := func(x, y float64) float64 { return liverHU + 5*texAt(c, tex, y, x) }
	c.paint(right, 1.2, &cavity, liverTex)
	left := blob{cx: right.cx + 0.35*size, cy: right.cy - 0.2*size, rx: 0.25 * size * (1.2 - level), ry: 0.13 * size, angle: uniform(rng, -0.4, 0.1), harm: randomHarmonics(rng, 0.1, 3)}
	if level < 0.7 {
		c.paint(left, 1.2, &cavity, liverTex)
	}
	// Gallbladder: a normal fluid-dense oval at the inferior surface, a hypodense look-alike of lesions.
	if level > 0.4 && rng.Float64() < 0.4 {
		x, y := insidePoint(rng, right, 0.9)
		c.fill(blob{cx: x, cy: y, rx: uniform(rng, 0.04, 0.08), ry: uniform(rng, 0.03, 0.05), angle: rng.Float64() * 3}, 1.2, &right, uniform(rng, 0, 20))
	}
	// Hepatic and portal vessels: enhanced round and elongated cross-sections.
	vesselHU := liverHU + uniform(rng, 40, 90)
	for range 6 + rng.IntN(10) {
		x, y := insidePoint(rng, right, 0.85)
		r := uniform(rng, 0.008, 0.03) * size
		elong := 1.0
		if rng.Float64() < 0.4 {
			elong = uniform(rng, 2, 5)
		}
		c.fill(blob{cx: x, cy: y, rx: r * elong, ry: r, angle: rng.Float64() * math.Pi}, 1.2, &right, vesselHU+uniform(rng, -15, 15))
	}

	// Spine and great vessels lie behind the peritoneum: drawn last so no organ covers them.
	spine(c, rng, spineY, 1)
	// Aorta and inferior vena cava.
	c.fill(blob{cx: uniform(rng, 0.02, 0.07), cy: spineY - 0.12, rx: 0.04, ry: 0.04}, 1, nil, uniform(rng, 150, 190))
	c.fill(blob{cx: uniform(rng, -0.12, -0.07), cy: spineY - 0.13, rx: 0.045, ry: 0.032}, 1, nil, uniform(rng, 110, 150))

	var lesions []Lesion
	if abnormal && !hideAnomaly {
		// Tumours: mostly hypodense, some hyperdense (close to vessel density), 1..4 of them.
		count := 1 + int(math.Floor(math.Pow(arng.Float64(), 1.8)*4))
		for range count {
			organ := right
			if level < 0.7 && arng.Float64() < 0.25 {
				organ = left
			}
			x, y := insidePoint(arng, organ, 0.7)
			r := lerp(0.11, 0.035, difficulty) * uniform(arng, 0.6, 1.4) * math.Sqrt(size)
			delta := lerp(75, 12, difficulty) * uniform(arng, 0.7, 1.3)
			if arng.Float64() < 0.3 {
				delta = -delta * 0.8
			}
			lesion := blob{cx: x, cy: y, rx: r, ry: r * uniform(arng, 0.7, 1.2), angle: arng.Float64() * math.Pi, harm: randomHarmonics(arng, 0.12, 5)}
			lesions = append(lesions, Lesion{RadiusPx: math.Max(lesion.rx, lesion.ry) * c.pixelsPerUnit(), Contrast: math.Abs(delta)})
			edge := lerp(1.5, 4, difficulty) * float64(n) / 128
			inner := arng.Float64() < 0.5
			c.paint(lesion, edge, &organ, func(px, py float64) float64 {
				// A heterogeneous interior; half the lesions show a slightly enhancing rim.
				v := liverHU - delta + 8*texAt(c, tex, px*3, py*3)
				if inner {
					if rr, _ := lesion.rho(px, py); rr > 0.75 {
						v += delta * 0.35
					}
				}
				return v
			})
		}
	}

	ctNoise(rng, c.pix, n, uniform(rng, 10, 20), uniform(rng, 8, 25), 0, 0.35)
	return ctImage(c.pix, n), lesions
}

// texAt samples a noise field at an anatomy point (wrapping), so textures move with the anatomy.
func texAt(c *canvas, tex []float64, x, y float64) float64 {
	px := int(math.Floor((x*0.5 + 0.5) * float64(c.n)))
	py := int(math.Floor((y*0.5 + 0.5) * float64(c.n)))
	px = ((px % c.n) + c.n) % c.n
	py = ((py % c.n) + c.n) % c.n
	return tex[py*c.n+px]
}
