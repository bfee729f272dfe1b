package raster

import (
	"bytes"
	"errors"
	"image"
	"image/color"
	"image/jpeg"
	"image/png"
	"math"
	"strings"
	"testing"

	"github.com/maddr-project/maddr/reliability"
)

func mustPNG(t testing.TB, img image.Image) []byte {
	var b bytes.Buffer
	if err := png.Encode(&b, img); err != nil {
		t.Fatal(err)
	}
	return b.Bytes()
}

func mustJPEG(t testing.TB, img image.Image) []byte {
	var b bytes.Buffer
	if err := jpeg.Encode(&b, img, &jpeg.Options{Quality: 90}); err != nil {
		t.Fatal(err)
	}
	return b.Bytes()
}

// withJPEGSize patches the first SOF0 frame header of a JPEG to declare w x h.
func withJPEGSize(t testing.TB, data []byte, w, h int) []byte {
	data = append([]byte(nil), data...)
	sof := bytes.Index(data, []byte{0xFF, 0xC0})
	if sof < 0 {
		t.Fatal("no SOF0 marker")
	}
	data[sof+5], data[sof+6] = byte(h>>8), byte(h)
	data[sof+7], data[sof+8] = byte(w>>8), byte(w)
	return data
}

func pngSeeds(t testing.TB) map[string][]any {
	gray := image.NewGray(image.Rect(0, 0, 5, 3))
	g16 := image.NewGray16(image.Rect(0, 0, 3, 2))
	rgba := image.NewRGBA(image.Rect(0, 0, 2, 2))
	nrgba64 := image.NewNRGBA64(image.Rect(0, 0, 2, 1))
	for i := range gray.Pix {
		gray.Pix[i] = uint8(17 * i)
	}
	for i := 0; i < 6; i++ {
		g16.SetGray16(i%3, i/3, color.Gray16{Y: uint16(700 * i)})
	}
	rgba.SetRGBA(1, 0, color.RGBA{10, 200, 30, 255})
	nrgba64.SetNRGBA64(0, 0, color.NRGBA64{1000, 2000, 3000, 40000})
	// Two palette entries: the encoder writes 1 bit per pixel, the densest
	// PNG and the one the deflate-ratio size check is built around.
	bilevel := image.NewPaletted(image.Rect(0, 0, 9, 2), color.Palette{color.Black, color.White})
	bilevel.Pix[3], bilevel.Pix[12] = 1, 1
	return map[string][]any{
		"gray8":      {mustPNG(t, gray)},
		"gray16":     {mustPNG(t, g16)},
		"rgba":       {mustPNG(t, rgba)},
		"nrgba64":    {mustPNG(t, nrgba64)},
		"palette-1b": {mustPNG(t, bilevel)},
		"huge-ihdr":  {pngWithHeader(60000, 60000)},
	}
}

func jpegSeeds(t testing.TB) map[string][]any {
	gray := image.NewGray(image.Rect(0, 0, 16, 8))
	for i := range gray.Pix {
		gray.Pix[i] = uint8(2 * i)
	}
	col := image.NewRGBA(image.Rect(0, 0, 17, 9)) // odd sizes: partial MCUs with 4:2:0 chroma
	for i := range col.Pix {
		col.Pix[i] = uint8(5 * i)
	}
	return map[string][]any{
		"gray":  {mustJPEG(t, gray)},
		"color": {mustJPEG(t, col)},
		// A few hundred bytes declaring 8192 x 8192 (within MaxPixels): the
		// JPEG decoder used to allocate the 64-megapixel image (64 MiB grey,
		// up to 256 MiB CMYK) before finding the data missing.
		"regress-declares-8192": {withJPEGSize(t, mustJPEG(t, gray), 8192, 8192)},
	}
}

func TestRasterFuzzSeeds(t *testing.T) {
	reliability.CheckCorpus(t, "FuzzPNG", pngSeeds(t))
	reliability.CheckCorpus(t, "FuzzJPEG", jpegSeeds(t))
}

// TestJPEGSizeBound: the plausibility bound refuses a tiny JPEG declaring a
// huge image before allocating it, yet accepts the most compressible real
// image, a flat one (Go's encoder: about 85 pixels per byte; libjpeg with
// optimised Huffman tables about 255, checked with cjpeg on a black
// 4000 x 4000 image; the bound is 1024).
func TestJPEGSizeBound(t *testing.T) {
	flat := mustJPEG(t, image.NewGray(image.Rect(0, 0, 2048, 2048)))
	img, err := Decode(bytes.NewReader(flat), int64(len(flat)), "flat.jpg")
	if err != nil || img.Width != 2048 {
		t.Fatalf("flat 2048x2048 JPEG of %d bytes: %v", len(flat), err)
	}
	huge := jpegSeeds(t)["regress-declares-8192"][0].([]byte)
	before := reliability.Allocated()
	_, err = Decode(bytes.NewReader(huge), int64(len(huge)), "huge.jpg")
	if grew := reliability.Allocated() - before; grew > 1<<20 {
		t.Errorf("allocated %d bytes before refusing", grew)
	}
	if !errors.Is(err, ErrCorrupt) || !strings.Contains(err.Error(), "huge.jpg") || !strings.Contains(err.Error(), "8192x8192 cannot fit") {
		t.Fatalf("huge JPEG: %v", err)
	}
}

// checkRaster is the contract both fuzz targets check: no panic, errors wrap
// ErrCorrupt or ErrUnsupported and name the file, allocation bounded by the
// input size, and accepted images are consistent (size, finite values inside
// the nominal range).
func checkRaster(t *testing.T, data []byte, name string, perByte uint64) {
	before := reliability.Allocated()
	img, err := Decode(bytes.NewReader(data), int64(len(data)), name)
	if grew := reliability.Allocated() - before; grew > reliability.AllocLimit(len(data), perByte) {
		t.Fatalf("decoding %d bytes allocated %d bytes", len(data), grew)
	}
	if err != nil {
		if !strings.Contains(err.Error(), name) || !(errors.Is(err, ErrCorrupt) || errors.Is(err, ErrUnsupported)) {
			t.Fatalf("error must wrap ErrCorrupt or ErrUnsupported and name the file: %v", err)
		}
		return
	}
	if img.Width <= 0 || img.Height <= 0 || len(img.Pix) != img.Width*img.Height || !(img.Hi > img.Lo) {
		t.Fatalf("inconsistent image %dx%d, %d values, range %v..%v", img.Width, img.Height, len(img.Pix), img.Lo, img.Hi)
	}
	for i, v := range img.Pix {
		if math.IsNaN(float64(v)) || v < img.Lo || v > img.Hi {
			t.Fatalf("pixel %d = %v outside %v..%v", i, v, img.Lo, img.Hi)
		}
	}
}

// FuzzPNG allows 48 KiB per input byte: a 1-bit PNG holds up to 8 x 1032
// pixels per byte (the deflate limit), each decoded to 1 byte and then a
// 4-byte float32.
func FuzzPNG(f *testing.F) {
	for _, s := range pngSeeds(f) {
		f.Add(s[0].([]byte))
	}
	f.Fuzz(func(t *testing.T, data []byte) { checkRaster(t, data, "fuzz.png", 48<<10) })
}

// FuzzJPEG allows 16 bytes per plausible pixel (MaxJPEGPixelsPerByte per
// input byte): the decoded YCbCr or CMYK image plus the float32 copy.
func FuzzJPEG(f *testing.F) {
	for _, s := range jpegSeeds(f) {
		f.Add(s[0].([]byte))
	}
	f.Fuzz(func(t *testing.T, data []byte) { checkRaster(t, data, "fuzz.jpg", 16*MaxJPEGPixelsPerByte) })
}
