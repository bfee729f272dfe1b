package nifti

import (
	"encoding/binary"
	"errors"
	"math"
	"strings"
	"testing"

	"github.com/maddr-project/maddr/reliability"
)

// niftiSeeds cover both versions and byte orders, gzip, every affine source
// (pixdim, qform, sform with the slices off the stored axis, which takes the
// whole-volume path), 4-D data, scaling and a NaN voxel.
func niftiSeeds(t testing.TB) map[string][]any {
	ramp := func(n int) []float64 {
		v := make([]float64, n)
		for i := range v {
			v[i] = float64(i%7) - 2
		}
		return v
	}
	sagittal := spec{version: 1, bo: binary.BigEndian, datatype: DTFloat32, dims: []int64{2, 3, 2}, values: ramp(12), sformCode: 1}
	sagittal.srow[2][0], sagittal.srow[0][1], sagittal.srow[1][2] = 2, 2, 2 // i -> S, j -> R, k -> A
	nan := spec{version: 1, datatype: DTFloat32, dims: []int64{2, 2, 1}, values: []float64{0, 1, math.NaN(), 3}}
	return map[string][]any{
		"v1-int16-pixdim":   {encode(t, spec{version: 1, datatype: DTInt16, dims: []int64{3, 4, 2}, values: ramp(24)})},
		"v1-be-sagittal":    {encode(t, sagittal)},
		"v2-float64-qform":  {encode(t, spec{version: 2, datatype: DTFloat64, dims: []int64{2, 2, 2}, values: ramp(8), qformCode: 1, quatern: [3]float64{0, 0, 1}, qfac: -1})},
		"v2-be-uint16":      {encode(t, spec{version: 2, bo: binary.BigEndian, datatype: DTUint16, dims: []int64{2, 1, 3}, values: []float64{0, 1, 2, 3, 65535, 9}})},
		"v1-gz-uint8-4d":    {encode(t, spec{version: 1, datatype: DTUint8, dims: []int64{2, 2, 1, 3}, values: ramp(12), gz: true})},
		"v1-int8-scaled":    {encode(t, spec{version: 1, datatype: DTInt8, dims: []int64{2, 2, 1}, values: []float64{-3, 0, 5, 127}, slope: 0.5, inter: -1024, calMin: -1000, calMax: 1000})},
		"v1-float32-nan":    {encode(t, nan)},
		"v1-gz-huge-dims":   {encode(t, spec{version: 1, datatype: DTInt16, dims: []int64{32767, 32767, 32767}, gz: true})},
		"v2-absurd-dims":    {encode(t, spec{version: 2, datatype: DTUint8, dims: []int64{1 << 31, 1 << 31, 1}})},
		"v1-truncated-data": {encode(t, spec{version: 1, datatype: DTInt32, dims: []int64{4, 4, 4}, values: make([]float64, 64), truncateBy: 3})},
	}
}

func TestNIfTIFuzzSeeds(t *testing.T) {
	reliability.CheckCorpus(t, "FuzzNIfTI", niftiSeeds(t))
}

// FuzzNIfTI checks that Decode and Slice never panic, that errors wrap the
// package's sentinels and name the file, that slices are consistent and hold
// only finite values, and that allocation stays within what the input can
// describe: a .nii.gz inflates at most about 1032 times, and each stored
// byte becomes at most a 4-byte float32 plus a copy of the raw bytes; 16 KiB
// per input byte covers reading two time points.
func FuzzNIfTI(f *testing.F) {
	for _, s := range niftiSeeds(f) {
		f.Add(s[0].([]byte))
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		before := reliability.Allocated()
		err := readNIfTI(t, data, 0)
		if err == nil {
			// The last time point takes the offset arithmetic to its end.
			v, _ := decodeBytes(t, data, "fuzz.nii", Options{})
			if n := v.NumVolumes(); n > 1 {
				err = readNIfTI(t, data, n-1)
			}
		}
		if grew := reliability.Allocated() - before; grew > reliability.AllocLimit(len(data), 16<<10) {
			t.Fatalf("decoding %d bytes allocated %d bytes", len(data), grew)
		}
		if err == nil {
			return
		}
		if !strings.Contains(err.Error(), "fuzz.nii") {
			t.Fatalf("error does not name the file: %v", err)
		}
		for _, s := range []error{ErrNotNIfTI, ErrUnsupported, ErrCorrupt, ErrNaN} {
			if errors.Is(err, s) {
				return
			}
		}
		t.Fatalf("error wraps none of the package's sentinels: %v", err)
	})
}

func readNIfTI(t *testing.T, data []byte, timePoint int) error {
	v, err := decodeBytes(t, data, "fuzz.nii", Options{TimePoint: timePoint})
	if err != nil {
		return err
	}
	defer v.Close()
	for k := 0; k < v.NumSlices(); k++ {
		s, err := v.Slice(k)
		if err != nil {
			return err
		}
		if s.Width <= 0 || s.Height <= 0 || len(s.Pix) != s.Width*s.Height || s.Min > s.Max {
			t.Fatalf("slice %d: %dx%d with %d values, range %v..%v", k, s.Width, s.Height, len(s.Pix), s.Min, s.Max)
		}
		for _, x := range s.Pix {
			if math.IsNaN(float64(x)) || math.IsInf(float64(x), 0) {
				t.Fatalf("slice %d holds %v", k, x)
			}
		}
	}
	return nil
}
