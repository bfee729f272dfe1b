package e2e

import (
	"fmt"
	"math"
	"math/rand/v2"
	"testing"

	"github.com/maddr-project/maddr/dataset"
	"github.com/maddr-project/maddr/medimg"
)

// The generated set: three organ/modality groups with distinct looks, so the
// MADDR heads have something to learn (3 organs, 2 modalities), drawn as
// 8-bit-range intensity images of side genSize that preprocessing maps
// linearly from [0, 255] to [-1, 1] without resizing.
//
//   - liver/ct: a grey body ellipse with a large brighter "liver" ellipse on
//     the image's left;
//   - lung/ct: a grey body ellipse with two dark "lung" ellipses;
//   - chest/xray: a background that darkens from bottom to top, two mid-grey
//     lung fields and a bright vertical spine.
//
// Every image adds a smooth random field (a low-frequency cosine of random
// phase and orientation, amplitude genFieldAmp), random jitter of every
// shape's centre and radii, and mild pixel noise. An abnormal image is a
// normal one plus a disk of radius 3-5 pixels (soft 1-pixel rim) somewhere in
// the central half of the image, of grey level genLesionBright where the
// pixel under its centre is darker than mid-grey and genLesionDark elsewhere:
// values no normal structure has, at least genLesionContrast grey levels
// from what they cover, an anomaly no detector that learned anything misses.
const (
	genSize           = 32
	genFieldAmp       = 10
	genNoise          = 2
	genLesionBright   = 235
	genLesionDark     = 20
	genLesionContrast = 100
)

// genGroup is one organ/modality group of the generated set.
type genGroup struct {
	organ, modality string
	draw            func(r *rand.Rand, pix []float32)
}

var genGroups = []genGroup{
	{"liver", "ct", func(r *rand.Rand, pix []float32) {
		fillEllipse(pix, 16+jitter(r, 1), 16+jitter(r, 1), 14+jitter(r, 1), 12+jitter(r, 1), 105)
		fillEllipse(pix, 12+jitter(r, 2), 15+jitter(r, 2), 8+jitter(r, 1), 7+jitter(r, 1), 170)
	}},
	{"lung", "ct", func(r *rand.Rand, pix []float32) {
		fillEllipse(pix, 16+jitter(r, 1), 16+jitter(r, 1), 14+jitter(r, 1), 12+jitter(r, 1), 120)
		fillEllipse(pix, 10+jitter(r, 1), 16+jitter(r, 1), 4+jitter(r, 1), 8+jitter(r, 1), 35)
		fillEllipse(pix, 22+jitter(r, 1), 16+jitter(r, 1), 4+jitter(r, 1), 8+jitter(r, 1), 35)
	}},
	{"chest", "xray", func(r *rand.Rand, pix []float32) {
		top, bottom := 50+jitter(r, 10), 150+jitter(r, 10)
		for y := 0; y < genSize; y++ {
			v := top + (bottom-top)*float64(y)/(genSize-1)
			for x := 0; x < genSize; x++ {
				pix[y*genSize+x] = float32(v)
			}
		}
		fillEllipse(pix, 9+jitter(r, 1), 15+jitter(r, 1), 5+jitter(r, 1), 10+jitter(r, 1), 85)
		fillEllipse(pix, 23+jitter(r, 1), 15+jitter(r, 1), 5+jitter(r, 1), 10+jitter(r, 1), 85)
		cx := 16 + jitter(r, 1)
		for y := 0; y < genSize; y++ {
			for x := 0; x < genSize; x++ {
				if math.Abs(float64(x)+0.5-cx) < 1.5 {
					pix[y*genSize+x] = 210
				}
			}
		}
	}},
}

// genCounts are the images per group: normal training images, and per
// label (normal and abnormal alike) in validation and in test.
type genCounts struct{ train, val, test int }

// generate draws the data set for seed; the same seed gives the same set.
func generate(seed uint64, n genCounts) []dataset.Sample {
	r := rand.New(rand.NewPCG(seed, 0x65326573796e))
	var out []dataset.Sample
	add := func(g genGroup, split dataset.Split, label dataset.Label, i int) {
		pix := make([]float32, genSize*genSize)
		g.draw(r, pix)
		addField(r, pix)
		if label == dataset.Abnormal {
			addLesion(r, pix)
		}
		for i, v := range pix {
			pix[i] = float32(math.Min(255, math.Max(0, float64(v)+r.NormFloat64()*genNoise)))
		}
		id := fmt.Sprintf("%s-%s-%s-%s-%03d", g.organ, g.modality, split, label, i)
		img := &medimg.Image{Width: genSize, Height: genSize, Pix: pix, Source: id, Kind: medimg.KindIntensity, Lo: 0, Hi: 255}
		out = append(out, dataset.Sample{Image: img, Organ: g.organ, Modality: g.modality,
			Group: g.organ + "-" + g.modality, Split: split, Label: label, ID: id})
	}
	for _, g := range genGroups {
		for i := 0; i < n.train; i++ {
			add(g, dataset.Train, dataset.Normal, i)
		}
		for _, split := range []dataset.Split{dataset.Val, dataset.Test} {
			per := n.val
			if split == dataset.Test {
				per = n.test
			}
			for i := 0; i < per; i++ {
				add(g, split, dataset.Normal, i)
				add(g, split, dataset.Abnormal, i)
			}
		}
	}
	return out
}

// jitter is uniform in [-a, a].
func jitter(r *rand.Rand, a float64) float64 { return (2*r.Float64() - 1) * a }

// fillEllipse paints an axis-aligned ellipse of value v with centre (cx, cy)
// and radii (rx, ry), in pixel units with pixel centres at +0.5.
func fillEllipse(pix []float32, cx, cy, rx, ry float64, v float32) {
	for y := 0; y < genSize; y++ {
		for x := 0; x < genSize; x++ {
			dx, dy := (float64(x)+0.5-cx)/rx, (float64(y)+0.5-cy)/ry
			if dx*dx+dy*dy <= 1 {
				pix[y*genSize+x] = v
			}
		}
	}
}

// addField adds the smooth random background variation.
func addField(r *rand.Rand, pix []float32) {
	angle, phase := r.Float64()*math.Pi, r.Float64()*2*math.Pi
	fx, fy := math.Cos(angle)*2*math.Pi/genSize, math.Sin(angle)*2*math.Pi/genSize
	for y := 0; y < genSize; y++ {
		for x := 0; x < genSize; x++ {
			pix[y*genSize+x] += float32(genFieldAmp * math.Cos(fx*float64(x)+fy*float64(y)+phase))
		}
	}
}

// addLesion adds the anomaly: a disk of clear contrast to what lies under
// its centre, blended over a 1-pixel rim.
func addLesion(r *rand.Rand, pix []float32) {
	radius := 3 + 2*r.Float64()
	cx, cy := 8+16*r.Float64(), 8+16*r.Float64()
	target := float32(genLesionBright)
	if pix[int(cy)*genSize+int(cx)] >= 128 {
		target = genLesionDark
	}
	for y := 0; y < genSize; y++ {
		for x := 0; x < genSize; x++ {
			d := math.Hypot(float64(x)+0.5-cx, float64(y)+0.5-cy)
			w := float32(math.Min(1, math.Max(0, radius+0.5-d)))
			pix[y*genSize+x] = (1-w)*pix[y*genSize+x] + w*target
		}
	}
}

// TestGenerator checks the generated set's make-up, its value range and that
// a seed reproduces it, and that a lesion moves some pixels of any normal
// image by nearly its full contrast (clipping at 0 and 255 could eat it).
func TestGenerator(t *testing.T) {
	n := genCounts{train: 5, val: 3, test: 4}
	a, b := generate(7, n), generate(7, n)
	if want := len(genGroups) * (n.train + 2*n.val + 2*n.test); len(a) != want {
		t.Fatalf("%d samples, want %d", len(a), want)
	}
	counts := map[string]int{}
	for i, s := range a {
		counts[fmt.Sprintf("%s/%s/%s", s.Group, s.Split, s.Label)]++
		if s.Image.Width != genSize || s.Image.Height != genSize || len(s.Image.Pix) != genSize*genSize {
			t.Fatalf("%s: image is %dx%d with %d values", s.ID, s.Image.Width, s.Image.Height, len(s.Image.Pix))
		}
		for j, v := range s.Image.Pix {
			if v < 0 || v > 255 || v != b[i].Image.Pix[j] {
				t.Fatalf("%s: pixel %d is %g (same seed gave %g); want equal values in [0, 255]", s.ID, j, v, b[i].Image.Pix[j])
			}
		}
	}
	for _, g := range genGroups {
		group := g.organ + "-" + g.modality
		for key, want := range map[string]int{"train/normal": n.train, "val/normal": n.val, "val/abnormal": n.val,
			"test/normal": n.test, "test/abnormal": n.test, "train/abnormal": 0} {
			if got := counts[group+"/"+key]; got != want {
				t.Errorf("%s %s: %d images, want %d", group, key, got, want)
			}
		}
	}
	r := rand.New(rand.NewPCG(3, 4))
	for _, s := range a {
		if s.Label != dataset.Normal {
			continue
		}
		pix := append([]float32(nil), s.Image.Pix...)
		addLesion(r, pix)
		largest := 0.0
		for j := range pix {
			largest = math.Max(largest, math.Abs(float64(pix[j]-s.Image.Pix[j])))
		}
		if largest < 0.9*genLesionContrast {
			t.Fatalf("%s: a lesion changed no pixel by more than %.1f", s.ID, largest)
		}
	}
}
