package raster

import (
	"bytes"
	"encoding/binary"
	"errors"
	"hash/crc32"
	"image"
	"image/color"
	"image/jpeg"
	"image/png"
	"math"
	"strings"
	"testing"
)

func encodePNG(t *testing.T, img image.Image) []byte {
	t.Helper()
	var buf bytes.Buffer
	if err := png.Encode(&buf, img); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}

func decode(t *testing.T, b []byte, name string) (Image, error) {
	t.Helper()
	return Decode(bytes.NewReader(b), int64(len(b)), name)
}

func TestLumaMatchesPillow(t *testing.T) {
	// Pillow: Image.new("RGB", (1, 1), c).convert("L").getpixel((0, 0))
	cases := []struct{ r, g, b, want uint8 }{
		{255, 0, 0, 76}, {0, 255, 0, 150}, {0, 0, 255, 29}, {255, 255, 255, 255}, {0, 0, 0, 0},
		{128, 128, 128, 128}, {10, 200, 30, 124},
	}
	for _, c := range cases {
		if got := Luma8(c.r, c.g, c.b); got != c.want {
			t.Errorf("Luma8(%d,%d,%d) = %d, want %d", c.r, c.g, c.b, got, c.want)
		}
	}
}

func TestGreyFromEveryPNGKind(t *testing.T) {
	rgb := color.RGBA{10, 200, 30, 255}
	want8 := float32(124)
	gray := image.NewGray(image.Rect(0, 0, 3, 2))
	gray.Pix = []uint8{0, 1, 2, 3, 4, 255}
	nrgba := image.NewNRGBA(image.Rect(0, 0, 1, 1))
	nrgba.SetNRGBA(0, 0, color.NRGBA{10, 200, 30, 7}) // alpha ignored as in Pillow
	rgba := image.NewRGBA(image.Rect(0, 0, 1, 1))
	rgba.SetRGBA(0, 0, rgb)
	pal := image.NewPaletted(image.Rect(0, 0, 2, 1), color.Palette{color.RGBA{0, 0, 0, 255}, rgb})
	pal.Pix = []uint8{1, 0}
	g16 := image.NewGray16(image.Rect(0, 0, 2, 1))
	g16.SetGray16(0, 0, color.Gray16{Y: 4095})
	g16.SetGray16(1, 0, color.Gray16{Y: 7})
	rgb16 := image.NewRGBA64(image.Rect(0, 0, 1, 1))
	rgb16.SetRGBA64(0, 0, color.RGBA64{1000, 2000, 3000, 0xffff})

	cases := []struct {
		name   string
		img    image.Image
		want   []float32
		lo, hi float32
		depth  int
	}{
		{"gray8", gray, []float32{0, 1, 2, 3, 4, 255}, 0, 255, 8},
		{"nrgba", nrgba, []float32{want8}, 0, 255, 8},
		{"rgb", rgba, []float32{want8}, 0, 255, 8},
		{"paletted", pal, []float32{want8, 0}, 0, 255, 8},
		{"gray16 holding 12 bits", g16, []float32{4095, 7}, 0, 4095, 16},
		{"rgb16", rgb16, []float32{float32((19595*1000.0 + 38470*2000.0 + 7471*3000.0) / 65536)}, 0, 2047, 16},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			got, err := decode(t, encodePNG(t, tc.img), tc.name+".png")
			if err != nil {
				t.Fatal(err)
			}
			if got.Format != "png" || got.Lo != tc.lo || got.Hi != tc.hi || got.BitDepth != tc.depth {
				t.Errorf("format %s range %v..%v depth %d, want %v..%v depth %d", got.Format, got.Lo, got.Hi,
					got.BitDepth, tc.lo, tc.hi, tc.depth)
			}
			if len(got.Pix) != len(tc.want) {
				t.Fatalf("%d pixels, want %d", len(got.Pix), len(tc.want))
			}
			for i := range tc.want {
				if !(math.Abs(float64(got.Pix[i]-tc.want[i])) <= 1e-3) {
					t.Errorf("pixel %d = %v, want %v", i, got.Pix[i], tc.want[i])
				}
			}
		})
	}
}

func TestRowOrderAndJPEG(t *testing.T) {
	// A grey JPEG of a top-bright / bottom-dark image: the top row must stay on top.
	g := image.NewGray(image.Rect(0, 0, 16, 16))
	for y := 0; y < 16; y++ {
		for x := 0; x < 16; x++ {
			if y < 8 {
				g.SetGray(x, y, color.Gray{Y: 200})
			} else {
				g.SetGray(x, y, color.Gray{Y: 40})
			}
		}
	}
	var buf bytes.Buffer
	if err := jpeg.Encode(&buf, g, &jpeg.Options{Quality: 95}); err != nil {
		t.Fatal(err)
	}
	img, err := decode(t, buf.Bytes(), "g.jpg")
	if err != nil {
		t.Fatal(err)
	}
	if img.Format != "jpeg" || img.Width != 16 || img.Height != 16 || img.Hi != 255 {
		t.Fatalf("%+v", img)
	}
	if math.Abs(float64(img.Pix[0]-200)) > 3 || math.Abs(float64(img.Pix[15*16]-40)) > 3 {
		t.Fatalf("top %v bottom %v", img.Pix[0], img.Pix[15*16])
	}
	// Colour JPEG decodes to YCbCr and must come out as luma of the RGB.
	c := image.NewRGBA(image.Rect(0, 0, 16, 16))
	for i := 0; i < len(c.Pix); i += 4 {
		c.Pix[i], c.Pix[i+1], c.Pix[i+2], c.Pix[i+3] = 10, 200, 30, 255
	}
	buf.Reset()
	jpeg.Encode(&buf, c, &jpeg.Options{Quality: 100})
	img, err = decode(t, buf.Bytes(), "c.jpg")
	if err != nil {
		t.Fatal(err)
	}
	if math.Abs(float64(img.Pix[0]-124)) > 3 {
		t.Fatalf("colour JPEG luma %v, want about 124", img.Pix[0])
	}
}

// pngWithHeader builds a PNG whose IHDR declares w x h and whose data is one tiny IDAT.
func pngWithHeader(w, h uint32) []byte {
	var b bytes.Buffer
	b.WriteString("\x89PNG\r\n\x1a\n")
	chunk := func(typ string, data []byte) {
		binary.Write(&b, binary.BigEndian, uint32(len(data)))
		b.WriteString(typ)
		b.Write(data)
		binary.Write(&b, binary.BigEndian, crc32.ChecksumIEEE(append([]byte(typ), data...)))
	}
	ihdr := make([]byte, 13)
	binary.BigEndian.PutUint32(ihdr[0:], w)
	binary.BigEndian.PutUint32(ihdr[4:], h)
	ihdr[8], ihdr[9] = 8, 0 // 8-bit grey
	chunk("IHDR", ihdr)
	chunk("IDAT", []byte{0x78, 0x9c, 0x03, 0x00, 0x00, 0x00, 0x00, 0x01})
	chunk("IEND", nil)
	return b.Bytes()
}

func TestBadInput(t *testing.T) {
	good := encodePNG(t, image.NewGray(image.Rect(0, 0, 64, 64)))
	cases := []struct {
		name, want string
		data       []byte
		is         error
	}{
		{"zero.png", "empty file", nil, ErrCorrupt},
		{"garbage.png", "not a PNG or JPEG", []byte("this is not an image at all"), ErrUnsupported},
		{"truncated.png", "corrupt", good[:len(good)/2], ErrCorrupt},
		{"absurd.png", "corrupt image", pngWithHeader(1<<31-1, 1<<31-1), ErrCorrupt},
		{"wide.png", "declared size 60000x60000", pngWithHeader(60000, 60000), ErrCorrupt},
		{"truncated.jpg", "corrupt", []byte{0xff, 0xd8, 0xff, 0xe0, 0, 16}, ErrCorrupt},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			_, err := decode(t, tc.data, tc.name)
			if err == nil || !errors.Is(err, tc.is) || !strings.Contains(err.Error(), tc.name) ||
				!strings.Contains(err.Error(), tc.want) {
				t.Fatalf("error %v: want %v naming the file and %q", err, tc.is, tc.want)
			}
		})
	}
}
