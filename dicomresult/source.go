package dicomresult

import (
	"bytes"
	"errors"
	"fmt"
	"regexp"
	"strconv"
	"strings"

	"github.com/maddr-project/maddr/medimg/dicom"
	godicom "github.com/suyashkumar/dicom"
	"github.com/suyashkumar/dicom/pkg/tag"
)

// copiedAttribute is a patient or study attribute a result object carries
// over from the scored instance, so that it files into the same study.
type copiedAttribute struct {
	tag uint32
	vr  string
}

// copiedAttributes are the Patient and General Study module attributes
// (all Type 2 in the result IODs, so they are written even when empty).
var copiedAttributes = []copiedAttribute{
	{tagPatientName, "PN"},
	{tagPatientID, "LO"},
	{tagPatientBirthDate, "DA"},
	{tagPatientSex, "CS"},
	{tagStudyDate, "DA"},
	{tagStudyTime, "TM"},
	{tagAccessionNumber, "SH"},
	{tagReferringPhysicianName, "PN"},
	{tagStudyID, "SH"},
}

// source is what a result object needs from the instance it reports on.
type source struct {
	sopClassUID, sopInstanceUID string
	studyInstanceUID            string
	seriesInstanceUID           string
	modality                    string
	laterality                  string
	instanceNumber              int
	studyDescription            string
	// copied holds the values of copiedAttributes, in that order, as UTF-8.
	copied [][]string
}

// readSource parses the scored DICOM file. The structure is checked by the
// project's reader first (it rejects lengths that run past the data before
// anything is allocated for them). The pixels are not decoded: a result
// may be about an instance whose compression maddr cannot read, or one
// without pixels.
func readSource(data []byte) (*source, error) {
	if len(data) == 0 {
		return nil, fmt.Errorf("reading source DICOM: %w: empty file", dicom.ErrNoMeta)
	}
	if _, err := dicom.CheckStructure(data); err != nil {
		return nil, fmt.Errorf("reading source DICOM: %w", err)
	}
	ds, err := parseWithoutPixels(data)
	if err != nil {
		return nil, fmt.Errorf("reading source DICOM: %w", err)
	}
	s := &source{
		sopClassUID:       firstString(&ds, tag.SOPClassUID),
		sopInstanceUID:    firstString(&ds, tag.SOPInstanceUID),
		studyInstanceUID:  firstString(&ds, tag.StudyInstanceUID),
		seriesInstanceUID: firstString(&ds, tag.SeriesInstanceUID),
		modality:          strings.ToUpper(firstString(&ds, tag.Modality)),
		laterality:        strings.ToUpper(firstString(&ds, tag.Laterality)),
		studyDescription:  firstString(&ds, tag.StudyDescription),
	}
	if n, err := strconv.Atoi(firstString(&ds, tag.InstanceNumber)); err == nil && n > 0 {
		s.instanceNumber = n
	}
	for name, uid := range map[string]string{
		"SOPClassUID": s.sopClassUID, "SOPInstanceUID": s.sopInstanceUID,
		"StudyInstanceUID": s.studyInstanceUID, "SeriesInstanceUID": s.seriesInstanceUID,
	} {
		if err := checkUID(uid); err != nil {
			return nil, fmt.Errorf("reading source DICOM: %s: %w", name, err)
		}
	}
	for _, a := range copiedAttributes {
		t := tag.Tag{Group: uint16(a.tag >> 16), Element: uint16(a.tag)}
		s.copied = append(s.copied, conforming(a, allStrings(&ds, t)))
	}
	return s, nil
}

// Value formats of the copied dates, times and sex: a source that breaks
// them (old ACR-NEMA "1997.04.30" dates are common) would make the result
// invalid, so such a value is written empty (all copied attributes are
// Type 2).
var (
	datePattern = regexp.MustCompile(`^[0-9]{8}$`)
	timePattern = regexp.MustCompile(`^[0-9]{2}([0-9]{2}([0-9]{2}(\.[0-9]{1,6})?)?)?$`)
	sexPattern  = regexp.MustCompile(`^[MFO]$`)
)

func conforming(a copiedAttribute, values []string) []string {
	var pattern *regexp.Regexp
	switch {
	case a.vr == "DA":
		pattern = datePattern
	case a.vr == "TM":
		pattern = timePattern
	case a.tag == tagPatientSex:
		pattern = sexPattern
	default:
		return values
	}
	if len(values) != 1 || !pattern.MatchString(values[0]) {
		return nil
	}
	return values
}

// parseWithoutPixels parses data with the DICOM module, turning a panic of
// the module on a malformed file into an error.
func parseWithoutPixels(data []byte) (ds godicom.Dataset, err error) {
	defer func() {
		if p := recover(); p != nil {
			err = fmt.Errorf("malformed DICOM (%v)", p)
		}
	}()
	return godicom.Parse(bytes.NewReader(data), int64(len(data)), nil,
		godicom.SkipPixelData(), godicom.AllowMismatchPixelDataLength(),
		godicom.AllowUnknownSpecificCharacterSet())
}

// firstString is the first value of a string attribute, trimmed; "" when absent.
func firstString(ds *godicom.Dataset, t tag.Tag) string {
	e, err := ds.FindElementByTag(t)
	if err != nil || e.Value == nil {
		return ""
	}
	if v, ok := e.Value.GetValue().([]string); ok && len(v) > 0 {
		return strings.Trim(v[0], " \x00")
	}
	return ""
}

// allStrings is every value of a string attribute, trimmed; none when absent.
func allStrings(ds *godicom.Dataset, t tag.Tag) []string {
	e, err := ds.FindElementByTag(t)
	if err != nil || e.Value == nil {
		return nil
	}
	v, ok := e.Value.GetValue().([]string)
	if !ok {
		return nil
	}
	out := make([]string, len(v))
	for i, s := range v {
		out[i] = strings.Trim(s, " \x00")
	}
	return out
}

// checkUID rejects what cannot be written as a UI value.
func checkUID(uid string) error {
	switch {
	case uid == "":
		return errors.New("missing")
	case len(uid) > 64:
		return fmt.Errorf("%d characters, more than 64", len(uid))
	}
	for _, c := range uid {
		if (c < '0' || c > '9') && c != '.' {
			return fmt.Errorf("%q is not a UID", uid)
		}
	}
	return nil
}
