package dicomresult

import (
	"bytes"
	"image"
	"math"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"

	"github.com/maddr-project/maddr/medimg"
	"github.com/maddr-project/maddr/medimg/dicom"
	"github.com/maddr-project/maddr/phantom"
	"github.com/maddr-project/maddr/preprocess"
	"github.com/maddr-project/maddr/score"
	godicom "github.com/suyashkumar/dicom"
	"github.com/suyashkumar/dicom/pkg/tag"
)

// realDir is testdata/real at the repository root, or skips.
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

func ptr(v float64) *float64 { return &v }

// testResult is a complete image-level result with distinctive numbers.
func testResult() score.Result {
	return score.Result{
		Level: score.LevelImage, Path: "x.dcm", Raw: ptr(0.0123456789), Normalised: ptr(0.734),
		Decision: score.Abnormal, Group: "liver-ct", GroupFrom: score.FromHeads,
		Organ: "liver", OrganProb: ptr(0.991), Modality: "ct", ModalityProb: ptr(0.987),
		Threshold: ptr(0.00875), ThresholdMethod: "f1", Notes: []string{"raw score near the group's maximum"},
	}
}

var testModel = Model{Name: "phantom-maddr.maddr", Version: "2026-12-06.1",
	SHA256: "9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08", Software: "v0.9.0-test"}

// heatMap paints what 'maddr score' would: the image's grey view (window
// or nominal range, squeezed to side x side) with a blob-shaped anomaly map
// overlaid by score.Overlay.
func heatMap(t *testing.T, img medimg.Image, side int) image.Image {
	t.Helper()
	lo, hi := float64(img.Lo), float64(img.Hi)
	if img.Window != nil && img.Window.Width > 0 {
		lo = float64(img.Window.Center - img.Window.Width/2)
		hi = float64(img.Window.Center + img.Window.Width/2)
	}
	grey := make([]float32, len(img.Pix))
	for i, v := range img.Pix {
		grey[i] = float32(math.Min(1, math.Max(0, (float64(v)-lo)/(hi-lo))))
	}
	grey = preprocess.Resample(grey, img.Width, img.Height, side, side)
	const mapSide = 16
	amap := make([]float32, mapSide*mapSide)
	for y := range mapSide {
		for x := range mapSide {
			dx, dy := float64(x-10), float64(y-5)
			amap[y*mapSide+x] = float32(math.Exp(-(dx*dx + dy*dy) / 8))
		}
	}
	ov, err := score.Overlay(grey, side, side, amap, mapSide)
	if err != nil {
		t.Fatal(err)
	}
	return ov
}

// phantomSource renders one phantom case and writes it with ImageToDICOM.
func phantomSource(t *testing.T, group string, p PatientStudy) ([]byte, medimg.Image) {
	t.Helper()
	c, err := phantom.Render(phantom.Config{Seed: 7, Size: 64, Difficulty: 0.3},
		phantom.Spec{Group: group, Split: "test", Abnormal: true})
	if err != nil {
		t.Fatal(err)
	}
	data, err := ImageToDICOM(c.Image, p)
	if err != nil {
		t.Fatal(err)
	}
	return data, c.Image
}

type sourceCase struct {
	name string
	data []byte
	img  medimg.Image
}

// archiveSources are the three sources the issue names: a real CT, a real
// (large, MONOCHROME1) X-ray and a phantom slice written as DICOM, plus a
// phantom X-ray with a non-ASCII patient name.
func archiveSources(t *testing.T) []sourceCase {
	real := realDir(t)
	var cases []sourceCase
	for _, f := range []string{"pydicom/CT_small.dcm", "godicom/4.dcm"} {
		data, err := os.ReadFile(filepath.Join(real, f))
		if err != nil {
			t.Fatal(err)
		}
		imgs, err := medimg.Decode(data, f, medimg.Options{})
		if err != nil {
			t.Fatal(err)
		}
		cases = append(cases, sourceCase{f, data, imgs[0]})
	}
	ct, ctImg := phantomSource(t, "liver-ct", PatientStudy{PatientName: "Phantom^Liver", PatientID: "PH-1",
		PatientBirthDate: "19700101", PatientSex: "O", AccessionNumber: "ACC1", StudyID: "S1",
		ReferringPhysicianName: "Ref^Doc", BodyPart: "ABDOMEN"})
	xr, xrImg := phantomSource(t, "chest-xray", PatientStudy{PatientName: "Müller^Zoë", PatientID: "PH-2",
		BodyPart: "CHEST"})
	return append(cases, sourceCase{"phantom liver CT", ct, ctImg}, sourceCase{"phantom chest DX", xr, xrImg})
}

// TestArchiveObjects writes a Secondary Capture and an SR for each source,
// validates them with dciodvfy, and reads them back with the project's
// reader, the DICOM module and dcmdump.
func TestArchiveObjects(t *testing.T) {
	dir := t.TempDir()
	for i, src := range archiveSources(t) {
		t.Run(src.name, func(t *testing.T) {
			ov := heatMap(t, src.img, 96)
			r := testResult()
			sc, err := SecondaryCapture(src.data, ov, r, testModel, IDs{})
			if err != nil {
				t.Fatal(err)
			}
			sr, err := StructuredReport(src.data, r, testModel, IDs{}, nil)
			if err != nil {
				t.Fatal(err)
			}
			base := filepath.Join(dir, strings.Repeat("x", i+1))
			files := map[string][]byte{base + "_source.dcm": src.data, base + "_sc.dcm": sc, base + "_sr.dcm": sr}
			for path, data := range files {
				if err := os.WriteFile(path, data, 0o644); err != nil {
					t.Fatal(err)
				}
			}
			source := parse(t, src.data)
			checkSecondaryCapture(t, sc, source, ov, r)
			checkReport(t, sr, source, r)
			t.Run("dciodvfy", func(t *testing.T) {
				validate(t, base+"_sc.dcm", "SCImage")
				validate(t, base+"_sr.dcm", "ComprehensiveSR")
				if strings.HasPrefix(src.name, "phantom") {
					validate(t, base+"_source.dcm", "")
				}
			})
			t.Run("dsrdump", func(t *testing.T) {
				// dcmtk's SR reader checks the content tree against the
				// Comprehensive SR relationship constraints.
				tree := dsrdump(t, base+"_sr.dcm")
				for _, want := range []string{
					`<CONTAINER:(,,"Imaging Measurement Report")=SEPARATE>`,
					`<contains NUM:(,,"Anomaly score (0.5 at threshold)")="0.734" (1,UCUM,"no units")>`,
					`<contains CODE:(,,"Anomaly decision")=(263654008,SCT,"Abnormal")>`,
					`<contains CODE:(,,"Out of scope")=(373067005,SCT,"No")>`,
					`<inferred from IMAGE:(,,"Source of Measurement")=`,
				} {
					if !strings.Contains(tree, want) {
						t.Errorf("dsrdump of the report lacks %q:\n%s", want, tree)
					}
				}
			})
			t.Run("dcmdump", func(t *testing.T) {
				dump := dcmdump(t, base+"_sc.dcm")
				for _, want := range []string{
					"(0002,0002) UI =SecondaryCaptureImageStorage",
					"(0002,0010) UI =LittleEndianExplicit",
					"(0008,0008) CS [DERIVED\\SECONDARY]",
					"(0008,0060) CS [OT]",
					"(0008,0064) CS [WSD]",
					"(0028,0004) CS [RGB]",
					"(0028,0301) CS [YES]",
					"(0008,0070) LO [maddr]",
					"(0008,103e) LO [" + SeriesDescriptionPrefix + " - heat map]",
				} {
					if !strings.Contains(dump, want) {
						t.Errorf("dcmdump of the secondary capture lacks %q", want)
					}
				}
				dump = dcmdump(t, base+"_sr.dcm")
				for _, want := range []string{
					"(0002,0002) UI =ComprehensiveSRStorage",
					"(0008,0060) CS [SR]",
					"(0040,a30a) DS [0.734]",
					"(0040,db00) CS [1500]",
					"(0040,a160) UT [" + testModel.SHA256 + "]",
					"(0008,0104) LO [Abnormal]",
				} {
					if !strings.Contains(dump, want) {
						t.Errorf("dcmdump of the report lacks %q", want)
					}
				}
			})
		})
	}
}

// validate runs dciodvfy on path and fails on any Error line; iod, when
// given, is the IOD dciodvfy must recognise.
func validate(t *testing.T, path, iod string) {
	t.Helper()
	if _, err := exec.LookPath("dciodvfy"); err != nil {
		t.Skip("dciodvfy is not installed (apt-get install dicom3tools): IOD validation skipped")
	}
	out, _ := exec.Command("dciodvfy", path).CombinedOutput()
	text := string(out)
	for _, line := range strings.Split(text, "\n") {
		if strings.HasPrefix(strings.TrimSpace(line), "Error") {
			t.Errorf("dciodvfy %s: %s", filepath.Base(path), line)
		}
	}
	if iod != "" && !strings.Contains(text, "\n"+iod+"\n") && !strings.HasPrefix(text, iod+"\n") {
		t.Errorf("dciodvfy did not recognise %s as %s:\n%s", filepath.Base(path), iod, text)
	}
}

// dcmdump returns dcmtk's dump of path, skipping when dcmtk is absent; any
// error or warning of dcmtk's parser fails.
func dcmdump(t *testing.T, path string) string {
	t.Helper()
	if _, err := exec.LookPath("dcmdump"); err != nil {
		t.Skip("dcmdump is not installed (apt-get install dcmtk): dcmtk read-back skipped")
	}
	var stderr bytes.Buffer
	cmd := exec.Command("dcmdump", "-M", path)
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil || stderr.Len() > 0 {
		t.Fatalf("dcmdump %s: %v\n%s", filepath.Base(path), err, stderr.String())
	}
	return string(out)
}

// dsrdump returns dcmtk's SR tree of path, skipping when dcmtk is absent;
// any message of its SR reader fails.
func dsrdump(t *testing.T, path string) string {
	t.Helper()
	if _, err := exec.LookPath("dsrdump"); err != nil {
		t.Skip("dsrdump is not installed (apt-get install dcmtk): SR tree check skipped")
	}
	var stderr bytes.Buffer
	cmd := exec.Command("dsrdump", path)
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	var messages []string
	for _, line := range strings.Split(strings.TrimSpace(stderr.String()), "\n") {
		// dcmtk 3.6.7's string VR checker knows no UTF-8 (ISO_IR 192) and
		// says so; the file is not at fault.
		if line != "" && !strings.Contains(line, "does not support this Specific Character Set: ISO_IR 192") {
			messages = append(messages, line)
		}
	}
	if err != nil || len(messages) > 0 {
		t.Fatalf("dsrdump %s: %v\n%s", filepath.Base(path), err, strings.Join(messages, "\n"))
	}
	return string(out)
}

func parse(t *testing.T, data []byte) *godicom.Dataset {
	t.Helper()
	ds, err := godicom.Parse(bytes.NewReader(data), int64(len(data)), nil, godicom.SkipPixelData())
	if err != nil {
		t.Fatal(err)
	}
	return &ds
}

func value(ds *godicom.Dataset, tg tag.Tag) string {
	e, err := ds.FindElementByTag(tg)
	if err != nil {
		return "<absent>"
	}
	return joined(e)
}

func joined(e *godicom.Element) string {
	if v, ok := e.Value.GetValue().([]string); ok {
		return strings.Trim(strings.Join(v, `\`), " \x00")
	}
	if v, ok := e.Value.GetValue().([]int); ok && len(v) == 1 {
		return strconv.Itoa(v[0])
	}
	return e.Value.String()
}

// items returns the items of a sequence element as element lists.
func items(t *testing.T, e *godicom.Element) [][]*godicom.Element {
	t.Helper()
	seq, ok := e.Value.GetValue().([]*godicom.SequenceItemValue)
	if !ok {
		t.Fatalf("%v is not a sequence", e.Tag)
	}
	var out [][]*godicom.Element
	for _, it := range seq {
		out = append(out, it.GetValue().([]*godicom.Element))
	}
	return out
}

func find(elems []*godicom.Element, tg tag.Tag) *godicom.Element {
	for _, e := range elems {
		if e.Tag == tg {
			return e
		}
	}
	return nil
}

var patientStudyTags = []tag.Tag{tag.PatientName, tag.PatientID, tag.PatientBirthDate, tag.PatientSex,
	tag.StudyInstanceUID, tag.StudyDate, tag.StudyTime, tag.AccessionNumber, tag.ReferringPhysicianName, tag.StudyID}

// checkCommon asserts what both result objects share with the source.
func checkCommon(t *testing.T, ds, source *godicom.Dataset, sopClass string) {
	t.Helper()
	for _, tg := range patientStudyTags {
		if got, want := value(ds, tg), value(source, tg); got != want && !(want == "<absent>" && got == "") {
			t.Errorf("%v: got %q, source has %q", tg, got, want)
		}
	}
	if got := value(ds, tag.SOPClassUID); got != sopClass {
		t.Errorf("SOPClassUID %q, want %q", got, sopClass)
	}
	if got, meta := value(ds, tag.SOPInstanceUID), value(ds, tag.MediaStorageSOPInstanceUID); got != meta {
		t.Errorf("SOPInstanceUID %q differs from MediaStorageSOPInstanceUID %q", got, meta)
	}
	if got := value(ds, tag.MediaStorageSOPClassUID); got != sopClass {
		t.Errorf("MediaStorageSOPClassUID %q, want %q", got, sopClass)
	}
	if got := value(ds, tag.TransferSyntaxUID); got != explicitVRLittleEndian {
		t.Errorf("transfer syntax %q", got)
	}
	for _, tg := range []tag.Tag{tag.SeriesInstanceUID, tag.SOPInstanceUID} {
		if value(ds, tg) == value(source, tg) {
			t.Errorf("%v is the source's: a result needs a new one", tg)
		}
		if !strings.HasPrefix(value(ds, tg), "2.25.") {
			t.Errorf("%v %q is not a new 2.25 UID", tg, value(ds, tg))
		}
	}
	if got := value(ds, tag.Manufacturer); got != Manufacturer {
		t.Errorf("Manufacturer %q", got)
	}
	if !IsOwnOutput(value(ds, tag.SOPClassUID), value(ds, tag.Manufacturer), value(ds, tag.SeriesDescription)) {
		t.Error("IsOwnOutput does not recognise the object written")
	}
	eq, err := ds.FindElementByTag(tag.ContributingEquipmentSequence)
	if err != nil {
		t.Fatal("no ContributingEquipmentSequence")
	}
	equipment := items(t, eq)
	if len(equipment) != 1 {
		t.Fatalf("%d contributing equipment items", len(equipment))
	}
	if got := joined(find(equipment[0], tag.ManufacturerModelName)); got != testModel.Name {
		t.Errorf("contributing equipment model name %q", got)
	}
	if got := joined(find(equipment[0], tag.SoftwareVersions)); !strings.Contains(got, testModel.Software) ||
		!strings.Contains(got, testModel.Version) {
		t.Errorf("contributing equipment software versions %q", got)
	}
}

func checkSecondaryCapture(t *testing.T, sc []byte, source *godicom.Dataset, ov image.Image, r score.Result) {
	t.Helper()
	ds := parse(t, sc)
	checkCommon(t, ds, source, SecondaryCaptureSOPClass)
	for tg, want := range map[tag.Tag]string{
		tag.ConversionType: "WSD", tag.ImageType: `DERIVED\SECONDARY`, tag.BurnedInAnnotation: "YES",
		tag.Modality: "OT", tag.PhotometricInterpretation: "RGB", tag.SamplesPerPixel: "3",
		tag.BitsAllocated: "8", tag.BitsStored: "8", tag.HighBit: "7", tag.PlanarConfiguration: "0",
		tag.SeriesNumber: "9901",
	} {
		if got := value(ds, tg); got != want {
			t.Errorf("%v: %q, want %q", tg, got, want)
		}
	}
	srcSeq, err := ds.FindElementByTag(tag.SourceImageSequence)
	if err != nil {
		t.Fatal("no SourceImageSequence")
	}
	refs := items(t, srcSeq)
	if len(refs) != 1 || joined(find(refs[0], tag.ReferencedSOPInstanceUID)) != value(source, tag.SOPInstanceUID) ||
		joined(find(refs[0], tag.ReferencedSOPClassUID)) != value(source, tag.SOPClassUID) {
		t.Errorf("SourceImageSequence does not reference the source instance")
	}

	// The project's reader sees the heat map, enlarged by a whole factor,
	// above the caption band; it reduces RGB to grey with the 601 weights.
	f, err := dicom.Decode(sc, "sc")
	if err != nil {
		t.Fatal(err)
	}
	frame, err := f.Frame(0)
	if err != nil {
		t.Fatal(err)
	}
	ob := ov.Bounds()
	k := 1
	for ob.Dx()*k < minCaptionWidth {
		k++
	}
	band := len(wrap(Caption(r, testModel), captionChars(ob.Dx()*k)))*lineHeight + 2*captionMargin
	if frame.Width != ob.Dx()*k || frame.Height != ob.Dy()*k+band {
		t.Fatalf("secondary capture is %dx%d, want %dx%d", frame.Width, frame.Height, ob.Dx()*k, ob.Dy()*k+band)
	}
	for _, p := range []image.Point{{0, 0}, {ob.Dx() * 10 / 16, ob.Dy() * 5 / 16}, {ob.Dx() - 1, ob.Dy() - 1}} {
		cr, cg, cb, _ := ov.At(ob.Min.X+p.X, ob.Min.Y+p.Y).RGBA()
		want := 0.299*float64(cr>>8) + 0.587*float64(cg>>8) + 0.114*float64(cb>>8)
		for _, q := range []image.Point{{p.X * k, p.Y * k}, {p.X*k + k - 1, p.Y*k + k - 1}} {
			if got := float64(frame.Pix[q.Y*frame.Width+q.X]); math.Abs(got-want) > 0.51 {
				t.Errorf("pixel %v (heat map %v): grey %.2f, want %.2f", q, p, got, want)
			}
		}
	}
	white := 0
	for _, v := range frame.Pix[ob.Dy()*k*frame.Width:] {
		if v > 250 {
			white++
		} else if v > 0.5 {
			t.Fatalf("caption band holds grey %v: want black with white text", v)
		}
	}
	if white < 200 {
		t.Errorf("caption band has %d white pixels: the text is missing", white)
	}
}

// srItem is one content item of a report, flattened.
type srItem struct {
	depth                   int
	relationship, valueType string
	concept                 string // "scheme:value"
	text, code, num, uid    string
	fp                      float64  // FloatingPointValue of a NUM
	images                  []string // referenced SOP instance UIDs
}

func conceptOf(t *testing.T, elems []*godicom.Element, seqTag tag.Tag) string {
	e := find(elems, seqTag)
	if e == nil {
		return ""
	}
	codes := items(t, e)
	if len(codes) != 1 {
		t.Fatalf("%v has %d items", seqTag, len(codes))
	}
	return joined(find(codes[0], tag.CodingSchemeDesignator)) + ":" + joined(find(codes[0], tag.CodeValue))
}

// flatten walks the content tree below elems depth first.
func flatten(t *testing.T, elems []*godicom.Element, depth int, out *[]srItem) {
	content := find(elems, tag.ContentSequence)
	if content == nil {
		return
	}
	for _, it := range items(t, content) {
		item := srItem{depth: depth, relationship: joined(find(it, tag.RelationshipType)),
			valueType: joined(find(it, tag.ValueType)), concept: conceptOf(t, it, tag.ConceptNameCodeSequence),
			code: conceptOf(t, it, tag.ConceptCodeSequence)}
		if e := find(it, tag.TextValue); e != nil {
			item.text = joined(e)
		}
		if e := find(it, tag.UID); e != nil {
			item.uid = joined(e)
		}
		if e := find(it, tag.MeasuredValueSequence); e != nil {
			mv := items(t, e)
			item.num = joined(find(mv[0], tag.NumericValue))
			if e := find(mv[0], tag.FloatingPointValue); e != nil {
				if v, ok := e.Value.GetValue().([]float64); ok && len(v) == 1 {
					item.fp = v[0]
				}
			}
			if units := conceptOf(t, mv[0], tag.MeasurementUnitsCodeSequence); units != "UCUM:1" {
				t.Errorf("%s: units %s", item.concept, units)
			}
		}
		if e := find(it, tag.ReferencedSOPSequence); e != nil {
			for _, ref := range items(t, e) {
				item.images = append(item.images, joined(find(ref, tag.ReferencedSOPInstanceUID)))
			}
		}
		*out = append(*out, item)
		flatten(t, it, depth+1, out)
	}
}

func reportItems(t *testing.T, ds *godicom.Dataset) []srItem {
	root := append([]*godicom.Element(nil), ds.Elements...)
	var out []srItem
	flatten(t, root, 1, &out)
	return out
}

func itemFor(t *testing.T, all []srItem, concept string) srItem {
	t.Helper()
	for _, it := range all {
		if it.concept == concept {
			return it
		}
	}
	t.Fatalf("report has no %s item", concept)
	return srItem{}
}

func checkReport(t *testing.T, sr []byte, source *godicom.Dataset, r score.Result) {
	t.Helper()
	ds := parse(t, sr)
	checkCommon(t, ds, source, ComprehensiveSRSOPClass)
	for tg, want := range map[tag.Tag]string{
		tag.Modality: "SR", tag.ValueType: "CONTAINER", tag.CompletionFlag: "COMPLETE",
		tag.VerificationFlag: "UNVERIFIED", tag.SeriesNumber: "9902",
		tag.SeriesDescription: SeriesDescriptionPrefix + " - report",
	} {
		if got := value(ds, tg); got != want {
			t.Errorf("%v: %q, want %q", tg, got, want)
		}
	}
	var root []*godicom.Element
	root = append(root, ds.Elements...)
	if got := conceptOf(t, root, tag.ConceptNameCodeSequence); got != "DCM:126000" {
		t.Errorf("document title %s, want DCM:126000 (Imaging Measurement Report)", got)
	}
	all := reportItems(t, ds)
	sourceUID := value(source, tag.SOPInstanceUID)
	checks := []struct {
		concept, valueType, want string
		get                      func(srItem) string
	}{
		{"99MADDR:anomaly-score", "NUM", "0.734", func(i srItem) string { return i.num }},
		{"99MADDR:raw-score", "NUM", "0.0123456789", func(i srItem) string { return i.num }},
		{"99MADDR:raw-threshold", "NUM", "0.00875", func(i srItem) string { return i.num }},
		{"99MADDR:decision", "CODE", "SCT:263654008", func(i srItem) string { return i.code }},
		{"99MADDR:out-of-scope", "CODE", "SCT:373067005", func(i srItem) string { return i.code }},
		{"99MADDR:organ", "TEXT", "liver", func(i srItem) string { return i.text }},
		{"99MADDR:modality", "TEXT", "ct", func(i srItem) string { return i.text }},
		{"99MADDR:organ-prob", "NUM", "0.991", func(i srItem) string { return i.num }},
		{"99MADDR:model-sha256", "TEXT", testModel.SHA256, func(i srItem) string { return i.text }},
		{"DCM:111001", "TEXT", testModel.Name, func(i srItem) string { return i.text }},
		{"DCM:111003", "TEXT", testModel.Version, func(i srItem) string { return i.text }},
		{"SCT:363698007", "CODE", "SCT:10200004", func(i srItem) string { return i.code }},
		{"DCM:121005", "CODE", "DCM:121007", func(i srItem) string { return i.code }},
		{"DCM:121106", "TEXT", r.Notes[0], func(i srItem) string { return i.text }},
	}
	for _, c := range checks {
		it := itemFor(t, all, c.concept)
		if it.valueType != c.valueType || c.get(it) != c.want {
			t.Errorf("%s: %s %q, want %s %q", c.concept, it.valueType, c.get(it), c.valueType, c.want)
		}
	}
	scoreItem := itemFor(t, all, "99MADDR:anomaly-score")
	if scoreItem.depth != 3 {
		t.Errorf("score at depth %d, want 3 (imaging measurements > measurement group > score)", scoreItem.depth)
	}
	sourceRef := itemFor(t, all, "DCM:121112")
	if sourceRef.relationship != "INFERRED FROM" || len(sourceRef.images) != 1 || sourceRef.images[0] != sourceUID {
		t.Errorf("score is not inferred from the source image: %+v", sourceRef)
	}
	library := itemFor(t, all, "DCM:126200")
	var libraryImages []string
	for _, it := range all {
		if it.valueType == "IMAGE" && it.depth == library.depth+1 {
			libraryImages = append(libraryImages, it.images...)
		}
	}
	if len(libraryImages) != 1 || libraryImages[0] != sourceUID {
		t.Errorf("image library holds %v, want the source %s", libraryImages, sourceUID)
	}
	ev, err := ds.FindElementByTag(tag.CurrentRequestedProcedureEvidenceSequence)
	if err != nil {
		t.Fatal("no CurrentRequestedProcedureEvidenceSequence")
	}
	study := items(t, ev)
	series := items(t, find(study[0], tag.ReferencedSeriesSequence))
	if joined(find(study[0], tag.StudyInstanceUID)) != value(source, tag.StudyInstanceUID) ||
		joined(find(series[0], tag.SeriesInstanceUID)) != value(source, tag.SeriesInstanceUID) {
		t.Error("evidence does not name the source's study and series")
	}
}

// TestSourceTransferSyntaxes writes both objects about sources in every
// transfer syntax the fixtures have, including compressions maddr cannot
// decode (the pixels of the source are never needed) and an SR; the
// results are always Explicit VR Little Endian and valid.
func TestSourceTransferSyntaxes(t *testing.T) {
	real := realDir(t)
	dir := t.TempDir()
	for _, f := range []string{
		"pydicom/MR_small_implicit.dcm", "pydicom/MR_small_bigendian.dcm", "pydicom/image_dfl.dcm",
		"pydicom/MR_small_RLE.dcm", "pydicom/JPEG2000.dcm", "pydicom/SC_rgb_jpeg_dcmtk.dcm",
		"pydicom/liver_1frame.dcm", "pydicom/test-SR.dcm", "nibabel/0.dcm",
	} {
		data, err := os.ReadFile(filepath.Join(real, f))
		if err != nil {
			t.Fatal(err)
		}
		source := parse(t, data)
		sc, err := SecondaryCapture(data, image.NewRGBA(image.Rect(0, 0, 40, 30)), testResult(), testModel, IDs{})
		if err != nil {
			t.Errorf("%s: %v", f, err)
			continue
		}
		sr, err := StructuredReport(data, testResult(), testModel, IDs{}, nil)
		if err != nil {
			t.Errorf("%s: %v", f, err)
			continue
		}
		for kind, out := range map[string][]byte{"sc": sc, "sr": sr} {
			ds := parse(t, out)
			for _, tg := range []tag.Tag{tag.StudyInstanceUID, tag.PatientID, tag.PatientName} {
				if got, want := value(ds, tg), value(source, tg); got != want && want != "<absent>" {
					t.Errorf("%s %s: %v %q, source has %q", f, kind, tg, got, want)
				}
			}
			path := filepath.Join(dir, strings.ReplaceAll(f, "/", "_")+"_"+kind+".dcm")
			if err := os.WriteFile(path, out, 0o644); err != nil {
				t.Fatal(err)
			}
		}
	}
	t.Run("dciodvfy", func(t *testing.T) {
		paths, _ := filepath.Glob(filepath.Join(dir, "*.dcm"))
		for _, p := range paths {
			iod := "SCImage"
			if strings.HasSuffix(p, "_sr.dcm") {
				iod = "ComprehensiveSR"
			}
			validate(t, p, iod)
		}
	})
}
