package dataset

import (
	"encoding/binary"
	"fmt"
	"io"
	"math"
)

// NIfTI-1 data type codes written by writeNIfTI.
const (
	niftiUint8   = 2
	niftiInt16   = 4
	niftiFloat32 = 16
)

// writeNIfTI writes a little-endian NIfTI-1 volume of nz slices of nx x ny
// values, pix[k*nx*ny + r*nx + c] being row r, column c of slice k as the
// medimg reader shows it. The sform puts voxel axes in LPS order (i towards
// the patient's left, j posterior, k superior), which is exactly the
// reader's canonical axial view, so a written image reads back unchanged.
// Values are stored without scaling in the given data type (uint8 and int16
// values must be integers in range).
func writeNIfTI(w io.Writer, nx, ny, nz int, datatype int, pix []float32) error {
	if len(pix) != nx*ny*nz {
		return fmt.Errorf("nifti: %d values for %dx%dx%d", len(pix), nx, ny, nz)
	}
	var bitpix int
	switch datatype {
	case niftiUint8:
		bitpix = 8
	case niftiInt16:
		bitpix = 16
	case niftiFloat32:
		bitpix = 32
	default:
		return fmt.Errorf("nifti: unsupported data type %d", datatype)
	}
	hdr := make([]byte, 352)
	le := binary.LittleEndian
	f32 := func(off int, v float32) { le.PutUint32(hdr[off:], math.Float32bits(v)) }
	le.PutUint32(hdr[0:], 348)
	dims := []int{3, nx, ny, nz, 1, 1, 1, 1}
	for i, d := range dims {
		le.PutUint16(hdr[40+2*i:], uint16(d))
	}
	le.PutUint16(hdr[70:], uint16(datatype))
	le.PutUint16(hdr[72:], uint16(bitpix))
	for i := 0; i < 8; i++ {
		f32(76+4*i, 1)
	}
	f32(108, 352)              // vox_offset
	hdr[123] = 2               // xyzt_units: millimetres
	le.PutUint16(hdr[254:], 1) // sform_code: scanner
	f32(280, -1)               // srow_x: i -> -R
	f32(296+4, -1)             // srow_y: j -> -A
	f32(312+8, 1)              // srow_z: k -> +S
	copy(hdr[344:], "n+1\x00")
	if _, err := w.Write(hdr); err != nil {
		return err
	}
	data := make([]byte, len(pix)*bitpix/8)
	for i, v := range pix {
		switch datatype {
		case niftiUint8:
			data[i] = uint8(v)
		case niftiInt16:
			le.PutUint16(data[2*i:], uint16(int16(v)))
		case niftiFloat32:
			le.PutUint32(data[4*i:], math.Float32bits(v))
		}
	}
	_, err := w.Write(data)
	return err
}
