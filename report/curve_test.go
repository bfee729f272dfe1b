package report

import (
	"image"
	"image/color"
	"testing"
)

// pixelsOf counts the pixels of colour c in rows [y0, y1) of img.
func pixelsOf(img image.Image, c color.Color, y0, y1 int) int {
	r0, g0, b0, _ := c.RGBA()
	n := 0
	b := img.Bounds()
	for y := y0; y < y1; y++ {
		for x := b.Min.X; x < b.Max.X; x++ {
			r, g, bl, _ := img.At(x, y).RGBA()
			if r>>8 == r0>>8 && g>>8 == g0>>8 && bl>>8 == b0>>8 {
				n++
			}
		}
	}
	return n
}

func TestLearningCurve(t *testing.T) {
	it := []float64{1, 2, 3, 4, 5, 6}
	losses := []LossSeries{{Name: "rec", Iter: it, Value: []float64{5, 4, 3, 2, 1, 1}}}
	auc := []AUCSeries{
		{Name: "liver-ct", Iter: []float64{0, 3, 6}, Value: []float64{0.5, 0.7, 0.9}},
		{Name: "lung-ct", Iter: []float64{0, 3, 6}, Value: []float64{0.4, 0.45, 0.6}},
	}
	lossOnly, err := LossCurves("run", losses)
	if err != nil {
		t.Fatal(err)
	}
	b, err := LearningCurve("run", losses, auc)
	if err != nil {
		t.Fatal(err)
	}
	img, alone := decodePNG(t, b), decodePNG(t, lossOnly)
	h := img.Bounds().Dy()
	if h <= alone.Bounds().Dy() {
		t.Fatalf("with AUC the curve is %v, no taller than the loss plot alone (%v)", img.Bounds(), alone.Bounds())
	}
	// The second group's colour is drawn in the lower (AUC) panel, and the
	// loss panel above holds only the first colour.
	if n := pixelsOf(img, Colour(1), h/2, h); n < 50 {
		t.Errorf("the AUC panel has %d pixels of the second group's colour", n)
	}
	if n := pixelsOf(img, Colour(1), 0, h/2-10); n > 0 {
		t.Errorf("the loss panel has %d pixels of the second group's colour", n)
	}

	// Without validation the curve is the loss plot; without losses the AUC plot.
	b, err = LearningCurve("run", losses, nil)
	if err != nil {
		t.Fatal(err)
	}
	if decodePNG(t, b).Bounds() != alone.Bounds() {
		t.Error("a curve without AUC should be the loss plot alone")
	}
	b, err = LearningCurve("run", nil, auc)
	if err != nil {
		t.Fatal(err)
	}
	decodePNG(t, b)

	if _, err := LearningCurve("run", nil, nil); err == nil {
		t.Error("nothing to draw: want an error")
	}
	if _, err := LearningCurve("run", losses, []AUCSeries{{Name: "x", Iter: []float64{1}, Value: []float64{0.5, 0.6}}}); err == nil {
		t.Error("iterations and values of different lengths: want an error")
	}
}
