// Package safetensors reads and writes the safetensors file format (a JSON
// header followed by raw little-endian tensor data), the format of maddr's
// checkpoints and model files and one of the accepted VGG19 weight formats.
//
// Files are written through atomicfile, so a crash never leaves a
// half-written checkpoint in place of a finished one.
package safetensors

import (
	"bufio"
	"bytes"
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"math"
	"os"
	"sort"

	"github.com/maddr-project/maddr/atomicfile"
)

// DType names an element type as the format spells it.
type DType string

// Element types maddr reads; F16 and BF16 are widened to float32 on read.
const (
	F32  DType = "F32"
	F64  DType = "F64"
	F16  DType = "F16"
	BF16 DType = "BF16"
	I64  DType = "I64"
	I32  DType = "I32"
	U8   DType = "U8"
	Bool DType = "BOOL"
)

func (d DType) size() int {
	switch d {
	case F64, I64:
		return 8
	case F32, I32:
		return 4
	case F16, BF16:
		return 2
	case U8, Bool:
		return 1
	}
	return 0
}

// Tensor is one named array. Exactly one of F32, I64 is set for the types
// maddr writes; reading converts floats to F32 and integers to I64.
type Tensor struct {
	DType DType
	Shape []int64
	F32   []float32
	I64   []int64
}

// Numel is the product of the shape.
func (t Tensor) Numel() int64 {
	n := int64(1)
	for _, d := range t.Shape {
		n *= d
	}
	return n
}

// File is the content of a safetensors file.
type File struct {
	Tensors  map[string]Tensor
	Metadata map[string]string
}

type headerEntry struct {
	DType       DType    `json:"dtype"`
	Shape       []int64  `json:"shape"`
	DataOffsets [2]int64 `json:"data_offsets"`
}

// maxHeader bounds the JSON header so a corrupt length cannot make us
// allocate gigabytes.
const maxHeader = 100 << 20

// Encode writes f in safetensors layout to w. Tensors are stored in name order.
func Encode(w io.Writer, f File) error {
	names := make([]string, 0, len(f.Tensors))
	for n := range f.Tensors {
		names = append(names, n)
	}
	sort.Strings(names)
	header := map[string]any{}
	meta := map[string]string{}
	for k, v := range f.Metadata {
		meta[k] = v
	}
	var offset int64
	for _, n := range names {
		t := f.Tensors[n]
		count := t.Numel()
		var size int64
		switch {
		case t.F32 != nil && (t.DType == F32 || t.DType == ""):
			if int64(len(t.F32)) != count {
				return fmt.Errorf("safetensors: tensor %q has %d values for shape %v", n, len(t.F32), t.Shape)
			}
			size = 4 * count
		case t.I64 != nil && (t.DType == I64 || t.DType == ""):
			if int64(len(t.I64)) != count {
				return fmt.Errorf("safetensors: tensor %q has %d values for shape %v", n, len(t.I64), t.Shape)
			}
			size = 8 * count
		default:
			return fmt.Errorf("safetensors: tensor %q: only F32 and I64 data can be written", n)
		}
		dt := F32
		if t.I64 != nil {
			dt = I64
		}
		shape := t.Shape
		if shape == nil {
			shape = []int64{}
		}
		header[n] = headerEntry{DType: dt, Shape: shape, DataOffsets: [2]int64{offset, offset + size}}
		offset += size
	}
	// The data checksum lets a reader tell a damaged file (bit rot, a
	// partial copy) from a valid one; readers without it still load the file.
	sum := sha256.New()
	if err := writeData(sum, f, names); err != nil {
		return err
	}
	meta[ChecksumKey] = hex.EncodeToString(sum.Sum(nil))
	header["__metadata__"] = meta
	hb, err := json.Marshal(header)
	if err != nil {
		return err
	}
	// Pad the header so the data starts 8-byte aligned, as the reference writer does.
	for len(hb)%8 != 0 {
		hb = append(hb, ' ')
	}
	var lenBuf [8]byte
	binary.LittleEndian.PutUint64(lenBuf[:], uint64(len(hb)))
	if _, err := w.Write(lenBuf[:]); err != nil {
		return err
	}
	if _, err := w.Write(hb); err != nil {
		return err
	}
	return writeData(w, f, names)
}

// ChecksumKey is the metadata entry holding the SHA-256 of the data section.
const ChecksumKey = "sha256"

func writeData(w io.Writer, f File, names []string) error {
	bw := bufio.NewWriterSize(w, 1<<20)
	for _, n := range names {
		t := f.Tensors[n]
		var err error
		if t.I64 != nil {
			err = binary.Write(bw, binary.LittleEndian, t.I64)
		} else {
			err = binary.Write(bw, binary.LittleEndian, t.F32)
		}
		if err != nil {
			return err
		}
	}
	return bw.Flush()
}

// Decode parses a whole safetensors file held in memory. name is used in errors.
func Decode(data []byte, name string) (File, error) {
	bad := func(format string, args ...any) (File, error) {
		return File{}, fmt.Errorf("%s: not a valid safetensors file: %s", name, fmt.Sprintf(format, args...))
	}
	if len(data) < 8 {
		return bad("%d bytes, shorter than the 8-byte header length", len(data))
	}
	hlen := binary.LittleEndian.Uint64(data[:8])
	if hlen > maxHeader || hlen > uint64(len(data)-8) {
		return bad("header length %d does not fit in a %d-byte file", hlen, len(data))
	}
	raw := map[string]json.RawMessage{}
	dec := json.NewDecoder(bytes.NewReader(data[8 : 8+hlen]))
	if err := dec.Decode(&raw); err != nil {
		return bad("header JSON: %v", err)
	}
	body := data[8+hlen:]
	out := File{Tensors: map[string]Tensor{}, Metadata: map[string]string{}}
	for key, msg := range raw {
		if key == "__metadata__" {
			if err := json.Unmarshal(msg, &out.Metadata); err != nil {
				return bad("metadata: %v", err)
			}
			continue
		}
		var e headerEntry
		if err := json.Unmarshal(msg, &e); err != nil {
			return bad("entry %q: %v", key, err)
		}
		esize := e.DType.size()
		if esize == 0 {
			return bad("tensor %q has unsupported dtype %q", key, e.DType)
		}
		count := int64(1)
		for _, d := range e.Shape {
			if d < 0 || (d > 0 && count > math.MaxInt64/d) {
				return bad("tensor %q has invalid shape %v", key, e.Shape)
			}
			count *= d
		}
		begin, end := e.DataOffsets[0], e.DataOffsets[1]
		if begin < 0 || end < begin || end > int64(len(body)) {
			return bad("tensor %q data [%d, %d) lies outside the %d data bytes (truncated file?)", key, begin, end, len(body))
		}
		// Compare counts, not byte sizes: count*esize can overflow int64 for
		// an absurd shape, which once let such a shape through to the
		// allocation.
		if (end-begin)%int64(esize) != 0 || (end-begin)/int64(esize) != count {
			return bad("tensor %q has %d data bytes for shape %v of %s", key, end-begin, e.Shape, e.DType)
		}
		out.Tensors[key] = convert(e.DType, e.Shape, body[begin:end], count)
	}
	// Checked last, so that a truncated file is reported as truncated above.
	if sum := out.Metadata[ChecksumKey]; sum != "" {
		got := sha256.Sum256(body)
		if hex.EncodeToString(got[:]) != sum {
			return File{}, fmt.Errorf("%s: damaged file: the data does not match its SHA-256 checksum (bit rot or an incomplete copy)", name)
		}
	}
	return out, nil
}

func convert(dt DType, shape []int64, b []byte, n int64) Tensor {
	t := Tensor{DType: dt, Shape: shape}
	le := binary.LittleEndian
	switch dt {
	case F32:
		t.F32 = make([]float32, n)
		for i := range t.F32 {
			t.F32[i] = math.Float32frombits(le.Uint32(b[4*i:]))
		}
	case F64:
		t.F32 = make([]float32, n)
		for i := range t.F32 {
			t.F32[i] = float32(math.Float64frombits(le.Uint64(b[8*i:])))
		}
	case BF16:
		t.F32 = make([]float32, n)
		for i := range t.F32 {
			t.F32[i] = math.Float32frombits(uint32(le.Uint16(b[2*i:])) << 16)
		}
	case F16:
		t.F32 = make([]float32, n)
		for i := range t.F32 {
			t.F32[i] = halfToFloat(le.Uint16(b[2*i:]))
		}
	case I64:
		t.I64 = make([]int64, n)
		for i := range t.I64 {
			t.I64[i] = int64(le.Uint64(b[8*i:]))
		}
	case I32:
		t.I64 = make([]int64, n)
		for i := range t.I64 {
			t.I64[i] = int64(int32(le.Uint32(b[4*i:])))
		}
	case U8, Bool:
		t.I64 = make([]int64, n)
		for i := range t.I64 {
			t.I64[i] = int64(b[i])
		}
	}
	return t
}

// halfToFloat widens an IEEE 754 binary16 value.
func halfToFloat(h uint16) float32 {
	sign := uint32(h>>15) << 31
	exp := uint32(h>>10) & 0x1f
	frac := uint32(h & 0x3ff)
	switch {
	case exp == 0 && frac == 0:
		return math.Float32frombits(sign)
	case exp == 0: // subnormal: renormalise
		e := uint32(127 - 15 + 1)
		for frac&0x400 == 0 {
			frac <<= 1
			e--
		}
		frac &= 0x3ff
		return math.Float32frombits(sign | e<<23 | frac<<13)
	case exp == 0x1f:
		return math.Float32frombits(sign | 0xff<<23 | frac<<13)
	}
	return math.Float32frombits(sign | (exp+127-15)<<23 | frac<<13)
}

// ReadFile reads and decodes a safetensors file.
func ReadFile(path string) (File, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return File{}, err
	}
	return Decode(data, path)
}

// WriteFile encodes f to path atomically.
func WriteFile(path string, f File) error {
	return atomicfile.Write(path, func(w io.Writer) error { return Encode(w, f) })
}
