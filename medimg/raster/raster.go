// Package raster reads PNG and JPEG files as one grey image of float32 values in the file's own scale.
//
// Colour is reduced to grey with the ITU-R 601 luma weights exactly as Pillow's convert("L") does for 8-bit
// data, in fixed point: (19595 R + 38470 G + 7471 B + 32768) >> 16. Alpha is ignored (as Pillow ignores it),
// and JPEG YCbCr is first converted to RGB. 16-bit data gets the same weights in floating point, without
// rounding.
//
// Nominal range (Lo, Hi), used to normalise when no window applies: 0..255 for 8-bit data. For 16-bit data
// Lo = 0 and Hi = 2^b - 1, where b is the smallest bit count that holds the image's maximum value, so 12-bit
// X-rays stored in 16-bit PNGs (as in the Montgomery set) map 0..4095 rather than 0..65535 and do not come out
// nearly black. A 16-bit image whose maximum is 0 gets Hi = 1. The PNG sBIT chunk is not consulted.
package raster

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"image"
	"image/color"
	"image/jpeg"
	"image/png"
	"io"
	"math"
	"math/bits"
	"os"
)

var (
	// ErrUnsupported: the bytes are neither PNG nor JPEG.
	ErrUnsupported = errors.New("not a PNG or JPEG image")
	// ErrCorrupt: the file claims to be PNG/JPEG but cannot be decoded or declares an implausible size.
	ErrCorrupt = errors.New("corrupt image")
)

// MaxPixels bounds the declared image size checked before decoding (8192 x 8192, far above chest X-rays at
// about 3000 x 3000); JPEG, unlike PNG, has no useful bound from the file size.
const MaxPixels = 1 << 26

// MaxJPEGPixelsPerByte bounds how many pixels a JPEG can describe per byte of its file. Every 8x8 block costs
// at least one bit of Huffman code in the scan holding its DC coefficient (two in a sequential JPEG), so n
// bytes hold at most 512n pixels; the bound is twice that. It lets a JPEG header that declares a huge image in
// a few bytes be refused before the decoder allocates that image.
const MaxJPEGPixelsPerByte = 1024

// minJPEGCheck: images up to this many pixels are never refused by PlausibleJPEG; they are cheap to allocate.
const minJPEGCheck = 1 << 16

// PlausibleJPEG reports whether a JPEG stream of size bytes can hold a width x height image (see
// MaxJPEGPixelsPerByte).
func PlausibleJPEG(width, height int, size int64) bool {
	pixels := int64(width) * int64(height)
	return pixels <= minJPEGCheck || pixels/MaxJPEGPixelsPerByte <= size
}

// maxDeflateRatio: deflate emits at most about 1032 bytes per input byte, which bounds a PNG's true size.
const maxDeflateRatio = 1032

// Image is a decoded grey image.
type Image struct {
	Width, Height int
	Pix           []float32 // row-major, top row first
	Lo, Hi        float32
	Format        string // "png" or "jpeg"
	BitDepth      int    // 8 or 16
}

// ReadFile decodes the PNG or JPEG at path (detected by content).
func ReadFile(path string) (Image, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return Image{}, fmt.Errorf("reading %s: %w", path, err)
	}
	return Decode(bytes.NewReader(data), int64(len(data)), path)
}

// Decode decodes a PNG or JPEG of size bytes from r; name is used in error messages.
func Decode(r io.Reader, size int64, name string) (Image, error) {
	br := bufio.NewReader(r)
	head, _ := br.Peek(8)
	var format string
	switch {
	case len(head) == 0:
		return Image{}, fmt.Errorf("reading %s: %w: empty file", name, ErrCorrupt)
	case bytes.HasPrefix(head, []byte("\x89PNG\r\n\x1a\n")):
		format = "png"
	case bytes.HasPrefix(head, []byte{0xff, 0xd8}):
		format = "jpeg"
	default:
		return Image{}, fmt.Errorf("reading %s: %w", name, ErrUnsupported)
	}
	// Decode the header twice: once to check the declared size, once for real, without buffering everything.
	var header bytes.Buffer
	cfg, err := decodeConfig(io.TeeReader(br, &header), format)
	if err != nil {
		return Image{}, fmt.Errorf("reading %s: %w: %v", name, ErrCorrupt, err)
	}
	pixels := int64(cfg.Width) * int64(cfg.Height)
	if cfg.Width <= 0 || cfg.Height <= 0 || pixels > MaxPixels {
		return Image{}, fmt.Errorf("reading %s: %w: declared size %dx%d", name, ErrCorrupt, cfg.Width, cfg.Height)
	}
	// One-bit PNG rows hold 8 pixels per byte; anything beyond the deflate limit cannot be in the file.
	if format == "png" && size > 0 && pixels/8 > size*maxDeflateRatio {
		return Image{}, fmt.Errorf("reading %s: %w: declared size %dx%d cannot fit in %d bytes",
			name, ErrCorrupt, cfg.Width, cfg.Height, size)
	}
	if format == "jpeg" && size > 0 && !PlausibleJPEG(cfg.Width, cfg.Height, size) {
		return Image{}, fmt.Errorf("reading %s: %w: declared size %dx%d cannot fit in %d bytes",
			name, ErrCorrupt, cfg.Width, cfg.Height, size)
	}
	full := io.MultiReader(&header, br)
	var img image.Image
	if format == "png" {
		img, err = png.Decode(full)
	} else {
		img, err = jpeg.Decode(full)
	}
	if err != nil {
		return Image{}, fmt.Errorf("reading %s: %w: %v", name, ErrCorrupt, err)
	}
	out := FromImage(img)
	out.Format = format
	return out, nil
}

func decodeConfig(r io.Reader, format string) (image.Config, error) {
	if format == "png" {
		return png.DecodeConfig(r)
	}
	return jpeg.DecodeConfig(r)
}

// Luma8 is Pillow's "L" conversion of one 8-bit RGB pixel.
func Luma8(r, g, b uint8) uint8 {
	return uint8((19595*uint32(r) + 38470*uint32(g) + 7471*uint32(b) + 32768) >> 16)
}

// Luma16 applies the same weights to 16-bit channels, in floating point.
func Luma16(r, g, b uint16) float32 {
	return float32((19595*float64(r) + 38470*float64(g) + 7471*float64(b)) / 65536)
}

// FromImage converts any decoded image to grey values with the package's rules.
func FromImage(img image.Image) Image {
	bnd := img.Bounds()
	w, h := bnd.Dx(), bnd.Dy()
	out := Image{Width: w, Height: h, Pix: make([]float32, w*h), Lo: 0, Hi: 255, BitDepth: 8}
	i := 0
	set8 := func(v uint8) { out.Pix[i] = float32(v); i++ }
	switch m := img.(type) {
	case *image.Gray:
		for y := bnd.Min.Y; y < bnd.Max.Y; y++ {
			for x := bnd.Min.X; x < bnd.Max.X; x++ {
				set8(m.GrayAt(x, y).Y)
			}
		}
		return out
	case *image.Gray16:
		for y := bnd.Min.Y; y < bnd.Max.Y; y++ {
			for x := bnd.Min.X; x < bnd.Max.X; x++ {
				out.Pix[i] = float32(m.Gray16At(x, y).Y)
				i++
			}
		}
		return with16BitRange(out)
	case *image.Paletted:
		lut := make([]uint8, len(m.Palette))
		for k, c := range m.Palette {
			n := color.NRGBAModel.Convert(c).(color.NRGBA)
			lut[k] = Luma8(n.R, n.G, n.B)
		}
		for y := bnd.Min.Y; y < bnd.Max.Y; y++ {
			for x := bnd.Min.X; x < bnd.Max.X; x++ {
				if k := int(m.ColorIndexAt(x, y)); k < len(lut) {
					set8(lut[k])
				} else {
					set8(0) // out-of-palette index: Go draws such pixels as transparent black
				}
			}
		}
		return out
	case *image.YCbCr:
		for y := bnd.Min.Y; y < bnd.Max.Y; y++ {
			for x := bnd.Min.X; x < bnd.Max.X; x++ {
				c := m.YCbCrAt(x, y)
				r, g, b := color.YCbCrToRGB(c.Y, c.Cb, c.Cr)
				set8(Luma8(r, g, b))
			}
		}
		return out
	case *image.NRGBA:
		for y := bnd.Min.Y; y < bnd.Max.Y; y++ {
			for x := bnd.Min.X; x < bnd.Max.X; x++ {
				c := m.NRGBAAt(x, y)
				set8(Luma8(c.R, c.G, c.B))
			}
		}
		return out
	case *image.RGBA:
		// PNG decodes opaque truecolour into RGBA, so premultiplication changes nothing there.
		for y := bnd.Min.Y; y < bnd.Max.Y; y++ {
			for x := bnd.Min.X; x < bnd.Max.X; x++ {
				c := m.RGBAAt(x, y)
				set8(Luma8(c.R, c.G, c.B))
			}
		}
		return out
	case *image.NRGBA64:
		for y := bnd.Min.Y; y < bnd.Max.Y; y++ {
			for x := bnd.Min.X; x < bnd.Max.X; x++ {
				c := m.NRGBA64At(x, y)
				out.Pix[i] = Luma16(c.R, c.G, c.B)
				i++
			}
		}
		return with16BitRange(out)
	case *image.RGBA64:
		for y := bnd.Min.Y; y < bnd.Max.Y; y++ {
			for x := bnd.Min.X; x < bnd.Max.X; x++ {
				c := m.RGBA64At(x, y)
				out.Pix[i] = Luma16(c.R, c.G, c.B)
				i++
			}
		}
		return with16BitRange(out)
	}
	// Anything else (CMYK JPEG, ...): go through non-premultiplied 8-bit RGB.
	for y := bnd.Min.Y; y < bnd.Max.Y; y++ {
		for x := bnd.Min.X; x < bnd.Max.X; x++ {
			c := color.NRGBAModel.Convert(img.At(x, y)).(color.NRGBA)
			set8(Luma8(c.R, c.G, c.B))
		}
	}
	return out
}

// with16BitRange sets BitDepth 16 and Hi = 2^b - 1 for the smallest b that holds the maximum.
func with16BitRange(img Image) Image {
	var mx float32
	for _, v := range img.Pix {
		mx = max(mx, v)
	}
	b := bits.Len32(uint32(math.Ceil(float64(mx))))
	if b == 0 {
		b = 1
	}
	img.BitDepth = 16
	img.Lo, img.Hi = 0, float32(uint32(1)<<b-1)
	return img
}
