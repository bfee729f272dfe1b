package dicomresult

import (
	"image"
	"testing"

	"github.com/maddr-project/maddr/medimg"
	"github.com/maddr-project/maddr/medimg/dicom"
)

// FuzzResultObjects feeds arbitrary bytes as the scored source: the writers
// must return an error or a well-formed file, never panic or run away with
// memory on a length field.
func FuzzResultObjects(f *testing.F) {
	ct, err := ImageToDICOM(medimg.Image{Width: 3, Height: 2, Pix: []float32{-1000, 0, 50, 60, 70, 3000},
		Kind: medimg.KindHU}, PatientStudy{PatientName: "Fuzz^Seed", BodyPart: "LIVER"})
	if err != nil {
		f.Fatal(err)
	}
	dx, err := ImageToDICOM(medimg.Image{Width: 2, Height: 2, Pix: []float32{0, 1, 2, 3}, Hi: 3},
		PatientStudy{PatientName: "Ünïcode^Seed", BodyPart: "CHEST"})
	if err != nil {
		f.Fatal(err)
	}
	sr, err := StructuredReport(ct, testResult(), testModel, IDs{}, nil)
	if err != nil {
		f.Fatal(err)
	}
	for _, seed := range [][]byte{ct, dx, sr, ct[:200], nil} {
		f.Add(seed)
	}
	overlay := image.NewRGBA(image.Rect(0, 0, 6, 4))
	f.Fuzz(func(t *testing.T, data []byte) {
		sc, err := SecondaryCapture(data, overlay, testResult(), testModel, IDs{})
		if err == nil {
			if _, err := dicom.CheckStructure(sc); err != nil {
				t.Fatalf("secondary capture written from fuzzed source is malformed: %v", err)
			}
		}
		report, err := StructuredReport(data, testResult(), testModel, IDs{}, nil)
		if err == nil {
			if _, err := dicom.CheckStructure(report); err != nil {
				t.Fatalf("report written from fuzzed source is malformed: %v", err)
			}
		}
	})
}
