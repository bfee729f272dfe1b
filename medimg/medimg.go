// Package medimg is the project's single entry point for reading medical images: it detects the format (PNG,
// JPEG, DICOM, NIfTI) and returns 2-D grey images in the file's own units together with what is needed to
// normalise them (a nominal range and, for DICOM, the stored window).
//
// The format readers live in the subpackages raster, dicom and nifti, which know nothing of this package;
// this package converts their results into Image.
package medimg

import (
	"bytes"
	"compress/gzip"
	"errors"
	"fmt"
	"image"
	"image/jpeg"
	"image/png"
	"io"
	"os"
	"path/filepath"
	"strings"

	"github.com/maddr-project/maddr/medimg/dicom"
	"github.com/maddr-project/maddr/medimg/nifti"
	"github.com/maddr-project/maddr/medimg/raster"
)

// Format is a file format this package reads.
type Format int

const (
	FormatUnknown Format = iota
	FormatPNG
	FormatJPEG
	FormatDICOM
	FormatNIfTI
)

func (f Format) String() string {
	return [...]string{"unknown", "PNG", "JPEG", "DICOM", "NIfTI"}[f]
}

// Errors usable with errors.Is on anything this package (or its subpackages) returns.
var (
	// ErrUnsupported: the format, transfer syntax, datatype or pixel layout is not read by this package.
	ErrUnsupported = errors.New("unsupported image")
	// ErrCorrupt: the file is damaged, truncated, inconsistent, empty or holds NaN values.
	ErrCorrupt = errors.New("corrupt image file")
	// ErrTooLarge: the file declares more pixels or slices than Options.MaxPixels or MaxSlices allow.
	ErrTooLarge = errors.New("image too large")
)

// classify maps the subpackages' errors onto the two sentinels while keeping their messages.
func classify(err error) error {
	if err == nil {
		return nil
	}
	switch {
	case errors.Is(err, dicom.ErrUnsupportedSyntax), errors.Is(err, dicom.ErrUnsupported),
		errors.Is(err, nifti.ErrUnsupported), errors.Is(err, raster.ErrUnsupported):
		return &classified{err, ErrUnsupported}
	case errors.Is(err, dicom.ErrCorrupt), errors.Is(err, dicom.ErrNoMeta), errors.Is(err, dicom.ErrNoPixels),
		errors.Is(err, nifti.ErrCorrupt), errors.Is(err, nifti.ErrNotNIfTI), errors.Is(err, nifti.ErrNaN),
		errors.Is(err, raster.ErrCorrupt):
		return &classified{err, ErrCorrupt}
	}
	return err
}

type classified struct{ err, kind error }

func (c *classified) Error() string   { return c.err.Error() }
func (c *classified) Unwrap() []error { return []error{c.err, c.kind} }

// Options adjust reading; the zero value is the default.
type Options struct {
	// NIfTIKind is the Kind given to NIfTI images, which carry no modality. Set KindHU for CT volumes
	// (LiTS, MSD Task03) so that HU windows apply.
	NIfTIKind ValueKind
	// TimePoint selects the 3-D volume of a 4-D NIfTI file (0 = first).
	TimePoint int
	// NaNToZero replaces NaN/Inf NIfTI voxels by 0 instead of failing.
	NaNToZero bool
	// MaxPixels (all slices together) and MaxSlices, when positive, bound what Decode accepts. They are
	// checked from the file's header before any pixel is decoded, since a small compressed upload can
	// declare gigapixels; beyond them Decode fails with ErrTooLarge.
	MaxPixels int64
	MaxSlices int
}

// nifti is the part of the options package nifti reads.
func (o Options) nifti() nifti.Options {
	n := nifti.Options{TimePoint: o.TimePoint}
	if o.NaNToZero {
		n.NaN = nifti.NaNToZero
	}
	return n
}

func (o Options) limited() bool { return o.MaxPixels > 0 || o.MaxSlices > 0 }

// checkSize applies MaxPixels and MaxSlices to what a header declares.
func (o Options) checkSize(name string, pixels, slices int64) error {
	if o.MaxPixels > 0 && (pixels > o.MaxPixels || pixels < 0) {
		return fmt.Errorf("reading %s: %w: it holds %d pixels, more than the limit of %d", name, ErrTooLarge, pixels, o.MaxPixels)
	}
	if o.MaxSlices > 0 && slices > int64(o.MaxSlices) {
		return fmt.Errorf("reading %s: %w: it holds %d slices, more than the limit of %d", name, ErrTooLarge, slices, o.MaxSlices)
	}
	return nil
}

// DetectFormat identifies the format from the first bytes of a file (at least 548 bytes when available) and
// falls back on the name's extension only to tell a gzip stream apart (".nii.gz").
func DetectFormat(head []byte, name string) Format {
	switch {
	case bytes.HasPrefix(head, []byte("\x89PNG\r\n\x1a\n")):
		return FormatPNG
	case bytes.HasPrefix(head, []byte{0xff, 0xd8, 0xff}):
		return FormatJPEG
	case len(head) >= 132 && string(head[128:132]) == "DICM":
		return FormatDICOM
	case nifti.IsNIfTI(head):
		return FormatNIfTI
	case bytes.HasPrefix(head, []byte{0x1f, 0x8b}):
		if zr, err := gzip.NewReader(bytes.NewReader(head)); err == nil {
			inner := make([]byte, nifti.HeaderSize)
			n, _ := io.ReadFull(zr, inner)
			if nifti.IsNIfTI(inner[:n]) {
				return FormatNIfTI
			}
		}
		if strings.HasSuffix(strings.ToLower(name), ".nii.gz") {
			return FormatNIfTI
		}
	}
	switch strings.ToLower(filepath.Ext(name)) {
	case ".dcm", ".dicom":
		return FormatDICOM // without a meta header: the DICOM reader explains what is missing
	case ".nii":
		return FormatNIfTI
	}
	return FormatUnknown
}

// DetectFile reads the start of the file at path and calls DetectFormat.
func DetectFile(path string) (Format, error) {
	f, err := os.Open(path)
	if err != nil {
		return FormatUnknown, fmt.Errorf("reading %s: %w", path, err)
	}
	defer f.Close()
	head := make([]byte, 4096)
	n, err := io.ReadFull(f, head)
	if err != nil && !errors.Is(err, io.ErrUnexpectedEOF) && !errors.Is(err, io.EOF) {
		return FormatUnknown, fmt.Errorf("reading %s: %w", path, err)
	}
	return DetectFormat(head[:n], path), nil
}

// ReadFile returns every 2-D image in the file: 1 for PNG/JPEG/single-frame DICOM, one per frame for
// multi-frame DICOM, one per axial slice for a NIfTI volume (canonical axial orientation, see package nifti).
func ReadFile(path string) ([]Image, error) { return ReadFileWith(path, Options{}) }

// ReadFileWith is ReadFile with options.
func ReadFileWith(path string, opts Options) ([]Image, error) {
	v, err := OpenVolumeWith(path, opts)
	if err != nil {
		return nil, err
	}
	defer v.Close()
	return allSlices(v)
}

// Volume gives slice-by-slice access to the images of one file.
type Volume interface {
	NumSlices() int
	Slice(i int) (Image, error)
	Close() error
}

// OpenVolume opens a file for slice-by-slice access without decoding a whole volume to float32 (NIfTI;
// multi-frame DICOM decodes one frame per call; 2-D files are 1-slice volumes).
func OpenVolume(path string) (Volume, error) { return OpenVolumeWith(path, Options{}) }

// OpenVolumeWith is OpenVolume with options.
func OpenVolumeWith(path string, opts Options) (Volume, error) {
	format, err := DetectFile(path)
	if err != nil {
		return nil, err
	}
	switch format {
	case FormatPNG, FormatJPEG:
		r, err := raster.ReadFile(path)
		if err != nil {
			return nil, classify(err)
		}
		return single{fromRaster(r, path)}, nil
	case FormatDICOM:
		f, err := dicom.ReadFile(path)
		if err != nil {
			return nil, classify(err)
		}
		return dicomVolume{f}, nil
	case FormatNIfTI:
		v, err := nifti.Open(path, opts.nifti())
		if err != nil {
			return nil, classify(err)
		}
		return niftiVolume{v, opts.NIfTIKind}, nil
	}
	st, err := os.Stat(path)
	if err == nil && st.Size() == 0 {
		return nil, fmt.Errorf("reading %s: %w: empty file", path, ErrCorrupt)
	}
	return nil, fmt.Errorf("reading %s: %w: not a PNG, JPEG, DICOM or NIfTI image", path, ErrUnsupported)
}

// decodeDICOM parses a DICOM file held in memory; tests replace it to count parses.
var decodeDICOM = dicom.Decode

// Decode reads a 2-D image or volume held in memory (an upload, a test, a fuzz input); name gives the
// extension hint and the error context. It is the one decode path for bytes: it detects the format, applies
// Options.MaxPixels and MaxSlices from the header, and parses the file once.
func Decode(data []byte, name string, opts Options) ([]Image, error) {
	v, err := decodeVolume(data, name, opts)
	if err != nil {
		return nil, err
	}
	return allSlices(v)
}

// allSlices decodes every slice of v.
func allSlices(v Volume) ([]Image, error) {
	out := make([]Image, 0, v.NumSlices())
	for i := 0; i < v.NumSlices(); i++ {
		img, err := v.Slice(i)
		if err != nil {
			return nil, err
		}
		out = append(out, img)
	}
	return out, nil
}

func decodeVolume(data []byte, name string, opts Options) (Volume, error) {
	switch format := DetectFormat(data, name); format {
	case FormatPNG, FormatJPEG:
		if opts.limited() {
			cfg, err := rasterConfig(data, format)
			if err != nil {
				return nil, fmt.Errorf("reading %s: %w: undecodable %s header: %v", name, ErrCorrupt, format, err)
			}
			if err := opts.checkSize(name, int64(cfg.Width)*int64(cfg.Height), 1); err != nil {
				return nil, err
			}
		}
		r, err := raster.Decode(bytes.NewReader(data), int64(len(data)), name)
		if err != nil {
			return nil, classify(err)
		}
		return single{fromRaster(r, name)}, nil
	case FormatDICOM:
		// The parsed file is both what the limits are checked on and what the frames are decoded from.
		f, err := decodeDICOM(data, name)
		if err != nil {
			return nil, classify(err)
		}
		if err := opts.checkSize(name, int64(f.Rows)*int64(f.Columns)*int64(f.NumFrames), int64(f.NumFrames)); err != nil {
			return nil, err
		}
		return dicomVolume{f}, nil
	case FormatNIfTI:
		if opts.limited() {
			h, err := niftiHeader(data)
			if err != nil {
				return nil, fmt.Errorf("reading %s: %w: undecodable NIfTI header: %v", name, ErrCorrupt, err)
			}
			nz := int64(1)
			if h.Dim[0] >= 3 {
				nz = h.Dim[3]
			}
			if err := opts.checkSize(name, h.Dim[1]*h.Dim[2]*nz, nz); err != nil {
				return nil, err
			}
		}
		nv, err := nifti.Decode(bytes.NewReader(data), int64(len(data)), name, opts.nifti())
		if err != nil {
			return nil, classify(err)
		}
		return niftiVolume{nv, opts.NIfTIKind}, nil
	}
	if len(data) == 0 {
		return nil, fmt.Errorf("reading %s: %w: empty file", name, ErrCorrupt)
	}
	return nil, fmt.Errorf("reading %s: %w: not a PNG, JPEG, DICOM or NIfTI image", name, ErrUnsupported)
}

// rasterConfig reads the width and height a PNG or JPEG header declares.
func rasterConfig(data []byte, format Format) (image.Config, error) {
	if format == FormatPNG {
		return png.DecodeConfig(bytes.NewReader(data))
	}
	return jpeg.DecodeConfig(bytes.NewReader(data))
}

// niftiHeader parses the header of a NIfTI file, gzip-compressed or not, without reading its voxels.
func niftiHeader(data []byte) (nifti.Header, error) {
	head := data
	if len(data) >= 2 && data[0] == 0x1f && data[1] == 0x8b {
		zr, err := gzip.NewReader(bytes.NewReader(data))
		if err != nil {
			return nifti.Header{}, fmt.Errorf("bad gzip stream: %v", err)
		}
		head = make([]byte, nifti.HeaderSize)
		n, _ := io.ReadFull(zr, head)
		head = head[:n]
	}
	return nifti.ParseHeader(head)
}

func fromRaster(r raster.Image, path string) Image {
	return Image{Width: r.Width, Height: r.Height, Pix: r.Pix, Source: path, Kind: KindIntensity, Lo: r.Lo, Hi: r.Hi}
}

type single struct{ img Image }

func (s single) NumSlices() int { return 1 }
func (s single) Close() error   { return nil }
func (s single) Slice(i int) (Image, error) {
	if i != 0 {
		return Image{}, fmt.Errorf("reading %s: slice %d out of range: a 2-D image has only slice 0", s.img.Source, i)
	}
	return s.img, nil
}

type dicomVolume struct{ f *dicom.File }

func (d dicomVolume) NumSlices() int { return d.f.NumFrames }
func (d dicomVolume) Close() error   { return nil }
func (d dicomVolume) Slice(i int) (Image, error) {
	fr, err := d.f.Frame(i)
	if err != nil {
		return Image{}, classify(err)
	}
	lo, hi := d.f.Range()
	img := Image{Width: fr.Width, Height: fr.Height, Pix: fr.Pix, Source: d.f.Name, Index: i,
		Kind: KindIntensity, Lo: float32(lo), Hi: float32(hi), Modality: d.f.Modality}
	if d.f.Modality == "CT" {
		img.Kind = KindHU
	}
	if c, w, ok := d.f.Window(); ok {
		img.Window = &Window{Center: float32(c), Width: float32(w)}
	}
	return img, nil
}

type niftiVolume struct {
	v    *nifti.Volume
	kind ValueKind
}

func (n niftiVolume) NumSlices() int { return n.v.NumSlices() }
func (n niftiVolume) Close() error   { return n.v.Close() }
func (n niftiVolume) Slice(i int) (Image, error) {
	s, err := n.v.Slice(i)
	if err != nil {
		return Image{}, classify(err)
	}
	h := &n.v.Header
	img := Image{Width: s.Width, Height: s.Height, Pix: s.Pix, Source: n.v.Name, Index: i, Kind: n.kind,
		Lo: s.Min, Hi: s.Max}
	switch {
	case h.CalMax > h.CalMin:
		img.Lo, img.Hi = float32(h.CalMin), float32(h.CalMax)
	case h.Datatype == nifti.DTUint8 && !h.Scaled():
		img.Lo, img.Hi = 0, 255
	}
	return img, nil
}
