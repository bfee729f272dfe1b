package score

import (
	"bytes"
	"fmt"
	"image"
	"image/png"
	"io"
	"math"

	"github.com/maddr-project/maddr/heatmap"
	"github.com/maddr-project/maddr/medimg"
	"github.com/maddr-project/maddr/preprocess"
)

// maxViewSide bounds the side of a heat map picture when the model's
// preprocessing does not crop (a 3000 px radiograph is shown at 512 px).
const maxViewSide = 512

// View returns the grey picture of what the network looked at: img with the
// model's intensity mapping, resize and centre crop, but not the final
// downscale, so it stays sharp. Values are 0..1, row-major, w x h. Without
// resize and crop, the whole image squeezed to a square (as the network saw
// it) of at most maxViewSide pixels.
func View(img medimg.Image, organ string, pp preprocess.Config) (pix []float32, w, h int, err error) {
	lo, hi, err := pp.Range(img, organ)
	if err != nil {
		return nil, 0, 0, err
	}
	if img.Width <= 0 || img.Height <= 0 || len(img.Pix) != img.Width*img.Height {
		return nil, 0, 0, fmt.Errorf("%s: empty or inconsistent image", img.Source)
	}
	pix = make([]float32, len(img.Pix))
	scale := 1 / (float64(hi) - float64(lo))
	for i, v := range img.Pix {
		pix[i] = float32(math.Min(1, math.Max(0, (float64(v)-float64(lo))*scale)))
	}
	w, h = img.Width, img.Height
	if pp.Resize > 0 {
		pix = preprocess.Resample(pix, w, h, pp.Resize, pp.Resize)
		w, h = pp.Resize, pp.Resize
	}
	if pp.Crop > 0 {
		pix = preprocess.CenterCrop(pix, w, h, pp.Crop, pp.Crop)
		w, h = pp.Crop, pp.Crop
	}
	if pp.Resize == 0 && pp.Crop == 0 {
		// The network saw the whole image squeezed to a square: show that.
		side := min(max(w, h), maxViewSide)
		pix = preprocess.Resample(pix, w, h, side, side)
		w, h = side, side
	} else if m := max(w, h); m > maxViewSide {
		nw, nh := w*maxViewSide/m, h*maxViewSide/m
		pix = preprocess.Resample(pix, w, h, nw, nh)
		w, h = nw, nh
	}
	return pix, w, h, nil
}

// Grey renders a 0..1 picture as an 8-bit grey image.
func Grey(pix []float32, w, h int) *image.Gray {
	g := image.NewGray(image.Rect(0, 0, w, h))
	for i, v := range pix {
		g.Pix[i] = uint8(math.Round(float64(v) * 255))
	}
	return g
}

// Overlay paints the anomaly map (side x side, the network's resolution)
// over the grey picture pix (w x h), upsampled with the same resampling the
// preprocessing uses, with the one heat-map painter (package heatmap) on the
// map's own scale (heatmap.PerImage): it shows where this image is least
// like normal, not whether it is abnormal; that is the score's job.
func Overlay(pix []float32, w, h int, amap []float32, side int) (*image.RGBA, error) {
	if len(amap) != side*side || side <= 0 {
		return nil, fmt.Errorf("anomaly map has %d values, want %dx%d", len(amap), side, side)
	}
	return heatmap.Overlay(pix, preprocess.Resample(amap, side, side, w, h), w, h, heatmap.PerImage(amap))
}

// HeatmapPNG writes the heat map of a scored image as PNG: the grey view of
// in.Image with r.Map overlaid.
func (s *Scorer) HeatmapPNG(w io.Writer, in Input, r Result) error {
	if r.Map == nil {
		return fmt.Errorf("%s: no anomaly map (score with maps requested)", in.Path)
	}
	pix, vw, vh, err := View(in.Image, r.WindowOrgan, s.model.Manifest.Preprocess)
	if err != nil {
		return err
	}
	img, err := Overlay(pix, vw, vh, r.Map, s.model.Manifest.Preprocess.Size)
	if err != nil {
		return err
	}
	return png.Encode(w, img)
}

// ViewPNG writes the grey view of a scored image as PNG.
func (s *Scorer) ViewPNG(w io.Writer, in Input, r Result) error {
	pix, vw, vh, err := View(in.Image, r.WindowOrgan, s.model.Manifest.Preprocess)
	if err != nil {
		return err
	}
	return png.Encode(w, Grey(pix, vw, vh))
}

// EncodePNG is a helper returning the bytes written by fn.
func EncodePNG(fn func(io.Writer) error) ([]byte, error) {
	var b bytes.Buffer
	if err := fn(&b); err != nil {
		return nil, err
	}
	return b.Bytes(), nil
}
