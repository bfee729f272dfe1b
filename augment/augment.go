// Package augment holds the training-time randomness applied to images: the paper's random crop, small
// rotation and horizontal flip (all off by default, as in the authors' code), and the mixup helpers of the
// authors' code (one Beta-distributed lambda and one permutation per batch).
//
// Every function takes a *rand.Rand (math/rand/v2) so a run is reproducible from its seed. Images are
// row-major []float32 of any size; in maddr they are the preprocessed network inputs (values in [-1, 1]).
package augment

import (
	"math"
	"math/rand/v2"
	"slices"
	"strings"
)

// Config switches the geometric augmentations. The zero value does nothing.
type Config struct {
	// Crop enables pad-and-crop: the image is padded by CropPad pixels on every side with its minimum value and
	// a window of the original size is cut at a uniformly random offset, i.e. a random shift of up to CropPad
	// pixels in each direction. This keeps the pixel scale unchanged (crop-and-resize would not).
	Crop    bool `json:"crop"`
	CropPad int  `json:"crop_pad"`
	// Rotate enables a rotation by an angle uniform in [-MaxDegrees, MaxDegrees] about the image centre.
	Rotate     bool    `json:"rotate"`
	MaxDegrees float64 `json:"max_degrees"`
	// Flip enables a horizontal flip with probability 1/2, except for the modalities listed in NoFlipModalities
	// (matched case-insensitively), where left and right carry meaning (e.g. the heart side on chest X-rays).
	Flip             bool     `json:"flip"`
	NoFlipModalities []string `json:"no_flip_modalities,omitempty"`
}

// Paper returns the paper's augmentations with parameters the paper does not state, chosen small: shifts of
// up to 4 pixels at 64x64 (about 14 pixels at 224), rotations of up to 10 degrees, and flips except on X-rays.
func Paper() Config {
	return Config{
		Crop: true, CropPad: 4,
		Rotate: true, MaxDegrees: 10,
		Flip: true, NoFlipModalities: []string{"xray", "x-ray", "cr", "dx"},
	}
}

// Enabled reports whether the config changes any image.
func (c Config) Enabled() bool {
	return (c.Crop && c.CropPad > 0) || (c.Rotate && c.MaxDegrees != 0) || c.Flip
}

// FlipAllowed reports whether flipping is enabled for the modality.
func (c Config) FlipAllowed(modality string) bool {
	if !c.Flip {
		return false
	}
	return !slices.ContainsFunc(c.NoFlipModalities, func(m string) bool {
		return strings.EqualFold(strings.TrimSpace(m), strings.TrimSpace(modality))
	})
}

// Apply returns an augmented copy of the w x h image pix: crop, then rotation, then flip. Random numbers are
// drawn only for enabled steps, in that order, so the result depends only on the config and the rng state.
func (c Config) Apply(pix []float32, w, h int, modality string, rng *rand.Rand) []float32 {
	out := slices.Clone(pix)
	if c.Crop && c.CropPad > 0 {
		out = RandomCrop(out, w, h, c.CropPad, rng)
	}
	if c.Rotate && c.MaxDegrees != 0 {
		deg := (2*rng.Float64() - 1) * math.Abs(c.MaxDegrees)
		out = Rotate(out, w, h, deg)
	}
	if c.FlipAllowed(modality) && rng.IntN(2) == 1 {
		FlipHorizontal(out, w, h)
	}
	return out
}

// RandomCrop pads the w x h image by pad pixels on every side with the image minimum and cuts a w x h window
// at a random offset in [0, 2*pad] on each axis.
func RandomCrop(pix []float32, w, h, pad int, rng *rand.Rand) []float32 {
	dx := rng.IntN(2*pad+1) - pad
	dy := rng.IntN(2*pad+1) - pad
	return Shift(pix, w, h, dx, dy)
}

// Shift returns the image moved so that output (x, y) is input (x+dx, y+dy); uncovered pixels get the minimum.
func Shift(pix []float32, w, h, dx, dy int) []float32 {
	fill := minimum(pix)
	out := make([]float32, len(pix))
	for y := 0; y < h; y++ {
		sy := y + dy
		for x := 0; x < w; x++ {
			sx := x + dx
			if sx < 0 || sx >= w || sy < 0 || sy >= h {
				out[y*w+x] = fill
				continue
			}
			out[y*w+x] = pix[sy*w+sx]
		}
	}
	return out
}

// Rotate returns the image rotated counter-clockwise (as displayed, y down) by degrees about its centre,
// sampled bilinearly; points that come from outside the image take the image minimum, the usual background.
func Rotate(pix []float32, w, h int, degrees float64) []float32 {
	if degrees == 0 {
		return slices.Clone(pix)
	}
	fill := minimum(pix)
	rad := degrees * math.Pi / 180
	cos, sin := math.Cos(rad), math.Sin(rad)
	cx, cy := float64(w-1)/2, float64(h-1)/2
	out := make([]float32, len(pix))
	at := func(x, y int) float64 {
		if x < 0 || x >= w || y < 0 || y >= h {
			return float64(fill)
		}
		return float64(pix[y*w+x])
	}
	for y := 0; y < h; y++ {
		for x := 0; x < w; x++ {
			// Inverse map: rotate the output point back by the angle to find where it comes from.
			u, v := float64(x)-cx, float64(y)-cy
			sx := cx + cos*u - sin*v
			sy := cy + sin*u + cos*v
			if sx < -1 || sx > float64(w) || sy < -1 || sy > float64(h) {
				out[y*w+x] = fill
				continue
			}
			x0, y0 := int(math.Floor(sx)), int(math.Floor(sy))
			fx, fy := sx-float64(x0), sy-float64(y0)
			top := at(x0, y0)*(1-fx) + at(x0+1, y0)*fx
			bottom := at(x0, y0+1)*(1-fx) + at(x0+1, y0+1)*fx
			out[y*w+x] = float32(top*(1-fy) + bottom*fy)
		}
	}
	return out
}

// FlipHorizontal mirrors the w x h image left to right in place.
func FlipHorizontal(pix []float32, w, h int) {
	for y := 0; y < h; y++ {
		slices.Reverse(pix[y*w : (y+1)*w])
	}
}

func minimum(pix []float32) float32 {
	if len(pix) == 0 {
		return 0
	}
	return slices.Min(pix)
}
