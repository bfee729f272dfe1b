package safetensors

import (
	"bytes"
	"encoding/binary"
	"math"
	"strings"
	"testing"

	"github.com/maddr-project/maddr/reliability"
)

// safetensorsSeeds are small valid and nearly valid files covering every
// dtype the reader widens, metadata, scalars and empty tensors.
func safetensorsSeeds(t testing.TB) map[string][]any {
	enc := func(f File) []byte {
		var b bytes.Buffer
		if err := Encode(&b, f); err != nil {
			t.Fatal(err)
		}
		return b.Bytes()
	}
	raw := func(header string, data []byte) []byte {
		b := binary.LittleEndian.AppendUint64(nil, uint64(len(header)))
		return append(append(b, header...), data...)
	}
	return map[string][]any{
		"f32-i64-metadata": {enc(File{
			Tensors: map[string]Tensor{
				"enc.conv1.weight": {Shape: []int64{2, 1, 2, 2}, F32: []float32{1, -2, 0.5, 0, 3, 4, -5, float32(math.Inf(1))}},
				"optim.step":       {Shape: []int64{}, I64: []int64{7}},
				"empty":            {Shape: []int64{0, 3}, F32: []float32{}},
			},
			Metadata: map[string]string{"maddr.config": `{"iter":10}`},
		})},
		"half-widths": {raw(`{"h":{"dtype":"F16","shape":[2],"data_offsets":[0,4]},"b":{"dtype":"BF16","shape":[2],"data_offsets":[4,8]}}`,
			[]byte{0x00, 0x3c, 0x00, 0xc0, 0x80, 0x3f, 0x00, 0xc0})},
		"ints-bool-f64": {raw(`{"i":{"dtype":"I32","shape":[1],"data_offsets":[0,4]},"u":{"dtype":"U8","shape":[2],"data_offsets":[4,6]},`+
			`"t":{"dtype":"BOOL","shape":[2],"data_offsets":[6,8]},"d":{"dtype":"F64","shape":[1],"data_offsets":[8,16]}}`,
			[]byte{0xff, 0xff, 0xff, 0xff, 1, 2, 0, 1, 0, 0, 0, 0, 0, 0, 0xf0, 0x3f})},
		// Found by review of Decode: a shape whose element count times the
		// element size overflows int64 passed the length check and crashed
		// the allocation (makeslice: len out of range).
		"regress-shape-overflow":    {raw(`{"x":{"dtype":"F32","shape":[4611686018427387904],"data_offsets":[0,0]}}`, nil)},
		"regress-shape-overflow-2d": {raw(`{"x":{"dtype":"F64","shape":[576460752303423488,4],"data_offsets":[0,0]}}`, nil)},
	}
}

func TestSafetensorsFuzzSeeds(t *testing.T) {
	reliability.CheckCorpus(t, "FuzzSafetensors", safetensorsSeeds(t))
}

// FuzzSafetensors checks that Decode never panics, names the file in every
// error, allocates no more than the data it holds (F16 widened to float32,
// integers to int64: at most 8 bytes per input byte), and that whatever it
// accepts survives an Encode/Decode round trip bit for bit.
func FuzzSafetensors(f *testing.F) {
	for _, s := range safetensorsSeeds(f) {
		f.Add(s[0].([]byte))
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		before := reliability.Allocated()
		file, err := Decode(data, "fuzz.safetensors")
		if grew := reliability.Allocated() - before; grew > reliability.AllocLimit(len(data), 64) {
			t.Fatalf("decoding %d bytes allocated %d bytes", len(data), grew)
		}
		if err != nil {
			if !strings.Contains(err.Error(), "fuzz.safetensors") {
				t.Fatalf("error does not name the file: %v", err)
			}
			return
		}
		norm := File{Tensors: map[string]Tensor{}, Metadata: file.Metadata}
		for name, ts := range file.Tensors {
			if int64(len(ts.F32)+len(ts.I64)) != ts.Numel() {
				t.Fatalf("%s: %d values for shape %v", name, len(ts.F32)+len(ts.I64), ts.Shape)
			}
			ts.DType = F32
			if ts.I64 != nil {
				ts.DType = I64
			}
			norm.Tensors[name] = ts
		}
		var buf bytes.Buffer
		if err := Encode(&buf, norm); err != nil {
			t.Fatalf("re-encoding an accepted file: %v", err)
		}
		again, err := Decode(buf.Bytes(), "again")
		if err != nil {
			t.Fatalf("decoding a re-encoded file: %v", err)
		}
		for name, want := range norm.Tensors {
			got := again.Tensors[name]
			if len(got.Shape) != len(want.Shape) || len(got.F32) != len(want.F32) || len(got.I64) != len(want.I64) {
				t.Fatalf("%s changed in the round trip", name)
			}
			for i := range want.F32 {
				if math.Float32bits(got.F32[i]) != math.Float32bits(want.F32[i]) {
					t.Fatalf("%s[%d] changed in the round trip", name, i)
				}
			}
			for i := range want.I64 {
				if got.I64[i] != want.I64[i] {
					t.Fatalf("%s[%d] changed in the round trip", name, i)
				}
			}
		}
	})
}
