package dicomresult

import (
	"crypto/sha256"
	"fmt"
	"math"
	"math/big"
	"slices"
	"strings"

	"github.com/maddr-project/maddr/score"
)

// privateScheme is the coding scheme of the concepts no standard names
// (anomaly score, decision, out of scope); PS3.16 reserves "99" prefixes
// for private schemes.
const privateScheme = "99MADDR"

// Concepts of the report. Standard codes are from DICOM (DCM, PS3.16),
// SNOMED CT (SCT) and UCUM.
var (
	conceptReport          = code("126000", "DCM", "Imaging Measurement Report")
	conceptLanguage        = code("121049", "DCM", "Language of Content Item and Descendants")
	valueEnglishUS         = code("en-US", "RFC5646", "English (United States)")
	conceptObserverType    = code("121005", "DCM", "Observer Type")
	valueDevice            = code("121007", "DCM", "Device")
	conceptDeviceUID       = code("121012", "DCM", "Device Observer UID")
	conceptDeviceName      = code("121013", "DCM", "Device Observer Name")
	conceptDeviceMaker     = code("121014", "DCM", "Device Observer Manufacturer")
	conceptDeviceModel     = code("121015", "DCM", "Device Observer Model Name")
	conceptProcedure       = code("121058", "DCM", "Procedure reported")
	valueImagingProcedure  = code("363679005", "SCT", "Imaging procedure")
	conceptImageLibrary    = code("111028", "DCM", "Image Library")
	conceptLibraryGroup    = code("126200", "DCM", "Image Library Group")
	conceptMeasurements    = code("126010", "DCM", "Imaging Measurements")
	conceptGroup           = code("125007", "DCM", "Measurement Group")
	conceptTrackingID      = code("112039", "DCM", "Tracking Identifier")
	conceptTrackingUID     = code("112040", "DCM", "Tracking Unique Identifier")
	conceptFindingSite     = code("363698007", "SCT", "Finding Site")
	conceptSource          = code("121112", "DCM", "Source of Measurement")
	conceptAlgorithmName   = code("111001", "DCM", "Algorithm Name")
	conceptAlgorithmVer    = code("111003", "DCM", "Algorithm Version")
	conceptComment         = code("121106", "DCM", "Comment")
	conceptScore           = code("anomaly-score", privateScheme, "Anomaly score (0.5 at threshold)")
	conceptRawScore        = code("raw-score", privateScheme, "Raw anomaly score")
	conceptThreshold       = code("raw-threshold", privateScheme, "Raw anomaly score threshold")
	conceptThresholdMethod = code("threshold-method", privateScheme, "Threshold method")
	conceptDecision        = code("decision", privateScheme, "Anomaly decision")
	conceptOutOfScope      = code("out-of-scope", privateScheme, "Out of scope")
	conceptOrgan           = code("organ", privateScheme, "Recognised organ")
	conceptOrganProb       = code("organ-prob", privateScheme, "Recognised organ probability")
	conceptModality        = code("modality", privateScheme, "Recognised modality")
	conceptModalityProb    = code("modality-prob", privateScheme, "Recognised modality probability")
	conceptGroupName       = code("group", privateScheme, "Threshold group")
	conceptModelSHA256     = code("model-sha256", privateScheme, "Model file SHA-256")
	conceptSlices          = code("slices", privateScheme, "Slices scored")
	conceptAbnormalSlices  = code("abnormal-slices", privateScheme, "Abnormal slices")
	conceptOutOfScopeSlice = code("oos-slices", privateScheme, "Out of scope slices")
	valueYes               = code("373066001", "SCT", "Yes")
	valueNo                = code("373067005", "SCT", "No")
	unitNone               = code("1", "UCUM", "no units")
)

// decisionCodes are the coded decisions; SNOMED CT has normal and abnormal.
var decisionCodes = map[string]dataset{
	score.Normal:     code("17621005", "SCT", "Normal"),
	score.Abnormal:   code("263654008", "SCT", "Abnormal"),
	score.OutOfScope: code("out-of-scope", privateScheme, "Out of scope"),
	score.Unknown:    code("unknown", privateScheme, "No threshold for the group"),
	score.Failed:     code("error", privateScheme, "Image could not be scored"),
}

// organSites are the SNOMED CT body structures of the organs maddr models
// know; other organs are reported as text only.
var organSites = map[string]dataset{
	"liver": code("10200004", "SCT", "Liver"),
	"lung":  code("39607008", "SCT", "Lung"),
	"brain": code("12738006", "SCT", "Brain"),
	"chest": code("51185008", "SCT", "Thorax"),
}

// StructuredReport returns a Comprehensive SR following TID 1500
// (Measurement Report) with one measurement group holding the result r: the
// score, raw score and threshold as numbers, the decision and the
// out-of-scope flag as codes, the recognised organ and modality, and the
// model (name, version, file checksum), which is also named as contributing
// equipment. refs are the scored instances (source itself when empty); it
// goes into a new series of the study of source.
func StructuredReport(source []byte, r score.Result, m Model, ids IDs, refs []Ref) ([]byte, error) {
	src, err := readSource(source)
	if err != nil {
		return nil, err
	}
	ids = ids.filled(DefaultReportSeriesNumber, src.instanceNumber)
	if err := ids.check(); err != nil {
		return nil, fmt.Errorf("structured report: %w", err)
	}
	refs = slices.Clone(refs)
	if len(refs) == 0 {
		refs = []Ref{{SOPClassUID: src.sopClassUID, SOPInstanceUID: src.sopInstanceUID}}
	}
	for i := range refs {
		if refs[i].SeriesInstanceUID == "" {
			refs[i].SeriesInstanceUID = src.seriesInstanceUID
		}
		for name, uid := range map[string]string{"SOPClassUID": refs[i].SOPClassUID,
			"SOPInstanceUID": refs[i].SOPInstanceUID, "SeriesInstanceUID": refs[i].SeriesInstanceUID} {
			if err := checkUID(uid); err != nil {
				return nil, fmt.Errorf("structured report: reference %d: %s: %w", i+1, name, err)
			}
		}
	}
	created := now()
	var d dataset
	commonAttributes(&d, src, ComprehensiveSRSOPClass, ids, "SR", "report", m, created)
	d.seq(tagReferencedPPSSequence)
	d.str(tagContentDate, "DA", dicomDate(created))
	d.str(tagContentTime, "TM", dicomTime(created))
	d.seq(tagPerformedProcedureCodeSeq)
	d.str(tagCompletionFlag, "CS", "COMPLETE")
	d.str(tagVerificationFlag, "CS", "UNVERIFIED")
	d.seq(tagCurrentRequestedEvidence, evidence(src.studyInstanceUID, refs)...)
	var scheme dataset
	scheme.str(tagCodingSchemeDesignator, "SH", privateScheme)
	scheme.str(tagCodingSchemeName, "ST", "maddr anomaly detection concepts")
	scheme.str(tagCodingSchemeResponsible, "ST", "maddr project")
	d.seq(tagCodingSchemeIDSequence, scheme)

	d.str(tagValueType, "CS", "CONTAINER")
	d.seq(tagConceptNameCodeSequence, conceptReport)
	d.str(tagContinuityOfContent, "CS", "SEPARATE")
	d.seq(tagContentTemplateSequence, template("1500"))
	d.seq(tagContentSequence, reportContent(r, m, refs, ids.SOPInstanceUID)...)
	setCharacterSet(&d)
	out, err := d.partTen(ComprehensiveSRSOPClass, ids.SOPInstanceUID)
	if err != nil {
		return nil, fmt.Errorf("structured report: %w", err)
	}
	return out, nil
}

// reportContent is the content tree under the root container.
func reportContent(r score.Result, m Model, refs []Ref, sopInstanceUID string) []dataset {
	deviceName := m.Name
	if deviceName == "" {
		deviceName = "maddr"
	}
	items := []dataset{
		codeItem("HAS CONCEPT MOD", conceptLanguage, valueEnglishUS),
		codeItem("HAS OBS CONTEXT", conceptObserverType, valueDevice),
		uidItem("HAS OBS CONTEXT", conceptDeviceUID, deviceUID(m)),
		textItem("HAS OBS CONTEXT", conceptDeviceName, deviceName),
		textItem("HAS OBS CONTEXT", conceptDeviceMaker, Manufacturer),
	}
	if m.Name != "" {
		items = append(items, textItem("HAS OBS CONTEXT", conceptDeviceModel, m.Name))
	}
	items = append(items, codeItem("HAS CONCEPT MOD", conceptProcedure, valueImagingProcedure))

	var library []dataset
	for _, ref := range refs {
		library = append(library, imageItem("CONTAINS", nil, ref))
	}
	items = append(items, containerItem("CONTAINS", conceptImageLibrary, nil,
		containerItem("CONTAINS", conceptLibraryGroup, nil, library...)))

	items = append(items, containerItem("CONTAINS", conceptMeasurements, nil,
		containerItem("CONTAINS", conceptGroup, template("1501"), measurementGroup(r, m, refs, sopInstanceUID)...)))
	return items
}

// measurementGroup holds the result of one image or one volume. Its
// tracking UID follows from the report's SOP Instance UID, so writing the
// same report again (a restarted watcher) gives the same object.
func measurementGroup(r score.Result, m Model, refs []Ref, sopInstanceUID string) []dataset {
	tracking := "maddr " + orDash(r.Level)
	items := []dataset{
		textItem("HAS OBS CONTEXT", conceptTrackingID, tracking),
		uidItem("HAS OBS CONTEXT", conceptTrackingUID, nameBasedUID("maddr tracking", sopInstanceUID)),
	}
	if site, ok := organSites[strings.ToLower(r.Organ)]; ok {
		items = append(items, codeItem("HAS CONCEPT MOD", conceptFindingSite, site))
	}
	if m.Name != "" {
		// TID 4019 Algorithm Identification needs both name and version.
		version := m.Version
		if version == "" {
			version = "unknown"
		}
		items = append(items, textItem("HAS CONCEPT MOD", conceptAlgorithmName, m.Name),
			textItem("HAS CONCEPT MOD", conceptAlgorithmVer, version))
	}
	var sources []dataset
	for _, ref := range refs {
		sources = append(sources, imageItem("INFERRED FROM", conceptSource, ref))
	}
	items = appendNum(items, conceptScore, r.Normalised, sources...)
	items = appendNum(items, conceptRawScore, r.Raw)
	items = appendNum(items, conceptThreshold, r.Threshold)
	if r.ThresholdMethod != "" {
		items = append(items, textItem("CONTAINS", conceptThresholdMethod, r.ThresholdMethod))
	}
	decision, ok := decisionCodes[r.Decision]
	if !ok {
		decision = code("none", privateScheme, "No decision")
	}
	items = append(items, codeItem("CONTAINS", conceptDecision, decision))
	outOfScope := valueNo
	if r.Decision == score.OutOfScope {
		outOfScope = valueYes
	}
	items = append(items, codeItem("CONTAINS", conceptOutOfScope, outOfScope))
	if r.Organ != "" {
		items = append(items, textItem("CONTAINS", conceptOrgan, r.Organ))
	}
	items = appendNum(items, conceptOrganProb, r.OrganProb)
	if r.Modality != "" {
		items = append(items, textItem("CONTAINS", conceptModality, r.Modality))
	}
	items = appendNum(items, conceptModalityProb, r.ModalityProb)
	if r.Group != "" {
		items = append(items, textItem("CONTAINS", conceptGroupName, r.Group))
	}
	if r.Level == score.LevelVolume {
		items = append(items, numItem(conceptSlices, float64(r.Slices)),
			numItem(conceptAbnormalSlices, float64(r.AbnormalSlices)),
			numItem(conceptOutOfScopeSlice, float64(r.OutOfScope)))
	}
	if m.SHA256 != "" {
		items = append(items, textItem("CONTAINS", conceptModelSHA256, m.SHA256))
	}
	for _, note := range r.Notes {
		items = append(items, textItem("CONTAINS", conceptComment, note))
	}
	return items
}

// deviceUID identifies the model as an observer: a 2.25 UID from a
// name-based UUID (version 8 bits over the SHA-256 of the model file's
// checksum), so every report of one model names the same device; without a
// checksum, the encoder's own UID.
func deviceUID(m Model) string {
	if m.SHA256 == "" {
		return implementationClassUID
	}
	return nameBasedUID("maddr model", m.SHA256)
}

// nameBasedUID is a 2.25 UID from a version 8 (custom, name-based) UUID
// made of the SHA-256 of parts: the same parts always give the same UID.
func nameBasedUID(parts ...string) string {
	sum := sha256.Sum256([]byte(strings.Join(parts, "\x00")))
	b := sum[:16]
	b[6] = b[6]&0x0f | 0x80
	b[8] = b[8]&0x3f | 0x80
	return "2.25." + new(big.Int).SetBytes(b).String()
}

// evidence lists the referenced instances by series, as the Hierarchical
// SOP Instance Reference macro wants.
func evidence(studyUID string, refs []Ref) []dataset {
	var order []string
	bySeries := map[string][]dataset{}
	for _, ref := range refs {
		if _, seen := bySeries[ref.SeriesInstanceUID]; !seen {
			order = append(order, ref.SeriesInstanceUID)
		}
		var sop dataset
		sop.str(tagReferencedSOPClassUID, "UI", ref.SOPClassUID)
		sop.str(tagReferencedSOPInstanceUID, "UI", ref.SOPInstanceUID)
		bySeries[ref.SeriesInstanceUID] = append(bySeries[ref.SeriesInstanceUID], sop)
	}
	var series []dataset
	for _, uid := range order {
		var s dataset
		s.str(tagSeriesInstanceUID, "UI", uid)
		s.seq(tagReferencedSOPSequence, bySeries[uid]...)
		series = append(series, s)
	}
	var study dataset
	study.str(tagStudyInstanceUID, "UI", studyUID)
	study.seq(tagReferencedSeriesSequence, series...)
	return []dataset{study}
}

func template(id string) dataset {
	var t dataset
	t.str(tagMappingResource, "CS", "DCMR")
	t.str(tagTemplateIdentifier, "CS", id)
	return t
}

// contentItem starts a content item; a nil concept leaves the concept name
// out (allowed for image library entries).
func contentItem(relationship, valueType string, concept dataset) dataset {
	var item dataset
	item.str(tagRelationshipType, "CS", relationship)
	item.str(tagValueType, "CS", valueType)
	if concept != nil {
		item.seq(tagConceptNameCodeSequence, concept)
	}
	return item
}

func containerItem(relationship string, concept, tmpl dataset, children ...dataset) dataset {
	item := contentItem(relationship, "CONTAINER", concept)
	item.str(tagContinuityOfContent, "CS", "SEPARATE")
	if tmpl != nil {
		item.seq(tagContentTemplateSequence, tmpl)
	}
	item.seq(tagContentSequence, children...)
	return item
}

func textItem(relationship string, concept dataset, text string) dataset {
	item := contentItem(relationship, "TEXT", concept)
	item.str(tagTextValue, "UT", text)
	return item
}

func codeItem(relationship string, concept, value dataset) dataset {
	item := contentItem(relationship, "CODE", concept)
	item.seq(tagConceptCodeSequence, value)
	return item
}

func uidItem(relationship string, concept dataset, uid string) dataset {
	item := contentItem(relationship, "UIDREF", concept)
	item.str(tagUID, "UI", uid)
	return item
}

func imageItem(relationship string, concept dataset, ref Ref) dataset {
	item := contentItem(relationship, "IMAGE", concept)
	var sop dataset
	sop.str(tagReferencedSOPClassUID, "UI", ref.SOPClassUID)
	sop.str(tagReferencedSOPInstanceUID, "UI", ref.SOPInstanceUID)
	item.seq(tagReferencedSOPSequence, sop)
	return item
}

// appendNum adds a NUM item for v unless v is missing or not finite (a
// score that does not exist is left out rather than written as 0).
func appendNum(items []dataset, concept dataset, v *float64, children ...dataset) []dataset {
	if v == nil || math.IsNaN(*v) || math.IsInf(*v, 0) {
		return items
	}
	return append(items, numItem(concept, *v, children...))
}

// numItem is a NUM without units; the decimal string carries what fits in
// 16 characters, FloatingPointValue the exact double.
func numItem(concept dataset, v float64, children ...dataset) dataset {
	item := contentItem("CONTAINS", "NUM", concept)
	var measured dataset
	measured.seq(tagMeasurementUnitsCodeSeq, unitNone)
	measured.str(tagNumericValue, "DS", decimalString(v))
	measured.fd(tagFloatingPointValue, v)
	item.seq(tagMeasuredValueSequence, measured)
	if len(children) > 0 {
		item.seq(tagContentSequence, children...)
	}
	return item
}
