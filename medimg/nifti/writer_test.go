package nifti

import (
	"bytes"
	"compress/gzip"
	"encoding/binary"
	"math"
	"testing"
)

// spec describes a NIfTI file written by encode for the tests.
type spec struct {
	version    int // 1 or 2
	bo         binary.ByteOrder
	datatype   int
	dims       []int64 // nx, ny, nz[, nt]
	slope      float64
	inter      float64
	qformCode  int
	quatern    [3]float64
	qfac       float64
	sformCode  int
	srow       [3][4]float64
	calMin     float64
	calMax     float64
	gz         bool
	values     []float64 // stored values in file order (x fastest)
	truncateBy int       // bytes dropped from the end of the data
	bitpixFix  int       // overrides bitpix when non-zero
}

func putFloat(b []byte, bo binary.ByteOrder, dt int, v float64) {
	switch dt {
	case DTUint8:
		b[0] = uint8(v)
	case DTInt8:
		b[0] = uint8(int8(v))
	case DTInt16:
		bo.PutUint16(b, uint16(int16(v)))
	case DTUint16:
		bo.PutUint16(b, uint16(v))
	case DTInt32:
		bo.PutUint32(b, uint32(int32(v)))
	case DTUint32:
		bo.PutUint32(b, uint32(v))
	case DTInt64:
		bo.PutUint64(b, uint64(int64(v)))
	case DTUint64:
		bo.PutUint64(b, uint64(v))
	case DTFloat32:
		bo.PutUint32(b, math.Float32bits(float32(v)))
	case DTFloat64:
		bo.PutUint64(b, math.Float64bits(v))
	}
}

// encode writes a single-file NIfTI following the nifti1.h / nifti2.h layouts.
func encode(t testing.TB, s spec) []byte {
	t.Helper()
	if s.bo == nil {
		s.bo = binary.LittleEndian
	}
	bpv := bytesPerVoxel[s.datatype]
	if bpv == 0 {
		bpv = 8 // complex64 and friends: size is irrelevant, the reader must refuse them
	}
	bitpix := 8 * bpv
	if s.bitpixFix != 0 {
		bitpix = s.bitpixFix
	}
	qfac := s.qfac
	if qfac == 0 {
		qfac = 1
	}
	bo := s.bo
	var hdr []byte
	var voxOffset int
	if s.version == 2 {
		hdr = make([]byte, 544)
		voxOffset = 544
		bo.PutUint32(hdr[0:], 540)
		copy(hdr[4:], "n+2\x00\r\n\x1a\n")
		bo.PutUint16(hdr[12:], uint16(s.datatype))
		bo.PutUint16(hdr[14:], uint16(bitpix))
		bo.PutUint64(hdr[16:], uint64(len(s.dims)))
		for i, d := range s.dims {
			bo.PutUint64(hdr[24+8*i:], uint64(d))
		}
		f64 := func(off int, v float64) { bo.PutUint64(hdr[off:], math.Float64bits(v)) }
		f64(104, qfac)
		for i := 1; i <= 3; i++ {
			f64(104+8*i, 1)
		}
		bo.PutUint64(hdr[168:], uint64(voxOffset))
		f64(176, s.slope)
		f64(184, s.inter)
		f64(192, s.calMax)
		f64(200, s.calMin)
		bo.PutUint32(hdr[344:], uint32(s.qformCode))
		bo.PutUint32(hdr[348:], uint32(s.sformCode))
		for i := 0; i < 3; i++ {
			f64(352+8*i, s.quatern[i])
			for j := 0; j < 4; j++ {
				f64(400+32*i+8*j, s.srow[i][j])
			}
		}
	} else {
		hdr = make([]byte, 352)
		voxOffset = 352
		bo.PutUint32(hdr[0:], 348)
		bo.PutUint16(hdr[40:], uint16(len(s.dims)))
		for i, d := range s.dims {
			bo.PutUint16(hdr[42+2*i:], uint16(d))
		}
		bo.PutUint16(hdr[70:], uint16(s.datatype))
		bo.PutUint16(hdr[72:], uint16(bitpix))
		f32 := func(off int, v float64) { bo.PutUint32(hdr[off:], math.Float32bits(float32(v))) }
		f32(76, qfac)
		for i := 1; i <= 3; i++ {
			f32(76+4*i, 1)
		}
		f32(108, float64(voxOffset))
		f32(112, s.slope)
		f32(116, s.inter)
		f32(124, s.calMax)
		f32(128, s.calMin)
		bo.PutUint16(hdr[252:], uint16(s.qformCode))
		bo.PutUint16(hdr[254:], uint16(s.sformCode))
		for i := 0; i < 3; i++ {
			f32(256+4*i, s.quatern[i])
			for j := 0; j < 4; j++ {
				f32(280+16*i+4*j, s.srow[i][j])
			}
		}
		copy(hdr[344:], "n+1\x00")
	}
	data := make([]byte, len(s.values)*bpv)
	for i, v := range s.values {
		putFloat(data[i*bpv:], bo, s.datatype, v)
	}
	data = data[:len(data)-s.truncateBy]
	file := append(hdr, data...)
	if !s.gz {
		return file
	}
	var buf bytes.Buffer
	zw := gzip.NewWriter(&buf)
	zw.Write(file)
	zw.Close()
	return buf.Bytes()
}

func decodeBytes(t testing.TB, b []byte, name string, opts Options) (*Volume, error) {
	t.Helper()
	return Decode(bytes.NewReader(b), int64(len(b)), name, opts)
}
