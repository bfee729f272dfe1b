package pthfile

import (
	"bytes"
	"os"
	"testing"
)

// FuzzRead feeds arbitrary bytes to the reader: it must return tensors whose
// data matches their shape, or an error, and never panic or allocate what the
// input merely declares. Seeds are the two fixtures and their truncations;
// testdata/fuzz/FuzzRead holds committed inputs.
func FuzzRead(f *testing.F) {
	for _, path := range []string{"testdata/small_zip.pth", "testdata/small_legacy.pth"} {
		data, err := os.ReadFile(path)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(data)
		f.Add(data[:len(data)/2])
		f.Add(data[:len(data)-9])
	}
	want := []string{"offset", "whole", "matrix", "transposed", "count"}
	f.Fuzz(func(t *testing.T, data []byte) {
		got, shapes, err := Read(bytes.NewReader(data), int64(len(data)), "fuzz.pth", want)
		if err != nil {
			return
		}
		for name, tensor := range got {
			n := int64(1)
			for _, d := range tensor.Shape {
				n *= d
			}
			if int64(len(tensor.Data)) != n {
				t.Fatalf("%s: %d values for shape %v", name, len(tensor.Data), tensor.Shape)
			}
			if _, ok := shapes[name]; !ok {
				t.Fatalf("%s read but not listed among the shapes", name)
			}
		}
	})
}
