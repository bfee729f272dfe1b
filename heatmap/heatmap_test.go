package heatmap

import "testing"

func TestRampRisesInLightness(t *testing.T) {
	light := func(t float64) float64 {
		c := Colour(t)
		return 0.3*float64(c.R) + 0.59*float64(c.G) + 0.11*float64(c.B)
	}
	for i := 1; i <= 100; i++ {
		if light(float64(i)/100) < light(float64(i-1)/100) {
			t.Fatalf("the ramp darkens at %.2f", float64(i)/100)
		}
	}
	if Colour(-1) != Colour(0) || Colour(2) != Colour(1) {
		t.Error("values outside 0..1 are not clamped")
	}
}

func TestScales(t *testing.T) {
	amap := make([]float32, 200)
	for i := range amap {
		amap[i] = float32(i)
	}
	if s := PerImage(amap); s.Lo != 100 || s.Hi != 199 {
		t.Errorf("PerImage = %+v, want median 100 to 99.5th percentile 199", s)
	}
	if s := Shared(amap[:100], amap[100:]); s.Lo != 0 || s.Hi != 199 {
		t.Errorf("Shared = %+v, want 0 to 199", s)
	}
	if s := PerImage([]float32{3, 3, 3}); !(s.Hi > s.Lo) {
		t.Errorf("a flat map gives an empty scale %+v", s)
	}
}

func TestOverlayLeavesNormalPixelsGrey(t *testing.T) {
	grey := []float32{0.5, 0.5}
	img, err := Overlay(grey, []float32{0, 1}, 2, 1, Scale{Lo: 0, Hi: 1})
	if err != nil {
		t.Fatal(err)
	}
	if c := img.RGBAAt(0, 0); c.R != 128 || c.G != 128 || c.B != 128 {
		t.Errorf("pixel at the bottom of the scale %v, want its grey", c)
	}
	if c := img.RGBAAt(1, 0); c.R == c.B {
		t.Errorf("pixel at the top of the scale %v is not coloured", c)
	}
	if _, err := Overlay(grey, []float32{0}, 2, 1, Scale{0, 1}); err == nil {
		t.Error("a map of the wrong size was accepted")
	}
}
