package dicom

import (
	"bytes"
	"compress/flate"
	"encoding/binary"
	"fmt"
	"io"
	"strings"

	"github.com/suyashkumar/dicom/pkg/tag"
	"github.com/suyashkumar/dicom/pkg/uid"
)

// The parsing library allocates every value at its declared length and asserts some value types, so a corrupt
// length or VR could exhaust memory or panic inside it. checkStructure walks the element tree the way the
// library will, and rejects the file unless every declared length fits inside its container and the few
// elements the library converts without checking have usable VRs.

const (
	undefinedLength = 0xFFFFFFFF
	maxNesting      = 32
	// maxDeflateRatio bounds what deflate can produce per compressed byte (about 1032:1).
	maxDeflateRatio = 1032
)

var (
	tagItem          = tag.Tag{Group: 0xFFFE, Element: 0xE000}
	tagItemDelim     = tag.Tag{Group: 0xFFFE, Element: 0xE00D}
	tagSequenceDelim = tag.Tag{Group: 0xFFFE, Element: 0xE0DD}
)

type walker struct {
	data     []byte
	bo       binary.ByteOrder
	implicit bool
}

// checkStructure returns the transfer syntax UID from the meta header after validating the whole file.
// CheckStructure validates the file meta header and the length of every element, sequence and item of a
// whole DICOM file without decoding values, and returns its transfer syntax UID. Code that parses a file
// with github.com/suyashkumar/dicom for attributes other than the pixels (a result writer reading the
// patient and study of a scored image) calls it first, as Decode does.
func CheckStructure(data []byte) (string, error) { return checkStructure(data) }

func checkStructure(data []byte) (string, error) {
	if len(data) < 132 || string(data[128:132]) != "DICM" {
		return "", fmt.Errorf("%w: no DICOM file meta header (\"DICM\" missing at byte 128)", ErrNoMeta)
	}
	meta := walker{data: data, bo: binary.LittleEndian}
	pos := 132
	first, vr, vl, hdr, err := meta.header(pos)
	if err != nil {
		return "", err
	}
	if pos+hdr+4 > len(data) {
		return "", fmt.Errorf("%w: file meta header cut off by the end of the file", ErrCorrupt)
	}
	if first != tag.FileMetaInformationGroupLength || vr != "UL" || vl != 4 {
		return "", fmt.Errorf("%w: file meta header does not start with its group length", ErrNoMeta)
	}
	metaEnd := int64(pos+hdr+4) + int64(binary.LittleEndian.Uint32(data[pos+hdr:]))
	if metaEnd > int64(len(data)) {
		return "", fmt.Errorf("%w: file meta header length runs past the end of the file", ErrCorrupt)
	}
	ts, seenTS := "", false
	pos += hdr + 4
	for pos < int(metaEnd) {
		t, vr, vl, hdr, err := meta.header(pos)
		if err != nil {
			return "", err
		}
		if t == tag.TransferSyntaxUID {
			if vr != "UI" || vl == undefinedLength || pos+hdr+int(vl) > int(metaEnd) || seenTS {
				return "", fmt.Errorf("%w: malformed Transfer Syntax UID element", ErrCorrupt)
			}
			ts, seenTS = strings.Trim(string(data[pos+hdr:pos+hdr+int(vl)]), " \x00"), true
		}
		if pos, err = meta.element(pos, int(metaEnd), 0); err != nil {
			return "", err
		}
	}
	if pos != int(metaEnd) {
		return "", fmt.Errorf("%w: file meta header elements overrun its group length", ErrCorrupt)
	}
	if ts == "" {
		return "", fmt.Errorf("%w: file meta header has no Transfer Syntax UID", ErrNoMeta)
	}
	// The library parses only the syntaxes it knows (and would dereference a nil byte order otherwise).
	if _, _, err := uid.ParseTransferSyntaxUID(ts); err != nil {
		return "", fmt.Errorf("%w: %q is not a known transfer syntax UID", ErrUnsupportedSyntax, ts)
	}
	body := walker{data: data, bo: binary.LittleEndian}
	switch ts {
	case implicitVRLittleEndian:
		body.implicit = true
	case explicitVRBigEndian:
		body.bo = binary.BigEndian
	case deflatedExplicitVRLittleEndian:
		limit := int64(len(data)-pos) * maxDeflateRatio
		var buf bytes.Buffer
		if _, err := io.Copy(&buf, io.LimitReader(flate.NewReader(bytes.NewReader(data[pos:])), limit)); err != nil {
			return "", fmt.Errorf("%w: inflating deflated data set: %v", ErrCorrupt, err)
		}
		body.data, pos = buf.Bytes(), 0
	}
	return ts, body.dataset(pos)
}

func (w *walker) dataset(pos int) error {
	for pos < len(w.data) {
		t, vr, _, _, err := w.header(pos)
		if err != nil {
			return err
		}
		// The library converts this value to strings unchecked.
		if t == tag.SpecificCharacterSet && vr != "CS" {
			return fmt.Errorf("%w: Specific Character Set has VR %q, want CS", ErrCorrupt, vr)
		}
		if pos, err = w.element(pos, len(w.data), 0); err != nil {
			return err
		}
	}
	return nil
}

// header decodes the tag, VR and value length at pos the way the library does, and the header's byte count.
func (w *walker) header(pos int) (t tag.Tag, vr string, vl uint32, n int, err error) {
	d := w.data
	if pos+8 > len(d) {
		return t, "", 0, 0, fmt.Errorf("%w: element header at byte %d cut off by the end of the data", ErrCorrupt, pos)
	}
	t = tag.Tag{Group: w.bo.Uint16(d[pos:]), Element: w.bo.Uint16(d[pos+2:])}
	if w.implicit || t == tagItem {
		vr = "UN"
		if entry, err := tag.Find(t); err == nil {
			vr = entry.VRs[0]
			if t == tag.PixelData || t == tag.OverlayData {
				vr = "OW"
			}
		}
		return t, vr, w.bo.Uint32(d[pos+4:]), 8, nil
	}
	vr = string(d[pos+4 : pos+6])
	switch vr {
	case "NA", "OB", "OD", "OF", "OL", "OW", "SQ", "UN", "UC", "UR", "UT":
		if pos+12 > len(d) {
			return t, vr, 0, 0, fmt.Errorf("%w: element %v header cut off by the end of the data", ErrCorrupt, t)
		}
		return t, vr, w.bo.Uint32(d[pos+8:]), 12, nil
	}
	vl = uint32(w.bo.Uint16(d[pos+6:]))
	if vl == 0xFFFF {
		vl = undefinedLength // the library reads a 16-bit 0xFFFF as undefined
	}
	return t, vr, vl, 8, nil
}

// element checks the element at pos, which must end by end, and returns the position after it.
func (w *walker) element(pos, end, depth int) (int, error) {
	if depth > maxNesting {
		return 0, fmt.Errorf("%w: sequences nested deeper than %d", ErrCorrupt, maxNesting)
	}
	t, vr, vl, n, err := w.header(pos)
	if err != nil {
		return 0, err
	}
	pos += n
	if vl != undefinedLength {
		if int64(pos)+int64(vl) > int64(end) {
			return 0, fmt.Errorf("%w: element %v declares %d bytes, only %d remain", ErrCorrupt, t, vl, end-pos)
		}
	}
	if t == tagItemDelim || t == tagSequenceDelim {
		if vl != 0 {
			return 0, fmt.Errorf("%w: delimiter %v with non-zero length", ErrCorrupt, t)
		}
		return pos, nil
	}
	switch kind := tag.GetVRKind(t, vr); {
	case kind == tag.VRItem:
		return w.item(pos, vl, end, depth)
	case kind == tag.VRSequence, kind == tag.VRUnknown && vl == undefinedLength:
		return w.sequence(pos, vl, end, depth)
	case vl != undefinedLength:
		return pos + int(vl), nil
	case kind == tag.VRPixelData || kind == tag.VRBytes:
		return w.fragments(pos, end, t)
	}
	return 0, fmt.Errorf("%w: element %v (VR %s) has undefined length", ErrCorrupt, t, vr)
}

func (w *walker) sequence(pos int, vl uint32, end, depth int) (int, error) {
	stop := end
	if vl != undefinedLength {
		stop = pos + int(vl)
	}
	for pos < stop {
		t, _, _, _, err := w.header(pos)
		if err != nil {
			return 0, err
		}
		switch {
		case t == tagSequenceDelim && vl == undefinedLength:
			return w.element(pos, stop, depth+1)
		case t != tagItem:
			return 0, fmt.Errorf("%w: element %v inside a sequence where an item was expected", ErrCorrupt, t)
		}
		if pos, err = w.element(pos, stop, depth+1); err != nil {
			return 0, err
		}
	}
	if vl == undefinedLength {
		return 0, fmt.Errorf("%w: sequence without its delimiter", ErrCorrupt)
	}
	return pos, nil
}

func (w *walker) item(pos int, vl uint32, end, depth int) (int, error) {
	stop := end
	if vl != undefinedLength {
		stop = pos + int(vl)
	}
	for pos < stop {
		t, _, _, _, err := w.header(pos)
		if err != nil {
			return 0, err
		}
		if pos, err = w.element(pos, stop, depth+1); err != nil {
			return 0, err
		}
		if t == tagItemDelim && vl == undefinedLength {
			return pos, nil
		}
	}
	if vl == undefinedLength {
		return 0, fmt.Errorf("%w: item without its delimiter", ErrCorrupt)
	}
	return pos, nil
}

// fragments checks encapsulated data: defined-length items closed by a sequence delimiter.
func (w *walker) fragments(pos, end int, owner tag.Tag) (int, error) {
	for {
		if pos+8 > end {
			return 0, fmt.Errorf("%w: encapsulated %v ends without its delimiter", ErrCorrupt, owner)
		}
		t := tag.Tag{Group: w.bo.Uint16(w.data[pos:]), Element: w.bo.Uint16(w.data[pos+2:])}
		vl := w.bo.Uint32(w.data[pos+4:])
		pos += 8
		switch {
		case t == tagSequenceDelim:
			return pos, nil
		case t != tagItem || vl == undefinedLength:
			return 0, fmt.Errorf("%w: encapsulated %v holds %v where a fragment was expected", ErrCorrupt, owner, t)
		case int64(pos)+int64(vl) > int64(end):
			return 0, fmt.Errorf("%w: fragment of %d bytes runs past the end of the data", ErrCorrupt, vl)
		}
		pos += int(vl)
	}
}
