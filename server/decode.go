package server

import (
	"errors"
	"fmt"
	"net/http"

	"github.com/maddr-project/maddr/medimg"
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

// decode reads an uploaded image through medimg's one decode path, which
// checks the server's limits from the header before decoding any pixel (a
// small compressed file can declare gigapixels), and maps its errors onto
// HTTP statuses.
func decode(data []byte, name string, hu bool, maxPixels int64, maxSlices int) ([]medimg.Image, error) {
	opts := medimg.Options{MaxPixels: maxPixels, MaxSlices: maxSlices}
	if hu {
		opts.NIfTIKind = medimg.KindHU
	}
	imgs, err := medimg.Decode(data, name, opts)
	switch {
	case errors.Is(err, medimg.ErrTooLarge):
		return nil, fail(http.StatusRequestEntityTooLarge, "%v (this server's limit)", err)
	case errors.Is(err, medimg.ErrUnsupported):
		return nil, fail(http.StatusUnsupportedMediaType, "%v", err)
	case err != nil:
		return nil, fail(http.StatusBadRequest, "%v", err)
	case len(imgs) == 0:
		return nil, fail(http.StatusBadRequest, "%s holds no image", name)
	}
	return imgs, nil
}
