package perceptual

import (
	"math"
	"testing"

	"github.com/maddr-project/maddr/torch"
)

// The cache must return, for batches mixing cached and new images in any
// order, the features VGG computes for them: exactly with float32 storage;
// with float16 within its rounding, and exactly for an image whose features
// exceed float16's range (kept as float32).
func TestTargetCacheMixedBatchesMatchVGG(t *testing.T) {
	v := randomVGG(t)
	const side = 16
	inScope(t, func(s *torch.Scope) error {
		pool := randomImages(s, 11, 6, side)
		// Image 5 is scaled far beyond [-1, 1] so that its features leave float16's range.
		scale := make([]float32, 6)
		for i := range scale {
			scale[i] = 1
		}
		scale[5] = 1e8
		pool = s.Adopt(pool.Mul(s.Adopt(torch.FromFloat32(scale, 6, 1, 1, 1))))
		for _, storage := range []torch.DType{torch.Float32, torch.Float16} {
			c, err := NewTargetCache(v, 1<<30, storage)
			if err != nil {
				return err
			}
			for b, ids := range [][]int{{0, 1, 2, 3}, {5, 2, 4, 0}, {4, 5, 1, 3}, {3, 3, 0, 1}} {
				idx := make([]int64, len(ids))
				for j, id := range ids {
					idx[j] = int64(id)
				}
				x := s.Adopt(pool.IndexSelect(0, s.Adopt(torch.FromInt64(idx, int64(len(idx))))))
				got32, got42, err := c.Features(s, x, ids)
				if err != nil {
					return err
				}
				want32, want42 := featuresOf(t, v, x, torch.Float32)
				for l, pair := range [][2]*torch.Tensor{{got32, nil}, {got42, nil}} {
					got, err := pair[0].Float32s()
					if err != nil {
						return err
					}
					want := [][]float32{want32, want42}[l]
					per := len(want) / len(ids)
					for j, id := range ids {
						g, w := got[j*per:(j+1)*per], want[j*per:(j+1)*per]
						exact := storage == torch.Float32 || id == 5 || b == 0
						for i := range w {
							d := math.Abs(float64(g[i] - w[i]))
							if (exact && d != 0) || d > 1e-3*math.Abs(float64(w[i]))+1e-6 {
								t.Fatalf("%v storage, batch %d, image %d (sample %d), layer %d, value %d: %v, VGG gives %v",
									storage, b, j, id, l, i, g[i], w[i])
							}
						}
					}
				}
			}
			if c.Len() != 6 || c.Misses != 6 || c.Hits != 10 {
				t.Errorf("%v storage: %d cached, %d misses, %d hits; want 6, 6, 10", storage, c.Len(), c.Misses, c.Hits)
			}
			c.Free()
		}
		return nil
	})
}
