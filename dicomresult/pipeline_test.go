package dicomresult

import (
	"bytes"
	"context"
	"image"
	"image/png"
	"os"
	"path/filepath"
	"strings"
	"testing"

	samples "github.com/maddr-project/maddr/dataset"
	"github.com/maddr-project/maddr/medimg"
	"github.com/maddr-project/maddr/modelfile"
	"github.com/maddr-project/maddr/score"
	"github.com/maddr-project/maddr/score/scoretest"
	"github.com/suyashkumar/dicom/pkg/tag"
)

// TestScoredPhantomPipeline is the archive flow on real model output: a
// phantom slice goes out as DICOM, comes back through the reader, is scored
// with heat maps by the shared tiny test model, and its results come back as
// a valid Secondary Capture and SR whose numbers are the scorer's.
func TestScoredPhantomPipeline(t *testing.T) {
	if testing.Short() {
		t.Skip("trains a small model")
	}
	mod := scoretest.Train(t, t.TempDir(), false, "")
	m := scoretest.Load(t, mod.Path)
	scorer, err := score.New(m, score.DefaultOptions())
	if err != nil {
		t.Fatal(err)
	}
	digest, err := modelfile.Digest(mod.Path)
	if err != nil {
		t.Fatal(err)
	}
	model := ModelOf(m, digest, "test-build")
	if model.Name != filepath.Base(mod.Path) || model.SHA256 != digest || model.Version == "" {
		t.Fatalf("ModelOf: %+v", model)
	}
	picked := map[string]samples.Sample{}
	for _, s := range mod.Samples {
		if s.Split == samples.Test && s.Label == samples.Abnormal {
			if _, ok := picked[s.Group]; !ok {
				picked[s.Group] = s
			}
		}
	}
	dir := t.TempDir()
	for _, group := range []string{"liver-ct", "chest-xray"} {
		s, ok := picked[group]
		if !ok {
			t.Fatalf("no abnormal test sample of %s", group)
		}
		t.Run(group, func(t *testing.T) {
			data, err := ImageToDICOM(*s.Image, PatientStudy{PatientName: "Phantom^" + group, PatientID: s.ID})
			if err != nil {
				t.Fatal(err)
			}
			imgs, err := medimg.Decode(data, group+".dcm", medimg.Options{})
			if err != nil {
				t.Fatal(err)
			}
			in := score.Input{Image: imgs[0], Path: group + ".dcm"}
			original := score.Input{Image: *s.Image, Path: s.ID}
			rs, err := scorer.Score(context.Background(), []score.Input{in, original}, score.Request{Maps: true})
			if err != nil {
				t.Fatal(err)
			}
			r := rs[0]
			if r.Normalised == nil || r.Map == nil || rs[1].Normalised == nil {
				t.Fatalf("result without score or map: %+v", r)
			}
			t.Logf("%s through DICOM: decision %s, score %.4f, organ %s, modality %s, notes %q; in memory: %s, %.4f",
				group, r.Decision, *r.Normalised, r.Organ, r.Modality, r.Notes, rs[1].Decision, *rs[1].Normalised)
			// ImageToDICOM rounds CT to whole HU and quantises X-rays to 12
			// bits: the slice must score as it did before leaving memory.
			if d := *r.Normalised - *rs[1].Normalised; d > 0.01 || d < -0.01 || r.Decision != rs[1].Decision {
				t.Errorf("written as DICOM the slice scores %.4f (%s), in memory %.4f (%s)",
					*r.Normalised, r.Decision, *rs[1].Normalised, rs[1].Decision)
			}

			ov, err := HeatMap(scorer, in, r)
			if err != nil {
				t.Fatal(err)
			}
			var want bytes.Buffer
			if err := scorer.HeatmapPNG(&want, in, r); err != nil {
				t.Fatal(err)
			}
			samePicture(t, ov, want.Bytes())

			sc, err := SecondaryCapture(data, ov, r, model, IDs{})
			if err != nil {
				t.Fatal(err)
			}
			sr, err := StructuredReport(data, r, model, IDs{}, nil)
			if err != nil {
				t.Fatal(err)
			}
			for kind, out := range map[string][]byte{"sc": sc, "sr": sr} {
				path := filepath.Join(dir, group+"_"+kind+".dcm")
				if err := os.WriteFile(path, out, 0o644); err != nil {
					t.Fatal(err)
				}
				iod := "SCImage"
				if kind == "sr" {
					iod = "ComprehensiveSR"
				}
				t.Run("dciodvfy "+kind, func(t *testing.T) { validate(t, path, iod) })
			}
			all := reportItems(t, parse(t, sr))
			got := itemFor(t, all, "99MADDR:anomaly-score")
			if got.fp != *r.Normalised || got.num != decimalString(*r.Normalised) {
				t.Errorf("report score %v (%s), scorer gave %v", got.fp, got.num, *r.Normalised)
			}
			if got := itemFor(t, all, "99MADDR:raw-score").fp; got != *r.Raw {
				t.Errorf("report raw score %v, scorer gave %v", got, *r.Raw)
			}
			if r.Threshold != nil {
				if got := itemFor(t, all, "99MADDR:raw-threshold").fp; got != *r.Threshold {
					t.Errorf("report threshold %v, scorer gave %v", got, *r.Threshold)
				}
			}
			if got, want := itemFor(t, all, "99MADDR:decision").code, codeKey(decisionCodes[r.Decision]); got != want {
				t.Errorf("report decision %s, scorer decided %s (%s)", got, r.Decision, want)
			}
			if got := itemFor(t, all, "99MADDR:model-sha256").text; got != digest {
				t.Errorf("report model checksum %s, want %s", got, digest)
			}
			if got := value(parse(t, sc), tag.PatientID); got != s.ID {
				t.Errorf("secondary capture PatientID %q", got)
			}
		})
	}
}

// samePicture compares img with a PNG pixel by pixel.
func samePicture(t *testing.T, img image.Image, pngData []byte) {
	t.Helper()
	want, err := png.Decode(bytes.NewReader(pngData))
	if err != nil {
		t.Fatal(err)
	}
	if img.Bounds().Size() != want.Bounds().Size() {
		t.Fatalf("heat map %v, PNG %v", img.Bounds(), want.Bounds())
	}
	b, wb := img.Bounds(), want.Bounds()
	for y := 0; y < b.Dy(); y++ {
		for x := 0; x < b.Dx(); x++ {
			r1, g1, b1, _ := img.At(b.Min.X+x, b.Min.Y+y).RGBA()
			r2, g2, b2, _ := want.At(wb.Min.X+x, wb.Min.Y+y).RGBA()
			if r1 != r2 || g1 != g2 || b1 != b2 {
				t.Fatalf("heat map pixel (%d,%d) differs from the PNG 'maddr score' writes", x, y)
			}
		}
	}
}

// codeKey is "scheme:value" of a code item built here.
func codeKey(c dataset) string {
	var scheme, value string
	for _, e := range c {
		switch e.tag {
		case tagCodingSchemeDesignator:
			scheme = strings.TrimRight(string(e.value), " ")
		case tagCodeValue:
			value = strings.TrimRight(string(e.value), " ")
		}
	}
	return scheme + ":" + value
}
