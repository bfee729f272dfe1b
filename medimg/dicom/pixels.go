package dicom

import (
	"bytes"
	"encoding/binary"
	"fmt"
	"image/jpeg"

	"github.com/maddr-project/maddr/medimg/raster"
)

// RawFrame returns frame i as stored values: BitsStored bits taken at HighBit and sign-extended when signed,
// before rescale and MONOCHROME1 inversion. Colour frames give the luma of their samples.
func (f *File) RawFrame(i int) ([]float64, error) {
	if i < 0 || i >= f.NumFrames {
		return nil, fmt.Errorf("reading %s: frame %d out of range 0..%d", f.Name, i, f.NumFrames-1)
	}
	var (
		frame []byte
		bo    binary.ByteOrder = binary.LittleEndian
	)
	switch {
	case f.TransferSyntax == jpegBaseline:
		return f.jpegFrame(i)
	case f.TransferSyntax == rleLossless:
		var err error
		if frame, err = f.rleFrame(i); err != nil {
			return nil, fmt.Errorf("reading %s: frame %d: %w", f.Name, i, err)
		}
	default:
		n := f.Rows * f.Columns * f.SamplesPerPixel * (f.BitsAllocated / 8)
		frame = f.native[i*n : (i+1)*n]
		if f.TransferSyntax == explicitVRBigEndian {
			bo = binary.BigEndian
		}
	}
	return f.samples(frame, bo), nil
}

// samples converts one native frame (interleaved unless PlanarConfig is 1) to stored grey values.
func (f *File) samples(frame []byte, bo binary.ByteOrder) []float64 {
	npix := f.Rows * f.Columns
	bpv := f.BitsAllocated / 8
	shift := uint(f.HighBit + 1 - f.BitsStored)
	mask := uint64(1)<<uint(f.BitsStored) - 1
	sign := uint64(1) << uint(f.BitsStored-1)
	sample := func(k int) float64 {
		var u uint64
		switch bpv {
		case 1:
			u = uint64(frame[k])
		case 2:
			u = uint64(bo.Uint16(frame[2*k:]))
		default:
			u = uint64(bo.Uint32(frame[4*k:]))
		}
		u = (u >> shift) & mask
		if f.Signed && u&sign != 0 {
			return float64(int64(u) - int64(mask) - 1)
		}
		return float64(u)
	}
	out := make([]float64, npix)
	if f.SamplesPerPixel == 1 {
		for k := range out {
			out[k] = sample(k)
		}
		return out
	}
	at := func(p, c int) float64 { return sample(3*p + c) }
	if f.PlanarConfig == 1 {
		at = func(p, c int) float64 { return sample(c*npix + p) }
	}
	for p := range out {
		if f.Photometric == "YBR_FULL" {
			out[p] = at(p, 0) // Y already is the luma
			continue
		}
		r, g, b := at(p, 0), at(p, 1), at(p, 2)
		if f.BitsAllocated == 8 {
			out[p] = float64(raster.Luma8(uint8(r), uint8(g), uint8(b)))
		} else {
			out[p] = float64(raster.Luma16(uint16(r), uint16(g), uint16(b)))
		}
	}
	return out
}

// rleFrame decodes one RLE Lossless frame (DICOM PS3.5 Annex G) into native little-endian interleaved bytes.
func (f *File) rleFrame(i int) ([]byte, error) {
	src := f.fragments[i]
	bpv := f.BitsAllocated / 8
	nseg := f.SamplesPerPixel * bpv
	if len(src) < 64 {
		return nil, fmt.Errorf("%w: RLE header truncated", ErrCorrupt)
	}
	if got := int(binary.LittleEndian.Uint32(src)); got != nseg {
		return nil, fmt.Errorf("%w: RLE frame has %d segments, %d expected", ErrCorrupt, got, nseg)
	}
	npix := f.Rows * f.Columns
	// Check every segment before allocating the frame: the header's Rows x Columns can claim gigabytes that
	// a few bytes of PackBits (at most maxPackBitsRatio output bytes per input byte) cannot fill.
	starts, ends := make([]int, nseg), make([]int, nseg)
	for s := 0; s < nseg; s++ {
		start := int(binary.LittleEndian.Uint32(src[4+4*s:]))
		end := len(src)
		if s+1 < nseg {
			end = int(binary.LittleEndian.Uint32(src[8+4*s:]))
		}
		if start < 64 || start > end || end > len(src) {
			return nil, fmt.Errorf("%w: RLE segment %d offsets %d..%d outside the %d-byte frame",
				ErrCorrupt, s, start, end, len(src))
		}
		if int64(end-start)*maxPackBitsRatio < int64(npix) {
			return nil, fmt.Errorf("%w: RLE segment %d has %d bytes, too few for the %dx%d pixels the header declares",
				ErrCorrupt, s, end-start, f.Columns, f.Rows)
		}
		starts[s], ends[s] = start, end
	}
	out := make([]byte, npix*nseg)
	for s := 0; s < nseg; s++ {
		seg, err := unpackBits(src[starts[s]:ends[s]], npix)
		if err != nil {
			return nil, fmt.Errorf("RLE segment %d: %w", s, err)
		}
		// Segments come most significant byte first, sample by sample.
		sampleIdx, byteIdx := s/bpv, bpv-1-s%bpv
		for p, b := range seg {
			out[(p*f.SamplesPerPixel+sampleIdx)*bpv+byteIdx] = b
		}
	}
	return out, nil
}

// maxPackBitsRatio is PackBits' largest expansion: a 2-byte replicate run gives 128 bytes.
const maxPackBitsRatio = 64

// unpackBits expands one PackBits-coded segment into exactly n bytes.
func unpackBits(src []byte, n int) ([]byte, error) {
	out := make([]byte, 0, n)
	for i := 0; i < len(src) && len(out) < n; {
		c := int(int8(src[i]))
		i++
		switch {
		case c >= 0:
			if i+c+1 > len(src) {
				return nil, fmt.Errorf("%w: literal run past the segment end", ErrCorrupt)
			}
			out = append(out, src[i:i+c+1]...)
			i += c + 1
		case c != -128:
			if i >= len(src) {
				return nil, fmt.Errorf("%w: replicate run past the segment end", ErrCorrupt)
			}
			for k := 0; k < 1-c; k++ {
				out = append(out, src[i])
			}
			i++
		}
	}
	if len(out) < n {
		return nil, fmt.Errorf("%w: segment decodes to %d of %d bytes", ErrCorrupt, len(out), n)
	}
	return out[:n], nil
}

func (f *File) jpegFrame(i int) ([]float64, error) {
	src := f.fragments[i]
	// The JPEG decoder allocates the whole image when it meets the first scan, before any data is read.
	if !raster.PlausibleJPEG(f.Columns, f.Rows, int64(len(src))) {
		return nil, fmt.Errorf("reading %s: frame %d: %w: JPEG of %d bytes cannot hold the %dx%d pixels the header declares",
			f.Name, i, ErrCorrupt, len(src), f.Columns, f.Rows)
	}
	cfg, err := jpeg.DecodeConfig(bytes.NewReader(src))
	if err != nil {
		return nil, fmt.Errorf("reading %s: frame %d: %w: JPEG: %v", f.Name, i, ErrCorrupt, err)
	}
	if cfg.Width != f.Columns || cfg.Height != f.Rows {
		return nil, fmt.Errorf("reading %s: frame %d: %w: JPEG is %dx%d, header says %dx%d",
			f.Name, i, ErrCorrupt, cfg.Width, cfg.Height, f.Columns, f.Rows)
	}
	img, err := jpeg.Decode(bytes.NewReader(src))
	if err != nil {
		return nil, fmt.Errorf("reading %s: frame %d: %w: JPEG: %v", f.Name, i, ErrCorrupt, err)
	}
	g := raster.FromImage(img)
	out := make([]float64, len(g.Pix))
	for k, v := range g.Pix {
		out[k] = float64(v)
	}
	return out, nil
}

// StoredRange is the nominal range of stored values given BitsStored and the pixel representation.
func (f *File) StoredRange() (lo, hi float64) {
	if f.Signed {
		return -float64(uint64(1) << uint(f.BitsStored-1)), float64(uint64(1)<<uint(f.BitsStored-1) - 1)
	}
	if f.TransferSyntax == jpegBaseline {
		return 0, 255
	}
	return 0, float64(uint64(1)<<uint(f.BitsStored) - 1)
}

// Range is the nominal range of output values: StoredRange after rescale.
func (f *File) Range() (lo, hi float64) {
	lo, hi = f.StoredRange()
	lo, hi = lo*f.RescaleSlope+f.RescaleIntercept, hi*f.RescaleSlope+f.RescaleIntercept
	if lo > hi {
		lo, hi = hi, lo
	}
	return lo, hi
}

// Inverted reports whether output values are mirrored (MONOCHROME1: bright means low stored values).
func (f *File) Inverted() bool { return f.Photometric == "MONOCHROME1" }

// Window is the file's window in output units (center mirrored for MONOCHROME1); ok is false when absent.
func (f *File) Window() (center, width float64, ok bool) {
	if !f.HasWindow {
		return 0, 0, false
	}
	c := f.WindowCenter
	if f.Inverted() {
		lo, hi := f.Range()
		c = lo + hi - c
	}
	return c, f.WindowWidth, true
}

// Frame returns frame i in output units.
func (f *File) Frame(i int) (Frame, error) {
	raw, err := f.RawFrame(i)
	if err != nil {
		return Frame{}, err
	}
	lo, hi := f.Range()
	out := Frame{Width: f.Columns, Height: f.Rows, Pix: make([]float32, len(raw))}
	for k, v := range raw {
		x := v*f.RescaleSlope + f.RescaleIntercept
		if f.Inverted() {
			x = lo + hi - x
		}
		out.Pix[k] = float32(x)
	}
	return out, nil
}
