package dicomresult

import (
	"bytes"
	"encoding/binary"
	"errors"
	"image"
	"math"
	"math/big"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/maddr-project/maddr/medimg"
	"github.com/maddr-project/maddr/medimg/dicom"
	"github.com/maddr-project/maddr/score"
	"github.com/suyashkumar/dicom/pkg/tag"
)

func TestEncodeExactBytes(t *testing.T) {
	var item dataset
	item.str(tagReferencedSOPInstanceUID, "UI", "1.2.3")
	var d dataset
	d.us(tagRows, 512)
	d.seq(tagReferencedImageSequence, item)
	d.str(tagModality, "CS", "OT")
	var buf bytes.Buffer
	if err := d.encode(&buf); err != nil {
		t.Fatal(err)
	}
	want := []byte{
		0x08, 0x00, 0x60, 0x00, 'C', 'S', 2, 0, 'O', 'T',
		0x08, 0x00, 0x40, 0x11, 'S', 'Q', 0, 0, 22, 0, 0, 0, // sequence, defined length 22
		0xFE, 0xFF, 0x00, 0xE0, 14, 0, 0, 0, // item, defined length 14
		0x08, 0x00, 0x55, 0x11, 'U', 'I', 6, 0, '1', '.', '2', '.', '3', 0, // odd UID padded with NUL
		0x28, 0x00, 0x10, 0x00, 'U', 'S', 2, 0, 0x00, 0x02,
	}
	if !bytes.Equal(buf.Bytes(), want) {
		t.Fatalf("encoded\n% x\nwant\n% x", buf.Bytes(), want)
	}

	d.str(tagModality, "CS", "SR")
	if err := d.encode(&bytes.Buffer{}); err == nil || !strings.Contains(err.Error(), "(0008,0060) set twice") {
		t.Fatalf("duplicate attribute: got %v", err)
	}
}

func TestEncodeLongFormAndLimits(t *testing.T) {
	var d dataset
	d.str(tagTextValue, "UT", strings.Repeat("a", 70000)) // UT: 4-byte length
	var buf bytes.Buffer
	if err := d.encode(&buf); err != nil {
		t.Fatal(err)
	}
	b := buf.Bytes()
	if string(b[4:6]) != "UT" || b[6] != 0 || b[7] != 0 || binary.LittleEndian.Uint32(b[8:]) != 70000 {
		t.Fatalf("UT header % x", b[:12])
	}
	var big dataset
	big.raw(tagDerivationDescription, "ST", bytes.Repeat([]byte{'a'}, 70000)) // ST has a 2-byte length
	if err := big.encode(&bytes.Buffer{}); err == nil {
		t.Fatal("a 70000-byte ST value was encoded")
	}
}

func TestStringValues(t *testing.T) {
	cases := []struct {
		vr     string
		values []string
		want   string
	}{
		{"UI", []string{"1.2.3"}, "1.2.3\x00"},
		{"CS", []string{"DERIVED", "SECONDARY"}, `DERIVED\SECONDARY `},
		{"SH", []string{"0123456789abcdefXYZ"}, "0123456789abcdef"},
		{"LO", []string{strings.Repeat("é", 70)}, strings.Repeat("é", 64)},
		{"LO", []string{`a\b`}, "a/b "},
		{"UT", []string{`a\b`}, `a\b `},
		{"PN", []string{"bad\xffbyte"}, "bad?byte"},
		{"LO", nil, ""},
	}
	for _, c := range cases {
		var d dataset
		d.str(tagCodeMeaning, c.vr, c.values...)
		if got := string(d[0].value); got != c.want {
			t.Errorf("%s %q: %q, want %q", c.vr, c.values, got, c.want)
		}
	}
}

func TestDecimalString(t *testing.T) {
	cases := []struct {
		v    float64
		want string
	}{
		{0.734, "0.734"}, {-1024, "-1024"}, {1.0 / 3, "0.33333333333333"}, {2.0 / 3, "0.66666666666667"},
		{1e300, "1e+300"}, {-1.23456789012345e-300, "-1.23456789e-300"}, {math.NaN(), ""}, {math.Inf(1), ""},
	}
	for _, c := range cases {
		got := decimalString(c.v)
		if got != c.want || len(got) > 16 {
			t.Errorf("decimalString(%g) = %q, want %q", c.v, got, c.want)
		}
	}
}

func TestNewUID(t *testing.T) {
	seen := map[string]bool{}
	for range 1000 {
		u := NewUID()
		if seen[u] {
			t.Fatalf("UID %s repeated", u)
		}
		seen[u] = true
		if err := checkUID(u); err != nil || !strings.HasPrefix(u, "2.25.") || strings.HasPrefix(u, "2.25.0") {
			t.Fatalf("bad UID %q (%v)", u, err)
		}
		n, ok := new(big.Int).SetString(u[5:], 10)
		if !ok || n.BitLen() > 128 {
			t.Fatalf("UID %s is not a 128-bit number", u)
		}
		b := n.FillBytes(make([]byte, 16))
		if b[6]>>4 != 4 || b[8]>>6 != 2 {
			t.Fatalf("UID %s is not a version 4 UUID: % x", u, b)
		}
	}
}

func TestIsOwnOutput(t *testing.T) {
	cases := []struct {
		sopClass, manufacturer, description string
		want                                bool
	}{
		{SecondaryCaptureSOPClass, "maddr", "anything", true},
		{ComprehensiveSRSOPClass, " MADDR ", "", true},
		{"", "maddr", "", true},
		{CTImageSOPClass, "", SeriesDescriptionPrefix + " - heat map", true},
		{CTImageSOPClass, "maddr", "phantom", false},
		{CTImageSOPClass, "GE MEDICAL SYSTEMS", "", false},
		{SecondaryCaptureSOPClass, "Acme", "screen capture", false},
		{ComprehensiveSRSOPClass, "Acme", "maddr anomaly result", false},
		{SecondaryCaptureSOPClass, "maddr-phantom", "", false},
	}
	for _, c := range cases {
		if got := IsOwnOutput(c.sopClass, c.manufacturer, c.description); got != c.want {
			t.Errorf("IsOwnOutput(%q, %q, %q) = %v", c.sopClass, c.manufacturer, c.description, got)
		}
	}
}

func TestCaption(t *testing.T) {
	r := testResult()
	got := Caption(r, testModel)
	want := []string{
		"maddr: ABNORMAL  score 0.734 (threshold 0.5)",
		"organ liver, modality ct  model phantom-maddr.maddr 2026-12-06.1",
		NotForDiagnosticUse,
	}
	if strings.Join(got, "|") != strings.Join(want, "|") {
		t.Errorf("caption %q, want %q", got, want)
	}
	r = score.Result{Decision: score.OutOfScope, Organ: "brän"}
	got = Caption(r, Model{})
	want = []string{"maddr: OUT OF SCOPE", "organ br?n, modality -", NotForDiagnosticUse}
	if strings.Join(got, "|") != strings.Join(want, "|") {
		t.Errorf("caption %q, want %q", got, want)
	}
	if got := Caption(score.Result{}, Model{})[0]; got != "maddr: NO DECISION" {
		t.Errorf("caption without decision %q", got)
	}
}

func TestWrap(t *testing.T) {
	cases := []struct {
		in   []string
		n    int
		want string
	}{
		{[]string{"short", "lines"}, 10, "short|lines"},
		{[]string{"organ liver, modality ct  model x.maddr 1"}, 16, "organ liver,|modality ct|model x.maddr 1"},
		{[]string{"abcdefghij"}, 4, "abcd|efgh|ij"},
		{[]string{"ab cdefghij"}, 4, "ab|cdef|ghij"},
		{[]string{""}, 3, ""},
	}
	for _, c := range cases {
		if got := strings.Join(wrap(c.in, c.n), "|"); got != c.want {
			t.Errorf("wrap(%q, %d) = %q, want %q", c.in, c.n, got, c.want)
		}
	}
}

func TestCaptionedLayout(t *testing.T) {
	ov := image.NewRGBA(image.Rect(3, 5, 3+50, 5+20)) // not at the origin on purpose
	for i := range ov.Pix {
		ov.Pix[i] = uint8(i * 7)
	}
	out, err := captioned(ov, []string{"A", "B"})
	if err != nil {
		t.Fatal(err)
	}
	// 50 px is enlarged 8x (the cap) to 400 >= minCaptionWidth.
	if b := out.Bounds(); b.Dx() != 400 || b.Dy() != 160+2*lineHeight+2*captionMargin {
		t.Fatalf("captioned picture %v", b)
	}
	for _, p := range []image.Point{{0, 0}, {17, 3}, {49, 19}} {
		want := ov.RGBAAt(3+p.X, 5+p.Y)
		for _, q := range []image.Point{{8 * p.X, 8 * p.Y}, {8*p.X + 7, 8*p.Y + 7}} {
			if got := out.RGBAAt(q.X, q.Y); got != want {
				t.Errorf("pixel %v: %v, want %v", q, got, want)
			}
		}
	}
	if _, err := captioned(image.NewRGBA(image.Rect(0, 0, 0, 4)), nil); err == nil {
		t.Error("empty heat map accepted")
	}
	if _, err := captioned(image.NewGray(image.Rect(0, 0, maxOverlaySide+1, 2)), nil); err == nil {
		t.Error("oversized heat map accepted")
	}
	tall, err := captioned(image.NewGray(image.Rect(0, 0, 2, 3000)), []string{"x"})
	if err != nil {
		t.Fatal(err)
	}
	if h := tall.Bounds().Dy(); h > maxOverlaySide+lineHeight+2*captionMargin {
		t.Errorf("a 2x3000 heat map became %d rows high", h)
	}
}

func TestImageToDICOMRoundTrip(t *testing.T) {
	ct := medimg.Image{Width: 3, Height: 2, Pix: []float32{-1024, -0.4, 40.6, 3071, -40000, 40000},
		Kind: medimg.KindHU, Modality: "CT", Lo: -1024, Hi: 3071, Index: 4, Window: &medimg.Window{Center: 40, Width: 400}}
	data, err := ImageToDICOM(ct, PatientStudy{PatientName: "Doe^Jane", SliceThicknessMM: 2.5})
	if err != nil {
		t.Fatal(err)
	}
	imgs, err := medimg.Decode(data, "ct.dcm", medimg.Options{})
	if err != nil {
		t.Fatal(err)
	}
	got := imgs[0]
	wantCT := []float32{-1024, 0, 41, 3071, -32768, 32767}
	if got.Width != 3 || got.Height != 2 || got.Kind != medimg.KindHU || got.Modality != "CT" {
		t.Fatalf("read back %dx%d %v %s", got.Width, got.Height, got.Kind, got.Modality)
	}
	for i := range wantCT {
		if got.Pix[i] != wantCT[i] {
			t.Errorf("CT value %d: %v, want %v", i, got.Pix[i], wantCT[i])
		}
	}
	if got.Window == nil || got.Window.Center != 40 || got.Window.Width != 400 {
		t.Errorf("window %+v", got.Window)
	}
	ds := parse(t, data)
	for tg, want := range map[tag.Tag]string{
		tag.SOPClassUID: CTImageSOPClass, tag.InstanceNumber: "5", tag.SliceLocation: "10",
		tag.ImagePositionPatient: `0\0\10`, tag.SliceThickness: "2.5", tag.Manufacturer: "",
		tag.PatientName: "Doe^Jane", tag.SpecificCharacterSet: "<absent>",
	} {
		if got := value(ds, tg); got != want {
			t.Errorf("%v: %q, want %q", tg, got, want)
		}
	}
	series := value(ds, tag.SeriesInstanceUID)
	next, err := ImageToDICOM(ct, PatientStudy{SeriesInstanceUID: series})
	if err != nil {
		t.Fatal(err)
	}
	other, err := ImageToDICOM(ct, PatientStudy{})
	if err != nil {
		t.Fatal(err)
	}
	frame := value(ds, tag.FrameOfReferenceUID)
	if value(parse(t, next), tag.FrameOfReferenceUID) != frame || value(parse(t, other), tag.FrameOfReferenceUID) == frame {
		t.Error("slices of one series do not share their frame of reference, or slices of two series do")
	}
	if IsOwnOutput(value(ds, tag.SOPClassUID), value(ds, tag.Manufacturer), value(ds, tag.SeriesDescription)) {
		t.Error("a phantom CT counts as a maddr result")
	}

	xr := medimg.Image{Width: 2, Height: 2, Pix: []float32{0, 255, 127.5, 300}, Lo: 0, Hi: 255, Modality: "DX"}
	data, err = ImageToDICOM(xr, PatientStudy{PatientName: "Ærø^Zoë"})
	if err != nil {
		t.Fatal(err)
	}
	imgs, err = medimg.Decode(data, "dx.dcm", medimg.Options{})
	if err != nil {
		t.Fatal(err)
	}
	wantDX := []float32{0, 4095, 2048, 4095} // 127.5/255*4095 = 2047.5 rounds up
	for i := range wantDX {
		if imgs[0].Pix[i] != wantDX[i] {
			t.Errorf("DX value %d: %v, want %v", i, imgs[0].Pix[i], wantDX[i])
		}
	}
	if imgs[0].Lo != 0 || imgs[0].Hi != 4095 || imgs[0].Modality != "DX" {
		t.Errorf("DX read back with range %v..%v, modality %s", imgs[0].Lo, imgs[0].Hi, imgs[0].Modality)
	}
	ds = parse(t, data)
	if value(ds, tag.SpecificCharacterSet) != "ISO_IR 192" || value(ds, tag.PatientName) != "Ærø^Zoë" {
		t.Errorf("non-ASCII name written as %q under %q", value(ds, tag.PatientName), value(ds, tag.SpecificCharacterSet))
	}
}

func TestImageToDICOMErrors(t *testing.T) {
	ok := medimg.Image{Width: 2, Height: 1, Pix: []float32{1, 2}}
	cases := []struct {
		name string
		img  medimg.Image
		p    PatientStudy
		want string
	}{
		{"size", medimg.Image{Width: 2, Height: 2, Pix: []float32{1}}, PatientStudy{}, "2x2 image with 1 values"},
		{"NaN", medimg.Image{Width: 1, Height: 1, Pix: []float32{float32(math.NaN())}}, PatientStudy{}, "not finite"},
		{"modality", ok, PatientStudy{Modality: "MR"}, `modality "MR"`},
		{"uid", ok, PatientStudy{StudyInstanceUID: "1.2.abc"}, "StudyInstanceUID"},
		{"body part", ok, PatientStudy{BodyPart: "LEFT KNEE"}, `body part "LEFT KNEE"`},
	}
	for _, c := range cases {
		_, err := ImageToDICOM(c.img, c.p)
		if err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%s: error %v, want one containing %q", c.name, err, c.want)
		}
	}
}

// secretSource is a valid CT file whose patient name must never show up
// in an error message.
const secretName = "Secret^Patient"

func secretSource(t *testing.T) []byte {
	t.Helper()
	data, err := ImageToDICOM(medimg.Image{Width: 4, Height: 4, Pix: make([]float32, 16), Kind: medimg.KindHU},
		PatientStudy{PatientName: secretName, PatientID: "SECRET-ID"})
	if err != nil {
		t.Fatal(err)
	}
	return data
}

func TestSourceErrors(t *testing.T) {
	good := secretSource(t)
	ov := image.NewRGBA(image.Rect(0, 0, 8, 8))
	cases := []struct {
		name string
		data []byte
		ov   image.Image
		ids  IDs
		want string
	}{
		{"empty", nil, ov, IDs{}, "empty file"},
		{"not DICOM", []byte("hello, this is not a DICOM file at all"), ov, IDs{}, "source DICOM"},
		{"truncated", good[:len(good)-40], ov, IDs{}, "source DICOM"},
		{"length past the end", corruptLength(good), ov, IDs{}, "source DICOM"},
		{"no overlay", good, nil, IDs{}, "no heat map"},
		{"bad series UID", good, ov, IDs{SeriesInstanceUID: "x"}, "SeriesInstanceUID"},
		{"long SOP UID", good, ov, IDs{SOPInstanceUID: "1." + strings.Repeat("1", 70)}, "SOPInstanceUID"},
		{"negative number", good, ov, IDs{SeriesNumber: -1}, "negative"},
	}
	for _, c := range cases {
		_, err := SecondaryCapture(c.data, c.ov, testResult(), testModel, c.ids)
		if err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%s: secondary capture error %v, want one containing %q", c.name, err, c.want)
		}
		if err != nil && (strings.Contains(err.Error(), "Secret") || strings.Contains(err.Error(), "SECRET")) {
			t.Errorf("%s: error names the patient: %v", c.name, err)
		}
		if c.ov == nil {
			continue
		}
		_, err = StructuredReport(c.data, testResult(), testModel, c.ids, nil)
		if err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%s: report error %v, want one containing %q", c.name, err, c.want)
		}
	}
	_, err := StructuredReport(good, testResult(), testModel, IDs{}, []Ref{{SOPClassUID: CTImageSOPClass}})
	if err == nil || !strings.Contains(err.Error(), "reference 1: SOPInstanceUID: missing") {
		t.Errorf("reference without instance UID: %v", err)
	}
}

// corruptLength makes the PatientName length run far past the end of the file.
func corruptLength(data []byte) []byte {
	out := bytes.Clone(data)
	i := bytes.Index(out, []byte{0x10, 0x00, 0x10, 0x00, 'P', 'N'})
	binary.LittleEndian.PutUint16(out[i+6:], 0xFFF0)
	return out
}

func TestMissingSourceUID(t *testing.T) {
	var d dataset
	d.str(tagSOPClassUID, "UI", CTImageSOPClass)
	d.str(tagSOPInstanceUID, "UI", "1.2.3")
	d.str(tagPatientName, "PN", secretName)
	d.str(tagSeriesInstanceUID, "UI", "1.2.4")
	d.us(tagRows, 1)
	d.us(tagColumns, 1)
	d.us(tagBitsAllocated, 16)
	d.raw(tagPixelData, "OW", []byte{0, 0})
	data, err := d.partTen(CTImageSOPClass, "1.2.3")
	if err != nil {
		t.Fatal(err)
	}
	_, err = SecondaryCapture(data, image.NewRGBA(image.Rect(0, 0, 2, 2)), testResult(), testModel, IDs{})
	if err == nil || !strings.Contains(err.Error(), "StudyInstanceUID: missing") || strings.Contains(err.Error(), "Secret") {
		t.Errorf("source without StudyInstanceUID: %v", err)
	}
}

func TestGivenIDsAndInstanceNumber(t *testing.T) {
	src := secretSource(t)
	ids := IDs{SeriesInstanceUID: "1.2.826.0.1.3680043.2.1143.1", SOPInstanceUID: "1.2.826.0.1.3680043.2.1143.2",
		SeriesNumber: 77, InstanceNumber: 12}
	sc, err := SecondaryCapture(src, image.NewRGBA(image.Rect(0, 0, 4, 4)), testResult(), testModel, ids)
	if err != nil {
		t.Fatal(err)
	}
	ds := parse(t, sc)
	for tg, want := range map[tag.Tag]string{
		tag.SeriesInstanceUID: ids.SeriesInstanceUID, tag.SOPInstanceUID: ids.SOPInstanceUID,
		tag.MediaStorageSOPInstanceUID: ids.SOPInstanceUID, tag.SeriesNumber: "77", tag.InstanceNumber: "12",
	} {
		if got := value(ds, tg); got != want {
			t.Errorf("%v: %q, want %q", tg, got, want)
		}
	}
	// Without an instance number the source's is kept (ImageToDICOM gave 1
	// to a slice of index 0) so results sort like the images they show.
	sr, err := StructuredReport(src, testResult(), testModel, IDs{}, nil)
	if err != nil {
		t.Fatal(err)
	}
	if got := value(parse(t, sr), tag.InstanceNumber); got != "1" {
		t.Errorf("report instance number %q, want the source's 1", got)
	}
}

func TestVolumeReport(t *testing.T) {
	src := secretSource(t)
	srcDS := parse(t, src)
	r := score.Result{Level: score.LevelVolume, Decision: score.OutOfScope, Normalised: ptr(math.NaN()),
		Raw: ptr(12.5), Organ: "kidney", Modality: "mr", Slices: 40, AbnormalSlices: 3, OutOfScope: 30}
	refs := []Ref{
		{SOPClassUID: CTImageSOPClass, SOPInstanceUID: "1.2.3.1"},
		{SOPClassUID: CTImageSOPClass, SOPInstanceUID: "1.2.3.2", SeriesInstanceUID: "1.2.9"},
		{SOPClassUID: CTImageSOPClass, SOPInstanceUID: "1.2.3.3"},
	}
	sr, err := StructuredReport(src, r, Model{}, IDs{}, refs)
	if err != nil {
		t.Fatal(err)
	}
	if refs[0].SeriesInstanceUID != "" {
		t.Error("StructuredReport changed the caller's refs")
	}
	ds := parse(t, sr)
	all := reportItems(t, ds)
	for concept, want := range map[string]string{
		"99MADDR:slices": "40", "99MADDR:abnormal-slices": "3", "99MADDR:oos-slices": "30", "99MADDR:raw-score": "12.5",
	} {
		if got := itemFor(t, all, concept).num; got != want {
			t.Errorf("%s: %q, want %q", concept, got, want)
		}
	}
	if got := itemFor(t, all, "99MADDR:out-of-scope").code; got != "SCT:373066001" {
		t.Errorf("out-of-scope flag %s, want SCT:373066001 (Yes)", got)
	}
	if got := itemFor(t, all, "99MADDR:decision").code; got != "99MADDR:out-of-scope" {
		t.Errorf("decision %s", got)
	}
	for _, it := range all {
		switch it.concept {
		case "99MADDR:anomaly-score", "SCT:363698007", "DCM:111001", "99MADDR:model-sha256":
			t.Errorf("report has %s although the result or model has no value for it", it.concept)
		}
	}
	var library []string
	for _, it := range all {
		if it.valueType == "IMAGE" {
			library = append(library, it.images...)
		}
	}
	if strings.Join(library, " ") != "1.2.3.1 1.2.3.2 1.2.3.3" {
		t.Errorf("image library %v", library)
	}
	ev, _ := ds.FindElementByTag(tag.CurrentRequestedProcedureEvidenceSequence)
	series := items(t, find(items(t, ev)[0], tag.ReferencedSeriesSequence))
	if len(series) != 2 {
		t.Fatalf("evidence has %d series, want 2", len(series))
	}
	first := items(t, find(series[0], tag.ReferencedSOPSequence))
	if joined(find(series[0], tag.SeriesInstanceUID)) != value(srcDS, tag.SeriesInstanceUID) || len(first) != 2 ||
		joined(find(series[1], tag.SeriesInstanceUID)) != "1.2.9" {
		t.Errorf("evidence not grouped by series")
	}
}

// TestSecondaryCaptureFileRereads checks a written file once more from
// disk with medimg.ReadFile, the path 'maddr score' takes.
func TestSecondaryCaptureFileRereads(t *testing.T) {
	src := secretSource(t)
	sc, err := SecondaryCapture(src, image.NewRGBA(image.Rect(0, 0, 100, 60)), testResult(), testModel, IDs{})
	if err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(t.TempDir(), "sc.dcm")
	if err := os.WriteFile(path, sc, 0o644); err != nil {
		t.Fatal(err)
	}
	imgs, err := medimg.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	if imgs[0].Width != 400 || imgs[0].Modality != "OT" {
		t.Errorf("read back %dx%d modality %q", imgs[0].Width, imgs[0].Height, imgs[0].Modality)
	}
	sr, err := StructuredReport(src, testResult(), testModel, IDs{}, nil)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := dicom.Decode(sr, "sr"); !errors.Is(err, dicom.ErrNoPixels) {
		t.Errorf("the image reader on a report: %v, want ErrNoPixels", err)
	}
}

// TestSameInputsSameBytes: with the identifiers given and the clock fixed,
// writing a result again gives the identical file, so a restarted watcher
// stores nothing new; another SOP Instance UID changes the tracking UID.
func TestSameInputsSameBytes(t *testing.T) {
	defer func(saved func() time.Time) { now = saved }(now)
	now = func() time.Time { return time.Date(2026, 12, 6, 21, 0, 0, 0, time.UTC) }
	src := secretSource(t)
	ids := IDs{SeriesInstanceUID: "2.25.1", SOPInstanceUID: "2.25.2"}
	ov := image.NewRGBA(image.Rect(0, 0, 8, 8))
	sc1, err1 := SecondaryCapture(src, ov, testResult(), testModel, ids)
	sc2, err2 := SecondaryCapture(src, ov, testResult(), testModel, ids)
	sr1, err3 := StructuredReport(src, testResult(), testModel, ids, nil)
	sr2, err4 := StructuredReport(src, testResult(), testModel, ids, nil)
	if err := errors.Join(err1, err2, err3, err4); err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(sc1, sc2) || !bytes.Equal(sr1, sr2) {
		t.Fatal("the same result written twice differs")
	}
	if v := value(parse(t, sr1), tag.ContentDate); v != "20261206" {
		t.Errorf("ContentDate %q from the fixed clock", v)
	}
	ids.SOPInstanceUID = "2.25.3"
	sr3, err := StructuredReport(src, testResult(), testModel, ids, nil)
	if err != nil {
		t.Fatal(err)
	}
	uid := func(sr []byte) string { return itemFor(t, reportItems(t, parse(t, sr)), "DCM:112040").uid }
	if uid(sr1) == uid(sr3) || !strings.HasPrefix(uid(sr3), "2.25.") {
		t.Errorf("tracking UIDs %s and %s of two reports", uid(sr1), uid(sr3))
	}
}

func TestNonConformingSourceValues(t *testing.T) {
	cases := []struct {
		attr   copiedAttribute
		values []string
		want   string
	}{
		{copiedAttribute{tagStudyDate, "DA"}, []string{"20040119"}, "20040119"},
		{copiedAttribute{tagStudyDate, "DA"}, []string{"1997.04.30"}, ""},
		{copiedAttribute{tagStudyDate, "DA"}, []string{"20040119", "20040120"}, ""},
		{copiedAttribute{tagStudyTime, "TM"}, []string{"072730"}, "072730"},
		{copiedAttribute{tagStudyTime, "TM"}, []string{"0727"}, "0727"},
		{copiedAttribute{tagStudyTime, "TM"}, []string{"072730.123456"}, "072730.123456"},
		{copiedAttribute{tagStudyTime, "TM"}, []string{"07:27:30"}, ""},
		{copiedAttribute{tagPatientSex, "CS"}, []string{"O"}, "O"},
		{copiedAttribute{tagPatientSex, "CS"}, []string{"male"}, ""},
		{copiedAttribute{tagPatientName, "PN"}, []string{"Doe^Jane"}, "Doe^Jane"},
		{copiedAttribute{tagStudyDate, "DA"}, nil, ""},
	}
	for _, c := range cases {
		if got := strings.Join(conforming(c.attr, c.values), `\`); got != c.want {
			t.Errorf("%04X %q: %q, want %q", c.attr.tag&0xFFFF, c.values, got, c.want)
		}
	}
}
