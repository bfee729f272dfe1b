package nifti

import "math"

// Affine returns the voxel-to-world (RAS+ millimetre) matrix the reader uses and where it came from:
// "sform" when sform_code > 0, else "qform" when qform_code > 0, else "pixdim" (NIfTI method 1: a diagonal of
// the voxel sizes, no rotation). A form whose rotation part is degenerate is skipped.
func (h *Header) Affine() (m [3][4]float64, source string) {
	if h.SformCode > 0 && usable(h.Srow) {
		return h.Srow, "sform"
	}
	if h.QformCode > 0 {
		if q := h.qformMatrix(); usable(q) {
			return q, "qform"
		}
	}
	for i := 0; i < 3; i++ {
		m[i][i] = positive(h.Pixdim[i+1])
	}
	return m, "pixdim"
}

func positive(v float64) float64 {
	if v > 0 && !math.IsInf(v, 0) {
		return v
	}
	return 1
}

// qformMatrix builds the quaternion rotation of nifti1.h (a is derived from b, c, d; pixdim[0] < 0 flips k).
func (h *Header) qformMatrix() (m [3][4]float64) {
	b, c, d := h.Quatern[0], h.Quatern[1], h.Quatern[2]
	a := 1 - (b*b + c*c + d*d)
	if a < 1e-7 {
		// Rounding pushed |(b,c,d)| to 1 or beyond: a 180 degree rotation.
		n := math.Sqrt(b*b + c*c + d*d)
		if n > 0 {
			b, c, d = b/n, c/n, d/n
		}
		a = 0
	} else {
		a = math.Sqrt(a)
	}
	r := [3][3]float64{
		{a*a + b*b - c*c - d*d, 2 * (b*c - a*d), 2 * (b*d + a*c)},
		{2 * (b*c + a*d), a*a + c*c - b*b - d*d, 2 * (c*d - a*b)},
		{2 * (b*d - a*c), 2 * (c*d + a*b), a*a + d*d - c*c - b*b},
	}
	qfac := 1.0
	if h.Pixdim[0] < 0 {
		qfac = -1
	}
	scale := [3]float64{positive(h.Pixdim[1]), positive(h.Pixdim[2]), qfac * positive(h.Pixdim[3])}
	for i := 0; i < 3; i++ {
		for j := 0; j < 3; j++ {
			m[i][j] = r[i][j] * scale[j]
		}
		m[i][3] = h.QOffset[i]
	}
	return m
}

func usable(m [3][4]float64) bool {
	for j := 0; j < 3; j++ {
		n := 0.0
		for i := 0; i < 3; i++ {
			if math.IsNaN(m[i][j]) || math.IsInf(m[i][j], 0) {
				return false
			}
			n += m[i][j] * m[i][j]
		}
		if n == 0 {
			return false
		}
	}
	return true
}

// axisMap says, for each world axis (0 = R, 1 = A, 2 = S), which voxel axis runs closest to it and whether the
// voxel index grows towards +R/+A/+S.
type axisMap struct {
	voxel    [3]int
	positive [3]bool
}

// mapAxes pairs voxel axes with world axes greedily by the largest direction cosine, so oblique volumes get the
// nearest permutation and every voxel axis is used exactly once.
func mapAxes(m [3][4]float64) axisMap {
	var cos [3][3]float64 // [world][voxel]
	for j := 0; j < 3; j++ {
		n := math.Sqrt(m[0][j]*m[0][j] + m[1][j]*m[1][j] + m[2][j]*m[2][j])
		for i := 0; i < 3; i++ {
			cos[i][j] = m[i][j] / n
		}
	}
	var am axisMap
	var worldUsed, voxelUsed [3]bool
	for step := 0; step < 3; step++ {
		bw, bv, best := -1, -1, -1.0
		for w := 0; w < 3; w++ {
			for v := 0; v < 3; v++ {
				if !worldUsed[w] && !voxelUsed[v] && math.Abs(cos[w][v]) > best {
					bw, bv, best = w, v, math.Abs(cos[w][v])
				}
			}
		}
		worldUsed[bw], voxelUsed[bv] = true, true
		am.voxel[bw] = bv
		am.positive[bw] = cos[bw][bv] >= 0
	}
	return am
}
