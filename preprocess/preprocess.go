// Package preprocess turns a decoded medical image into the network input: an intensity mapping to [0, 1]
// followed by the geometric pipeline of the paper (resize 256, centre crop 224, antialiased resize to 64) and a
// final shift to [-1, 1].
//
// Training, evaluation and scoring all go through Config.Apply, and the Config is stored inside model files, so
// a model always sees its inputs prepared exactly as during training.
//
// Intensity mapping, in order of precedence:
//   - HU images (medimg.KindHU): the window configured for the organ in Config.HUWindows, else the built-in
//     default for the organ (DefaultHUWindow), else the window stored in the file, else [-1000, 1000] HU.
//   - other images: the window stored in the file if Config.UseFileWindow is set and the file has one, else the
//     nominal range [Lo, Hi] of the image.
//
// A window (centre C, width W) maps C-W/2 to 0 and C+W/2 to 1 linearly and clips outside; this is the plain
// linear window, not DICOM's (C-0.5, W-1) variant, because the half-unit shift is immaterial after resampling.
//
// Geometry: the whole image is resized to Resize x Resize (aspect ratio is NOT preserved, as torchvision's
// Resize((256, 256)) does for a non-square image), centre-cropped to Crop x Crop with torchvision's offset
// rounding, then resized to Size x Size. Every resize is Pillow's BILINEAR filter on float ("F" mode) images:
// a separable triangle filter whose support widens with the downscale factor, so downscaling antialiases.
// Resize = 0 or Crop = 0 skips that step. Unlike the authors' 8-bit PNG path there is no uint8 quantisation
// between the steps: values stay float32 throughout.
package preprocess

import (
	"fmt"
	"math"
	"strings"

	"github.com/maddr-project/maddr/medimg"
)

// Config fully describes the preprocessing. The zero value is not usable; start from Default.
type Config struct {
	// Resize is the side of the square first resize; 0 skips it.
	Resize int `json:"resize"`
	// Crop is the side of the square centre crop; 0 skips it.
	Crop int `json:"crop"`
	// Size is the side of the square output.
	Size int `json:"size"`
	// HUWindows overrides the default HU window per organ (keys are organ names, matched case-insensitively).
	HUWindows map[string]medimg.Window `json:"hu_windows,omitempty"`
	// UseFileWindow makes non-HU images use the window stored in the file, when there is one.
	UseFileWindow bool `json:"use_file_window"`
}

// Default returns the paper's pipeline: resize 256, crop 224, output 64.
func Default() Config {
	return Config{Resize: 256, Crop: 224, Size: 64}
}

// Organ windows for CT in HU. Liver: [-200, 250], a common abdominal soft-tissue window wide enough to keep
// hypo- and hyper-dense lesions apart from fat. Lung: [-1350, 150], the usual lung window.
var defaultHUWindows = map[string]medimg.Window{
	"liver": {Center: 25, Width: 450},
	"lung":  {Center: -600, Width: 1500},
}

// fallbackHUWindow covers air to dense bone for organs without a default and files without a window.
var fallbackHUWindow = medimg.Window{Center: 0, Width: 2000}

// DefaultHUWindow returns the built-in window for organ (liver, lung) and whether there is one.
func DefaultHUWindow(organ string) (medimg.Window, bool) {
	w, ok := defaultHUWindows[strings.ToLower(strings.TrimSpace(organ))]
	return w, ok
}

// Validate reports a configuration that cannot produce an output.
func (c Config) Validate() error {
	if c.Size <= 0 {
		return fmt.Errorf("preprocess config: output size %d must be positive", c.Size)
	}
	if c.Resize < 0 {
		return fmt.Errorf("preprocess config: resize %d must be positive or 0 (skip)", c.Resize)
	}
	if c.Crop < 0 {
		return fmt.Errorf("preprocess config: crop %d must be positive or 0 (skip)", c.Crop)
	}
	for organ, w := range c.HUWindows {
		if err := checkWindow(w); err != nil {
			return fmt.Errorf("preprocess config: HU window for %q: %w", organ, err)
		}
	}
	return nil
}

func checkWindow(w medimg.Window) error {
	if !finite32(w.Center) || !finite32(w.Width) {
		return fmt.Errorf("window centre %g width %g is not finite", w.Center, w.Width)
	}
	if w.Width <= 0 {
		return fmt.Errorf("window width %g must be positive", w.Width)
	}
	return nil
}

// Range returns the values [lo, hi] that Apply maps to 0 and 1 for img of the given organ.
func (c Config) Range(img medimg.Image, organ string) (lo, hi float32, err error) {
	var w medimg.Window
	switch {
	case img.Kind == medimg.KindHU:
		key := strings.ToLower(strings.TrimSpace(organ))
		if ow, ok := c.lookupHUWindow(key); ok {
			w = ow
		} else if dw, ok := DefaultHUWindow(key); ok {
			w = dw
		} else if img.Window != nil {
			w = *img.Window
		} else {
			w = fallbackHUWindow
		}
	case c.UseFileWindow && img.Window != nil:
		w = *img.Window
	default:
		if !finite32(img.Lo) || !finite32(img.Hi) || img.Hi <= img.Lo {
			return 0, 0, fmt.Errorf("%s: nominal value range [%g, %g] is empty or not finite", img.Source, img.Lo, img.Hi)
		}
		return img.Lo, img.Hi, nil
	}
	if err := checkWindow(w); err != nil {
		return 0, 0, fmt.Errorf("%s: %w", img.Source, err)
	}
	return w.Center - w.Width/2, w.Center + w.Width/2, nil
}

func (c Config) lookupHUWindow(key string) (medimg.Window, bool) {
	if w, ok := c.HUWindows[key]; ok {
		return w, true
	}
	for k, w := range c.HUWindows {
		if strings.EqualFold(strings.TrimSpace(k), key) {
			return w, true
		}
	}
	return medimg.Window{}, false
}

// Apply prepares img of the given organ (used only to pick the HU window; may be empty) and returns
// c.Size*c.Size row-major values in [-1, 1].
func (c Config) Apply(img medimg.Image, organ string) ([]float32, error) {
	if err := c.Validate(); err != nil {
		return nil, err
	}
	if img.Width <= 0 || img.Height <= 0 {
		return nil, fmt.Errorf("%s: empty image (%dx%d)", img.Source, img.Width, img.Height)
	}
	if len(img.Pix) != img.Width*img.Height {
		return nil, fmt.Errorf("%s: %d pixel values for a %dx%d image", img.Source, len(img.Pix), img.Width, img.Height)
	}
	lo, hi, err := c.Range(img, organ)
	if err != nil {
		return nil, err
	}
	pix := make([]float32, len(img.Pix))
	scale := 1 / (float64(hi) - float64(lo))
	for i, v := range img.Pix {
		if !finite32(v) {
			return nil, fmt.Errorf("%s: pixel (%d, %d) is %g", img.Source, i%img.Width, i/img.Width, v)
		}
		pix[i] = float32(clamp((float64(v)-float64(lo))*scale, 0, 1))
	}
	w, h := img.Width, img.Height
	if c.Resize > 0 {
		pix = Resample(pix, w, h, c.Resize, c.Resize)
		w, h = c.Resize, c.Resize
	}
	if c.Crop > 0 {
		pix = CenterCrop(pix, w, h, c.Crop, c.Crop)
		w, h = c.Crop, c.Crop
	}
	pix = Resample(pix, w, h, c.Size, c.Size)
	for i, v := range pix {
		pix[i] = float32(clamp((float64(v)-0.5)/0.5, -1, 1))
	}
	return pix, nil
}

// CenterCropOffset is torchvision's offset of a centred window of length out in length in:
// round((in-out)/2) with Python's round-half-to-even, so (259-224)/2 = 17.5 gives 18 and 16.5 gives 16.
func CenterCropOffset(in, out int) int {
	return int(math.RoundToEven(float64(in-out) / 2))
}

// CenterCrop cuts a centred ow x oh window out of the w x h image src. Where the window is larger than the
// image, the missing border is zero, as torchvision pads before cropping.
func CenterCrop(src []float32, w, h, ow, oh int) []float32 {
	dst := make([]float32, ow*oh)
	x0 := CenterCropOffset(w, ow)
	y0 := CenterCropOffset(h, oh)
	if ow > w {
		// torchvision pads (ow-w)/2 on the left, the rest on the right.
		x0 = -((ow - w) / 2)
	}
	if oh > h {
		y0 = -((oh - h) / 2)
	}
	for y := 0; y < oh; y++ {
		sy := y + y0
		if sy < 0 || sy >= h {
			continue
		}
		for x := 0; x < ow; x++ {
			sx := x + x0
			if sx < 0 || sx >= w {
				continue
			}
			dst[y*ow+x] = src[sy*w+sx]
		}
	}
	return dst
}

func clamp(v, lo, hi float64) float64 {
	if v < lo {
		return lo
	}
	if v > hi {
		return hi
	}
	return v
}

func finite32(v float32) bool {
	f := float64(v)
	return !math.IsNaN(f) && !math.IsInf(f, 0)
}
