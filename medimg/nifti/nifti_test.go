package nifti

import (
	"encoding/binary"
	"errors"
	"fmt"
	"math"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"testing"
)

var allDatatypes = []int{DTUint8, DTInt8, DTInt16, DTUint16, DTInt32, DTUint32, DTInt64, DTUint64, DTFloat32, DTFloat64}

func signedType(dt int) bool {
	switch dt {
	case DTUint8, DTUint16, DTUint32, DTUint64:
		return false
	}
	return true
}

// TestValuesEveryEncoding writes the same 3x4x2 volume in every datatype, byte order, version and compression
// and checks the decoded canonical slices value by value (RAS sform: columns and rows come out reversed).
func TestValuesEveryEncoding(t *testing.T) {
	const nx, ny, nz = 3, 4, 2
	value := func(i, j, k int, signed bool) float64 {
		v := float64(i + 10*j + 30*k)
		if signed {
			v -= 40
		}
		return v
	}
	for _, dt := range allDatatypes {
		for _, bo := range []binary.ByteOrder{binary.LittleEndian, binary.BigEndian} {
			for _, version := range []int{1, 2} {
				for _, gz := range []bool{false, true} {
					name := fmt.Sprintf("%s_%v_v%d_gz%v", DatatypeName(dt), bo, version, gz)
					t.Run(name, func(t *testing.T) {
						s := spec{version: version, bo: bo, datatype: dt, dims: []int64{nx, ny, nz}, gz: gz,
							sformCode: 1, srow: [3][4]float64{{1, 0, 0, 0}, {0, 1, 0, 0}, {0, 0, 1, 0}}}
						for k := 0; k < nz; k++ {
							for j := 0; j < ny; j++ {
								for i := 0; i < nx; i++ {
									s.values = append(s.values, value(i, j, k, signedType(dt)))
								}
							}
						}
						v, err := decodeBytes(t, encode(t, s), name, Options{})
						if err != nil {
							t.Fatal(err)
						}
						defer v.Close()
						if v.Header.Version != version || v.Header.ByteOrder != bo || v.NumSlices() != nz {
							t.Fatalf("header: version %d order %v slices %d", v.Header.Version, v.Header.ByteOrder, v.NumSlices())
						}
						for k := 0; k < nz; k++ {
							sl, err := v.Slice(k)
							if err != nil {
								t.Fatal(err)
							}
							if sl.Width != nx || sl.Height != ny {
								t.Fatalf("slice %d is %dx%d", k, sl.Width, sl.Height)
							}
							for r := 0; r < ny; r++ {
								for c := 0; c < nx; c++ {
									want := float32(value(nx-1-c, ny-1-r, k, signedType(dt)))
									if got := sl.Pix[r*nx+c]; got != want {
										t.Fatalf("slice %d (%d,%d) = %v, want %v", k, r, c, got, want)
									}
								}
							}
						}
					})
				}
			}
		}
	}
}

// world is a test pattern over canonical RAS indices: no two voxels share a value, so any wrong flip or
// permutation shows.
func world(r, a, s int) float64 { return float64(r + 10*a + 100*s) }

// TestOrientation stores one physical pattern under different voxel orders and matrices; the canonical slices
// must be identical: slice k at S=k, row r at A=nA-1-r, column c at R=nR-1-c.
func TestOrientation(t *testing.T) {
	n := [3]int{3, 4, 5} // R, A, S extents
	type axis struct {
		world    int
		positive bool
	}
	cases := []struct {
		name   string
		axes   [3]axis // voxel axis -> world axis
		mutate func(s *spec, cols [3][3]float64)
		source string
	}{
		{"sform RAS", [3]axis{{0, true}, {1, true}, {2, true}}, useSform(0), "sform"},
		{"sform LPS", [3]axis{{0, false}, {1, false}, {2, true}}, useSform(0), "sform"},
		{"sform LPI", [3]axis{{0, false}, {1, false}, {2, false}}, useSform(0), "sform"},
		{"sform sagittal", [3]axis{{1, true}, {2, true}, {0, false}}, useSform(0), "sform"},
		{"sform coronal", [3]axis{{0, true}, {2, false}, {1, true}}, useSform(0), "sform"},
		{"sform oblique LPS", [3]axis{{0, false}, {1, false}, {2, true}}, useSform(0.3), "sform"},
		{"qform 180 about z", [3]axis{{0, false}, {1, false}, {2, true}}, func(s *spec, _ [3][3]float64) {
			s.qformCode, s.quatern = 1, [3]float64{0, 0, 1}
		}, "qform"},
		{"qform 180 about x, qfac -1", [3]axis{{0, true}, {1, false}, {2, true}}, func(s *spec, _ [3][3]float64) {
			s.qformCode, s.quatern, s.qfac = 1, [3]float64{1, 0, 0}, -1
		}, "qform"},
		{"sform wins over qform", [3]axis{{0, true}, {1, true}, {2, true}}, func(s *spec, cols [3][3]float64) {
			useSform(0)(s, cols)
			s.qformCode, s.quatern = 1, [3]float64{0, 0, 1}
		}, "sform"},
		{"no form: pixdim only", [3]axis{{0, true}, {1, true}, {2, true}}, func(*spec, [3][3]float64) {}, "pixdim"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			var dims [3]int
			var cols [3][3]float64 // [voxel axis][world axis]
			for a, ax := range tc.axes {
				dims[a] = n[ax.world]
				cols[a][ax.world] = 1
				if !ax.positive {
					cols[a][ax.world] = -1
				}
			}
			s := spec{version: 1, datatype: DTInt16, dims: []int64{int64(dims[0]), int64(dims[1]), int64(dims[2])}}
			for k := 0; k < dims[2]; k++ {
				for j := 0; j < dims[1]; j++ {
					for i := 0; i < dims[0]; i++ {
						var w [3]int
						for a, idx := range [3]int{i, j, k} {
							ax := tc.axes[a]
							if ax.positive {
								w[ax.world] = idx
							} else {
								w[ax.world] = n[ax.world] - 1 - idx
							}
						}
						s.values = append(s.values, world(w[0], w[1], w[2]))
					}
				}
			}
			tc.mutate(&s, cols)
			v, err := decodeBytes(t, encode(t, s), tc.name, Options{})
			if err != nil {
				t.Fatal(err)
			}
			if v.AffineSource != tc.source {
				t.Errorf("affine from %s, want %s", v.AffineSource, tc.source)
			}
			if v.NumSlices() != n[2] {
				t.Fatalf("%d slices, want %d", v.NumSlices(), n[2])
			}
			for k := 0; k < n[2]; k++ {
				sl, err := v.Slice(k)
				if err != nil {
					t.Fatal(err)
				}
				if sl.Width != n[0] || sl.Height != n[1] {
					t.Fatalf("slice is %dx%d, want %dx%d", sl.Width, sl.Height, n[0], n[1])
				}
				for r := 0; r < n[1]; r++ {
					for c := 0; c < n[0]; c++ {
						if got, want := sl.Pix[r*n[0]+c], float32(world(n[0]-1-c, n[1]-1-r, k)); got != want {
							t.Fatalf("slice %d row %d col %d = %v, want %v", k, r, c, got, want)
						}
					}
				}
			}
		})
	}
}

// useSform builds the sform from the voxel->world direction columns, adding an oblique tilt to the
// off-diagonal entries (smaller than the main direction, so the nearest axes stay the same).
func useSform(tilt float64) func(*spec, [3][3]float64) {
	return func(s *spec, cols [3][3]float64) {
		s.sformCode = 2
		for a := 0; a < 3; a++ {
			for w := 0; w < 3; w++ {
				s.srow[w][a] = 2 * cols[a][w] // 2 mm voxels
				if cols[a][w] == 0 {
					s.srow[w][a] = tilt
				}
			}
		}
	}
}

func TestTimePointsAndScaling(t *testing.T) {
	const nt = 3
	s := spec{version: 1, datatype: DTInt16, dims: []int64{2, 2, 1, nt}, slope: 2, inter: -1}
	for tp := 0; tp < nt; tp++ {
		for i := 0; i < 4; i++ {
			s.values = append(s.values, float64(100*tp+i))
		}
	}
	for _, gz := range []bool{false, true} {
		s.gz = gz
		b := encode(t, s)
		for tp := 0; tp < nt; tp++ {
			v, err := decodeBytes(t, b, "4d.nii", Options{TimePoint: tp})
			if err != nil {
				t.Fatal(err)
			}
			if v.NumVolumes() != nt {
				t.Fatalf("NumVolumes %d", v.NumVolumes())
			}
			sl, err := v.Slice(0)
			if err != nil {
				t.Fatal(err)
			}
			// pixdim-only view: columns and rows reversed.
			want := []float32{3, 2, 1, 0}
			for i := range want {
				want[i] = 2*(float32(100*tp)+want[i]) - 1
			}
			if fmt.Sprint(sl.Pix) != fmt.Sprint(want) || sl.Min != want[3] || sl.Max != want[0] {
				t.Fatalf("gz=%v t=%d: %v min %v max %v, want %v", gz, tp, sl.Pix, sl.Min, sl.Max, want)
			}
		}
		_, err := decodeBytes(t, b, "4d.nii", Options{TimePoint: nt})
		if err == nil || !strings.Contains(err.Error(), "time point 3 out of range") {
			t.Fatalf("time point past the end: %v", err)
		}
	}
	// slope 0 means "no scaling"
	s.slope, s.inter, s.gz = 0, 5, false
	v, err := decodeBytes(t, encode(t, s), "noscale.nii", Options{})
	if err != nil {
		t.Fatal(err)
	}
	sl, _ := v.Slice(0)
	if sl.Pix[0] != 3 {
		t.Fatalf("slope 0 scaled the data: %v", sl.Pix)
	}
}

func TestNaN(t *testing.T) {
	s := spec{version: 1, datatype: DTFloat32, dims: []int64{2, 2, 2}, values: []float64{0, 1, 2, 3, 4, 5, math.NaN(), 7}}
	b := encode(t, s)
	v, err := decodeBytes(t, b, "nan.nii", Options{})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := v.Slice(0); err != nil {
		t.Fatalf("slice 0 has no NaN: %v", err)
	}
	_, err = v.Slice(1)
	if !errors.Is(err, ErrNaN) || !strings.Contains(err.Error(), "nan.nii") || !strings.Contains(err.Error(), "slice 1") {
		t.Fatalf("NaN: %v", err)
	}
	v, _ = decodeBytes(t, b, "nan.nii", Options{NaN: NaNToZero})
	sl, err := v.Slice(1)
	if err != nil || sl.Pix[1] != 0 || sl.Max != 7 {
		t.Fatalf("NaNToZero: %v %v", sl.Pix, err)
	}
}

func TestBadInput(t *testing.T) {
	good := spec{version: 1, datatype: DTInt16, dims: []int64{4, 4, 4}, values: make([]float64, 64)}
	mod := func(f func(s *spec)) []byte {
		s := good
		f(&s)
		return encode(t, s)
	}
	gzHalf := mod(func(s *spec) { s.gz = true; s.values = make([]float64, 4096); s.dims = []int64{16, 16, 16} })
	gzHalf = gzHalf[:len(gzHalf)/2]
	garbage := make([]byte, 1000)
	for i := range garbage {
		garbage[i] = byte(i*7 + 3)
	}
	cases := []struct {
		name string
		data []byte
		want string
		is   error
	}{
		{"zero.nii", nil, "empty file", ErrNotNIfTI},
		{"garbage.nii", garbage, "not a NIfTI", ErrNotNIfTI},
		{"short-header.nii", mod(func(*spec) {})[:100], "header truncated", ErrCorrupt},
		{"truncated.nii", mod(func(s *spec) { s.truncateBy = 1 }), "declares 4x4x4 voxels of int16", ErrCorrupt},
		{"absurd.nii", mod(func(s *spec) { s.version = 2; s.dims = []int64{1 << 31, 1 << 31, 1} }), "2147483648x2147483648x1", ErrCorrupt},
		{"absurd.nii.gz", mod(func(s *spec) { s.gz = true; s.dims = []int64{32767, 32767, 32767} }), "more than", ErrCorrupt},
		{"half.nii.gz", gzHalf, "truncated", ErrCorrupt},
		{"complex.nii", mod(func(s *spec) { s.datatype = 32 }), "complex64", ErrUnsupported},
		{"rgb.nii", mod(func(s *spec) { s.datatype = 128; s.bitpixFix = 24 }), "rgb24", ErrUnsupported},
		{"bitpix.nii", mod(func(s *spec) { s.bitpixFix = 8 }), "bitpix 8", ErrCorrupt},
		{"nodims.nii", mod(func(s *spec) { s.dims = nil }), "dim[0]=0", ErrCorrupt},
		{"negdim.nii", mod(func(s *spec) { s.dims = []int64{4, -4, 4} }), "dim[2]=-4", ErrCorrupt},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			var before, after runtime.MemStats
			runtime.ReadMemStats(&before)
			_, err := decodeBytes(t, tc.data, tc.name, Options{})
			runtime.ReadMemStats(&after)
			if err == nil {
				t.Fatal("no error")
			}
			if !strings.Contains(err.Error(), tc.name) || !strings.Contains(err.Error(), tc.want) || !errors.Is(err, tc.is) {
				t.Fatalf("error %q: want the file name, %q and %v", err, tc.want, tc.is)
			}
			if grew := after.TotalAlloc - before.TotalAlloc; grew > 8<<20 {
				t.Errorf("allocated %d bytes before failing", grew)
			}
		})
	}
	// The pair header magic names the problem.
	b := mod(func(*spec) {})
	copy(b[344:], "ni1\x00")
	if _, err := decodeBytes(t, b, "pair.hdr", Options{}); !errors.Is(err, ErrUnsupported) || !strings.Contains(err.Error(), ".hdr/.img") {
		t.Fatalf("hdr/img pair: %v", err)
	}
}

// realDir finds testdata/real at the repository root, or skips.
func realDir(t *testing.T) string {
	t.Helper()
	dir, _ := os.Getwd()
	for {
		if _, err := os.Stat(filepath.Join(dir, "go.mod")); err == nil {
			break
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			t.Skip("repository root not found")
		}
		dir = parent
	}
	real := filepath.Join(dir, "testdata", "real")
	if _, err := os.Stat(real); err != nil {
		t.Skip("testdata/real is absent: run tools/fetch-fixtures.sh to fetch the real-image fixtures")
	}
	return real
}

// TestRealVolumes checks whole-file statistics (all slices, all time points) against DATA.md.
func TestRealVolumes(t *testing.T) {
	root := realDir(t)
	cases := []struct {
		file      string
		version   int
		shape     [3]int
		volumes   int
		min, max  float64 // NaN: not checked
		mean      float64
		bigEndian bool
	}{
		{"mricron/ch2.nii.gz", 1, [3]int{181, 217, 181}, 1, 0, 254, 44.612, false},
		{"mricron/inia19-t1-brain.nii.gz", 1, [3]int{168, 206, 128}, 1, math.NaN(), 383.176, 17.011, false},
		{"nibabel/anatomical.nii", 1, [3]int{33, 41, 25}, 1, -610, 30393, 8401.067, true},
		{"nibabel/functional.nii", 1, [3]int{17, 21, 3}, 20, 629.826, 5571.62, 3637.409, false},
		{"nibabel/example_nifti2.nii.gz", 2, [3]int{32, 20, 12}, 2, 46, 757, 450.964, false},
	}
	for _, tc := range cases {
		t.Run(tc.file, func(t *testing.T) {
			path := filepath.Join(root, tc.file)
			lo, hi, sum, count := math.Inf(1), math.Inf(-1), 0.0, 0
			for tp := 0; tp < tc.volumes; tp++ {
				v, err := Open(path, Options{TimePoint: tp})
				if err != nil {
					t.Fatal(err)
				}
				if v.Header.Version != tc.version || v.Shape() != tc.shape || v.NumVolumes() != tc.volumes ||
					(v.Header.ByteOrder == binary.BigEndian) != tc.bigEndian {
					t.Fatalf("header: v%d %v x%d %v", v.Header.Version, v.Shape(), v.NumVolumes(), v.Header.ByteOrder)
				}
				for k := 0; k < v.NumSlices(); k++ {
					s, err := v.Slice(k)
					if err != nil {
						t.Fatal(err)
					}
					for _, x := range s.Pix {
						sum += float64(x)
					}
					count += len(s.Pix)
					lo, hi = math.Min(lo, float64(s.Min)), math.Max(hi, float64(s.Max))
				}
				v.Close()
			}
			mean := sum / float64(count)
			t.Logf("%s: min %.3f max %.3f mean %.3f over %d voxels", tc.file, lo, hi, mean, count)
			near := func(got, want, tol float64) bool { return math.Abs(got-want) <= tol*math.Max(1, math.Abs(want)) }
			if !math.IsNaN(tc.min) && !near(lo, tc.min, 1e-5) {
				t.Errorf("min %v, want %v", lo, tc.min)
			}
			if !near(hi, tc.max, 1e-5) {
				t.Errorf("max %v, want %v", hi, tc.max)
			}
			if !near(mean, tc.mean, 1e-4) {
				t.Errorf("mean %v, want %v", mean, tc.mean)
			}
		})
	}
}
