package medimg

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/maddr-project/maddr/medimg/dicom"
)

// TestDecodeLimits checks that MaxPixels and MaxSlices are applied from the
// header of every format, with an error naming the file and the numbers.
func TestDecodeLimits(t *testing.T) {
	for _, c := range []struct {
		name string
		data []byte
		opts Options
		want string // "" for success
	}{
		{"a.png", tinyPNG16(), Options{MaxPixels: 2}, ""},
		{"a.png", tinyPNG16(), Options{MaxPixels: 1}, "2 pixels, more than the limit of 1"},
		{"a.nii", tinyNIfTI(), Options{MaxPixels: 8, MaxSlices: 2}, ""},
		{"a.nii", tinyNIfTI(), Options{MaxPixels: 7}, "8 pixels, more than the limit of 7"},
		{"a.nii.gz", gz(tinyNIfTI()), Options{MaxSlices: 1}, "2 slices, more than the limit of 1"},
	} {
		imgs, err := Decode(c.data, c.name, c.opts)
		if c.want == "" {
			if err != nil || len(imgs) == 0 {
				t.Errorf("%s %+v: %d images, %v", c.name, c.opts, len(imgs), err)
			}
			continue
		}
		if !errors.Is(err, ErrTooLarge) || !strings.Contains(err.Error(), c.want) || !strings.Contains(err.Error(), c.name) {
			t.Errorf("%s %+v: error %v, want ErrTooLarge naming the file and %q", c.name, c.opts, err, c.want)
		}
	}
	broken := append([]byte("\x89PNG\r\n\x1a\n"), make([]byte, 40)...)
	if _, err := Decode(broken, "broken.png", Options{MaxPixels: 100}); !errors.Is(err, ErrCorrupt) ||
		!strings.Contains(err.Error(), "broken.png") || !strings.Contains(err.Error(), "undecodable PNG header") {
		t.Errorf("broken PNG header: %v", err)
	}
}

// TestDecodeParsesDICOMOnce checks that the limits are checked on the same
// parse the frames come from: a DICOM upload is parsed exactly once, whether
// it is accepted or refused as too large.
func TestDecodeParsesDICOMOnce(t *testing.T) {
	data, err := os.ReadFile(filepath.Join(realDir(t), "pydicom/CT_small.dcm"))
	if err != nil {
		t.Fatal(err)
	}
	parses := 0
	defer func(orig func([]byte, string) (*dicom.File, error)) { decodeDICOM = orig }(decodeDICOM)
	decodeDICOM = func(b []byte, name string) (*dicom.File, error) {
		parses++
		return dicom.Decode(b, name)
	}
	imgs, err := Decode(data, "CT_small.dcm", Options{MaxPixels: 128 * 128, MaxSlices: 1})
	if err != nil || len(imgs) != 1 || imgs[0].Kind != KindHU {
		t.Fatalf("CT_small within limits: %d images, %v", len(imgs), err)
	}
	if parses != 1 {
		t.Errorf("accepted DICOM parsed %d times, want 1", parses)
	}
	parses = 0
	_, err = Decode(data, "CT_small.dcm", Options{MaxPixels: 100})
	if !errors.Is(err, ErrTooLarge) || !strings.Contains(err.Error(), "CT_small.dcm") || !strings.Contains(err.Error(), "16384 pixels") {
		t.Errorf("CT_small over the pixel limit: %v", err)
	}
	if parses != 1 {
		t.Errorf("refused DICOM parsed %d times, want 1", parses)
	}
}
