package perceptual

import (
	"fmt"

	"github.com/maddr-project/maddr/torch"
)

// DefaultTargetCacheMiB bounds a TargetCache unless configured otherwise: the
// paper's 648 training images at 64x64 need 648 x 384 KiB = 243 MiB of
// float32 features (r32 256x16x16 plus r42 512x8x8 per image), 122 MiB as
// float16, the default storage; the bound leaves room for either.
const DefaultTargetCacheMiB = 256

// TargetCache keeps the VGG features (r32, r42) of training targets between
// epochs. Without augmentation and outside mixup the target of a sample is
// the same image every epoch, so its features are too, and the target-side
// VGG forward (about a quarter of a DPA step's arithmetic) need not be
// repeated. Samples are identified by the caller (the loader's index); the
// cache never looks at pixel values, so a caller must only pass ids for
// images that are exactly the sample's stored input.
//
// Entries are stored until the byte limit is reached and never evicted: with
// shuffled epochs every image is equally likely to come back, so replacing
// one entry by another would cost a forward pass and gain nothing.
type TargetCache struct {
	vgg     *VGG
	limit   int64
	storage torch.DType
	used    int64
	entries map[int][2]*torch.Tensor
	// Hits and Misses count images served from the cache and computed.
	Hits, Misses int
}

// NewTargetCache returns an empty cache of at most limitBytes of features
// stored as storage (Float32: the exact features; Float16: half the memory,
// rounded, with float32 kept for an image whose features exceed float16's range).
func NewTargetCache(v *VGG, limitBytes int64, storage torch.DType) (*TargetCache, error) {
	switch storage {
	case torch.Float32, torch.Float16:
	default:
		return nil, fmt.Errorf("perceptual: target feature cache cannot store %v (float32 or float16)", storage)
	}
	if limitBytes < 0 {
		return nil, fmt.Errorf("perceptual: target feature cache limit %d bytes is negative", limitBytes)
	}
	return &TargetCache{vgg: v, limit: limitBytes, storage: storage, entries: map[int][2]*torch.Tensor{}}, nil
}

// ParseStorage maps "float16" (or "", the default) and "float32" to a
// dtype. float16 is the default because it halves the cache (the paper's 648
// images at 64x64: 122 instead of 243 MiB, the difference between DPA
// training above and at PyTorch's peak memory) while its 11-bit mantissa
// moves the perceptual loss by ~1e-5 relative, far inside the 1e-3 that
// cached features may change it; float32 keeps the losses bit-identical to
// an uncached run. bfloat16 is refused: its 8-bit mantissa moved the loss by
// 3% relative in the package tests.
func ParseStorage(name string) (torch.DType, error) {
	switch name {
	case "float32", "fp32":
		return torch.Float32, nil
	case "", "float16", "fp16":
		return torch.Float16, nil
	case "bfloat16", "bf16":
		return 0, fmt.Errorf("perceptual: bfloat16 storage of target features changes the perceptual loss by ~3%% relative; " +
			"use float16 (half the memory, ~1e-5 relative) or float32 (exact)")
	}
	return 0, fmt.Errorf("perceptual: unknown feature storage %q (float32 or float16)", name)
}

// Len is the number of cached images; Bytes their features' size.
func (c *TargetCache) Len() int     { return len(c.entries) }
func (c *TargetCache) Bytes() int64 { return c.used }

// Storage is the element type of the cached features.
func (c *TargetCache) Storage() torch.DType { return c.storage }

// Free releases every cached tensor; the cache stays usable (empty).
func (c *TargetCache) Free() {
	for id, e := range c.entries {
		e[0].Free()
		e[1].Free()
		delete(c.entries, id)
	}
	c.used = 0
}

// Features returns the target features of the batch x (B x 1 x H x W), whose
// image j is sample ids[j]: cached ones are read back, the others computed
// (under NoGrad, on the sub-batch of missing images) and stored while the
// limit allows. The results are float32, channels-last like VGG.Features'
// results, and belong to s.
func (c *TargetCache) Features(s *torch.Scope, x *torch.Tensor, ids []int) (r32, r42 *torch.Tensor, err error) {
	if err := x.Err(); err != nil {
		return nil, nil, err
	}
	n := int(x.Size(0))
	if len(ids) != n {
		return nil, nil, fmt.Errorf("perceptual: target feature cache: %d sample ids for a batch of %d images", len(ids), n)
	}
	var missing []int64
	for j, id := range ids {
		if _, ok := c.entries[id]; !ok {
			missing = append(missing, int64(j))
		}
	}
	err = torch.NoGrad(func() error {
		return torch.Run(func(tmp *torch.Scope) error {
			var f32, f42 *torch.Tensor
			if len(missing) > 0 {
				in := tmp.AliasIn(x)
				if len(missing) < n {
					in = in.IndexSelect(0, tmp.Adopt(torch.FromInt64(missing, int64(len(missing)))))
				}
				f32, f42 = c.vgg.Features(in)
				if err := f42.Err(); err != nil {
					return err
				}
			}
			parts := [2][]*torch.Tensor{make([]*torch.Tensor, n), make([]*torch.Tensor, n)}
			next := int64(0)
			for j, id := range ids {
				if e, ok := c.entries[id]; ok {
					for l := range 2 {
						parts[l][j] = e[l]
						if e[l].DType() != torch.Float32 {
							parts[l][j] = tmp.Adopt(e[l].To(torch.Float32))
						}
					}
					c.Hits++
					continue
				}
				c.Misses++
				fresh := [2]*torch.Tensor{f32.Narrow(0, next, 1), f42.Narrow(0, next, 1)}
				next++
				parts[0][j], parts[1][j] = fresh[0], fresh[1]
				if err := c.store(tmp, id, fresh); err != nil {
					return err
				}
			}
			for l, out := range []**torch.Tensor{&r32, &r42} {
				// Cached entries sit in no scope, so the joined batch is
				// adopted explicitly; channels-last as VGG.Features returns,
				// so the loss reduces in the same order either way.
				joined := tmp.Adopt(torch.Cat(parts[l], 0))
				*out = s.Adopt(tmp.Adopt(joined.ContiguousAs(torch.ChannelsLast)))
				if err := (*out).Err(); err != nil {
					return err
				}
			}
			return nil
		})
	})
	if err != nil {
		return nil, nil, fmt.Errorf("perceptual: target features: %w", err)
	}
	return r32, r42, nil
}

// store copies one image's features into the cache when they fit. The copies
// leave tmp (a root scope), so they live until Free.
func (c *TargetCache) store(tmp *torch.Scope, id int, fresh [2]*torch.Tensor) error {
	storage := c.storage
	if storage == torch.Float16 {
		// Features beyond float16's range (65504) would come back infinite.
		for _, f := range fresh {
			peak, err := f.Abs().Max().Item()
			if err != nil {
				return err
			}
			if peak > 6e4 {
				storage = torch.Float32
			}
		}
	}
	size := (fresh[0].Numel() + fresh[1].Numel()) * int64(elementBytes(storage))
	if c.used+size > c.limit {
		return nil
	}
	var kept [2]*torch.Tensor
	for l, f := range fresh {
		// A copy, never a view: a view would keep the whole batch alive.
		var t *torch.Tensor
		if storage == torch.Float32 {
			t = f.Clone()
		} else {
			t = f.To(storage)
		}
		if err := t.Err(); err != nil {
			return err
		}
		kept[l] = tmp.Keep(t)
	}
	c.entries[id] = kept
	c.used += size
	return nil
}

func elementBytes(d torch.DType) int {
	if d == torch.Float32 {
		return 4
	}
	return 2
}
