package medimg

import (
	"bytes"
	"compress/gzip"
	"encoding/binary"
	"errors"
	"image"
	"image/color"
	"image/png"
	"math"
	"math/rand"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"testing"
)

// tinyNIfTI is a 2x2x2 int16 NIfTI-1 volume holding 0..7 in file order, no orientation codes.
func tinyNIfTI() []byte {
	b := make([]byte, 352+16)
	le := binary.LittleEndian
	le.PutUint32(b, 348)
	for i, d := range []uint16{3, 2, 2, 2} {
		le.PutUint16(b[40+2*i:], d)
	}
	le.PutUint16(b[70:], 4)  // int16
	le.PutUint16(b[72:], 16) // bitpix
	le.PutUint32(b[108:], math.Float32bits(352))
	copy(b[344:], "n+1\x00")
	for i := 0; i < 8; i++ {
		le.PutUint16(b[352+2*i:], uint16(i))
	}
	return b
}

func gz(b []byte) []byte {
	var buf bytes.Buffer
	w := gzip.NewWriter(&buf)
	w.Write(b)
	w.Close()
	return buf.Bytes()
}

func tinyPNG16() []byte {
	g := image.NewGray16(image.Rect(0, 0, 2, 1))
	g.SetGray16(0, 0, color.Gray16{Y: 4000})
	g.SetGray16(1, 0, color.Gray16{Y: 10})
	var buf bytes.Buffer
	png.Encode(&buf, g)
	return buf.Bytes()
}

func TestDetectFormat(t *testing.T) {
	n := tinyNIfTI()
	cases := []struct {
		name string
		head []byte
		want Format
	}{
		{"a.png", tinyPNG16(), FormatPNG},
		{"a.bin", []byte{0xff, 0xd8, 0xff, 0xe0}, FormatJPEG},
		{"a", append(make([]byte, 128), "DICM"...), FormatDICOM},
		{"a", n, FormatNIfTI},
		{"a.gz", gz(n), FormatNIfTI},
		{"noheader.dcm", []byte{8, 0, 5, 0}, FormatDICOM},
		{"a.txt", []byte("hello"), FormatUnknown},
	}
	for _, tc := range cases {
		if got := DetectFormat(tc.head, tc.name); got != tc.want {
			t.Errorf("%s: %v, want %v", tc.name, got, tc.want)
		}
	}
}

func writeTemp(t *testing.T, name string, data []byte) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), name)
	if err := os.WriteFile(p, data, 0o644); err != nil {
		t.Fatal(err)
	}
	return p
}

func TestReadFileSynthetic(t *testing.T) {
	p := writeTemp(t, "x.png", tinyPNG16())
	imgs, err := ReadFile(p)
	if err != nil {
		t.Fatal(err)
	}
	if len(imgs) != 1 || imgs[0].Hi != 4095 || imgs[0].Pix[0] != 4000 || imgs[0].Source != p || imgs[0].Kind != KindIntensity {
		t.Fatalf("%+v", imgs)
	}
	for _, name := range []string{"v.nii", "v.nii.gz"} {
		data := tinyNIfTI()
		if strings.HasSuffix(name, ".gz") {
			data = gz(data)
		}
		p := writeTemp(t, name, data)
		imgs, err := ReadFileWith(p, Options{NIfTIKind: KindHU})
		if err != nil {
			t.Fatal(err)
		}
		// pixdim-only view: rows and columns reversed; slice k holds 4k..4k+3.
		if len(imgs) != 2 || imgs[1].Index != 1 || imgs[1].Kind != KindHU || imgs[1].Pix[0] != 7 || imgs[1].Pix[3] != 4 ||
			imgs[1].Lo != 4 || imgs[1].Hi != 7 {
			t.Fatalf("%s: %+v", name, imgs)
		}
		v, err := OpenVolume(p)
		if err != nil {
			t.Fatal(err)
		}
		if v.NumSlices() != 2 {
			t.Fatal(v.NumSlices())
		}
		if _, err := v.Slice(2); err == nil || !strings.Contains(err.Error(), p) {
			t.Errorf("slice past the end: %v", err)
		}
		v.Close()
	}
}

func TestReadFileErrors(t *testing.T) {
	cases := []struct {
		name string
		data []byte
		is   error
		want string
	}{
		{"empty.png", nil, ErrCorrupt, "empty"},
		{"empty.nii", nil, ErrCorrupt, "empty"},
		{"empty.dcm", nil, ErrCorrupt, "empty"},
		{"notes.txt", []byte("not an image"), ErrUnsupported, "not a PNG, JPEG, DICOM or NIfTI image"},
		{"cut.nii", tinyNIfTI()[:360], ErrCorrupt, "declares 2x2x2"},
		{"nometa.dcm", []byte("0123456789"), ErrCorrupt, "meta header"},
	}
	for _, tc := range cases {
		p := writeTemp(t, tc.name, tc.data)
		_, err := ReadFile(p)
		if !errors.Is(err, tc.is) || !strings.Contains(err.Error(), p) || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s: %v, want %v naming the path and %q", tc.name, err, tc.is, tc.want)
		}
	}
	if _, err := ReadFile(filepath.Join(t.TempDir(), "missing.png")); err == nil || !strings.Contains(err.Error(), "missing.png") {
		t.Errorf("missing file: %v", err)
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

func TestRealThroughFacade(t *testing.T) {
	root := realDir(t)
	ct, err := ReadFile(filepath.Join(root, "pydicom/CT_small.dcm"))
	if err != nil {
		t.Fatal(err)
	}
	if len(ct) != 1 || ct[0].Kind != KindHU || ct[0].Modality != "CT" || ct[0].Lo != -33792 || ct[0].Hi != 31743 {
		t.Errorf("CT_small: kind %v modality %q range %v..%v", ct[0].Kind, ct[0].Modality, ct[0].Lo, ct[0].Hi)
	}
	mr, err := ReadFile(filepath.Join(root, "pydicom/MR_small.dcm"))
	if err != nil {
		t.Fatal(err)
	}
	if mr[0].Kind != KindIntensity || mr[0].Window == nil || *mr[0].Window != (Window{600, 1600}) {
		t.Errorf("MR_small: kind %v window %v", mr[0].Kind, mr[0].Window)
	}
	cr, err := ReadFile(filepath.Join(root, "godicom/4.dcm"))
	if err != nil {
		t.Fatal(err)
	}
	if cr[0].Width != 1760 || cr[0].Height != 2140 || cr[0].Lo != 0 || cr[0].Hi != 1023 || cr[0].Modality != "CR" {
		t.Errorf("4.dcm: %dx%d %v..%v %s", cr[0].Width, cr[0].Height, cr[0].Lo, cr[0].Hi, cr[0].Modality)
	}
	v, err := OpenVolume(filepath.Join(root, "mricron/ch2.nii.gz"))
	if err != nil {
		t.Fatal(err)
	}
	defer v.Close()
	s, err := v.Slice(90)
	if err != nil {
		t.Fatal(err)
	}
	if v.NumSlices() != 181 || s.Width != 181 || s.Height != 217 || s.Lo != 0 || s.Hi != 255 || s.Kind != KindIntensity {
		t.Errorf("ch2: %d slices %dx%d %v..%v", v.NumSlices(), s.Width, s.Height, s.Lo, s.Hi)
	}
	_, err = ReadFile(filepath.Join(root, "pydicom/MR_small_jp2klossless.dcm"))
	if !errors.Is(err, ErrUnsupported) || !strings.Contains(err.Error(), "JPEG 2000") {
		t.Errorf("jp2k: %v", err)
	}
}

// TestMutationsNeverPanic feeds truncated and bit-flipped copies of valid files through Decode; any panic fails
// the test. The seed is fixed so failures reproduce.
func TestMutationsNeverPanic(t *testing.T) {
	seeds := map[string][]byte{"a.png": tinyPNG16(), "a.nii": tinyNIfTI(), "a.nii.gz": gz(tinyNIfTI())}
	if root := realDirOrEmpty(); root != "" {
		for _, f := range []string{"pydicom/MR_small.dcm", "pydicom/MR_small_RLE.dcm", "pydicom/MR_small_implicit.dcm",
			"pydicom/MR_small_bigendian.dcm", "pydicom/image_dfl.dcm", "nibabel/anatomical.nii"} {
			if b, err := os.ReadFile(filepath.Join(root, f)); err == nil {
				seeds[filepath.Base(f)] = b
			}
		}
	}
	names := make([]string, 0, len(seeds))
	for name := range seeds {
		names = append(names, name)
	}
	sort.Strings(names)
	rng := rand.New(rand.NewSource(7))
	for _, name := range names {
		seed := seeds[name]
		for cut := 0; cut < len(seed); cut += 1 + len(seed)/64 {
			Decode(seed[:cut], name, Options{})
		}
		for i := 0; i < 1000; i++ {
			b := append([]byte(nil), seed...)
			for k := 0; k < 1+rng.Intn(4); k++ {
				b[rng.Intn(len(b))] = byte(rng.Intn(256))
			}
			Decode(b, name, Options{})
		}
	}
}

func realDirOrEmpty() string {
	dir, _ := os.Getwd()
	for {
		if _, err := os.Stat(filepath.Join(dir, "testdata", "real")); err == nil {
			return filepath.Join(dir, "testdata", "real")
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			return ""
		}
		dir = parent
	}
}

func FuzzDecode(f *testing.F) {
	f.Add(tinyPNG16(), "a.png")
	f.Add(tinyNIfTI(), "a.nii")
	f.Add(gz(tinyNIfTI()), "a.nii.gz")
	f.Add(append(make([]byte, 128), "DICM"...), "a.dcm")
	if root := realDirOrEmpty(); root != "" {
		for _, name := range []string{"pydicom/MR_small.dcm", "pydicom/MR_small_RLE.dcm", "pydicom/SC_rgb_jpeg_dcmtk.dcm"} {
			if b, err := os.ReadFile(filepath.Join(root, name)); err == nil {
				f.Add(b, name)
			}
		}
	}
	f.Fuzz(func(t *testing.T, data []byte, name string) {
		Decode(data, name, Options{})
	})
}
