// Package dicom reads the pixel frames of DICOM files as grey values in the file's units.
//
// Parsing is done by github.com/suyashkumar/dicom (pinned v1.1.0), after a structural check of every element
// length so that corrupt files fail with an error instead of exhausting memory inside the library. Pixel data
// is decoded here: native (implicit/explicit little endian, explicit big endian, deflated), RLE Lossless, and
// 8-bit JPEG Baseline. Other compressed transfer syntaxes (JPEG Lossless, JPEG-LS, JPEG 2000, HTJ2K, MPEG)
// give an error wrapping ErrUnsupportedSyntax that names the syntax UID and its name.
//
// Value rules, applied in this order:
//   - stored values use BitsStored bits at HighBit, two's complement when PixelRepresentation is 1;
//   - modality rescale v*RescaleSlope + RescaleIntercept when the file has them (CT gives Hounsfield units);
//   - MONOCHROME1 is inverted inside the nominal range: v -> Lo + Hi - v, where Lo..Hi is the stored range
//     (0..2^BitsStored-1 unsigned, or the signed range) after rescale; for unsigned data without rescale this is
//     v -> (2^BitsStored - 1) - v. The file's window center is mirrored the same way so it stays on the anatomy;
//   - colour (RGB, YBR_FULL) is reduced to grey with the ITU-R 601 luma weights (see package raster).
package dicom

import (
	"bytes"
	"errors"
	"fmt"
	"os"
	"strconv"
	"strings"

	godicom "github.com/suyashkumar/dicom"
	"github.com/suyashkumar/dicom/pkg/tag"
	"github.com/suyashkumar/dicom/pkg/uid"
)

// Errors wrapped by the reader so callers can sort problems with errors.Is.
var (
	// ErrNoMeta: the file lacks the 128-byte preamble + "DICM" + file meta header this reader requires.
	ErrNoMeta = errors.New("not a DICOM Part 10 file")
	// ErrCorrupt: the structure or the pixel data is inconsistent or truncated.
	ErrCorrupt = errors.New("corrupt DICOM file")
	// ErrNoPixels: the file holds no image (a report, a structure set, ...).
	ErrNoPixels = errors.New("DICOM file has no pixel data")
	// ErrUnsupportedSyntax: the pixel data uses a compression this reader does not decode.
	ErrUnsupportedSyntax = errors.New("unsupported transfer syntax")
	// ErrUnsupported: a pixel layout this reader does not handle (palette colour, 1-bit, ...).
	ErrUnsupported = errors.New("unsupported DICOM image")
)

const (
	implicitVRLittleEndian         = "1.2.840.10008.1.2"
	explicitVRLittleEndian         = "1.2.840.10008.1.2.1"
	deflatedExplicitVRLittleEndian = "1.2.840.10008.1.2.1.99"
	explicitVRBigEndian            = "1.2.840.10008.1.2.2"
	jpegBaseline                   = "1.2.840.10008.1.2.4.50"
	rleLossless                    = "1.2.840.10008.1.2.5"
)

// File is a parsed DICOM image with its pixel data still in stored form.
type File struct {
	Name               string
	TransferSyntax     string // UID
	TransferSyntaxName string
	Modality           string
	Photometric        string
	Rows, Columns      int
	NumFrames          int
	SamplesPerPixel    int
	PlanarConfig       int
	BitsAllocated      int
	BitsStored         int
	HighBit            int
	Signed             bool // PixelRepresentation == 1
	HasRescale         bool
	RescaleSlope       float64
	RescaleIntercept   float64
	HasWindow          bool
	WindowCenter       float64 // first value of a multi-valued element, as stored (not mirrored)
	WindowWidth        float64

	native    []byte   // native pixel data, all frames
	fragments [][]byte // encapsulated pixel data, one entry per frame
}

// Frame is one decoded frame in output units (after rescale and MONOCHROME1 inversion).
type Frame struct {
	Width, Height int
	Pix           []float32
}

// ReadFile reads and parses the DICOM file at path.
func ReadFile(path string) (*File, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("reading %s: %w", path, err)
	}
	return Decode(data, path)
}

// Decode parses a whole DICOM file held in data; name is used in error messages.
func Decode(data []byte, name string) (*File, error) {
	if len(data) == 0 {
		return nil, fmt.Errorf("reading %s: %w: empty file", name, ErrNoMeta)
	}
	ts, err := checkStructure(data)
	if err != nil {
		return nil, fmt.Errorf("reading %s: %w", name, err)
	}
	ds, err := godicom.Parse(bytes.NewReader(data), int64(len(data)), nil,
		godicom.AllowMismatchPixelDataLength(), godicom.SkipProcessingPixelDataValue(),
		godicom.AllowUnknownSpecificCharacterSet())
	if err != nil {
		return nil, fmt.Errorf("reading %s: %w: %v", name, ErrCorrupt, err)
	}
	f := &File{Name: name, TransferSyntax: ts, TransferSyntaxName: syntaxName(ts)}
	if err := f.readAttributes(&ds); err != nil {
		return nil, fmt.Errorf("reading %s: %w", name, err)
	}
	if err := f.takePixelData(&ds); err != nil {
		return nil, fmt.Errorf("reading %s: %w", name, err)
	}
	return f, nil
}

func syntaxName(ts string) string {
	if info, err := uid.Lookup(ts); err == nil {
		return info.Name
	}
	return "unknown transfer syntax"
}

func (f *File) readAttributes(ds *godicom.Dataset) error {
	f.Modality = strings.ToUpper(stringAttr(ds, tag.Modality))
	f.Photometric = strings.ToUpper(stringAttr(ds, tag.PhotometricInterpretation))
	if _, err := ds.FindElementByTag(tag.PixelData); err != nil {
		return ErrNoPixels
	}
	need := []struct {
		t   tag.Tag
		dst *int
		lo  int
		hi  int
	}{
		{tag.Rows, &f.Rows, 1, 65535},
		{tag.Columns, &f.Columns, 1, 65535},
		{tag.BitsAllocated, &f.BitsAllocated, 1, 32},
	}
	for _, n := range need {
		v, ok := intAttr(ds, n.t)
		if !ok {
			return fmt.Errorf("%w: missing or malformed %s", ErrCorrupt, tagName(n.t))
		}
		if v < n.lo || v > n.hi {
			return fmt.Errorf("%w: %s is %d", ErrCorrupt, tagName(n.t), v)
		}
		*n.dst = v
	}
	var ok bool
	if f.SamplesPerPixel, ok = intAttr(ds, tag.SamplesPerPixel); !ok {
		f.SamplesPerPixel = 1
	}
	f.PlanarConfig, _ = intAttr(ds, tag.PlanarConfiguration)
	if f.BitsStored, ok = intAttr(ds, tag.BitsStored); !ok {
		f.BitsStored = f.BitsAllocated
	}
	if f.HighBit, ok = intAttr(ds, tag.HighBit); !ok {
		f.HighBit = f.BitsStored - 1
	}
	pr, _ := intAttr(ds, tag.PixelRepresentation)
	f.Signed = pr == 1
	f.NumFrames = 1
	if s := stringAttr(ds, tag.NumberOfFrames); s != "" {
		n, err := strconv.Atoi(s)
		if err != nil || n < 1 {
			return fmt.Errorf("%w: Number of Frames is %q", ErrCorrupt, s)
		}
		f.NumFrames = n
	}
	if f.Photometric == "" {
		f.Photometric = "MONOCHROME2"
	}
	switch {
	case f.BitsAllocated != 8 && f.BitsAllocated != 16 && f.BitsAllocated != 32:
		return fmt.Errorf("%w: Bits Allocated %d", ErrUnsupported, f.BitsAllocated)
	case f.BitsStored < 1 || f.BitsStored > f.BitsAllocated || f.HighBit < f.BitsStored-1 || f.HighBit >= f.BitsAllocated:
		return fmt.Errorf("%w: Bits Stored %d / High Bit %d do not fit Bits Allocated %d",
			ErrCorrupt, f.BitsStored, f.HighBit, f.BitsAllocated)
	case f.SamplesPerPixel == 1 && (f.Photometric == "MONOCHROME1" || f.Photometric == "MONOCHROME2"):
	case f.SamplesPerPixel == 3 && (f.Photometric == "RGB" || f.Photometric == "YBR_FULL" ||
		f.Photometric == "YBR_FULL_422" && f.TransferSyntax == jpegBaseline):
	default:
		return fmt.Errorf("%w: photometric interpretation %s with %d samples per pixel",
			ErrUnsupported, f.Photometric, f.SamplesPerPixel)
	}
	slope, okS := floatAttr(ds, tag.RescaleSlope)
	inter, okI := floatAttr(ds, tag.RescaleIntercept)
	f.HasRescale = okS || okI
	f.RescaleSlope, f.RescaleIntercept = 1, 0
	if okS && slope != 0 {
		f.RescaleSlope = slope
	}
	if okI {
		f.RescaleIntercept = inter
	}
	c, okC := floatAttr(ds, tag.WindowCenter)
	w, okW := floatAttr(ds, tag.WindowWidth)
	if okC && okW && w > 0 {
		f.HasWindow, f.WindowCenter, f.WindowWidth = true, c, w
	}
	return nil
}

func tagName(t tag.Tag) string {
	if info, err := tag.Find(t); err == nil {
		return info.Name
	}
	return t.String()
}

func stringAttr(ds *godicom.Dataset, t tag.Tag) string {
	e, err := ds.FindElementByTag(t)
	if err != nil || e.Value == nil {
		return ""
	}
	if s, ok := e.Value.GetValue().([]string); ok && len(s) > 0 {
		return strings.TrimSpace(s[0])
	}
	return ""
}

func intAttr(ds *godicom.Dataset, t tag.Tag) (int, bool) {
	e, err := ds.FindElementByTag(t)
	if err != nil || e.Value == nil {
		return 0, false
	}
	switch v := e.Value.GetValue().(type) {
	case []int:
		if len(v) > 0 {
			return v[0], true
		}
	case []string:
		if len(v) > 0 {
			n, err := strconv.Atoi(strings.TrimSpace(v[0]))
			return n, err == nil
		}
	}
	return 0, false
}

// floatAttr reads the first value of a DS (decimal string) or binary float element.
func floatAttr(ds *godicom.Dataset, t tag.Tag) (float64, bool) {
	e, err := ds.FindElementByTag(t)
	if err != nil || e.Value == nil {
		return 0, false
	}
	switch v := e.Value.GetValue().(type) {
	case []string:
		if len(v) > 0 {
			x, err := strconv.ParseFloat(strings.TrimSpace(v[0]), 64)
			return x, err == nil && !isNonFinite(x)
		}
	case []float64:
		if len(v) > 0 {
			return v[0], !isNonFinite(v[0])
		}
	case []int:
		if len(v) > 0 {
			return float64(v[0]), true
		}
	}
	return 0, false
}

func isNonFinite(x float64) bool { return x != x || x > 1e308 || x < -1e308 }

func (f *File) takePixelData(ds *godicom.Dataset) error {
	e, err := ds.FindElementByTag(tag.PixelData)
	if err != nil {
		return ErrNoPixels
	}
	info, ok := e.Value.GetValue().(godicom.PixelDataInfo)
	if !ok {
		return fmt.Errorf("%w: unreadable Pixel Data element", ErrCorrupt)
	}
	if !info.IsEncapsulated {
		switch f.TransferSyntax {
		case implicitVRLittleEndian, explicitVRLittleEndian, deflatedExplicitVRLittleEndian, explicitVRBigEndian:
		default:
			return fmt.Errorf("%w: native pixel data under compressed transfer syntax %s (%s)",
				ErrCorrupt, f.TransferSyntax, f.TransferSyntaxName)
		}
		f.native = info.UnprocessedValueData
		need := int64(f.Rows) * int64(f.Columns) * int64(f.SamplesPerPixel) * int64(f.BitsAllocated/8)
		if int64(len(f.native))/need < int64(f.NumFrames) {
			return fmt.Errorf("%w: pixel data holds %d bytes, %d frame(s) of %dx%dx%d at %d bits need %d",
				ErrCorrupt, len(f.native), f.NumFrames, f.Columns, f.Rows, f.SamplesPerPixel, f.BitsAllocated,
				need*int64(f.NumFrames))
		}
		return nil
	}
	switch f.TransferSyntax {
	case rleLossless, jpegBaseline:
	case implicitVRLittleEndian, explicitVRLittleEndian, deflatedExplicitVRLittleEndian, explicitVRBigEndian:
		return fmt.Errorf("%w: encapsulated pixel data under uncompressed transfer syntax %s (%s)",
			ErrCorrupt, f.TransferSyntax, f.TransferSyntaxName)
	default:
		return fmt.Errorf("%w: %s (%s)", ErrUnsupportedSyntax, f.TransferSyntax, f.TransferSyntaxName)
	}
	var frags [][]byte
	for _, fr := range info.Frames {
		if fr != nil && fr.Encapsulated {
			frags = append(frags, fr.EncapsulatedData.Data)
		}
	}
	switch {
	case len(frags) == f.NumFrames:
		f.fragments = frags
	case f.NumFrames == 1 && len(frags) > 1:
		f.fragments = [][]byte{bytes.Join(frags, nil)}
	default:
		return fmt.Errorf("%w: %d compressed fragments for %d frame(s)", ErrCorrupt, len(frags), f.NumFrames)
	}
	return nil
}
