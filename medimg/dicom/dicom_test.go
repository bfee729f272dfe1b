package dicom

import (
	"bytes"
	"encoding/binary"
	"errors"
	"math"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"testing"
)

// el is one data element for the test writer.
type el struct {
	group, element uint16
	vr             string // a trailing "?" writes an undefined length (the value then holds items + delimiter)
	value          []byte
}

func us(v ...uint16) []byte {
	b := make([]byte, 2*len(v))
	for i, x := range v {
		binary.LittleEndian.PutUint16(b[2*i:], x)
	}
	return b
}

func str(s string) []byte {
	if len(s)%2 == 1 {
		s += " "
	}
	return []byte(s)
}

func longVR(vr string) bool {
	switch vr {
	case "OB", "OD", "OF", "OL", "OW", "SQ", "UN", "UC", "UR", "UT":
		return true
	}
	return false
}

// writeDICOM writes a Part 10 file: preamble, meta header (explicit little endian) and the data set in the
// given transfer syntax (implicit LE, explicit LE or explicit BE; values are converted for BE when 16-bit).
func writeDICOM(ts string, elems []el) []byte {
	var meta bytes.Buffer
	writeEl(&meta, binary.LittleEndian, false, el{2, 0x10, "UI", append([]byte(ts), 0)[:len(ts)+len(ts)%2]})
	var out bytes.Buffer
	out.Write(make([]byte, 128))
	out.WriteString("DICM")
	writeEl(&out, binary.LittleEndian, false, el{2, 0, "UL", binary.LittleEndian.AppendUint32(nil, uint32(meta.Len()))})
	out.Write(meta.Bytes())
	bo := binary.ByteOrder(binary.LittleEndian)
	if ts == explicitVRBigEndian {
		bo = binary.BigEndian
	}
	for _, e := range elems {
		if bo == binary.BigEndian && (e.vr == "US" || e.vr == "OW") {
			v := make([]byte, len(e.value))
			for i := 0; i+1 < len(v); i += 2 {
				v[i], v[i+1] = e.value[i+1], e.value[i]
			}
			e.value = v
		}
		writeEl(&out, bo, ts == implicitVRLittleEndian, e)
	}
	return out.Bytes()
}

func writeEl(w *bytes.Buffer, bo binary.ByteOrder, implicit bool, e el) {
	binary.Write(w, bo, e.group)
	binary.Write(w, bo, e.element)
	n := uint32(len(e.value))
	if strings.HasSuffix(e.vr, "?") {
		e.vr, n = strings.TrimSuffix(e.vr, "?"), undefinedLength
	}
	switch {
	case implicit:
		binary.Write(w, bo, n)
	case longVR(e.vr):
		w.WriteString(e.vr)
		w.Write([]byte{0, 0})
		binary.Write(w, bo, n)
	default:
		w.WriteString(e.vr)
		binary.Write(w, bo, uint16(n))
	}
	w.Write(e.value)
}

// image builds the elements of a grey image; extra elements are inserted in tag order by the caller's list.
func imageElems(rows, cols, bitsAlloc, bitsStored, pixRep int, photometric string, extra []el, pixels []byte) []el {
	e := []el{
		{0x0008, 0x0060, "CS", str("CT")},
		{0x0028, 0x0002, "US", us(1)},
		{0x0028, 0x0004, "CS", str(photometric)},
	}
	e = append(e, extra...)
	e = append(e,
		el{0x0028, 0x0010, "US", us(uint16(rows))},
		el{0x0028, 0x0011, "US", us(uint16(cols))},
		el{0x0028, 0x0100, "US", us(uint16(bitsAlloc))},
		el{0x0028, 0x0101, "US", us(uint16(bitsStored))},
		el{0x0028, 0x0102, "US", us(uint16(bitsStored - 1))},
		el{0x0028, 0x0103, "US", us(uint16(pixRep))},
	)
	return append(e, el{0x7FE0, 0x0010, "OW", pixels})
}

func sortedByTag(e []el) []el {
	for i := 1; i < len(e); i++ {
		for j := i; j > 0 && (e[j].group < e[j-1].group || e[j].group == e[j-1].group && e[j].element < e[j-1].element); j-- {
			e[j], e[j-1] = e[j-1], e[j]
		}
	}
	return e
}

func TestSignedRescaledCT(t *testing.T) {
	// 12-bit signed values with junk in the unused top bits, which must be masked off.
	stored := []int{-2048, -1, 0, 1, 2047, -100}
	words := make([]uint16, len(stored))
	for i, v := range stored {
		words[i] = uint16(v)&0x0FFF | 0xA000
	}
	extra := []el{{0x0028, 0x1050, "DS", str("40\\400")}, {0x0028, 0x1051, "DS", str("400\\1500")},
		{0x0028, 0x1052, "DS", str("-1024")}, {0x0028, 0x1053, "DS", str("2")}}
	for _, ts := range []string{explicitVRLittleEndian, implicitVRLittleEndian, explicitVRBigEndian} {
		t.Run(ts, func(t *testing.T) {
			data := writeDICOM(ts, sortedByTag(imageElems(2, 3, 16, 12, 1, "MONOCHROME2", extra, us(words...))))
			f, err := Decode(data, "ct.dcm")
			if err != nil {
				t.Fatal(err)
			}
			raw, err := f.RawFrame(0)
			if err != nil {
				t.Fatal(err)
			}
			fr, _ := f.Frame(0)
			for i, v := range stored {
				if raw[i] != float64(v) || fr.Pix[i] != float32(2*v-1024) {
					t.Fatalf("pixel %d: raw %v out %v, want %d and %d", i, raw[i], fr.Pix[i], v, 2*v-1024)
				}
			}
			if lo, hi := f.Range(); lo != -2048*2-1024 || hi != 2047*2-1024 {
				t.Errorf("range %v..%v", lo, hi)
			}
			if c, w, ok := f.Window(); !ok || c != 40 || w != 400 {
				t.Errorf("window %v/%v %v, want the first values 40/400", c, w, ok)
			}
			if f.Modality != "CT" || !f.HasRescale || fr.Width != 3 || fr.Height != 2 {
				t.Errorf("%+v", f)
			}
		})
	}
}

func TestMonochrome1MultiFrame(t *testing.T) {
	// Three 1x2 frames of 10-bit unsigned data.
	px := us(0, 1000, 5, 6, 1023, 512)
	extra := []el{{0x0028, 0x0008, "IS", str("3")}, {0x0028, 0x1050, "DS", str("600")}, {0x0028, 0x1051, "DS", str("800")}}
	f, err := Decode(writeDICOM(explicitVRLittleEndian, sortedByTag(imageElems(1, 2, 16, 10, 0, "MONOCHROME1", extra, px))), "cr.dcm")
	if err != nil {
		t.Fatal(err)
	}
	if f.NumFrames != 3 {
		t.Fatalf("%d frames", f.NumFrames)
	}
	want := [][]float32{{1023, 23}, {1018, 1017}, {0, 511}}
	for i, w := range want {
		fr, err := f.Frame(i)
		if err != nil {
			t.Fatal(err)
		}
		if fr.Pix[0] != w[0] || fr.Pix[1] != w[1] {
			t.Errorf("frame %d = %v, want %v", i, fr.Pix, w)
		}
	}
	if c, _, _ := f.Window(); c != 1023-600 {
		t.Errorf("window center %v, want it mirrored to %v", c, 1023-600)
	}
	if _, err := f.Frame(3); err == nil || !strings.Contains(err.Error(), "cr.dcm") {
		t.Errorf("frame past the end: %v", err)
	}
}

// rleFragment encodes one 16-bit grey frame as two PackBits segments of literal runs.
func rleFragment(words []uint16) []byte {
	hdr := make([]byte, 64)
	binary.LittleEndian.PutUint32(hdr, 2)
	var hi, lo []byte
	for _, w := range words {
		hi, lo = append(hi, byte(w>>8)), append(lo, byte(w))
	}
	seg := func(b []byte) []byte { return append([]byte{byte(len(b) - 1)}, b...) }
	s1, s2 := seg(hi), seg(lo)
	binary.LittleEndian.PutUint32(hdr[4:], 64)
	binary.LittleEndian.PutUint32(hdr[8:], uint32(64+len(s1)))
	out := append(append(hdr, s1...), s2...)
	if len(out)%2 == 1 {
		out = append(out, 0)
	}
	return out
}

func encapsulated(frags ...[]byte) []byte {
	var b bytes.Buffer
	item := func(d []byte) {
		binary.Write(&b, binary.LittleEndian, uint16(0xFFFE))
		binary.Write(&b, binary.LittleEndian, uint16(0xE000))
		binary.Write(&b, binary.LittleEndian, uint32(len(d)))
		b.Write(d)
	}
	item(nil) // empty basic offset table
	for _, f := range frags {
		item(f)
	}
	b.Write([]byte{0xFE, 0xFF, 0xDD, 0xE0, 0, 0, 0, 0})
	return b.Bytes()
}

func TestRLE(t *testing.T) {
	words := []uint16{0, 300, 65535, 4096}
	e := sortedByTag(imageElems(2, 2, 16, 16, 0, "MONOCHROME2", nil, nil))
	e[len(e)-1] = el{0x7FE0, 0x0010, "OB?", encapsulated(rleFragment(words))}
	f, err := Decode(writeDICOM(rleLossless, e), "rle.dcm")
	if err != nil {
		t.Fatal(err)
	}
	raw, err := f.RawFrame(0)
	if err != nil {
		t.Fatal(err)
	}
	for i, w := range words {
		if raw[i] != float64(w) {
			t.Fatalf("RLE pixel %d = %v, want %d", i, raw[i], w)
		}
	}
}

func TestBadInput(t *testing.T) {
	good := writeDICOM(explicitVRLittleEndian, sortedByTag(imageElems(4, 4, 16, 16, 0, "MONOCHROME2", nil, make([]byte, 32))))
	noPixels := writeDICOM(explicitVRLittleEndian, []el{{0x0008, 0x0060, "CS", str("SR")}})
	hugeString := writeDICOM(explicitVRLittleEndian, []el{{0x0008, 0x0060, "CS", str("CT")}})
	hugeString = append(hugeString, 0x08, 0x00, 0x30, 0x10, 'U', 'T', 0, 0, 0xF0, 0xFF, 0xFF, 0xFF, 'a', 'b')
	bigImage := writeDICOM(explicitVRLittleEndian, sortedByTag(imageElems(65535, 65535, 16, 16, 0, "MONOCHROME2", nil, make([]byte, 32))))
	jpegLS := sortedByTag(imageElems(2, 2, 16, 16, 0, "MONOCHROME2", nil, nil))
	jpegLS[len(jpegLS)-1] = el{0x7FE0, 0x0010, "OB?", encapsulated([]byte{0xFF, 0xD8, 0xFF, 0xF7})}
	oneBit := writeDICOM(explicitVRLittleEndian, sortedByTag(imageElems(4, 4, 1, 1, 0, "MONOCHROME2", nil, make([]byte, 2))))
	palette := writeDICOM(explicitVRLittleEndian, sortedByTag(imageElems(4, 4, 8, 8, 0, "PALETTE COLOR", nil, make([]byte, 16))))
	garbage := bytes.Repeat([]byte("garbage!"), 40)
	cases := []struct {
		name, want string
		data       []byte
		is         error
	}{
		{"zero.dcm", "empty file", nil, ErrNoMeta},
		{"garbage.dcm", "no DICOM file meta header", garbage, ErrNoMeta},
		{"nometa.dcm", "no DICOM file meta header", good[132:], ErrNoMeta},
		{"truncated.dcm", "only 16 remain", good[:len(good)-16], ErrCorrupt},
		{"header-cut.dcm", "cut off", good[:140], ErrCorrupt},
		{"nopixels.dcm", "no pixel data", noPixels, ErrNoPixels},
		{"hugestring.dcm", "declares 4294967280 bytes", hugeString, ErrCorrupt},
		{"bigimage.dcm", "pixel data holds 32 bytes", bigImage, ErrCorrupt},
		{"jpegls.dcm", "1.2.840.10008.1.2.4.80 (JPEG-LS Lossless Image Compression)", writeDICOM("1.2.840.10008.1.2.4.80", jpegLS), ErrUnsupportedSyntax},
		{"onebit.dcm", "Bits Allocated 1", oneBit, ErrUnsupported},
		{"palette.dcm", "PALETTE COLOR", palette, ErrUnsupported},
		// A UID that is not a transfer syntax once made the library dereference a nil byte order.
		{"sopclass.dcm", "not a known transfer syntax", writeDICOM("1.2.840.10008.5.1.4.1.1.4", nil), ErrUnsupportedSyntax},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			var before, after runtime.MemStats
			runtime.ReadMemStats(&before)
			f, err := Decode(tc.data, tc.name)
			runtime.ReadMemStats(&after)
			if err == nil {
				_, err = f.Frame(0)
			}
			if err == nil || !errors.Is(err, tc.is) || !strings.Contains(err.Error(), tc.name) || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("error %v: want %v naming the file and %q", err, tc.is, tc.want)
			}
			if grew := after.TotalAlloc - before.TotalAlloc; grew > 8<<20 {
				t.Errorf("allocated %d bytes before failing", grew)
			}
		})
	}
}

func realDir(t *testing.T) string {
	t.Helper()
	dir, _ := os.Getwd()
	for {
		if _, err := os.Stat(filepath.Join(dir, "go.mod")); err == nil {
			break
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			t.Skip("repository root not found")
		}
		dir = parent
	}
	real := filepath.Join(dir, "testdata", "real")
	if _, err := os.Stat(real); err != nil {
		t.Skip("testdata/real is absent: run tools/fetch-fixtures.sh to fetch the real-image fixtures")
	}
	return real
}

func stats(v []float32) (lo, hi, mean float64) {
	lo, hi = math.Inf(1), math.Inf(-1)
	s := 0.0
	for _, x := range v {
		lo, hi, s = math.Min(lo, float64(x)), math.Max(hi, float64(x)), s+float64(x)
	}
	return lo, hi, s / float64(len(v))
}

func TestRealFiles(t *testing.T) {
	root := realDir(t)
	cases := []struct {
		file           string
		lo, hi, mean   float64
		modality       string
		width, height  int
		syntaxContains string
	}{
		{"pydicom/CT_small.dcm", -896, 1167, -119.074, "CT", 128, 128, "Explicit VR Little Endian"},
		{"pydicom/MR_small.dcm", 127, 2145, 518.881, "MR", 64, 64, "Explicit VR Little Endian"},
		{"pydicom/MR_small_bigendian.dcm", 127, 2145, 518.881, "MR", 64, 64, "Big Endian"},
		{"pydicom/MR_small_implicit.dcm", 127, 2145, 518.881, "MR", 64, 64, "Implicit VR"},
		{"pydicom/MR_small_expb.dcm", 127, 2145, 518.881, "MR", 64, 64, "Big Endian"},
		{"pydicom/MR_small_RLE.dcm", 127, 2145, 518.881, "MR", 64, 64, "RLE Lossless"},
		{"pydicom/MR_small_padded.dcm", 127, 2145, 518.881, "MR", 64, 64, "Explicit VR Little Endian"},
	}
	for _, tc := range cases {
		t.Run(tc.file, func(t *testing.T) {
			f, err := ReadFile(filepath.Join(root, tc.file))
			if err != nil {
				t.Fatal(err)
			}
			fr, err := f.Frame(0)
			if err != nil {
				t.Fatal(err)
			}
			lo, hi, mean := stats(fr.Pix)
			t.Logf("%s: min %v max %v mean %.3f", tc.file, lo, hi, mean)
			if lo != tc.lo || hi != tc.hi || !(math.Abs(mean-tc.mean) <= 1e-3*math.Abs(tc.mean)) {
				t.Errorf("min/max/mean %v/%v/%.4f, want %v/%v/%v", lo, hi, mean, tc.lo, tc.hi, tc.mean)
			}
			if f.Modality != tc.modality || fr.Width != tc.width || fr.Height != tc.height ||
				!strings.Contains(f.TransferSyntaxName, tc.syntaxContains) {
				t.Errorf("modality %s %dx%d syntax %s", f.Modality, fr.Width, fr.Height, f.TransferSyntaxName)
			}
		})
	}
	for file, want := range map[string]string{
		"pydicom/MR_small_jp2klossless.dcm":     "1.2.840.10008.1.2.4.90 (JPEG 2000 Image Compression (Lossless Only))",
		"pydicom/MR_small_jpeg_ls_lossless.dcm": "1.2.840.10008.1.2.4.80 (JPEG-LS Lossless Image Compression)",
	} {
		_, err := ReadFile(filepath.Join(root, file))
		if !errors.Is(err, ErrUnsupportedSyntax) || !strings.Contains(err.Error(), want) || !strings.Contains(err.Error(), file) {
			t.Errorf("%s: %v, want an error naming %s", file, err, want)
		}
	}
}

// TestRealMonochrome1 checks the chest X-ray 4.dcm: stored values first, then the inversion v -> 1023 - v.
func TestRealMonochrome1(t *testing.T) {
	f, err := ReadFile(filepath.Join(realDir(t), "godicom/4.dcm"))
	if err != nil {
		t.Fatal(err)
	}
	if f.Photometric != "MONOCHROME1" || f.BitsStored != 10 || f.Columns != 1760 || f.Rows != 2140 || f.Modality != "CR" {
		t.Fatalf("%s %d bits %dx%d %s", f.Photometric, f.BitsStored, f.Columns, f.Rows, f.Modality)
	}
	raw, err := f.RawFrame(0)
	if err != nil {
		t.Fatal(err)
	}
	rawF := make([]float32, len(raw))
	for i, v := range raw {
		rawF[i] = float32(v)
	}
	lo, hi, mean := stats(rawF)
	t.Logf("4.dcm raw: min %v max %v mean %.3f", lo, hi, mean)
	if lo != 0 || hi != 1011 || !(math.Abs(mean-552.382) <= 1e-3*552.382) {
		t.Errorf("raw min/max/mean %v/%v/%.4f, want 0/1011/552.382", lo, hi, mean)
	}
	fr, _ := f.Frame(0)
	for i, v := range raw {
		if fr.Pix[i] != float32(1023-v) {
			t.Fatalf("pixel %d: %v, want 1023 - %v", i, fr.Pix[i], v)
		}
	}
}
