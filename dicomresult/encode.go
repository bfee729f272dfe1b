package dicomresult

import (
	"bytes"
	"encoding/binary"
	"fmt"
	"math"
	"slices"
	"strconv"
	"strings"
	"unicode/utf8"
)

// The writer is a small Explicit VR Little Endian encoder of its own rather
// than github.com/suyashkumar/dicom's: that one writes sequences with
// undefined length and leaves the MediaStorage UIDs out of the meta header,
// while here every length is defined and the meta group is always complete.

const (
	explicitVRLittleEndian = "1.2.840.10008.1.2.1"
	// implementationClassUID names this encoder in the file meta header; it
	// is a fixed 2.25 UID made once from a random UUID.
	implementationClassUID  = "2.25.128432382011684098338991951264023825910"
	implementationVersion   = "MADDR_DICOMOUT_1"
	itemTag                 = 0xFFFEE000
	maxShortValueLength     = 0xFFFE
	metaGroup               = 0x0002
	fileMetaVersionTag      = 0x00020001
	fileMetaGroupLengthTag  = 0x00020000
	mediaStorageSOPClassTag = 0x00020002
	mediaStorageSOPInstTag  = 0x00020003
	transferSyntaxTag       = 0x00020010
	implementationClassTag  = 0x00020012
	implementationVerTag    = 0x00020013
)

// element is one attribute: a value already in its little-endian byte form,
// or the items of a sequence.
type element struct {
	tag   uint32
	vr    string
	value []byte
	items []dataset
}

// dataset is a list of attributes in any order; encoding sorts it.
type dataset []element

// longLengthVRs use the 4-byte length form of Explicit VR.
var longLengthVRs = map[string]bool{
	"OB": true, "OD": true, "OF": true, "OL": true, "OV": true, "OW": true,
	"SQ": true, "SV": true, "UC": true, "UN": true, "UR": true, "UT": true, "UV": true,
}

// maxChars is the maximum length of one value of a string VR, in
// characters; longer values are cut so the object stays valid.
var maxChars = map[string]int{
	"AE": 16, "AS": 4, "CS": 16, "DA": 8, "DS": 16, "DT": 26, "IS": 12, "LO": 64, "LT": 10240,
	"PN": 64, "SH": 16, "ST": 1024, "TM": 16, "UI": 64,
}

// multiValued VRs split their value at backslashes; the others may contain them.
var multiValued = map[string]bool{
	"AE": true, "AS": true, "CS": true, "DA": true, "DS": true, "DT": true, "IS": true, "LO": true,
	"PN": true, "SH": true, "TM": true, "UI": true, "UC": true,
}

// str sets a string attribute; several values are joined with backslashes.
// An empty value makes a present but empty (Type 2) attribute.
func (d *dataset) str(tag uint32, vr string, values ...string) {
	cut := make([]string, len(values))
	for i, v := range values {
		v = strings.ToValidUTF8(v, "?")
		if multiValued[vr] {
			v = strings.ReplaceAll(v, `\`, "/")
		}
		if n, ok := maxChars[vr]; ok && utf8.RuneCountInString(v) > n {
			v = string([]rune(v)[:n])
		}
		cut[i] = v
	}
	b := []byte(strings.Join(cut, `\`))
	if len(b)%2 == 1 {
		if vr == "UI" {
			b = append(b, 0)
		} else {
			b = append(b, ' ')
		}
	}
	*d = append(*d, element{tag: tag, vr: vr, value: b})
}

// us sets an unsigned short attribute.
func (d *dataset) us(tag uint32, values ...uint16) {
	b := make([]byte, 0, 2*len(values))
	for _, v := range values {
		b = binary.LittleEndian.AppendUint16(b, v)
	}
	*d = append(*d, element{tag: tag, vr: "US", value: b})
}

// ss sets a signed short attribute.
func (d *dataset) ss(tag uint32, values ...int16) {
	b := make([]byte, 0, 2*len(values))
	for _, v := range values {
		b = binary.LittleEndian.AppendUint16(b, uint16(v))
	}
	*d = append(*d, element{tag: tag, vr: "SS", value: b})
}

// fd sets a double attribute.
func (d *dataset) fd(tag uint32, values ...float64) {
	b := make([]byte, 0, 8*len(values))
	for _, v := range values {
		b = binary.LittleEndian.AppendUint64(b, math.Float64bits(v))
	}
	*d = append(*d, element{tag: tag, vr: "FD", value: b})
}

// raw sets a binary attribute (OB, OW) from bytes already in little-endian order.
func (d *dataset) raw(tag uint32, vr string, b []byte) {
	if len(b)%2 == 1 {
		b = append(b[:len(b):len(b)], 0)
	}
	*d = append(*d, element{tag: tag, vr: vr, value: b})
}

// seq sets a sequence; no items makes a present but empty sequence.
func (d *dataset) seq(tag uint32, items ...dataset) {
	*d = append(*d, element{tag: tag, vr: "SQ", items: items})
}

// encode appends the dataset's elements in tag order, each sequence and
// item with its defined length.
func (d dataset) encode(buf *bytes.Buffer) error {
	sorted := slices.Clone(d)
	slices.SortStableFunc(sorted, func(a, b element) int {
		switch {
		case a.tag < b.tag:
			return -1
		case a.tag > b.tag:
			return 1
		}
		return 0
	})
	for i, e := range sorted {
		if i > 0 && sorted[i-1].tag == e.tag {
			return fmt.Errorf("attribute (%04X,%04X) set twice", e.tag>>16, e.tag&0xFFFF)
		}
		value := e.value
		if e.vr == "SQ" {
			var body bytes.Buffer
			for _, item := range e.items {
				var ib bytes.Buffer
				if err := item.encode(&ib); err != nil {
					return err
				}
				writeTag(&body, itemTag)
				binary.Write(&body, binary.LittleEndian, uint32(ib.Len()))
				body.Write(ib.Bytes())
			}
			value = body.Bytes()
		}
		if uint64(len(value)) >= math.MaxUint32 {
			return fmt.Errorf("attribute (%04X,%04X) is too long (%d bytes)", e.tag>>16, e.tag&0xFFFF, len(value))
		}
		writeTag(buf, e.tag)
		buf.WriteString(e.vr)
		if longLengthVRs[e.vr] {
			buf.Write([]byte{0, 0})
			binary.Write(buf, binary.LittleEndian, uint32(len(value)))
		} else {
			if len(value) > maxShortValueLength {
				return fmt.Errorf("attribute (%04X,%04X) %s value is too long (%d bytes)",
					e.tag>>16, e.tag&0xFFFF, e.vr, len(value))
			}
			binary.Write(buf, binary.LittleEndian, uint16(len(value)))
		}
		buf.Write(value)
	}
	return nil
}

func writeTag(buf *bytes.Buffer, tag uint32) {
	binary.Write(buf, binary.LittleEndian, uint16(tag>>16))
	binary.Write(buf, binary.LittleEndian, uint16(tag))
}

// partTen returns the dataset as a DICOM Part 10 file: preamble, "DICM",
// the file meta group (with its group length and the MediaStorage UIDs
// taken from SOPClassUID and SOPInstanceUID), then the dataset in Explicit
// VR Little Endian.
func (d dataset) partTen(sopClassUID, sopInstanceUID string) ([]byte, error) {
	for _, e := range d {
		if e.tag>>16 == metaGroup {
			return nil, fmt.Errorf("file meta attribute (%04X,%04X) inside the dataset", e.tag>>16, e.tag&0xFFFF)
		}
	}
	var meta dataset
	meta.raw(fileMetaVersionTag, "OB", []byte{0, 1})
	meta.str(mediaStorageSOPClassTag, "UI", sopClassUID)
	meta.str(mediaStorageSOPInstTag, "UI", sopInstanceUID)
	meta.str(transferSyntaxTag, "UI", explicitVRLittleEndian)
	meta.str(implementationClassTag, "UI", implementationClassUID)
	meta.str(implementationVerTag, "SH", implementationVersion)
	var metaBody bytes.Buffer
	if err := meta.encode(&metaBody); err != nil {
		return nil, err
	}
	var out bytes.Buffer
	out.Write(make([]byte, 128))
	out.WriteString("DICM")
	var length dataset
	length = append(length, element{tag: fileMetaGroupLengthTag, vr: "UL",
		value: binary.LittleEndian.AppendUint32(nil, uint32(metaBody.Len()))})
	if err := length.encode(&out); err != nil {
		return nil, err
	}
	out.Write(metaBody.Bytes())
	if err := d.encode(&out); err != nil {
		return nil, err
	}
	return out.Bytes(), nil
}

// decimalString formats v as a DS value: at most 16 characters, as many
// significant digits as fit.
func decimalString(v float64) string {
	if math.IsNaN(v) || math.IsInf(v, 0) {
		return ""
	}
	for digits := 16; digits > 0; digits-- {
		s := strconv.FormatFloat(v, 'g', digits, 64)
		if len(s) <= 16 {
			return s
		}
	}
	return "0"
}
