package preprocess

import (
	"encoding/json"
	"math"
	"os"
	"testing"
)

// pattern mirrors tools/reference/pil_resize.py.
func pattern(w, h, a, b, c, m int) []float32 {
	pix := make([]float32, 0, w*h)
	for y := 0; y < h; y++ {
		for x := 0; x < w; x++ {
			pix = append(pix, float32(float64((x*a+y*b+x*y*c)%m)/float64(m)))
		}
	}
	return pix
}

// TestResampleHandWorked checks cases worked out by hand from the triangle-filter definition.
func TestResampleHandWorked(t *testing.T) {
	// 7 -> 2: scale 3.5, so the triangle spans 3.5 input pixels each side. Output 0 is centred at 1.75 and
	// takes inputs 0..4 at distances |i+0.5-1.75| = 1.25, 0.25, 0.75, 1.75, 2.75, i.e. weights
	// (9, 13, 11, 7, 3)/43. Output 1 is centred at 5.25 and takes inputs 2..6 with weights (3, 7, 11, 13, 9)/43.
	in := []float32{0, 1, 2, 3, 4, 5, 6}
	want := []float64{(13*1 + 11*2 + 7*3 + 3*4) / 43.0, (3*2 + 7*3 + 11*4 + 13*5 + 9*6) / 43.0}
	got := Resample(in, 7, 1, 2, 1)
	for i := range want {
		if !(math.Abs(float64(got[i])-want[i]) <= 1e-6) {
			t.Errorf("7->2 output %d = %v, want %v", i, got[i], want[i])
		}
	}

	// 4 -> 8: plain half-pixel bilinear; the edge outputs copy the edge inputs.
	in = []float32{0, 4, 8, 12}
	want = []float64{0, 1, 3, 5, 7, 9, 11, 12}
	got = Resample(in, 4, 1, 8, 1)
	for i := range want {
		if !(math.Abs(float64(got[i])-want[i]) <= 1e-6) {
			t.Errorf("4->8 output %d = %v, want %v", i, got[i], want[i])
		}
	}
}

func TestResampleConstantAndRamp(t *testing.T) {
	// The sampled triangle is symmetric about the output centre only when the centre falls on the same phase of
	// the input grid everywhere (integer ratios, upscaling); otherwise Pillow's discrete weights have a small
	// centroid bias (up to ~0.07 input pixels at 300->256), so the ramp is then only nearly linear.
	for _, tc := range []struct {
		w, h, ow, oh int
		tol          float64
	}{{224, 224, 56, 56, 1e-4}, {5, 7, 40, 30, 1e-4}, {256, 256, 64, 64, 1e-4}, {224, 224, 64, 64, 0.01}, {37, 23, 11, 9, 0.05}, {300, 200, 256, 256, 0.1}} {
		c := make([]float32, tc.w*tc.h)
		for i := range c {
			c[i] = 0.375
		}
		for i, v := range Resample(c, tc.w, tc.h, tc.ow, tc.oh) {
			if !(math.Abs(float64(v)-0.375) <= 1e-6) {
				t.Fatalf("%v: constant image changed at %d: %v", tc, i, v)
			}
		}
		// A horizontal ramp stays a ramp sampled at the output centres, away from the borders where the
		// filter is truncated: value at output x is the input coordinate (x+0.5)*scale-0.5.
		ramp := make([]float32, tc.w*tc.h)
		for i := range ramp {
			ramp[i] = float32(i % tc.w)
		}
		out := Resample(ramp, tc.w, tc.h, tc.ow, tc.oh)
		scale := float64(tc.w) / float64(tc.ow)
		margin := int(math.Ceil(math.Max(scale, 1)/scale)) + 1
		for y := 0; y < tc.oh; y++ {
			for x := margin; x < tc.ow-margin; x++ {
				want := (float64(x)+0.5)*scale - 0.5
				if got := float64(out[y*tc.ow+x]); !(math.Abs(got-want) <= tc.tol) {
					t.Fatalf("%v: ramp at (%d,%d) = %v, want %v", tc, x, y, got, want)
				}
			}
		}
	}
}

// TestResampleMatchesPillow compares with outputs of Pillow written by tools/reference/pil_resize.py.
func TestResampleMatchesPillow(t *testing.T) {
	data, err := os.ReadFile("testdata/pil_resize.json")
	if err != nil {
		t.Fatal(err)
	}
	var golden struct {
		Cases []struct {
			Name      string    `json:"name"`
			Width     int       `json:"width"`
			Height    int       `json:"height"`
			OutWidth  int       `json:"out_width"`
			OutHeight int       `json:"out_height"`
			Pattern   [4]int    `json:"pattern"`
			Output    []float64 `json:"output"`
		}
	}
	if err := json.Unmarshal(data, &golden); err != nil {
		t.Fatal(err)
	}
	if len(golden.Cases) < 5 {
		t.Fatalf("only %d golden cases", len(golden.Cases))
	}
	for _, c := range golden.Cases {
		p := c.Pattern
		in := pattern(c.Width, c.Height, p[0], p[1], p[2], p[3])
		got := Resample(in, c.Width, c.Height, c.OutWidth, c.OutHeight)
		if len(got) != len(c.Output) {
			t.Fatalf("%s: %d outputs, golden has %d", c.Name, len(got), len(c.Output))
		}
		worst := 0.0
		for i, want := range c.Output {
			d := math.Abs(float64(got[i])-want) / math.Max(math.Abs(want), 1e-3)
			worst = math.Max(worst, d)
			if !(d <= 1e-5) {
				t.Fatalf("%s: output %d = %v, Pillow %v", c.Name, i, got[i], want)
			}
		}
		t.Logf("%s: worst relative difference %.2g", c.Name, worst)
	}
}
