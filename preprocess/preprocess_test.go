package preprocess

import (
	"encoding/json"
	"math"
	"reflect"
	"strings"
	"testing"

	"github.com/maddr-project/maddr/medimg"
)

func TestCenterCropOffset(t *testing.T) {
	for _, tc := range []struct{ in, out, want int }{
		{256, 224, 16}, // the paper's offset
		{224, 224, 0},
		{257, 224, 16}, // 16.5 rounds half to even
		{259, 224, 18}, // 17.5 rounds half to even
		{258, 224, 17},
		{225, 224, 0}, // 0.5 -> 0
		{227, 224, 2}, // 1.5 -> 2
	} {
		if got := CenterCropOffset(tc.in, tc.out); got != tc.want {
			t.Errorf("CenterCropOffset(%d, %d) = %d, want %d", tc.in, tc.out, got, tc.want)
		}
	}
}

func TestCenterCrop(t *testing.T) {
	// 5x4 image whose value encodes its position: 10*y + x.
	src := make([]float32, 20)
	for i := range src {
		src[i] = float32(10*(i/5) + i%5)
	}
	got := CenterCrop(src, 5, 4, 2, 2)
	// x offset round(1.5)=2, y offset round(1)=1.
	if want := []float32{12, 13, 22, 23}; !reflect.DeepEqual(got, want) {
		t.Errorf("crop 2x2 = %v, want %v", got, want)
	}
	// Larger than the image: zero border, left/top pad = (out-in)/2.
	got = CenterCrop(src, 5, 4, 7, 5)
	for y := 0; y < 5; y++ {
		for x := 0; x < 7; x++ {
			sx, sy := x-1, y // pad left (7-5)/2 = 1; height 5 > 4 pads top (5-4)/2 = 0
			want := float32(0)
			if sx >= 0 && sx < 5 && sy >= 0 && sy < 4 {
				want = src[sy*5+sx]
			}
			if got[y*7+x] != want {
				t.Fatalf("padded crop at (%d,%d) = %v, want %v", x, y, got[y*7+x], want)
			}
		}
	}
}

func TestRangeSelection(t *testing.T) {
	fileWin := &medimg.Window{Center: 40, Width: 400}
	cfgOverride := Default()
	cfgOverride.HUWindows = map[string]medimg.Window{"Liver": {Center: 50, Width: 100}}
	cfgFile := Default()
	cfgFile.UseFileWindow = true
	for _, tc := range []struct {
		name   string
		cfg    Config
		img    medimg.Image
		organ  string
		lo, hi float32
	}{
		{"liver default", Default(), medimg.Image{Kind: medimg.KindHU, Window: fileWin}, "liver", -200, 250},
		{"lung default", Default(), medimg.Image{Kind: medimg.KindHU}, "LUNG", -1350, 150},
		{"override case-insensitive", cfgOverride, medimg.Image{Kind: medimg.KindHU}, "liver", 0, 100},
		{"other organ uses file window", Default(), medimg.Image{Kind: medimg.KindHU, Window: fileWin}, "brain", -160, 240},
		{"other organ no window", Default(), medimg.Image{Kind: medimg.KindHU}, "", -1000, 1000},
		{"intensity ignores file window by default", Default(), medimg.Image{Lo: 0, Hi: 255, Window: fileWin}, "lung", 0, 255},
		{"intensity with file window", cfgFile, medimg.Image{Lo: 0, Hi: 255, Window: fileWin}, "lung", -160, 240},
		{"intensity without file window", cfgFile, medimg.Image{Lo: 0, Hi: 4095}, "lung", 0, 4095},
	} {
		lo, hi, err := tc.cfg.Range(tc.img, tc.organ)
		if err != nil || lo != tc.lo || hi != tc.hi {
			t.Errorf("%s: Range = [%v, %v] %v, want [%v, %v]", tc.name, lo, hi, err, tc.lo, tc.hi)
		}
	}
}

func constImage(w, h int, v float32, kind medimg.ValueKind) medimg.Image {
	pix := make([]float32, w*h)
	for i := range pix {
		pix[i] = v
	}
	return medimg.Image{Width: w, Height: h, Pix: pix, Source: "test.png", Kind: kind, Lo: 0, Hi: 255}
}

// TestApplyWindowEndpoints runs the full pipeline on constant images, so the output is the windowed value.
func TestApplyWindowEndpoints(t *testing.T) {
	cfg := Default()
	for _, tc := range []struct {
		hu   float32
		want float32
	}{{-200, -1}, {-1000, -1}, {250, 1}, {3000, 1}, {25, 0}, {-87.5, -0.5}} {
		out, err := cfg.Apply(constImage(300, 260, tc.hu, medimg.KindHU), "liver")
		if err != nil {
			t.Fatal(err)
		}
		if len(out) != 64*64 {
			t.Fatalf("output has %d values", len(out))
		}
		for _, v := range out {
			if !(math.Abs(float64(v-tc.want)) <= 1e-6) {
				t.Fatalf("HU %v -> %v, want %v", tc.hu, v, tc.want)
			}
		}
	}
	out, err := cfg.Apply(constImage(100, 100, 255, medimg.KindIntensity), "")
	if err != nil || out[0] != 1 {
		t.Fatalf("intensity 255 of [0,255] -> %v %v, want 1", out[0], err)
	}
}

// TestApplyGeometry checks the pipeline against the steps composed by hand.
func TestApplyGeometry(t *testing.T) {
	w, h := 300, 280
	img := medimg.Image{Width: w, Height: h, Pix: make([]float32, w*h), Source: "g", Lo: 0, Hi: 100}
	unit := make([]float32, w*h)
	for i := range img.Pix {
		img.Pix[i] = float32((i*7919)%101) - 0.5 // slightly outside [0, 100] at both ends, so clipping matters
		unit[i] = float32(clamp(float64(img.Pix[i])/100, 0, 1))
	}
	a := Resample(unit, w, h, 256, 256)
	a = CenterCrop(a, 256, 256, 224, 224)
	a = Resample(a, 224, 224, 64, 64)
	got, err := Default().Apply(img, "")
	if err != nil {
		t.Fatal(err)
	}
	for i := range a {
		if want := 2*a[i] - 1; !(math.Abs(float64(got[i]-want)) <= 1e-6) {
			t.Fatalf("pixel %d = %v, want %v", i, got[i], want)
		}
		if got[i] < -1 || got[i] > 1 {
			t.Fatalf("pixel %d = %v out of [-1, 1]", i, got[i])
		}
	}

	// Skipping both steps is a single resize to Size.
	cfg := Config{Size: 32}
	got, err = cfg.Apply(img, "")
	if err != nil {
		t.Fatal(err)
	}
	b := Resample(unit, w, h, 32, 32)
	for i := range b {
		if want := 2*b[i] - 1; !(math.Abs(float64(got[i]-want)) <= 1e-6) {
			t.Fatalf("skip: pixel %d = %v, want %v", i, got[i], want)
		}
	}
}

func TestApplyRejectsBadInput(t *testing.T) {
	nan := constImage(8, 8, 1, medimg.KindIntensity)
	nan.Pix[10] = float32(math.NaN())
	inf := constImage(8, 8, 1, medimg.KindIntensity)
	inf.Pix[3] = float32(math.Inf(-1))
	short := constImage(8, 8, 1, medimg.KindIntensity)
	short.Pix = short.Pix[:10]
	flat := constImage(8, 8, 1, medimg.KindIntensity)
	flat.Hi = flat.Lo
	for _, tc := range []struct {
		name string
		img  medimg.Image
		want string
	}{
		{"nan", nan, "pixel (2, 1)"},
		{"inf", inf, "pixel (3, 0)"},
		{"empty", medimg.Image{Source: "test.png"}, "empty image"},
		{"short", short, "10 pixel values"},
		{"flat range", flat, "range"},
	} {
		_, err := Default().Apply(tc.img, "")
		if err == nil || !strings.Contains(err.Error(), "test.png") || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s: error %v, want one naming test.png and %q", tc.name, err, tc.want)
		}
	}
	for _, cfg := range []Config{{}, {Size: 64, Crop: -1}, {Size: 64, HUWindows: map[string]medimg.Window{"liver": {Width: 0}}}} {
		if _, err := cfg.Apply(constImage(8, 8, 1, medimg.KindHU), "liver"); err == nil {
			t.Errorf("config %+v accepted", cfg)
		}
	}
}

func TestConfigJSONRoundTrip(t *testing.T) {
	cfg := Default()
	cfg.UseFileWindow = true
	cfg.HUWindows = map[string]medimg.Window{"liver": {Center: 40, Width: 350}, "kidney": {Center: 30, Width: 400}}
	data, err := json.Marshal(cfg)
	if err != nil {
		t.Fatal(err)
	}
	var back Config
	if err := json.Unmarshal(data, &back); err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(cfg, back) {
		t.Fatalf("round trip changed config:\n%+v\n%+v\n%s", cfg, back, data)
	}
	if !strings.Contains(string(data), `"resize":256`) || !strings.Contains(string(data), `"crop":224`) {
		t.Errorf("unexpected JSON %s", data)
	}
}
