// Package heatmap paints anomaly maps: one colour ramp and one way of
// scaling map values onto it, for the per-image heat map of 'maddr score',
// 'maddr serve' and the DICOM results (drawn at the file's resolution, each
// map scaled on its own) and for the montages of an experiment report (all
// tiles on one shared scale, so they compare).
//
// The ramp is close to matplotlib's "inferno" (black, purple, red, orange,
// pale yellow). It won over the blue-cyan-yellow-red rainbow the score heat
// maps used: its lightness rises steadily, so "hotter" always reads as
// "brighter" (also in grey print and to colour-blind readers), where a
// rainbow's bright yellow band in the middle suggests an edge that is not in
// the data. Opacity grows from nothing at the bottom of the scale, so where
// an image is normal the anatomy shows undimmed.
package heatmap

import (
	"fmt"
	"image"
	"image/color"
	"math"
	"sort"
)

// stops of the ramp, evenly spaced over 0..1.
var stops = [][3]float64{
	{0, 0, 4}, {87, 16, 110}, {188, 55, 84}, {249, 142, 9}, {252, 255, 164},
}

// maxOpacity is the opacity of the colour at the top of the scale.
const maxOpacity = 0.7

// Colour maps t in [0, 1] (clamped) to the ramp.
func Colour(t float64) color.RGBA {
	t = math.Max(0, math.Min(1, t))
	f := t * float64(len(stops)-1)
	i := min(int(f), len(stops)-2)
	u := f - float64(i)
	var c [3]uint8
	for k := 0; k < 3; k++ {
		c[k] = uint8(math.Round(stops[i][k]*(1-u) + stops[i+1][k]*u))
	}
	return color.RGBA{c[0], c[1], c[2], 255}
}

// Scale maps anomaly-map values Lo..Hi onto the ramp.
type Scale struct{ Lo, Hi float64 }

// At is where v falls on the scale, clamped to 0..1.
func (s Scale) At(v float32) float64 {
	return math.Max(0, math.Min(1, (float64(v)-s.Lo)/(s.Hi-s.Lo)))
}

// percentile995 is the index of the 99.5th percentile of n sorted values:
// one hot pixel must not wash out the rest.
func percentile995(n int) int { return min(n-1, int(math.Ceil(0.995*float64(n-1)))) }

// PerImage is the scale of a map shown alone: its median (transparent) to
// its 99.5th percentile (full colour). It shows where this image is least
// like normal, not whether it is abnormal; that is the score's job.
func PerImage(amap []float32) Scale {
	v := finite(amap)
	if len(v) == 0 {
		return Scale{0, 1}
	}
	return widen(Scale{Lo: v[len(v)/2], Hi: v[percentile995(len(v))]})
}

// Shared is one scale for maps shown together: 0 (a perfect reconstruction,
// or the smallest value if one is negative) to the 99.5th percentile of all
// their pixels.
func Shared(maps ...[]float32) Scale {
	v := finite(maps...)
	if len(v) == 0 {
		return Scale{0, 1}
	}
	return widen(Scale{Lo: math.Min(0, v[0]), Hi: v[percentile995(len(v))]})
}

// widen keeps a flat map from dividing by zero.
func widen(s Scale) Scale {
	if !(s.Hi > s.Lo) {
		s.Hi = s.Lo + 1e-12
	}
	return s
}

// finite returns the non-NaN values of maps, sorted.
func finite(maps ...[]float32) []float64 {
	var all []float64
	for _, m := range maps {
		for _, x := range m {
			if !math.IsNaN(float64(x)) {
				all = append(all, float64(x))
			}
		}
	}
	sort.Float64s(all)
	return all
}

// Overlay paints amap over the grey picture grey, both w x h (grey in 0..1,
// the map already at the picture's resolution): each pixel is the grey
// blended with the ramp colour of its scaled map value, at an opacity that
// grows with that value.
func Overlay(grey, amap []float32, w, h int, s Scale) (*image.RGBA, error) {
	if w <= 0 || h <= 0 || len(grey) != w*h || len(amap) != w*h {
		return nil, fmt.Errorf("heat map: picture of %d and map of %d values, want %dx%d", len(grey), len(amap), w, h)
	}
	out := image.NewRGBA(image.Rect(0, 0, w, h))
	for i := range grey {
		g := math.Max(0, math.Min(1, float64(grey[i]))) * 255
		t := s.At(amap[i])
		c := Colour(t)
		a := maxOpacity * t
		o := out.Pix[4*i:]
		o[0] = uint8(math.Round(g*(1-a) + float64(c.R)*a))
		o[1] = uint8(math.Round(g*(1-a) + float64(c.G)*a))
		o[2] = uint8(math.Round(g*(1-a) + float64(c.B)*a))
		o[3] = 255
	}
	return out, nil
}
