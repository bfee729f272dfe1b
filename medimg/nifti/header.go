package nifti

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"math"
)

// Errors wrapped by the reader so callers can sort problems with errors.Is.
var (
	// ErrNotNIfTI: the bytes do not start with a NIfTI-1 or NIfTI-2 header.
	ErrNotNIfTI = errors.New("not a NIfTI-1/NIfTI-2 file")
	// ErrUnsupported: a valid header describing data this reader does not handle (complex, RGB, .hdr/.img pairs).
	ErrUnsupported = errors.New("unsupported NIfTI content")
	// ErrCorrupt: the header is inconsistent or the data is shorter than the header declares.
	ErrCorrupt = errors.New("corrupt NIfTI file")
	// ErrNaN: a voxel is NaN or infinite.
	ErrNaN = errors.New("non-finite voxel value")
)

const (
	sizeofHeader1 = 348
	sizeofHeader2 = 540
)

// Datatype codes from nifti1.h.
const (
	DTUint8   = 2
	DTInt16   = 4
	DTInt32   = 8
	DTFloat32 = 16
	DTFloat64 = 64
	DTInt8    = 256
	DTUint16  = 512
	DTUint32  = 768
	DTInt64   = 1024
	DTUint64  = 1280
)

var datatypeNames = map[int]string{
	1: "binary", 2: "uint8", 4: "int16", 8: "int32", 16: "float32", 32: "complex64", 64: "float64",
	128: "rgb24", 256: "int8", 512: "uint16", 768: "uint32", 1024: "int64", 1280: "uint64",
	1536: "float128", 1792: "complex128", 2048: "complex256", 2304: "rgba32",
}

// bytesPerVoxel lists the datatypes this reader converts to grey values.
var bytesPerVoxel = map[int]int{
	DTUint8: 1, DTInt8: 1, DTInt16: 2, DTUint16: 2, DTInt32: 4, DTUint32: 4, DTFloat32: 4,
	DTInt64: 8, DTUint64: 8, DTFloat64: 8,
}

// DatatypeName gives the nifti1.h name of a datatype code, or "code N" when unknown.
func DatatypeName(code int) string {
	if n, ok := datatypeNames[code]; ok {
		return n
	}
	return fmt.Sprintf("code %d", code)
}

// Header holds the fields of a NIfTI-1 or NIfTI-2 header that the reader uses, widened to the NIfTI-2 types.
type Header struct {
	Version   int // 1 or 2
	ByteOrder binary.ByteOrder
	Dim       [8]int64 // Dim[0] is the number of dimensions
	Datatype  int
	Bitpix    int
	Pixdim    [8]float64
	VoxOffset int64
	SclSlope  float64
	SclInter  float64
	CalMin    float64
	CalMax    float64
	QformCode int
	SformCode int
	Quatern   [3]float64 // b, c, d
	QOffset   [3]float64
	Srow      [3][4]float64
	Descrip   string
}

// HeaderSize is the number of bytes needed to decide the version and decode the header (the NIfTI-2 size).
const HeaderSize = sizeofHeader2

// ParseHeader decodes the header at the start of b (at least 348 bytes for NIfTI-1, 540 for NIfTI-2) and
// checks the fields the reader relies on. It does not look at the data.
func ParseHeader(b []byte) (Header, error) {
	var h Header
	if len(b) < 4 {
		return h, fmt.Errorf("%w: %d bytes, too short for a header", ErrNotNIfTI, len(b))
	}
	switch {
	case binary.LittleEndian.Uint32(b) == sizeofHeader1:
		h.Version, h.ByteOrder = 1, binary.LittleEndian
	case binary.BigEndian.Uint32(b) == sizeofHeader1:
		h.Version, h.ByteOrder = 1, binary.BigEndian
	case binary.LittleEndian.Uint32(b) == sizeofHeader2:
		h.Version, h.ByteOrder = 2, binary.LittleEndian
	case binary.BigEndian.Uint32(b) == sizeofHeader2:
		h.Version, h.ByteOrder = 2, binary.BigEndian
	default:
		return h, fmt.Errorf("%w: header size field is neither 348 nor 540", ErrNotNIfTI)
	}
	var err error
	if h.Version == 1 {
		err = h.parse1(b)
	} else {
		err = h.parse2(b)
	}
	if err != nil {
		return h, err
	}
	return h, h.check()
}

func (h *Header) parse1(b []byte) error {
	if len(b) < sizeofHeader1 {
		return fmt.Errorf("%w: header truncated at %d of 348 bytes", ErrCorrupt, len(b))
	}
	switch magic := string(b[344:348]); magic {
	case "n+1\x00":
	case "ni1\x00":
		return fmt.Errorf("%w: header of a separate .hdr/.img pair (only single-file .nii is read)", ErrUnsupported)
	default:
		return fmt.Errorf("%w: bad NIfTI-1 magic %q", ErrNotNIfTI, magic)
	}
	bo := h.ByteOrder
	i16 := func(off int) int64 { return int64(int16(bo.Uint16(b[off:]))) }
	f32 := func(off int) float64 { return float64(math.Float32frombits(bo.Uint32(b[off:]))) }
	for i := range h.Dim {
		h.Dim[i] = i16(40 + 2*i)
		h.Pixdim[i] = f32(76 + 4*i)
	}
	h.Datatype = int(i16(70))
	h.Bitpix = int(i16(72))
	vox := f32(108)
	if vox != math.Trunc(vox) || vox < 0 || vox > 1<<40 {
		return fmt.Errorf("%w: vox_offset %v is not a valid byte offset", ErrCorrupt, vox)
	}
	h.VoxOffset = int64(vox)
	h.SclSlope, h.SclInter = f32(112), f32(116)
	h.CalMax, h.CalMin = f32(124), f32(128)
	h.Descrip = cString(b[148:228])
	h.QformCode, h.SformCode = int(i16(252)), int(i16(254))
	for i := 0; i < 3; i++ {
		h.Quatern[i] = f32(256 + 4*i)
		h.QOffset[i] = f32(268 + 4*i)
		for j := 0; j < 4; j++ {
			h.Srow[i][j] = f32(280 + 16*i + 4*j)
		}
	}
	return nil
}

func (h *Header) parse2(b []byte) error {
	if len(b) < sizeofHeader2 {
		return fmt.Errorf("%w: header truncated at %d of 540 bytes", ErrCorrupt, len(b))
	}
	if magic := string(b[4:12]); magic != "n+2\x00\r\n\x1a\n" {
		if magic == "ni2\x00\r\n\x1a\n" {
			return fmt.Errorf("%w: header of a separate .hdr/.img pair (only single-file .nii is read)", ErrUnsupported)
		}
		return fmt.Errorf("%w: bad NIfTI-2 magic %q", ErrNotNIfTI, magic)
	}
	bo := h.ByteOrder
	i64 := func(off int) int64 { return int64(bo.Uint64(b[off:])) }
	f64 := func(off int) float64 { return math.Float64frombits(bo.Uint64(b[off:])) }
	h.Datatype = int(int16(bo.Uint16(b[12:])))
	h.Bitpix = int(int16(bo.Uint16(b[14:])))
	for i := range h.Dim {
		h.Dim[i] = i64(16 + 8*i)
		h.Pixdim[i] = f64(104 + 8*i)
	}
	h.VoxOffset = i64(168)
	h.SclSlope, h.SclInter = f64(176), f64(184)
	h.CalMax, h.CalMin = f64(192), f64(200)
	h.Descrip = cString(b[240:320])
	h.QformCode, h.SformCode = int(int32(bo.Uint32(b[344:]))), int(int32(bo.Uint32(b[348:])))
	for i := 0; i < 3; i++ {
		h.Quatern[i] = f64(352 + 8*i)
		h.QOffset[i] = f64(376 + 8*i)
		for j := 0; j < 4; j++ {
			h.Srow[i][j] = f64(400 + 32*i + 8*j)
		}
	}
	return nil
}

// maxDim bounds each dimension so that products of up to seven of them are checked without overflow below.
const maxDim = 1 << 31

func (h *Header) check() error {
	n := h.Dim[0]
	if n < 1 || n > 7 {
		return fmt.Errorf("%w: dim[0]=%d, want 1..7", ErrCorrupt, n)
	}
	for i := 1; i <= int(n); i++ {
		if h.Dim[i] < 1 || h.Dim[i] > maxDim {
			return fmt.Errorf("%w: dim[%d]=%d", ErrCorrupt, i, h.Dim[i])
		}
	}
	bpv, ok := bytesPerVoxel[h.Datatype]
	if !ok {
		return fmt.Errorf("%w: datatype %s (only integer and float32/float64 voxels are read)",
			ErrUnsupported, DatatypeName(h.Datatype))
	}
	if h.Bitpix != 8*bpv {
		return fmt.Errorf("%w: bitpix %d does not match datatype %s", ErrCorrupt, h.Bitpix, DatatypeName(h.Datatype))
	}
	min := int64(sizeofHeader1)
	if h.Version == 2 {
		min = sizeofHeader2
	}
	if h.VoxOffset < min {
		// Some writers leave vox_offset 0 in single files; the data then follows the header and its 4 extension bytes.
		if h.VoxOffset != 0 {
			return fmt.Errorf("%w: vox_offset %d lies inside the header", ErrCorrupt, h.VoxOffset)
		}
		h.VoxOffset = min + 4
	}
	if math.IsNaN(h.SclSlope) || math.IsInf(h.SclSlope, 0) || math.IsNaN(h.SclInter) || math.IsInf(h.SclInter, 0) {
		// nifti1.h: a non-finite slope means "no scaling".
		h.SclSlope, h.SclInter = 0, 0
	}
	return nil
}

// dims returns the size of the three spatial axes and the number of 3-D volumes (product of dims 4..7).
func (h *Header) dims() (nx, ny, nz, nvol int64) {
	d := [8]int64{}
	for i := 1; i < 8; i++ {
		d[i] = 1
		if i <= int(h.Dim[0]) {
			d[i] = h.Dim[i]
		}
	}
	nvol = 1
	for i := 4; i < 8; i++ {
		nvol *= d[i]
		if nvol > maxDim {
			nvol = maxDim + 1 // reported as too large by the caller's size check
		}
	}
	return d[1], d[2], d[3], nvol
}

// BytesPerVoxel is the storage size of one voxel.
func (h *Header) BytesPerVoxel() int { return bytesPerVoxel[h.Datatype] }

// Scaled reports whether scl_slope/scl_inter apply (a zero slope means no scaling, as in nifti1.h).
func (h *Header) Scaled() bool { return h.SclSlope != 0 && !(h.SclSlope == 1 && h.SclInter == 0) }

func cString(b []byte) string {
	if i := bytes.IndexByte(b, 0); i >= 0 {
		b = b[:i]
	}
	return string(b)
}
