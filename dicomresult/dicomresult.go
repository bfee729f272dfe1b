// Package dicomresult writes maddr results as DICOM objects for an image
// archive: a Secondary Capture with the heat map and the verdict burned in,
// and a Comprehensive SR (TID 1500 Measurement Report) with the score,
// threshold, decision, recognised organ and modality, out-of-scope flag and
// the model that produced them. Both go into new series of the scored
// image's study, marked "not for diagnostic use", so every viewer shows them
// next to the original. It also writes any medimg.Image as a plain CT or DX
// file, to put phantom slices into an archive.
//
// Objects are encoded here in Explicit VR Little Endian with defined
// lengths; tests check them with dciodvfy (dicom3tools), dcmdump (dcmtk)
// and the project's own reader.
package dicomresult

import (
	"crypto/rand"
	"fmt"
	"math/big"
	"strconv"
	"strings"
	"time"
)

// Manufacturer is the Manufacturer of every result object.
const Manufacturer = "maddr"

// SeriesDescriptionPrefix starts the SeriesDescription of every result
// series.
const SeriesDescriptionPrefix = "maddr anomaly result - NOT FOR DIAGNOSTIC USE"

// SOP classes written.
const (
	SecondaryCaptureSOPClass = "1.2.840.10008.5.1.4.1.1.7"
	ComprehensiveSRSOPClass  = "1.2.840.10008.5.1.4.1.1.88.33"
	CTImageSOPClass          = "1.2.840.10008.5.1.4.1.1.2"
	DXImageSOPClass          = "1.2.840.10008.5.1.4.1.1.1.1" // For Presentation
)

// Series numbers given to result series when IDs.SeriesNumber is zero: high,
// so that viewers list them after the acquired series.
const (
	DefaultSecondaryCaptureSeriesNumber = 9901
	DefaultReportSeriesNumber           = 9902
)

// Model identifies what produced a result: the model file's name, version
// and SHA-256 checksum, and the maddr build (Software).
type Model struct{ Name, Version, SHA256, Software string }

// IDs are the identifiers of a new result object; zero values are filled by
// the writer (new UIDs, the default series number, the source's instance
// number or 1).
type IDs struct {
	SeriesInstanceUID, SOPInstanceUID string
	SeriesNumber, InstanceNumber      int
}

// Ref names an instance a report is about. An empty SeriesInstanceUID means
// the series of the source passed to StructuredReport.
type Ref struct{ SOPClassUID, SOPInstanceUID, SeriesInstanceUID string }

// NewUID returns a new UID: "2.25." followed by the decimal value of a
// random (version 4) UUID, as PS3.5 B.2 allows without a registered root.
func NewUID() string {
	var b [16]byte
	rand.Read(b[:]) // never fails: it crashes the program rather than return weak bytes
	b[6] = b[6]&0x0f | 0x40
	b[8] = b[8]&0x3f | 0x80
	return "2.25." + new(big.Int).SetBytes(b[:]).String()
}

// ownSOPClasses are the SOP classes maddr writes results in.
var ownSOPClasses = map[string]bool{
	SecondaryCaptureSOPClass: true,
	ComprehensiveSRSOPClass:  true,
}

// IsOwnOutput reports whether an instance was written by maddr as a result,
// from its SOP Class UID, Manufacturer and SeriesDescription, so that a
// watcher never scores its own results. The series description prefix alone
// is enough; Manufacturer "maddr" counts for a result SOP class (or an
// unknown one), not for images ImageToDICOM wrote.
func IsOwnOutput(sopClassUID, manufacturer, seriesDescription string) bool {
	if strings.HasPrefix(strings.TrimSpace(seriesDescription), SeriesDescriptionPrefix) {
		return true
	}
	if !strings.EqualFold(strings.TrimSpace(manufacturer), Manufacturer) {
		return false
	}
	sopClassUID = strings.Trim(sopClassUID, " \x00")
	return sopClassUID == "" || ownSOPClasses[sopClassUID]
}

// now is the clock of creation dates; tests may fix it.
var now = time.Now

func dicomDate(t time.Time) string { return t.Format("20060102") }
func dicomTime(t time.Time) string { return t.Format("150405") }

// filled returns ids with zero fields replaced.
func (ids IDs) filled(seriesNumber, instanceNumber int) IDs {
	if ids.SeriesInstanceUID == "" {
		ids.SeriesInstanceUID = NewUID()
	}
	if ids.SOPInstanceUID == "" {
		ids.SOPInstanceUID = NewUID()
	}
	if ids.SeriesNumber == 0 {
		ids.SeriesNumber = seriesNumber
	}
	if ids.InstanceNumber == 0 {
		ids.InstanceNumber = max(instanceNumber, 1)
	}
	return ids
}

// check rejects identifiers that cannot be written.
func (ids IDs) check() error {
	if err := checkUID(ids.SeriesInstanceUID); err != nil {
		return fmt.Errorf("SeriesInstanceUID: %w", err)
	}
	if err := checkUID(ids.SOPInstanceUID); err != nil {
		return fmt.Errorf("SOPInstanceUID: %w", err)
	}
	if ids.SeriesNumber < 0 || ids.InstanceNumber < 0 {
		return fmt.Errorf("negative series or instance number")
	}
	return nil
}

// commonAttributes sets what every result object shares: SOP Common,
// Patient, General Study, the series' identity and description, General
// Equipment, and the algorithm as contributing equipment.
func commonAttributes(d *dataset, src *source, sopClass string, ids IDs, modality, description string,
	m Model, created time.Time) {
	d.str(tagSOPClassUID, "UI", sopClass)
	d.str(tagSOPInstanceUID, "UI", ids.SOPInstanceUID)
	d.str(tagInstanceCreationDate, "DA", dicomDate(created))
	d.str(tagInstanceCreationTime, "TM", dicomTime(created))
	for i, a := range copiedAttributes {
		d.str(a.tag, a.vr, src.copied[i]...)
	}
	d.str(tagStudyInstanceUID, "UI", src.studyInstanceUID)
	if src.studyDescription != "" {
		d.str(tagStudyDescription, "LO", src.studyDescription)
	}
	d.str(tagModality, "CS", modality)
	d.str(tagSeriesInstanceUID, "UI", ids.SeriesInstanceUID)
	if sopClass != ComprehensiveSRSOPClass {
		// Type 2C for images: the source's side (R or L), or empty (unknown).
		if src.laterality == "R" || src.laterality == "L" {
			d.str(tagLaterality, "CS", src.laterality)
		} else {
			d.str(tagLaterality, "CS")
		}
	}
	d.str(tagSeriesNumber, "IS", strconv.Itoa(ids.SeriesNumber))
	d.str(tagSeriesDescription, "LO", SeriesDescriptionPrefix+" - "+description)
	d.str(tagSeriesDate, "DA", dicomDate(created))
	d.str(tagSeriesTime, "TM", dicomTime(created))
	d.str(tagInstanceNumber, "IS", strconv.Itoa(ids.InstanceNumber))
	d.str(tagManufacturer, "LO", Manufacturer)
	if m.Name != "" {
		d.str(tagManufacturerModelName, "LO", m.Name)
	}
	if v := softwareVersions(m); len(v) > 0 {
		d.str(tagSoftwareVersions, "LO", v...)
	}
	d.seq(tagContributingEquipmentSeq, contributingEquipment(m, created))
}

// softwareVersions lists the maddr build and the model version.
func softwareVersions(m Model) []string {
	var v []string
	if m.Software != "" {
		v = append(v, "maddr "+m.Software)
	}
	if m.Version != "" {
		v = append(v, "model "+m.Version)
	}
	return v
}

// contributingEquipment names the algorithm the way IHE AI Results asks:
// manufacturer, model name and software version of the processing equipment.
func contributingEquipment(m Model, created time.Time) dataset {
	var item dataset
	item.seq(tagPurposeOfReferenceCodeSeq, code("109102", "DCM", "Processing Equipment"))
	item.str(tagManufacturer, "LO", Manufacturer)
	name := m.Name
	if name == "" {
		name = "maddr anomaly detection"
	}
	item.str(tagManufacturerModelName, "LO", name)
	if v := softwareVersions(m); len(v) > 0 {
		item.str(tagSoftwareVersions, "LO", v...)
	}
	item.str(tagContributionDateTime, "DT", created.Format("20060102150405"))
	desc := "maddr anomaly detection"
	if m.SHA256 != "" {
		desc += "; model file SHA-256 " + m.SHA256
	}
	item.str(tagContributionDescription, "ST", desc)
	return item
}

// code is a code sequence item.
func code(value, scheme, meaning string) dataset {
	var c dataset
	c.str(tagCodeValue, "SH", value)
	c.str(tagCodingSchemeDesignator, "SH", scheme)
	c.str(tagCodeMeaning, "LO", meaning)
	return c
}

// setCharacterSet declares UTF-8 when any text value of the dataset (at any
// depth) is outside ASCII; ASCII needs no declaration.
func setCharacterSet(d *dataset) {
	if hasNonASCIIText(*d) {
		d.str(tagSpecificCharacterSet, "CS", "ISO_IR 192")
	}
}

var textVRs = map[string]bool{"LO": true, "LT": true, "PN": true, "SH": true, "ST": true, "UC": true, "UT": true}

func hasNonASCIIText(d dataset) bool {
	for _, e := range d {
		if textVRs[e.vr] {
			for _, c := range e.value {
				if c >= 0x80 {
					return true
				}
			}
		}
		for _, item := range e.items {
			if hasNonASCIIText(item) {
				return true
			}
		}
	}
	return false
}
