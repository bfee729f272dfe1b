package dataset

import (
	"bufio"
	"compress/gzip"
	"fmt"
	"image"
	"image/png"
	"math"
	"os"
	"path/filepath"
	"strings"

	"github.com/maddr-project/maddr/medimg"
)

// ManifestName is the manifest file WriteSamples creates.
const ManifestName = "manifest.csv"

// WriteSamples exports in-memory samples (the phantom) to dir as image files
// plus manifest.csv, such that the manifest source reads back images equal
// to the originals value for value, hence identical preprocessed inputs:
//
//   - an intensity image of integers in 0..255 with nominal range 0..255 and
//     no stored window becomes an 8-bit grey PNG (what the reader decodes
//     exactly, with the same nominal range);
//   - any other image (CT in Hounsfield units, fractional or wider values)
//     becomes a single-slice float32 NIfTI (.nii.gz), which keeps every
//     value bit for bit; as NIfTI cannot say "Hounsfield units" nor carry a
//     nominal range, the manifest's hu, lo and hi columns do.
//
// A window stored in the image is not kept (preprocessing uses organ windows
// for CT). Files are named <split>/<label>/<group>_<id>.<ext>. It returns the
// samples as the manifest lists them.
func WriteSamples(dir string, samples []Sample) ([]Sample, error) {
	var out []Sample
	for _, s := range samples {
		if s.Image == nil {
			return nil, fmt.Errorf("exporting %s: not an in-memory image", s.Where())
		}
		img := s.Image
		sub := filepath.Join(dir, string(s.Split), s.Label.String())
		if err := os.MkdirAll(sub, 0o755); err != nil {
			return nil, err
		}
		base := safeName(s.Group + "_" + s.ID)
		e := s
		e.Image = nil
		if isByteImage(img) {
			e.Path = filepath.Join(sub, base+".png")
			if err := writeGreyPNG(e.Path, img); err != nil {
				return nil, err
			}
		} else {
			e.Path = filepath.Join(sub, base+".nii.gz")
			if err := writeSliceNIfTI(e.Path, img); err != nil {
				return nil, err
			}
			e.HU = img.Kind == medimg.KindHU
			e.Lo, e.Hi = img.Lo, img.Hi
		}
		out = append(out, e)
	}
	path := filepath.Join(dir, ManifestName)
	f, err := os.Create(path)
	if err != nil {
		return nil, err
	}
	bw := bufio.NewWriter(f)
	if err := WriteManifest(bw, dir, out); err != nil {
		f.Close()
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	if err := bw.Flush(); err != nil {
		f.Close()
		return nil, fmt.Errorf("writing %s: %w", path, err)
	}
	if err := f.Close(); err != nil {
		return nil, fmt.Errorf("writing %s: %w", path, err)
	}
	return out, nil
}

// safeName keeps letters, digits, '-', '_' and '.', replacing the rest.
func safeName(s string) string {
	return strings.Map(func(r rune) rune {
		switch {
		case r >= 'a' && r <= 'z', r >= 'A' && r <= 'Z', r >= '0' && r <= '9', r == '-', r == '_', r == '.':
			return r
		}
		return '_'
	}, s)
}

func isByteImage(img *medimg.Image) bool {
	if img.Kind != medimg.KindIntensity || img.Lo != 0 || img.Hi != 255 || img.Window != nil {
		return false
	}
	for _, v := range img.Pix {
		if v < 0 || v > 255 || v != float32(math.Round(float64(v))) {
			return false
		}
	}
	return true
}

func writeGreyPNG(path string, img *medimg.Image) error {
	g := image.NewGray(image.Rect(0, 0, img.Width, img.Height))
	for i, v := range img.Pix {
		g.Pix[i] = uint8(v)
	}
	f, err := os.Create(path)
	if err != nil {
		return err
	}
	if err := png.Encode(f, g); err != nil {
		f.Close()
		return fmt.Errorf("writing %s: %w", path, err)
	}
	if err := f.Close(); err != nil {
		return fmt.Errorf("writing %s: %w", path, err)
	}
	return nil
}

func writeSliceNIfTI(path string, img *medimg.Image) error {
	f, err := os.Create(path)
	if err != nil {
		return err
	}
	zw := gzip.NewWriter(f)
	err = writeNIfTI(zw, img.Width, img.Height, 1, niftiFloat32, img.Pix)
	if err == nil {
		err = zw.Close()
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return fmt.Errorf("writing %s: %w", path, err)
	}
	return nil
}
