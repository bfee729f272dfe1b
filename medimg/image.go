package medimg

// ValueKind says what the pixel values mean.
type ValueKind int

const (
	// KindIntensity: arbitrary intensities (X-ray, MR, photographs, NIfTI unless the caller says otherwise).
	KindIntensity ValueKind = iota
	// KindHU: calibrated CT Hounsfield units.
	KindHU
)

func (k ValueKind) String() string {
	if k == KindHU {
		return "HU"
	}
	return "intensity"
}

// Window is a display window in the image's units.
type Window struct{ Center, Width float32 }

// Image is one 2-D grey image in the file's own units.
type Image struct {
	Width, Height int
	Pix           []float32 // row-major, len Width*Height; (0,0) is the top-left as a viewer shows it
	Source        string    // file path
	Index         int       // slice (volume) or frame index inside the file; 0 for single images
	Kind          ValueKind
	// Lo, Hi: nominal range of the values, used for normalisation when no window applies. 8-bit raster: 0..255;
	// 16-bit raster: 0..2^b-1 for the smallest b holding the maximum; DICOM: the BitsStored range after
	// rescale; NIfTI: cal_min..cal_max when the header sets them, 0..255 for unscaled uint8, else the slice's
	// own min..max.
	Lo, Hi   float32
	Window   *Window // window stored in the file (DICOM Window Center/Width), nil if none
	Modality string  // DICOM Modality (CT, CR, DX, MR, ...) or "" when unknown
}
