package server

import (
	"errors"
	"net/http"
	"strings"
	"testing"

	"github.com/maddr-project/maddr/dicomresult"
	"github.com/maddr-project/maddr/medimg"
)

// TestDecodeDICOMUpload checks that uploads go through medimg's decode path
// with the server's limits, and that each failure gets its status and a
// message naming the file and the problem.
func TestDecodeDICOMUpload(t *testing.T) {
	img := medimg.Image{Width: 8, Height: 6, Pix: make([]float32, 48), Lo: 0, Hi: 255}
	for i := range img.Pix {
		img.Pix[i] = float32(i * 5)
	}
	data, err := dicomresult.ImageToDICOM(img, dicomresult.PatientStudy{PatientID: "decode-1"})
	if err != nil {
		t.Fatal(err)
	}
	imgs, err := decode(data, "upload.dcm", false, 48, 1)
	if err != nil || len(imgs) != 1 || imgs[0].Width != 8 || imgs[0].Height != 6 {
		t.Fatalf("DICOM within the limits: %d images, %v", len(imgs), err)
	}
	for _, c := range []struct {
		name      string
		data      []byte
		maxPixels int64
		maxSlices int
		code      int
		want      []string
	}{
		{"over the pixel limit", data, 47, 1, http.StatusRequestEntityTooLarge, []string{"upload.dcm", "48 pixels", "limit of 47"}},
		{"truncated", data[:len(data)-20], 48, 1, http.StatusBadRequest, []string{"upload.dcm", "corrupt DICOM file"}},
		{"no meta header", []byte("0123456789"), 48, 1, http.StatusBadRequest, []string{"upload.dcm"}},
	} {
		_, err := decode(c.data, "upload.dcm", false, c.maxPixels, c.maxSlices)
		var he *httpError
		if !errors.As(err, &he) || he.code != c.code {
			t.Errorf("%s: error %v, want status %d", c.name, err, c.code)
			continue
		}
		for _, w := range c.want {
			if !strings.Contains(he.msg, w) {
				t.Errorf("%s: message %q does not mention %q", c.name, he.msg, w)
			}
		}
	}
}
