// Package infer is the one place a network is applied to images: images in
// (preprocessed network inputs), per-image scores, anomaly maps, organ and
// modality head probabilities and latent codes out, computed without
// gradients in evaluation mode and in batches whose make-up is fixed by the
// arrangement the caller picks, never by what else happens to be scored.
//
// The arrangement decides the last bits of a score (libtorch's kernels
// treat a row differently by its position in the batch, by a float32 ulp),
// so each caller keeps the one its numbers were always computed with:
//   - Stream: a loader's batches in sample order (evaluation, training's
//     validation curve, an experiment cell);
//   - InOrder: the same for inputs already in memory (an experiment cell's
//     heat maps and latent codes);
//   - Slotted: fixed-size batches in which an image's position comes from
//     a hash of its pixels, so it scores the same alone, in a shard or in a
//     whole archive ('maddr score', 'maddr serve', the watcher).
//
// The package sits just above modelfile and loader: evaluate, score,
// experiment and the commands call it; it calls none of them.
package infer

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"hash/fnv"
	"math"
	"runtime"

	"github.com/maddr-project/maddr/loader"
	"github.com/maddr-project/maddr/maddr"
	"github.com/maddr-project/maddr/modelfile"
	"github.com/maddr-project/maddr/torch"
)

// DefaultBatchSize is the number of images per forward pass unless a caller
// sets another.
const DefaultBatchSize = 32

// Output selects what a pass computes besides nothing: each costs a forward
// pass of its own through (part of) the network.
type Output uint8

const (
	// Scores: the baseline's per-image anomaly score, at the model's precision.
	Scores Output = 1 << iota
	// Maps: the per-pixel anomaly map (side x side) of every image.
	Maps
	// Heads: the organ and modality probabilities of the MADDR heads the
	// model has (none for a baseline-only model).
	Heads
	// Latents: the encoder's latent code z of every image, flattened.
	Latents
)

// Results are per-image outputs, parallel to the inputs; a slice is nil
// when its output was not asked for (or, for the heads, the model lacks the
// head). A score is NaN for an image a loader skipped.
type Results struct {
	Scores          []float64
	Maps            [][]float32
	Organ, Modality [][]float32
	Latents         [][]float32
}

// Scorer is the least a network must do to be run here: score a batch. A
// loaded model file is one (at its chosen precision); so is a bare baseline,
// which training's validation scores between iterations.
type Scorer interface {
	Score(x *torch.Tensor) *torch.Tensor
}

// Engine applies one network. It holds no state between calls besides its
// settings, but a network must not run two passes at once: callers that
// share an Engine between goroutines serialise their calls.
type Engine struct {
	scorer Scorer
	// fw gives maps, heads and latents; nil for a bare baseline (scores only).
	fw *maddr.Framework
	// side is the network's input side in pixels.
	side      int
	batchSize int
}

// New returns the engine of a loaded model with DefaultBatchSize.
func New(m *modelfile.Model) *Engine {
	return &Engine{scorer: m, fw: m.Framework, side: m.Manifest.Preprocess.Size, batchSize: DefaultBatchSize}
}

// ForScorer returns an engine that only scores, for a network that is no
// model file yet (a baseline during training); side is its input side.
func ForScorer(s Scorer, side int) *Engine {
	return &Engine{scorer: s, side: side, batchSize: DefaultBatchSize}
}

// WithBatchSize returns a copy of e that runs n images per pass (n <= 0
// keeps e's).
func (e *Engine) WithBatchSize(n int) *Engine {
	c := *e
	if n > 0 {
		c.batchSize = n
	}
	return &c
}

// BatchSize is the number of images per pass of InOrder and Slotted.
func (e *Engine) BatchSize() int { return e.batchSize }

// newResults allocates the outputs asked for, n images each.
func (e *Engine) newResults(n int, want Output) Results {
	var r Results
	if want&Scores != 0 {
		r.Scores = make([]float64, n)
		for i := range r.Scores {
			r.Scores[i] = math.NaN()
		}
	}
	if want&Maps != 0 {
		r.Maps = make([][]float32, n)
	}
	if want&Heads != 0 && e.fw != nil {
		if e.fw.HasOrganHead() && !e.fw.Config.ReproduceLabelBug {
			r.Organ = make([][]float32, n)
		}
		if e.fw.HasModalityHead() {
			r.Modality = make([][]float32, n)
		}
	}
	if want&Latents != 0 {
		r.Latents = make([][]float32, n)
	}
	return r
}

// Forward runs one pass over the n images in x (n x side x side values,
// image-major) and stores image j's outputs at index[j] of into; index
// entries < 0 are padding whose outputs are dropped.
func (e *Engine) Forward(x []float32, index []int, into *Results) error {
	n := len(index)
	if len(x) != n*e.side*e.side {
		return fmt.Errorf("inference: %d values for %d images of %dx%d", len(x), n, e.side, e.side)
	}
	if e.fw == nil && (into.Maps != nil || into.Organ != nil || into.Modality != nil || into.Latents != nil) {
		return errors.New("inference: a bare baseline gives scores only")
	}
	return torch.NoGrad(func() error {
		return torch.Run(func(sc *torch.Scope) error {
			xt := sc.Adopt(torch.FromFloat32(x, int64(n), 1, int64(e.side), int64(e.side)))
			if into.Scores != nil {
				if err := e.scores(sc, xt, index, into.Scores); err != nil {
					return err
				}
			}
			if into.Organ != nil || into.Modality != nil {
				if err := e.heads(xt, index, into); err != nil {
					return err
				}
			}
			if into.Maps != nil {
				if err := e.maps(sc, xt, index, into.Maps); err != nil {
					return err
				}
			}
			if into.Latents != nil {
				return e.latents(sc, xt, index, into.Latents)
			}
			return nil
		})
	})
}

func (e *Engine) scores(sc *torch.Scope, x *torch.Tensor, index []int, into []float64) error {
	v, err := sc.Adopt(e.scorer.Score(x)).Float32s()
	if err != nil {
		return fmt.Errorf("scoring: %w", err)
	}
	for j, k := range index {
		if k >= 0 {
			into[k] = float64(v[j])
		}
	}
	return nil
}

func (e *Engine) heads(x *torch.Tensor, index []int, into *Results) error {
	pred, err := e.fw.Classify(x)
	if err != nil {
		return fmt.Errorf("classifying organ and modality: %w", err)
	}
	for j, k := range index {
		if k < 0 {
			continue
		}
		if into.Organ != nil {
			into.Organ[k] = pred.Organ[j]
		}
		if into.Modality != nil {
			into.Modality[k] = pred.Modality[j]
		}
	}
	return nil
}

func (e *Engine) maps(sc *torch.Scope, x *torch.Tensor, index []int, into [][]float32) error {
	m, err := sc.Adopt(e.fw.Base.AnomalyMap(x)).Float32s()
	if err != nil {
		return fmt.Errorf("anomaly map: %w", err)
	}
	if len(m) != len(index)*e.side*e.side {
		return fmt.Errorf("%s's anomaly map has %d values for %d images of %dx%d", e.fw.Base.Name(), len(m), len(index), e.side, e.side)
	}
	return split(m, index, into)
}

func (e *Engine) latents(sc *torch.Scope, x *torch.Tensor, index []int, into [][]float32) error {
	z := sc.Adopt(e.fw.Base.Latent(x, false))
	v, err := z.Reshape(int64(len(index)), -1).Float32s()
	if err != nil {
		return fmt.Errorf("latent codes: %w", err)
	}
	return split(v, index, into)
}

// split copies row j of the image-major values v to into[index[j]].
func split(v []float32, index []int, into [][]float32) error {
	per := len(v) / len(index)
	for j, k := range index {
		if k >= 0 {
			into[k] = append([]float32(nil), v[j*per:(j+1)*per]...)
		}
	}
	return nil
}

// InOrder runs inputs (each side x side) in passes of BatchSize images in
// their order, the last pass short.
func (e *Engine) InOrder(ctx context.Context, inputs [][]float32, want Output) (Results, error) {
	out := e.newResults(len(inputs), want)
	pixels := e.side * e.side
	for start := 0; start < len(inputs); start += e.batchSize {
		if err := ctx.Err(); err != nil {
			return out, err
		}
		end := min(start+e.batchSize, len(inputs))
		x := make([]float32, 0, (end-start)*pixels)
		index := make([]int, 0, end-start)
		for k := start; k < end; k++ {
			x = append(x, inputs[k]...)
			index = append(index, k)
		}
		if err := e.Forward(x, index, &out); err != nil {
			return out, err
		}
	}
	return out, nil
}

// Stream runs every sample of ld in the loader's evaluation batches (sample
// order, the loader's batch size); a sample the loader skipped scores NaN.
func (e *Engine) Stream(ctx context.Context, ld *loader.Loader, want Output) (Results, error) {
	out := e.newResults(ld.Len(), want)
	// One OS thread drives libtorch while scoring (see package torch, Threads).
	runtime.LockOSThread()
	defer runtime.UnlockOSThread()
	for batch, err := range ld.Eval(ctx) {
		if err != nil {
			return out, err
		}
		if err := e.Forward(batch.X, batch.Index, &out); err != nil {
			return out, err
		}
	}
	return out, nil
}

// SlotOf is the batch position of an input: a hash of its pixels, so an
// image always takes the same position whatever else is scored with it.
// libtorch's CPU kernels give a row the same numbers whatever its neighbours
// are, but not whatever its position (GEMM handles row blocks differently,
// by a float32 ulp); a fixed batch size and a fixed position make every
// output reproducible bit for bit: alone, in a shard or in a whole archive.
func SlotOf(v []float32, batchSize int) int {
	h := fnv.New64a()
	var buf [4]byte
	for _, f := range v {
		binary.LittleEndian.PutUint32(buf[:], math.Float32bits(f))
		h.Write(buf[:])
	}
	return int(h.Sum64() % uint64(batchSize))
}

// Slotted runs inputs in passes of exactly BatchSize images, each input at
// its own slot (see SlotOf); positions left over hold blank images.
func (e *Engine) Slotted(ctx context.Context, inputs [][]float32, want Output) (Results, error) {
	out := e.newResults(len(inputs), want)
	pixels := e.side * e.side
	data := make([]float32, e.batchSize*pixels)
	for _, row := range e.pack(inputs) {
		if err := ctx.Err(); err != nil {
			return out, err
		}
		clear(data)
		for pos, k := range row {
			if k >= 0 {
				copy(data[pos*pixels:], inputs[k])
			}
		}
		if err := e.Forward(data, row, &out); err != nil {
			return out, err
		}
	}
	return out, nil
}

// pack assigns inputs to passes: the j-th input wanting slot p goes to pass
// j at position p; -1 marks a blank position.
func (e *Engine) pack(inputs [][]float32) [][]int {
	used := make([]int, e.batchSize)
	var passes [][]int
	for k, v := range inputs {
		p := SlotOf(v, e.batchSize)
		if used[p] == len(passes) {
			row := make([]int, e.batchSize)
			for i := range row {
				row[i] = -1
			}
			passes = append(passes, row)
		}
		passes[used[p]][p] = k
		used[p]++
	}
	return passes
}
