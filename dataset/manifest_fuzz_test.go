package dataset

import (
	"bytes"
	"math"
	"strings"
	"testing"

	"github.com/maddr-project/maddr/reliability"
)

func manifestSeeds() map[string][]any {
	return map[string][]any{
		"minimal": {"path,organ,modality,split,label\nimages/n1.png,lung,xray,train,normal\nimages/a1.png,lung,xray,test,1\n"},
		"all-columns": {"\ufeffPath, Organ ,MODALITY,split,label,group,id,slice,hu,lo,hi\n" +
			"\"vol 1.nii.gz\",liver,CT,val,abnormal,liver-ct,v1-40,40,true,-1024,3071\n" +
			"/abs/x.dcm,Lung,X-ray,validation,0,,,,false,,\n"},
		"bad-rows": {"path,organ,modality,split,label\n" +
			"a.png,lung,xray,holdout,normal\n" + // unknown split
			"b.png,lung,xray,train,abnormal\n" + // abnormal in train
			",lung,xray,test,0\n" + // empty path
			"c.png,lung\n"}, // short row
		// A CSV syntax error made ReadManifest ask the csv reader for the
		// position of a record it had not returned: a panic in 'maddr data
		// inspect manifest:...' and in training.
		"regress-unterminated-quote": {"path,organ,modality,split,label\nok.png,lung,xray,test,0\n\"unterminated,lung,xray,test,0\n"},
		"bad-header":                 {"path,organ,modality,split,colour\n"},
		"crlf-quotes":                {"path,organ,modality,split,label,id\r\n\"a \"\"b\"\".png\",lung,xray,test,normal,\"x,y\"\r\n"},
		// lo/hi accepted infinities (ParseFloat reads "inf" without error),
		// so the sample reached normalisation with an infinite range.
		"regress-lo-hi-infinite": {"path,organ,modality,split,label,lo,hi\na.png,lung,xray,test,0,-inf,+Inf\nb.png,lung,xray,test,0,0,NaN\n"},
	}
}

func TestManifestFuzzSeeds(t *testing.T) {
	reliability.CheckCorpus(t, "FuzzManifest", manifestSeeds())
}

// TestManifestSyntaxErrorIsAProblem pins the panic fuzzing found: a CSV
// syntax error becomes a problem naming the line.
func TestManifestSyntaxErrorIsAProblem(t *testing.T) {
	samples, probs, err := ReadManifest(strings.NewReader(manifestSeeds()["regress-unterminated-quote"][0].(string)), "/d/m.csv")
	if err != nil || len(samples) != 1 || len(probs) != 1 || !strings.Contains(probs[0].String(), "/d/m.csv line 3") ||
		!strings.Contains(probs[0].String(), "quote") {
		t.Fatalf("samples %d, problems %v, err %v: want the good row and one problem naming line 3 and the quote", len(samples), probs, err)
	}
}

// TestManifestRejectsInfiniteRange pins the bug the manifest fuzz target's
// range invariant describes.
func TestManifestRejectsInfiniteRange(t *testing.T) {
	samples, probs, err := ReadManifest(strings.NewReader(manifestSeeds()["regress-lo-hi-infinite"][0].(string)), "/d/m.csv")
	if err != nil || len(samples) != 0 || len(probs) != 2 {
		t.Fatalf("samples %+v, problems %v, err %v: want both rows refused", samples, probs, err)
	}
	for i, line := range []string{"line 2", "line 3"} {
		if msg := probs[i].String(); !strings.Contains(msg, line) || !strings.Contains(msg, "finite") {
			t.Errorf("problem %d: %q, want it to name %s and say the range must be finite", i, msg, line)
		}
	}
}

// FuzzManifest checks that any CSV gives samples, per-line problems or a
// header error, never a panic; that every accepted sample is usable (path,
// organ, modality, group and ID set, no abnormal training image, a finite
// value range); that problems name the line; and that WriteManifest then
// ReadManifest gives the same samples back.
func FuzzManifest(f *testing.F) {
	for _, s := range manifestSeeds() {
		f.Add(s[0].(string))
	}
	const name = "/data/fuzz.csv"
	f.Fuzz(func(t *testing.T, csvText string) {
		samples, probs, err := ReadManifest(strings.NewReader(csvText), name)
		if err != nil {
			if !strings.Contains(err.Error(), name) {
				t.Fatalf("header error does not name the file: %v", err)
			}
			return
		}
		for _, p := range probs {
			if !strings.Contains(p.String(), name+" line ") {
				t.Fatalf("problem does not name the line: %v", p)
			}
		}
		for _, s := range samples {
			switch {
			case s.Path == "" || s.Organ == "" || s.Modality == "" || s.Group == "" || s.ID == "":
				t.Fatalf("incomplete sample %+v", s)
			case s.Split != Train && s.Split != Val && s.Split != Test:
				t.Fatalf("split %q", s.Split)
			case s.Split == Train && s.Label == Abnormal:
				t.Fatalf("abnormal training sample %+v", s)
			case s.Slice < 0:
				t.Fatalf("slice %d", s.Slice)
			case math.IsInf(float64(s.Lo), 0) || math.IsInf(float64(s.Hi), 0) || s.Lo != s.Lo || s.Hi != s.Hi:
				t.Fatalf("non-finite range %v..%v", s.Lo, s.Hi)
			case (s.Lo != 0 || s.Hi != 0) && !(s.Hi > s.Lo):
				t.Fatalf("empty range %v..%v", s.Lo, s.Hi)
			}
		}
		var buf bytes.Buffer
		if err := WriteManifest(&buf, "/data", samples); err != nil {
			t.Fatalf("writing accepted samples: %v", err)
		}
		back, probs, err := ReadManifest(&buf, name)
		if err != nil || len(probs) > 0 || len(back) != len(samples) {
			t.Fatalf("reading back %d samples: %v %v (%d back)\n%s", len(samples), err, probs, len(back), buf.String())
		}
		for i := range back {
			a, b := samples[i], back[i]
			if a.Path != b.Path || a.Organ != b.Organ || a.Modality != b.Modality || a.Group != b.Group || a.Split != b.Split ||
				a.Label != b.Label || a.ID != b.ID || a.Slice != b.Slice || a.HU != b.HU || a.Lo != b.Lo || a.Hi != b.Hi {
				t.Fatalf("round trip changed sample %d:\n got %+v\nwant %+v", i, b, a)
			}
		}
	})
}
