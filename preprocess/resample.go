package preprocess

import "math"

// Resample resizes the w x h image src to ow x oh the way Pillow's Image.resize with BILINEAR does for "F"
// (float32) images: a horizontal pass then a vertical pass, each a normalised triangle filter. When shrinking,
// the triangle is widened by the scale factor in/out, which is what makes Pillow's bilinear antialiased and
// different from 4-tap bilinear interpolation. Accumulation is in float64 and each pass stores float32, as
// Pillow does, so results agree with Pillow to float32 rounding. A pass whose size does not change is skipped.
func Resample(src []float32, w, h, ow, oh int) []float32 {
	pix := src
	if ow != w {
		pix = resampleRows(pix, w, h, ow)
	}
	if oh != h {
		pix = resampleColumns(pix, ow, h, oh)
	}
	if ow == w && oh == h {
		pix = append([]float32(nil), src...)
	}
	return pix
}

// taps holds, for each output sample, the first input index and the normalised weights.
type taps struct {
	first   []int
	weights [][]float64
}

// triangleTaps computes Pillow's coefficients for resampling in input samples to out samples.
func triangleTaps(in, out int) taps {
	scale := float64(in) / float64(out)
	filterScale := math.Max(scale, 1)
	support := filterScale // the triangle's support is 1 input pixel, widened when shrinking
	t := taps{first: make([]int, out), weights: make([][]float64, out)}
	for o := 0; o < out; o++ {
		center := (float64(o) + 0.5) * scale
		// Pillow truncates toward zero after adding 0.5; for the negative values near the left edge this
		// differs from floor, but both are clamped to 0 below.
		lo := int(center - support + 0.5)
		if lo < 0 {
			lo = 0
		}
		hi := int(center + support + 0.5)
		if hi > in {
			hi = in
		}
		ws := make([]float64, 0, hi-lo)
		var sum float64
		for i := lo; i < hi; i++ {
			d := math.Abs((float64(i) - center + 0.5) / filterScale)
			wt := 0.0
			if d < 1 {
				wt = 1 - d
			}
			ws = append(ws, wt)
			sum += wt
		}
		if sum != 0 {
			for k := range ws {
				ws[k] /= sum
			}
		}
		t.first[o] = lo
		t.weights[o] = ws
	}
	return t
}

func resampleRows(src []float32, w, h, ow int) []float32 {
	t := triangleTaps(w, ow)
	dst := make([]float32, ow*h)
	for y := 0; y < h; y++ {
		row := src[y*w : (y+1)*w]
		for o := 0; o < ow; o++ {
			var s float64
			first := t.first[o]
			for k, wt := range t.weights[o] {
				s += float64(row[first+k]) * wt
			}
			dst[y*ow+o] = float32(s)
		}
	}
	return dst
}

func resampleColumns(src []float32, w, h, oh int) []float32 {
	t := triangleTaps(h, oh)
	dst := make([]float32, w*oh)
	acc := make([]float64, w)
	for o := 0; o < oh; o++ {
		clear(acc)
		first := t.first[o]
		for k, wt := range t.weights[o] {
			row := src[(first+k)*w : (first+k+1)*w]
			for x, v := range row {
				acc[x] += float64(v) * wt
			}
		}
		out := dst[o*w : (o+1)*w]
		for x, v := range acc {
			out[x] = float32(v)
		}
	}
	return dst
}
