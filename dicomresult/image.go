package dicomresult

import (
	"encoding/binary"
	"fmt"
	"maps"
	"math"
	"slices"
	"strings"

	"github.com/maddr-project/maddr/medimg"
)

// PatientStudy are the identifiers ImageToDICOM writes. Zero values are
// filled: new UIDs (so slices meant for one study or series must be given
// the same StudyInstanceUID / SeriesInstanceUID), today's date, StudyID
// "1", series number 1, instance number Index+1, pixel spacing and slice
// thickness 1 mm, and Modality from the image (CT for Hounsfield units, DX
// otherwise).
type PatientStudy struct {
	PatientName, PatientID, PatientBirthDate, PatientSex string
	StudyInstanceUID, StudyDate, StudyTime, StudyID      string
	AccessionNumber, ReferringPhysicianName              string
	StudyDescription                                     string
	SeriesInstanceUID, SeriesDescription                 string
	SeriesNumber                                         int
	SOPInstanceUID                                       string
	InstanceNumber                                       int
	// FrameOfReferenceUID ties the slices of one CT volume together; by
	// default it follows from SeriesInstanceUID.
	FrameOfReferenceUID string
	// Modality is "CT" or "DX"; "" chooses from the image.
	Modality string
	// PixelSpacingMM is the side of a pixel; SliceThicknessMM the CT slice
	// thickness, which also spaces slices by their Index.
	PixelSpacingMM, SliceThicknessMM float64
	// BodyPart is the BodyPartExamined (e.g. "LIVER", "CHEST"); "" omits it.
	BodyPart string
}

// bodyParts are the BodyPartExamined values ImageToDICOM accepts (all
// unpaired), with the SNOMED CT codes DICOM CID 4031 gives them.
var bodyParts = map[string]dataset{
	"ABDOMEN": code("818981001", "SCT", "Abdomen"),
	"BRAIN":   code("12738006", "SCT", "Brain"),
	"CHEST":   code("51185008", "SCT", "Chest"),
	"HEAD":    code("69536005", "SCT", "Head"),
	"LIVER":   code("10200004", "SCT", "Liver"),
	"PELVIS":  code("816092008", "SCT", "Pelvis"),
}

// Stored value ranges of ImageToDICOM. CT values are Hounsfield units
// rounded to integers, stored signed. DX has no rescale (the DX IOD fixes
// slope 1, intercept 0), so its values are quantised: Lo..Hi of the image
// maps linearly onto 0..dxMaxStored.
const (
	ctMinHU     = -32768
	ctMaxHU     = 32767
	dxBits      = 12
	dxMaxStored = 1<<dxBits - 1
)

// ImageToDICOM writes img as a plain single-frame DICOM file: a CT Image
// for images in Hounsfield units (or Modality "CT"), else a digital X-ray
// (DX, for presentation), 16-bit MONOCHROME2, in Explicit VR Little Endian.
// It is meant for phantom slices and tests, so that they can go into an
// archive and come back through the DICOM reader; the Manufacturer is left
// empty, so IsOwnOutput does not mistake the images for maddr results.
func ImageToDICOM(img medimg.Image, p PatientStudy) ([]byte, error) {
	if img.Width <= 0 || img.Height <= 0 || img.Width > 65535 || img.Height > 65535 ||
		len(img.Pix) != img.Width*img.Height {
		return nil, fmt.Errorf("image to DICOM: %dx%d image with %d values", img.Width, img.Height, len(img.Pix))
	}
	for i, v := range img.Pix {
		if math.IsNaN(float64(v)) || math.IsInf(float64(v), 0) {
			return nil, fmt.Errorf("image to DICOM: value %d is not finite", i)
		}
	}
	modality := strings.ToUpper(p.Modality)
	if modality == "" {
		modality = "DX"
		if img.Kind == medimg.KindHU || strings.EqualFold(img.Modality, "CT") {
			modality = "CT"
		}
	}
	if modality != "CT" && modality != "DX" {
		return nil, fmt.Errorf("image to DICOM: modality %q, want CT or DX", p.Modality)
	}
	created := now()
	fill := func(s *string, v string) {
		if *s == "" {
			*s = v
		}
	}
	fill(&p.StudyInstanceUID, NewUID())
	fill(&p.SeriesInstanceUID, NewUID())
	fill(&p.SOPInstanceUID, NewUID())
	// Slices of one series share a frame of reference unless told otherwise.
	fill(&p.FrameOfReferenceUID, nameBasedUID("maddr frame of reference", p.SeriesInstanceUID))
	fill(&p.StudyDate, dicomDate(created))
	fill(&p.StudyTime, dicomTime(created))
	fill(&p.StudyID, "1")
	if p.SeriesNumber == 0 {
		p.SeriesNumber = 1
	}
	if p.InstanceNumber == 0 {
		p.InstanceNumber = img.Index + 1
	}
	if p.PixelSpacingMM <= 0 {
		p.PixelSpacingMM = 1
	}
	if p.SliceThicknessMM <= 0 {
		p.SliceThicknessMM = 1
	}
	for name, uid := range map[string]string{"StudyInstanceUID": p.StudyInstanceUID,
		"SeriesInstanceUID": p.SeriesInstanceUID, "SOPInstanceUID": p.SOPInstanceUID,
		"FrameOfReferenceUID": p.FrameOfReferenceUID} {
		if err := checkUID(uid); err != nil {
			return nil, fmt.Errorf("image to DICOM: %s: %w", name, err)
		}
	}

	sopClass := CTImageSOPClass
	if modality == "DX" {
		sopClass = DXImageSOPClass
	}
	var d dataset
	d.str(tagSOPClassUID, "UI", sopClass)
	d.str(tagSOPInstanceUID, "UI", p.SOPInstanceUID)
	d.str(tagInstanceCreationDate, "DA", dicomDate(created))
	d.str(tagInstanceCreationTime, "TM", dicomTime(created))
	d.str(tagPatientName, "PN", p.PatientName)
	d.str(tagPatientID, "LO", p.PatientID)
	d.str(tagPatientBirthDate, "DA", p.PatientBirthDate)
	d.str(tagPatientSex, "CS", p.PatientSex)
	d.str(tagStudyInstanceUID, "UI", p.StudyInstanceUID)
	d.str(tagStudyDate, "DA", p.StudyDate)
	d.str(tagStudyTime, "TM", p.StudyTime)
	d.str(tagStudyID, "SH", p.StudyID)
	d.str(tagAccessionNumber, "SH", p.AccessionNumber)
	d.str(tagReferringPhysicianName, "PN", p.ReferringPhysicianName)
	if p.StudyDescription != "" {
		d.str(tagStudyDescription, "LO", p.StudyDescription)
	}
	d.str(tagModality, "CS", modality)
	d.str(tagSeriesInstanceUID, "UI", p.SeriesInstanceUID)
	d.str(tagSeriesNumber, "IS", fmt.Sprint(p.SeriesNumber))
	if p.SeriesDescription != "" {
		d.str(tagSeriesDescription, "LO", p.SeriesDescription)
	}
	bodyPart := strings.ToUpper(p.BodyPart)
	region, known := bodyParts[bodyPart]
	if bodyPart != "" && !known {
		return nil, fmt.Errorf("image to DICOM: body part %q has no code here (known: %s)", p.BodyPart,
			strings.Join(slices.Sorted(maps.Keys(bodyParts)), ", "))
	}
	if bodyPart != "" {
		d.str(tagBodyPartExamined, "CS", bodyPart)
	} else if modality == "CT" {
		// General Series Laterality is Type 2C: empty for an unknown part,
		// absent for the unpaired parts listed in bodyParts.
		d.str(tagLaterality, "CS")
	}
	d.str(tagManufacturer, "LO")
	d.str(tagInstanceNumber, "IS", fmt.Sprint(p.InstanceNumber))
	d.str(tagContentDate, "DA", dicomDate(created))
	d.str(tagContentTime, "TM", dicomTime(created))
	d.str(tagFrameOfReferenceUID, "UI", p.FrameOfReferenceUID)
	d.str(tagPositionReferenceIndic, "LO")
	d.us(tagSamplesPerPixel, 1)
	d.str(tagPhotometric, "CS", "MONOCHROME2")
	d.us(tagRows, uint16(img.Height))
	d.us(tagColumns, uint16(img.Width))
	d.us(tagBitsAllocated, 16)
	spacing := decimalString(p.PixelSpacingMM)
	if modality == "CT" {
		ctAttributes(&d, img, p, spacing)
	} else {
		dxAttributes(&d, img, spacing, region)
	}
	setCharacterSet(&d)
	out, err := d.partTen(sopClass, p.SOPInstanceUID)
	if err != nil {
		return nil, fmt.Errorf("image to DICOM: %w", err)
	}
	return out, nil
}

// ctAttributes: CT Image and Image Plane modules, Hounsfield units stored
// as signed 16-bit integers (rescale slope 1, intercept 0).
func ctAttributes(d *dataset, img medimg.Image, p PatientStudy, spacing string) {
	d.str(tagImageType, "CS", "DERIVED", "SECONDARY", "AXIAL")
	d.str(tagKVP, "DS")
	d.str(tagPatientPosition, "CS", "HFS")
	d.str(tagAcquisitionNumber, "IS", "1")
	d.str(tagSliceThickness, "DS", decimalString(p.SliceThicknessMM))
	z := float64(img.Index) * p.SliceThicknessMM
	d.str(tagImagePositionPatient, "DS", "0", "0", decimalString(z))
	d.str(tagImageOrientationPatient, "DS", "1", "0", "0", "0", "1", "0")
	d.str(tagSliceLocation, "DS", decimalString(z))
	d.str(tagPixelSpacing, "DS", spacing, spacing)
	d.us(tagBitsStored, 16)
	d.us(tagHighBit, 15)
	d.us(tagPixelRepresentation, 1)
	d.str(tagRescaleIntercept, "DS", "0")
	d.str(tagRescaleSlope, "DS", "1")
	d.str(tagRescaleType, "LO", "HU")
	if img.Window != nil && img.Window.Width > 0 {
		d.str(tagWindowCenter, "DS", decimalString(float64(img.Window.Center)))
		d.str(tagWindowWidth, "DS", decimalString(float64(img.Window.Width)))
	}
	pix := make([]byte, 2*len(img.Pix))
	for i, v := range img.Pix {
		hu := math.Round(math.Min(ctMaxHU, math.Max(ctMinHU, float64(v))))
		binary.LittleEndian.PutUint16(pix[2*i:], uint16(int16(hu)))
	}
	d.raw(tagPixelData, "OW", pix)
}

// dxAttributes: DX Series, Anatomy, Image and Detector modules with the
// values quantised from Lo..Hi, shown with a full-range window.
func dxAttributes(d *dataset, img medimg.Image, spacing string, region dataset) {
	d.str(tagImageType, "CS", "DERIVED", "SECONDARY")
	d.str(tagPresentationIntentType, "CS", "FOR PRESENTATION")
	d.str(tagImageLaterality, "CS", "U")
	if region != nil {
		d.seq(tagAnatomicRegionSequence, region)
	} else {
		d.seq(tagAnatomicRegionSequence)
	}
	// Rows run to the patient's left and columns to the feet, as in a
	// posteroanterior chest radiograph.
	d.str(tagPatientOrientation, "CS", "L", "F")
	d.str(tagPixelIntensityRelation, "CS", "LIN")
	d.ss(tagPixelIntensityRelSign, 1)
	d.str(tagRescaleIntercept, "DS", "0")
	d.str(tagRescaleSlope, "DS", "1")
	d.str(tagRescaleType, "LO", "US")
	d.str(tagPresentationLUTShape, "CS", "IDENTITY")
	d.str(tagLossyImageCompression, "CS", "00")
	d.str(tagBurnedInAnnotation, "CS", "NO")
	d.str(tagWindowCenter, "DS", decimalString(dxMaxStored/2.0))
	d.str(tagWindowWidth, "DS", decimalString(dxMaxStored+1))
	d.str(tagDetectorType, "CS")
	d.str(tagImagerPixelSpacing, "DS", spacing, spacing)
	d.str(tagPixelSpacing, "DS", spacing, spacing)
	d.seq(tagAcquisitionContextSeq)
	d.us(tagBitsStored, dxBits)
	d.us(tagHighBit, dxBits-1)
	d.us(tagPixelRepresentation, 0)
	lo, hi := float64(img.Lo), float64(img.Hi)
	if !(hi > lo) {
		lo, hi = minMax(img.Pix)
		if !(hi > lo) {
			hi = lo + 1
		}
	}
	pix := make([]byte, 2*len(img.Pix))
	for i, v := range img.Pix {
		t := math.Min(1, math.Max(0, (float64(v)-lo)/(hi-lo)))
		binary.LittleEndian.PutUint16(pix[2*i:], uint16(math.Round(t*dxMaxStored)))
	}
	d.raw(tagPixelData, "OW", pix)
}

func minMax(v []float32) (lo, hi float64) {
	lo, hi = math.Inf(1), math.Inf(-1)
	for _, x := range v {
		lo, hi = math.Min(lo, float64(x)), math.Max(hi, float64(x))
	}
	return lo, hi
}
