package server

import (
	"bytes"
	"compress/gzip"
	"errors"
	"fmt"
	"image"
	_ "image/jpeg" // DecodeConfig of uploads
	_ "image/png"
	"io"
	"net/http"

	"github.com/maddr-project/maddr/medimg"
	"github.com/maddr-project/maddr/medimg/dicom"
	"github.com/maddr-project/maddr/medimg/nifti"
)

// httpError is an error with the status code to answer it with.
type httpError struct {
	code int
	msg  string
}

func (e *httpError) Error() string { return e.msg }

func fail(code int, format string, a ...any) error {
	return &httpError{code: code, msg: fmt.Sprintf(format, a...)}
}

// decode reads an uploaded image after checking, from its header alone,
// that it is not larger than the limits (a small compressed file can
// declare gigapixels).
func decode(data []byte, name string, hu bool, maxPixels int64, maxSlices int) ([]medimg.Image, error) {
	format := medimg.DetectFormat(data, name)
	var pixels, slices int64
	switch format {
	case medimg.FormatPNG, medimg.FormatJPEG:
		cfg, _, err := image.DecodeConfig(bytes.NewReader(data))
		if err != nil {
			return nil, fail(http.StatusBadRequest, "%s: undecodable %s: %v", name, format, err)
		}
		pixels, slices = int64(cfg.Width)*int64(cfg.Height), 1
	case medimg.FormatNIfTI:
		head := data
		if len(data) >= 2 && data[0] == 0x1f && data[1] == 0x8b {
			zr, err := gzip.NewReader(bytes.NewReader(data))
			if err != nil {
				return nil, fail(http.StatusBadRequest, "%s: bad gzip stream: %v", name, err)
			}
			head = make([]byte, nifti.HeaderSize)
			n, _ := io.ReadFull(zr, head)
			head = head[:n]
		}
		h, err := nifti.ParseHeader(head)
		if err != nil {
			return nil, fail(http.StatusBadRequest, "%s: undecodable NIfTI header: %v", name, err)
		}
		nz := int64(1)
		if h.Dim[0] >= 3 {
			nz = h.Dim[3]
		}
		pixels, slices = h.Dim[1]*h.Dim[2]*nz, nz
	case medimg.FormatDICOM:
		f, err := dicom.Decode(data, name)
		if err != nil {
			if errors.Is(err, dicom.ErrUnsupported) || errors.Is(err, dicom.ErrUnsupportedSyntax) {
				return nil, fail(http.StatusUnsupportedMediaType, "%v", err)
			}
			return nil, fail(http.StatusBadRequest, "%v", err)
		}
		pixels, slices = int64(f.Rows)*int64(f.Columns)*int64(f.NumFrames), int64(f.NumFrames)
	default:
		return nil, fail(http.StatusUnsupportedMediaType, "%s is not a PNG, JPEG, DICOM or NIfTI image", name)
	}
	if pixels > maxPixels || pixels < 0 {
		return nil, fail(http.StatusRequestEntityTooLarge, "%s holds %d pixels, more than this server's limit of %d", name, pixels, maxPixels)
	}
	if slices > int64(maxSlices) {
		return nil, fail(http.StatusRequestEntityTooLarge, "%s holds %d slices, more than this server's limit of %d", name, slices, maxSlices)
	}
	opts := medimg.Options{}
	if hu {
		opts.NIfTIKind = medimg.KindHU
	}
	imgs, err := medimg.Decode(data, name, opts)
	switch {
	case errors.Is(err, medimg.ErrUnsupported):
		return nil, fail(http.StatusUnsupportedMediaType, "%v", err)
	case err != nil:
		return nil, fail(http.StatusBadRequest, "%v", err)
	case len(imgs) == 0:
		return nil, fail(http.StatusBadRequest, "%s holds no image", name)
	}
	return imgs, nil
}
