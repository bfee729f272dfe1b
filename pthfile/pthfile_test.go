package pthfile

import (
	"bytes"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// The fixtures come from tools/reference/dpa_fake_vgg.py: the same tiny
// state_dict saved in both layouts, with a float tensor at an offset into its
// storage, a whole one, a matrix, a transposed view and an int64 tensor.

func TestReadBothFormats(t *testing.T) {
	for _, c := range []struct {
		path   string
		format Format
	}{
		{"testdata/small_zip.pth", Zip},
		{"testdata/small_legacy.pth", Legacy},
	} {
		t.Run(filepath.Base(c.path), func(t *testing.T) {
			data, err := os.ReadFile(c.path)
			if err != nil {
				t.Fatal(err)
			}
			if f := Detect(data); f != c.format {
				t.Errorf("Detect = %v, want %v", f, c.format)
			}
			got, shapes, err := ReadFile(c.path, []string{"offset", "whole", "matrix", "absent"})
			if err != nil {
				t.Fatal(err)
			}
			want := map[string][]float32{
				"offset": {1, 1.5, 2},
				"whole":  {0, 0.5, 1, 1.5, 2, 2.5, 3, 3.5},
				"matrix": {1, 2, 3, 4, 5, 6},
			}
			for name, w := range want {
				g := got[name]
				if len(g.Data) != len(w) {
					t.Fatalf("%s: %v, want %v", name, g.Data, w)
				}
				for i := range w {
					if g.Data[i] != w[i] {
						t.Fatalf("%s: %v, want %v", name, g.Data, w)
					}
				}
			}
			if s := got["matrix"].Shape; len(s) != 2 || s[0] != 2 || s[1] != 3 {
				t.Errorf("matrix shape %v", s)
			}
			if _, ok := got["absent"]; ok {
				t.Error("invented a tensor")
			}
			if len(shapes) != 5 {
				t.Errorf("listed %d tensors, want 5", len(shapes))
			}
			if _, _, err := ReadFile(c.path, []string{"transposed"}); err == nil || !strings.Contains(err.Error(), "not contiguous") {
				t.Errorf("transposed tensor: %v", err)
			}
			if _, _, err := ReadFile(c.path, []string{"count"}); err == nil || !strings.Contains(err.Error(), "only float32") {
				t.Errorf("int64 tensor: %v", err)
			}
		})
	}
}

// TestReadErrorsNameTheFile checks that damaged files give an error naming
// the file and the problem, never a panic.
func TestReadErrorsNameTheFile(t *testing.T) {
	zipData, err := os.ReadFile("testdata/small_zip.pth")
	if err != nil {
		t.Fatal(err)
	}
	legacy, err := os.ReadFile("testdata/small_legacy.pth")
	if err != nil {
		t.Fatal(err)
	}
	for _, c := range []struct {
		name string
		data []byte
		want string
	}{
		{"text.pth", []byte("not a weights file"), "not a PyTorch .pth file"},
		{"half.pth", zipData[:len(zipData)/2], "not a readable PyTorch zip archive"},
		{"cut.pth", legacy[:len(legacy)-9], "truncated"},
		{"early.pth", legacy[:len(legacy)/2], "early.pth"},
	} {
		_, _, err := Read(bytes.NewReader(c.data), int64(len(c.data)), c.name, []string{"whole"})
		if err == nil || !strings.Contains(err.Error(), c.want) || !strings.Contains(err.Error(), c.name) {
			t.Errorf("%s: error %v, want it to name the file and say %q", c.name, err, c.want)
		}
	}
}

// TestDeclaredLengthBeyondData checks the scan that runs before unpickling:
// a string, frame or long integer claiming more bytes than the data holds
// is an error, not an allocation of that size.
func TestDeclaredLengthBeyondData(t *testing.T) {
	for name, pkl := range map[string]string{
		"2 GB string":  "\x80\x02X\xff\xff\xff\x7f.",
		"huge frame":   "\x80\x04\x95\xff\xff\xff\xff\xff\xff\xff\x7f.",
		"long integer": "\x80\x02\x8b\x00\x00\x00\x40.",
		"no STOP":      "\x80\x02K\x01",
	} {
		data := []byte(pkl)
		_, err := pickleEnd(bytes.NewReader(data), 0, int64(len(data)))
		if err == nil || !strings.Contains(err.Error(), "malformed pickle") {
			t.Errorf("%s: %v, want a malformed-pickle error", name, err)
		}
	}
	good := []byte("\x80\x02X\x03\x00\x00\x00abcq\x00.rest")
	if end, err := pickleEnd(bytes.NewReader(good), 0, int64(len(good))); err != nil || end != int64(len(good))-4 {
		t.Errorf("well-formed pickle: end %d, %v; want %d", end, err, len(good)-4)
	}
}
