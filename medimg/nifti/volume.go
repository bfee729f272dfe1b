// Package nifti reads NIfTI-1 and NIfTI-2 volumes (.nii and .nii.gz, either byte order, integer and float
// voxels) slice by slice in a canonical axial view.
//
// Canonical view. The voxel-to-world matrix is taken from the sform when sform_code > 0, else from the qform
// when qform_code > 0, else from pixdim alone (no rotation). World space is NIfTI's RAS+ (x to the patient's
// Right, y Anterior, z Superior). Each world axis is paired with the voxel axis closest to it; then slices run
// along the axis closest to superior-inferior (slice 0 the most inferior), image rows run anterior -> posterior
// (row 0, the top, is anterior) and image columns run patient right -> patient left (column 0, the viewer's
// left, is the patient's right). That is how radiology viewers show axial CT, seen from the feet; volumes stored
// in LPS, RAS, sagittal or coronal order all come out the same way up.
//
// Values are scl_slope*stored + scl_inter (no scaling when scl_slope is 0, as nifti1.h says). NIfTI carries no
// modality, so this package never claims Hounsfield units; callers that know a volume is CT say so.
//
// Memory. An uncompressed .nii stays on disk and each Slice reads only its bytes when the slices are stored
// contiguously (the usual axial case); otherwise the raw bytes of the one selected 3-D volume are loaded once.
// A .nii.gz is inflated once into the raw bytes of the selected 3-D volume (never float32). Every declared size
// is checked against the file size (or the largest size deflate can produce from it) before anything is
// allocated.
package nifti

import (
	"bytes"
	"compress/gzip"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"math"
	"os"
)

// NaNPolicy says what to do with NaN or infinite voxels.
type NaNPolicy int

const (
	// NaNError makes Slice fail, naming the slice and the voxel.
	NaNError NaNPolicy = iota
	// NaNToZero replaces non-finite voxels by 0.
	NaNToZero
)

// Options choose what a Volume exposes.
type Options struct {
	// TimePoint selects the 3-D volume of a 4-D (or higher) file, counting over dims 4..7 flattened; 0 is the first.
	TimePoint int
	NaN       NaNPolicy
}

// Volume gives slice-by-slice access to one 3-D volume of a NIfTI file.
type Volume struct {
	Header Header
	Name   string
	// AffineSource is "sform", "qform" or "pixdim": the matrix the canonical view was derived from.
	AffineSource string

	size    [3]int64 // voxel axis sizes
	volumes int64
	axes    axisMap
	opts    Options

	file    io.ReaderAt // uncompressed data still on disk; nil once raw is loaded
	offset  int64       // byte offset of the selected 3-D volume in file
	raw     []byte      // raw bytes of the selected 3-D volume, when loaded
	closer  io.Closer
	voxelAt func(b []byte) float64
}

// Slice is one canonical axial slice. Min and Max are over its (scaled) values.
type Slice struct {
	Width, Height int
	Pix           []float32
	Min, Max      float32
}

// Open reads the header of a .nii or .nii.gz file (gzip is recognised by content, not by name).
// The returned Volume must be closed.
func Open(path string, opts Options) (*Volume, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("reading %s: %w", path, err)
	}
	st, err := f.Stat()
	if err != nil {
		f.Close()
		return nil, fmt.Errorf("reading %s: %w", path, err)
	}
	v, err := Decode(f, st.Size(), path, opts)
	if err != nil {
		f.Close()
		return nil, err
	}
	if v.file == nil {
		f.Close() // gzip data was inflated into memory
	} else {
		v.closer = f
	}
	return v, nil
}

// Decode reads a NIfTI volume from r, which holds size bytes; name is used in error messages. For uncompressed
// data r must stay readable until the Volume is no longer used; Decode never closes it.
func Decode(r io.ReaderAt, size int64, name string, opts Options) (*Volume, error) {
	if size == 0 {
		return nil, fmt.Errorf("reading %s: %w: empty file", name, ErrNotNIfTI)
	}
	var magic [2]byte
	if _, err := r.ReadAt(magic[:], 0); err != nil && size >= 2 {
		return nil, fmt.Errorf("reading %s: %w", name, err)
	}
	if magic[0] == 0x1f && magic[1] == 0x8b {
		return decodeGzip(r, size, name, opts)
	}
	n := int64(HeaderSize)
	if size < n {
		n = size
	}
	hb := make([]byte, n)
	if _, err := r.ReadAt(hb, 0); err != nil && !errors.Is(err, io.EOF) {
		return nil, fmt.Errorf("reading %s: %w", name, err)
	}
	v, err := newVolume(hb, name, opts)
	if err != nil {
		return nil, err
	}
	volBytes := v.volumeBytes()
	need, ok := mulAdd(volBytes, v.volumes, v.Header.VoxOffset)
	if !ok || need > size {
		return nil, fmt.Errorf("reading %s: %w: header declares %s voxels of %s starting at byte %d, file has %d bytes",
			name, ErrCorrupt, v.shape(), DatatypeName(v.Header.Datatype), v.Header.VoxOffset, size)
	}
	v.file = r
	v.offset = v.Header.VoxOffset + int64(opts.TimePoint)*volBytes
	return v, nil
}

// maxDeflateRatio bounds how many bytes deflate can produce per compressed byte (the format's limit is about
// 1032:1); it lets a .nii.gz be checked against its own size before the volume buffer is allocated.
const maxDeflateRatio = 1032

func decodeGzip(r io.ReaderAt, size int64, name string, opts Options) (*Volume, error) {
	zr, err := gzip.NewReader(io.NewSectionReader(r, 0, size))
	if err != nil {
		return nil, fmt.Errorf("reading %s: %w: bad gzip stream: %v", name, ErrCorrupt, err)
	}
	defer zr.Close()
	hb := make([]byte, HeaderSize)
	n, err := io.ReadFull(zr, hb[:sizeofHeader1])
	if err != nil {
		return nil, fmt.Errorf("reading %s: %w: header truncated after %d bytes (%v)", name, ErrCorrupt, n, err)
	}
	if binary.LittleEndian.Uint32(hb) == sizeofHeader2 || binary.BigEndian.Uint32(hb) == sizeofHeader2 {
		if n, err := io.ReadFull(zr, hb[sizeofHeader1:]); err != nil {
			return nil, fmt.Errorf("reading %s: %w: NIfTI-2 header truncated after %d bytes (%v)",
				name, ErrCorrupt, sizeofHeader1+n, err)
		}
	} else {
		hb = hb[:sizeofHeader1]
	}
	v, err := newVolume(hb, name, opts)
	if err != nil {
		return nil, err
	}
	volBytes := v.volumeBytes()
	start, ok := mulAdd(volBytes, int64(opts.TimePoint), v.Header.VoxOffset)
	end := start + volBytes
	if !ok || end < start || end/maxDeflateRatio > size {
		return nil, fmt.Errorf("reading %s: %w: header declares %s voxels of %s, more than %d compressed bytes can hold",
			name, ErrCorrupt, v.shape(), DatatypeName(v.Header.Datatype), size)
	}
	if _, err := io.CopyN(io.Discard, zr, start-int64(len(hb))); err != nil {
		return nil, fmt.Errorf("reading %s: %w: data ends before the volume starts (%v)", name, ErrCorrupt, err)
	}
	v.raw = make([]byte, volBytes)
	if n, err := io.ReadFull(zr, v.raw); err != nil {
		return nil, fmt.Errorf("reading %s: %w: volume %d truncated: %d of %d bytes (%v)",
			name, ErrCorrupt, opts.TimePoint, n, volBytes, err)
	}
	return v, nil
}

// newVolume parses the header and settles everything that does not depend on where the data lives.
func newVolume(hb []byte, name string, opts Options) (*Volume, error) {
	h, err := ParseHeader(hb)
	if err != nil {
		return nil, fmt.Errorf("reading %s: %w", name, err)
	}
	v := &Volume{Header: h, Name: name, opts: opts}
	v.size[0], v.size[1], v.size[2], v.volumes = h.dims()
	if _, ok := mulAdd(v.size[0]*v.size[1], v.size[2], 0); !ok {
		return nil, fmt.Errorf("reading %s: %w: dimensions %s overflow", name, ErrCorrupt, v.shape())
	}
	if opts.TimePoint < 0 || int64(opts.TimePoint) >= v.volumes {
		return nil, fmt.Errorf("reading %s: time point %d out of range: the file holds %d volume(s)",
			name, opts.TimePoint, v.volumes)
	}
	m, src := h.Affine()
	v.AffineSource = src
	v.axes = mapAxes(m)
	v.voxelAt = voxelReader(h.Datatype, h.ByteOrder)
	return v, nil
}

// volumeBytes is the size of one 3-D volume; newVolume already checked that it cannot overflow (each dim is at
// most 2^31, and bytes per voxel is at most 8, the product of the three is checked below 2^63).
func (v *Volume) volumeBytes() int64 {
	n, ok := mulAdd(v.size[0]*v.size[1], v.size[2]*int64(v.Header.BytesPerVoxel()), 0)
	if !ok {
		return math.MaxInt64
	}
	return n
}

func (v *Volume) shape() string {
	s := fmt.Sprintf("%dx%dx%d", v.size[0], v.size[1], v.size[2])
	if v.volumes > 1 {
		s += fmt.Sprintf("x%d", v.volumes)
	}
	return s
}

// mulAdd returns a*b+c for non-negative operands, and false on overflow.
func mulAdd(a, b, c int64) (int64, bool) {
	if a < 0 || b < 0 || c < 0 {
		return 0, false
	}
	if a != 0 && b > (math.MaxInt64-c)/a {
		return 0, false
	}
	return a*b + c, true
}

// NumSlices is the number of canonical axial slices.
func (v *Volume) NumSlices() int { return int(v.size[v.axes.voxel[2]]) }

// NumVolumes is the number of 3-D volumes in the file (1 for 3-D data).
func (v *Volume) NumVolumes() int { return int(v.volumes) }

// Shape is the stored voxel grid (dims 1..3).
func (v *Volume) Shape() [3]int { return [3]int{int(v.size[0]), int(v.size[1]), int(v.size[2])} }

// Close releases the file of an uncompressed volume.
func (v *Volume) Close() error {
	v.raw, v.file = nil, nil
	if v.closer != nil {
		c := v.closer
		v.closer = nil
		return c.Close()
	}
	return nil
}

// Slice returns canonical slice k (0 = most inferior).
func (v *Volume) Slice(k int) (Slice, error) {
	if v.raw == nil && v.file == nil {
		return Slice{}, fmt.Errorf("reading %s: volume is closed", v.Name)
	}
	if k < 0 || k >= v.NumSlices() {
		return Slice{}, fmt.Errorf("reading %s: slice %d out of range 0..%d", v.Name, k, v.NumSlices()-1)
	}
	sa, ra, ca := v.axes.voxel[2], v.axes.voxel[1], v.axes.voxel[0]
	stride := [3]int64{1, v.size[0], v.size[0] * v.size[1]}
	// Slice index grows towards +S; rows towards posterior (-A); columns towards patient left (-R).
	sliceVox := int64(k)
	if !v.axes.positive[2] {
		sliceVox = v.size[sa] - 1 - sliceVox
	}
	w, h := v.size[ca], v.size[ra]
	rowStart, rowStep := int64(0), stride[ra]
	if v.axes.positive[1] {
		rowStart, rowStep = (h-1)*stride[ra], -stride[ra]
	}
	colStart, colStep := int64(0), stride[ca]
	if v.axes.positive[0] {
		colStart, colStep = (w-1)*stride[ca], -stride[ca]
	}
	bpv := int64(v.Header.BytesPerVoxel())

	var buf []byte
	base := sliceVox * stride[sa]
	switch {
	case v.raw != nil:
	case sa == 2:
		// Stored slices are contiguous: read just this one.
		buf = make([]byte, stride[2]*bpv)
		if _, err := v.file.ReadAt(buf, v.offset+base*bpv); err != nil {
			return Slice{}, fmt.Errorf("reading %s: slice %d: %w", v.Name, k, err)
		}
		base = 0
	default:
		raw := make([]byte, v.volumeBytes())
		if _, err := v.file.ReadAt(raw, v.offset); err != nil {
			return Slice{}, fmt.Errorf("reading %s: %w", v.Name, err)
		}
		v.raw = raw
	}
	if buf == nil {
		buf = v.raw
	}

	slope, inter := 1.0, 0.0
	if v.Header.SclSlope != 0 {
		slope, inter = v.Header.SclSlope, v.Header.SclInter
	}
	out := Slice{Width: int(w), Height: int(h), Pix: make([]float32, w*h)}
	out.Min, out.Max = float32(math.Inf(1)), float32(math.Inf(-1))
	i := 0
	for r := int64(0); r < h; r++ {
		off := base + rowStart + r*rowStep + colStart
		for c := int64(0); c < w; c++ {
			x := float32(v.voxelAt(buf[off*bpv:])*slope + inter)
			if math.IsNaN(float64(x)) || math.IsInf(float64(x), 0) {
				if v.opts.NaN != NaNToZero {
					return Slice{}, fmt.Errorf("reading %s: slice %d: %w %v at row %d column %d",
						v.Name, k, ErrNaN, x, r, c)
				}
				x = 0
			}
			out.Pix[i] = x
			out.Min = min(out.Min, x)
			out.Max = max(out.Max, x)
			i++
			off += colStep
		}
	}
	return out, nil
}

// voxelReader returns a decoder for one stored voxel at the start of b.
func voxelReader(dt int, bo binary.ByteOrder) func(b []byte) float64 {
	switch dt {
	case DTUint8:
		return func(b []byte) float64 { return float64(b[0]) }
	case DTInt8:
		return func(b []byte) float64 { return float64(int8(b[0])) }
	case DTInt16:
		return func(b []byte) float64 { return float64(int16(bo.Uint16(b))) }
	case DTUint16:
		return func(b []byte) float64 { return float64(bo.Uint16(b)) }
	case DTInt32:
		return func(b []byte) float64 { return float64(int32(bo.Uint32(b))) }
	case DTUint32:
		return func(b []byte) float64 { return float64(bo.Uint32(b)) }
	case DTInt64:
		return func(b []byte) float64 { return float64(int64(bo.Uint64(b))) }
	case DTUint64:
		return func(b []byte) float64 { return float64(bo.Uint64(b)) }
	case DTFloat32:
		return func(b []byte) float64 { return float64(math.Float32frombits(bo.Uint32(b))) }
	case DTFloat64:
		return func(b []byte) float64 { return math.Float64frombits(bo.Uint64(b)) }
	}
	return nil // ParseHeader rejects every other datatype
}

// IsNIfTI reports whether b (the first bytes of a file, already inflated if gzipped) starts with a NIfTI-1 or
// NIfTI-2 single-file header.
func IsNIfTI(b []byte) bool {
	if len(b) >= sizeofHeader1 && bytes.Equal(b[344:348], []byte("n+1\x00")) {
		return true
	}
	return len(b) >= 12 && bytes.Equal(b[4:12], []byte("n+2\x00\r\n\x1a\n"))
}
