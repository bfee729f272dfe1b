package dicom

import (
	"bytes"
	"compress/flate"
	"errors"
	"image"
	"image/color"
	"image/jpeg"
	"strings"
	"testing"

	"github.com/maddr-project/maddr/medimg/raster"
	"github.com/maddr-project/maddr/reliability"
)

// dicomSeeds are small synthetic files covering every path of the reader:
// the three native transfer syntaxes, deflate, RLE, JPEG Baseline, colour,
// multi-frame MONOCHROME1, nested sequences, and the regressions found by
// fuzzing.
func dicomSeeds(t testing.TB) map[string][]any {
	ct := []el{{0x0028, 0x1050, "DS", str("40")}, {0x0028, 0x1051, "DS", str("400")},
		{0x0028, 0x1052, "DS", str("-1024")}, {0x0028, 0x1053, "DS", str("1")}}
	grey := func(ts string) []byte {
		return writeDICOM(ts, sortedByTag(imageElems(2, 3, 16, 12, 1, "MONOCHROME2", ct, us(1, 2, 3, 4, 5, 0xFFFF))))
	}
	multi := writeDICOM(explicitVRLittleEndian, sortedByTag(imageElems(1, 2, 16, 10, 0, "MONOCHROME1",
		[]el{{0x0028, 0x0008, "IS", str("3")}}, us(0, 1000, 5, 6, 1023, 512))))

	rle := sortedByTag(imageElems(2, 2, 16, 16, 0, "MONOCHROME2", nil, nil))
	rle[len(rle)-1] = el{0x7FE0, 0x0010, "OB?", encapsulated(rleFragment([]uint16{0, 300, 65535, 4096}))}

	g := image.NewGray(image.Rect(0, 0, 8, 8))
	for i := range g.Pix {
		g.Pix[i] = uint8(i * 4)
	}
	var jb bytes.Buffer
	if err := jpeg.Encode(&jb, g, &jpeg.Options{Quality: 90}); err != nil {
		t.Fatal(err)
	}
	jfrag := jb.Bytes()
	if len(jfrag)%2 == 1 {
		jfrag = append(jfrag, 0)
	}
	jp := sortedByTag(imageElems(8, 8, 8, 8, 0, "MONOCHROME2", nil, nil))
	jp[len(jp)-1] = el{0x7FE0, 0x0010, "OB?", encapsulated(jfrag)}

	rgb := sortedByTag([]el{
		{0x0008, 0x0060, "CS", str("XC")},
		{0x0028, 0x0002, "US", us(3)},
		{0x0028, 0x0004, "CS", str("RGB")},
		{0x0028, 0x0006, "US", us(1)},
		{0x0028, 0x0010, "US", us(1)},
		{0x0028, 0x0011, "US", us(2)},
		{0x0028, 0x0100, "US", us(8)},
		{0x0028, 0x0101, "US", us(8)},
		{0x0028, 0x0102, "US", us(7)},
		{0x0028, 0x0103, "US", us(0)},
		{0x7FE0, 0x0010, "OB", []byte{255, 0, 10, 20, 0, 200}},
	})

	// A sequence of undefined length holding one item of undefined length,
	// so the structure walker's nesting is exercised.
	item := append(append([]byte{0xFE, 0xFF, 0x00, 0xE0, 0xFF, 0xFF, 0xFF, 0xFF}, // item, undefined length
		0x08, 0x00, 0x50, 0x11, 'U', 'I', 4, 0, '1', '.', '2', 0), // Referenced SOP Class UID
		0xFE, 0xFF, 0x0D, 0xE0, 0, 0, 0, 0, // item delimiter
		0xFE, 0xFF, 0xDD, 0xE0, 0, 0, 0, 0) // sequence delimiter
	seq := sortedByTag(append(imageElems(1, 1, 8, 8, 0, "MONOCHROME2", nil, []byte{7, 0}),
		el{0x0008, 0x1140, "SQ?", item}))

	// Deflated Explicit VR Little Endian: the meta header stays plain, the
	// data set after it is raw deflate.
	head := writeDICOM(deflatedExplicitVRLittleEndian, nil)
	plainHead := writeDICOM(explicitVRLittleEndian, nil)
	body := grey(explicitVRLittleEndian)[len(plainHead):]
	var zb bytes.Buffer
	zw, _ := flate.NewWriter(&zb, flate.BestCompression)
	zw.Write(body)
	zw.Close()
	deflated := append(append([]byte(nil), head...), zb.Bytes()...)

	// An RLE frame that declares 65535 x 65535 pixels in a few bytes: the
	// decoder once allocated the whole 8 GiB frame before finding that the
	// segments cannot fill it.
	hugeRLE := sortedByTag(imageElems(65535, 65535, 16, 16, 0, "MONOCHROME2", nil, nil))
	hugeRLE[len(hugeRLE)-1] = el{0x7FE0, 0x0010, "OB?", encapsulated(rleFragment([]uint16{1, 2}))}
	// The same for JPEG Baseline: a JPEG header declaring 65535 x 65535 made
	// the JPEG decoder allocate the image (about 6 GiB) before reading data.
	hugeJPEG := sortedByTag(imageElems(65535, 65535, 8, 8, 0, "MONOCHROME2", nil, nil))
	hugeJPEG[len(hugeJPEG)-1] = el{0x7FE0, 0x0010, "OB?", encapsulated(jpegDeclaring(t, 65535, 65535))}

	return map[string][]any{
		"explicit-le":             {grey(explicitVRLittleEndian)},
		"implicit-le":             {grey(implicitVRLittleEndian)},
		"explicit-be":             {grey(explicitVRBigEndian)},
		"deflated":                {deflated},
		"multiframe-mo1":          {multi},
		"rle":                     {writeDICOM(rleLossless, rle)},
		"jpeg-baseline":           {writeDICOM(jpegBaseline, jp)},
		"rgb-planar":              {writeDICOM(explicitVRLittleEndian, rgb)},
		"sequence":                {writeDICOM(explicitVRLittleEndian, seq)},
		"regress-rle-huge-frame":  {writeDICOM(rleLossless, hugeRLE)},
		"regress-jpeg-huge-frame": {writeDICOM(jpegBaseline, hugeJPEG)},
	}
}

// jpegDeclaring returns a valid 8x8 grey JPEG whose frame header claims w x h.
func jpegDeclaring(t testing.TB, w, h int) []byte {
	g := image.NewGray(image.Rect(0, 0, 8, 8))
	g.SetGray(1, 1, color.Gray{Y: 200})
	var b bytes.Buffer
	if err := jpeg.Encode(&b, g, nil); err != nil {
		t.Fatal(err)
	}
	data := b.Bytes()
	sof := bytes.Index(data, []byte{0xFF, 0xC0})
	if sof < 0 {
		t.Fatal("no SOF0 marker in the encoded JPEG")
	}
	// SOF0: marker, length (2), precision (1), height (2), width (2).
	data[sof+5], data[sof+6] = byte(h>>8), byte(h)
	data[sof+7], data[sof+8] = byte(w>>8), byte(w)
	if len(data)%2 == 1 {
		data = append(data, 0)
	}
	return data
}

func TestDICOMFuzzSeeds(t *testing.T) {
	reliability.CheckCorpus(t, "FuzzDICOM", dicomSeeds(t))
}

// TestHugeCompressedFramesAreRefused pins the two allocations fuzzing found:
// a compressed frame is checked against what its bytes can hold before the
// frame buffer exists.
func TestHugeCompressedFramesAreRefused(t *testing.T) {
	seeds := dicomSeeds(t)
	for _, name := range []string{"regress-rle-huge-frame", "regress-jpeg-huge-frame"} {
		before := reliability.Allocated()
		f, err := Decode(seeds[name][0].([]byte), name+".dcm")
		if err == nil {
			_, err = f.Frame(0)
		}
		if grew := reliability.Allocated() - before; grew > 16<<20 {
			t.Errorf("%s: allocated %d bytes before failing", name, grew)
		}
		if !errors.Is(err, ErrCorrupt) || !strings.Contains(err.Error(), name+".dcm") || !strings.Contains(err.Error(), "65535x65535") {
			t.Errorf("%s: %v, want ErrCorrupt naming the file and the declared size", name, err)
		}
	}
}

// FuzzDICOM checks that Decode and Frame never panic, that every error wraps
// one of the package's sentinels and names the file, that frames have the
// declared size, and that a decode allocates no more than the input can
// describe. The per-byte allowance covers the largest legitimate expansion:
// a JPEG frame of raster.MaxJPEGPixelsPerByte pixels per byte, each pixel
// held as decoded JPEG (up to 3 bytes), float64 and float32.
func FuzzDICOM(f *testing.F) {
	for _, s := range dicomSeeds(f) {
		f.Add(s[0].([]byte))
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		before := reliability.Allocated()
		err := decodeAllFrames(data)
		if grew := reliability.Allocated() - before; grew > reliability.AllocLimit(len(data), raster.MaxJPEGPixelsPerByte*24) {
			t.Fatalf("decoding %d bytes allocated %d bytes", len(data), grew)
		}
		if err == nil {
			return
		}
		if !strings.Contains(err.Error(), "fuzz.dcm") {
			t.Fatalf("error does not name the file: %v", err)
		}
		for _, s := range []error{ErrNoMeta, ErrCorrupt, ErrNoPixels, ErrUnsupportedSyntax, ErrUnsupported} {
			if errors.Is(err, s) {
				return
			}
		}
		t.Fatalf("error wraps none of the package's sentinels: %v", err)
	})
}

func decodeAllFrames(data []byte) error {
	f, err := Decode(data, "fuzz.dcm")
	if err != nil {
		return err
	}
	for i := 0; i < f.NumFrames; i++ {
		fr, err := f.Frame(i)
		if err != nil {
			return err
		}
		if fr.Width != f.Columns || fr.Height != f.Rows || len(fr.Pix) != f.Rows*f.Columns {
			panic("frame size differs from the header")
		}
	}
	return nil
}
