package safetensors

import (
	"bytes"
	"math"
	"strings"
	"testing"
)

func TestRoundTrip(t *testing.T) {
	f := File{
		Tensors: map[string]Tensor{
			"a.weight": {Shape: []int64{2, 3}, F32: []float32{1, -2, 3.5, 0, float32(math.Inf(1)), 7}},
			"a.steps":  {Shape: []int64{}, I64: []int64{42}},
			"empty":    {Shape: []int64{0, 4}, F32: []float32{}},
		},
		Metadata: map[string]string{"k": "v"},
	}
	var buf bytes.Buffer
	if err := Encode(&buf, f); err != nil {
		t.Fatal(err)
	}
	if hl := buf.Bytes()[0]; (int(hl)+8)%8 != 0 {
		t.Fatalf("data not 8-byte aligned: header length %d", hl)
	}
	g, err := Decode(buf.Bytes(), "mem")
	if err != nil {
		t.Fatal(err)
	}
	if g.Metadata["k"] != "v" || g.Tensors["a.steps"].I64[0] != 42 || g.Tensors["a.weight"].F32[2] != 3.5 {
		t.Fatalf("round trip lost data: %+v", g)
	}
	if len(g.Tensors["empty"].F32) != 0 || len(g.Tensors["empty"].Shape) != 2 {
		t.Fatalf("empty tensor: %+v", g.Tensors["empty"])
	}
}

func TestHalfPrecisionWidening(t *testing.T) {
	cases := map[uint16]float32{0x3c00: 1, 0xc000: -2, 0x0000: 0, 0x3555: 0.333251953125, 0x0001: 5.960464477539063e-08, 0x7bff: 65504}
	for h, want := range cases {
		if got := halfToFloat(h); got != want {
			t.Errorf("half %#04x = %v, want %v", h, got, want)
		}
	}
}

func TestRejectsBadFiles(t *testing.T) {
	var buf bytes.Buffer
	Encode(&buf, File{Tensors: map[string]Tensor{"x": {Shape: []int64{4}, F32: []float32{1, 2, 3, 4}}}})
	good := buf.Bytes()
	bad := map[string][]byte{
		"short":        good[:5],
		"huge header":  append([]byte{0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x7f}, good[8:]...),
		"truncated":    good[:len(good)-4],
		"bad json":     append(append([]byte{}, good[:8]...), bytes.Repeat([]byte{'{'}, len(good)-8)...),
		"wrong values": nil,
	}
	for name, data := range bad {
		if data == nil {
			continue
		}
		if _, err := Decode(data, "file.safetensors"); err == nil {
			t.Errorf("%s: accepted", name)
		}
	}
	if err := Encode(&bytes.Buffer{}, File{Tensors: map[string]Tensor{"x": {Shape: []int64{3}, F32: []float32{1}}}}); err == nil {
		t.Error("encode accepted 1 value for 3 elements")
	}
}

func TestChecksumDetectsDamagedData(t *testing.T) {
	var buf bytes.Buffer
	if err := Encode(&buf, File{Tensors: map[string]Tensor{"w": {Shape: []int64{4}, F32: []float32{1, 2, 3, 4}}}}); err != nil {
		t.Fatal(err)
	}
	data := buf.Bytes()
	if _, err := Decode(data, "ok.safetensors"); err != nil {
		t.Fatal(err)
	}
	damaged := append([]byte{}, data...)
	damaged[len(damaged)-2] ^= 0x10 // one bit inside the last float
	_, err := Decode(damaged, "rot.safetensors")
	if err == nil || !strings.Contains(err.Error(), "rot.safetensors") || !strings.Contains(err.Error(), "checksum") {
		t.Fatalf("a flipped data bit gave %v", err)
	}
}
