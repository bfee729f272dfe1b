package dicomresult

import (
	"fmt"
	"image"
	"image/color"
	"image/draw"
	"strings"

	"github.com/maddr-project/maddr/score"
	"golang.org/x/image/font"
	"golang.org/x/image/font/basicfont"
	"golang.org/x/image/math/fixed"
)

// Caption layout. A heat map narrower than minCaptionWidth is enlarged by
// an integer factor (nearest neighbour, so no colour is invented) until the
// caption fits; maxOverlaySide bounds what is accepted.
const (
	minCaptionWidth = 384
	maxUpscale      = 8
	maxOverlaySide  = 8192
	lineHeight      = 15
	captionMargin   = 4
)

// NotForDiagnosticUse is the warning burned into every Secondary Capture.
const NotForDiagnosticUse = "NOT FOR DIAGNOSTIC USE"

// SecondaryCapture returns an RGB Secondary Capture of overlay (the heat map
// score.Overlay paints) with the verdict burned in below it, in a new series
// of the study of source, the scored DICOM file. The source is referenced in
// SourceImageSequence; patient and study attributes are copied from it.
func SecondaryCapture(source []byte, overlay image.Image, r score.Result, m Model, ids IDs) ([]byte, error) {
	src, err := readSource(source)
	if err != nil {
		return nil, err
	}
	ids = ids.filled(DefaultSecondaryCaptureSeriesNumber, src.instanceNumber)
	if err := ids.check(); err != nil {
		return nil, fmt.Errorf("secondary capture: %w", err)
	}
	if overlay == nil {
		return nil, fmt.Errorf("secondary capture: no heat map image")
	}
	picture, err := captioned(overlay, Caption(r, m))
	if err != nil {
		return nil, fmt.Errorf("secondary capture: %w", err)
	}
	created := now()
	var d dataset
	commonAttributes(&d, src, SecondaryCaptureSOPClass, ids, "OT", "heat map", m, created)
	d.str(tagConversionType, "CS", "WSD")
	d.str(tagDateOfSecondaryCapture, "DA", dicomDate(created))
	d.str(tagTimeOfSecondaryCapture, "TM", dicomTime(created))
	d.str(tagImageType, "CS", "DERIVED", "SECONDARY")
	d.str(tagContentDate, "DA", dicomDate(created))
	d.str(tagContentTime, "TM", dicomTime(created))
	d.str(tagPatientOrientation, "CS")
	d.str(tagBurnedInAnnotation, "CS", "YES")
	d.str(tagDerivationDescription, "ST", "maddr anomaly heat map of the referenced image, with the result as text")
	var ref dataset
	ref.str(tagReferencedSOPClassUID, "UI", src.sopClassUID)
	ref.str(tagReferencedSOPInstanceUID, "UI", src.sopInstanceUID)
	d.seq(tagSourceImageSequence, ref)

	b := picture.Bounds()
	d.us(tagSamplesPerPixel, 3)
	d.str(tagPhotometric, "CS", "RGB")
	d.us(tagPlanarConfiguration, 0)
	d.us(tagRows, uint16(b.Dy()))
	d.us(tagColumns, uint16(b.Dx()))
	d.us(tagBitsAllocated, 8)
	d.us(tagBitsStored, 8)
	d.us(tagHighBit, 7)
	d.us(tagPixelRepresentation, 0)
	d.raw(tagPixelData, "OB", rgbBytes(picture))
	setCharacterSet(&d)
	out, err := d.partTen(SecondaryCaptureSOPClass, ids.SOPInstanceUID)
	if err != nil {
		return nil, fmt.Errorf("secondary capture: %w", err)
	}
	return out, nil
}

// Caption is the text burned into a Secondary Capture: the decision and
// score, what the heads recognised and the model, and the warning. It is
// ASCII only (the font has nothing else).
func Caption(r score.Result, m Model) []string {
	first := "maddr: " + decisionCaption(r.Decision)
	if r.Normalised != nil {
		first += fmt.Sprintf("  score %.3f (threshold 0.5)", *r.Normalised)
	}
	second := ""
	if r.Organ != "" || r.Modality != "" {
		second = "organ " + orDash(r.Organ) + ", modality " + orDash(r.Modality)
	}
	if m.Name != "" {
		if second != "" {
			second += "  "
		}
		second += "model " + m.Name
		if m.Version != "" {
			second += " " + m.Version
		}
	}
	lines := []string{first}
	if second != "" {
		lines = append(lines, second)
	}
	lines = append(lines, NotForDiagnosticUse)
	for i, l := range lines {
		lines[i] = asciiOnly(l)
	}
	return lines
}

func decisionCaption(decision string) string {
	switch decision {
	case "":
		return "NO DECISION"
	case score.OutOfScope:
		return "OUT OF SCOPE"
	}
	return strings.ToUpper(strings.ReplaceAll(decision, "_", " "))
}

func orDash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}

func asciiOnly(s string) string {
	b := []byte(s)
	out := b[:0]
	for _, r := range s {
		if r < 0x20 || r > 0x7e {
			r = '?'
		}
		out = append(out, byte(r))
	}
	return string(out)
}

// captioned draws overlay, enlarged if small, above a black band holding
// lines in white.
func captioned(overlay image.Image, lines []string) (*image.RGBA, error) {
	ob := overlay.Bounds()
	w, h := ob.Dx(), ob.Dy()
	if w <= 0 || h <= 0 {
		return nil, fmt.Errorf("heat map image is empty")
	}
	if w > maxOverlaySide || h > maxOverlaySide {
		return nil, fmt.Errorf("heat map image is %dx%d, more than %d on a side", w, h, maxOverlaySide)
	}
	k := 1
	for w*k < minCaptionWidth && k < maxUpscale {
		k++
	}
	face := basicfont.Face7x13
	lines = wrap(lines, captionChars(w*k))
	band := len(lines)*lineHeight + 2*captionMargin
	for k > 1 && h*k+band > maxOverlaySide {
		k--
	}
	out := image.NewRGBA(image.Rect(0, 0, w*k, h*k+band))
	draw.Draw(out, out.Bounds(), image.NewUniform(color.Black), image.Point{}, draw.Src)
	for y := 0; y < h*k; y++ {
		for x := 0; x < w*k; x++ {
			out.Set(x, y, overlay.At(ob.Min.X+x/k, ob.Min.Y+y/k))
		}
	}
	drawer := font.Drawer{Dst: out, Src: image.NewUniform(color.White), Face: face}
	for i, line := range lines {
		drawer.Dot = fixed.P(captionMargin, h*k+captionMargin+i*lineHeight+face.Ascent)
		drawer.DrawString(line)
	}
	return out, nil
}

// captionChars is how many characters of the caption font fit on a line of
// a picture width pixels wide (at least one).
func captionChars(width int) int {
	return max(1, (width-2*captionMargin)/basicfont.Face7x13.Advance)
}

// wrap breaks lines longer than n characters at spaces (or anywhere, for
// a word longer than a line), so nothing of the caption is cut off.
func wrap(lines []string, n int) []string {
	var out []string
	for _, line := range lines {
		for len(line) > n {
			cut := strings.LastIndex(line[:n+1], " ")
			if cut <= 0 {
				cut = n
			}
			out = append(out, strings.TrimRight(line[:cut], " "))
			line = strings.TrimLeft(line[cut:], " ")
		}
		out = append(out, line)
	}
	return out
}

// rgbBytes is the picture as interleaved 8-bit RGB (PlanarConfiguration
// 0); transparency is composed over black.
func rgbBytes(p *image.RGBA) []byte {
	b := p.Bounds()
	out := make([]byte, 0, 3*b.Dx()*b.Dy())
	for y := b.Min.Y; y < b.Max.Y; y++ {
		row := p.Pix[p.PixOffset(b.Min.X, y):]
		for x := 0; x < b.Dx(); x++ {
			out = append(out, row[4*x], row[4*x+1], row[4*x+2])
		}
	}
	return out
}
