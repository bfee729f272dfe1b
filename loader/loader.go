// Package loader feeds samples to training and evaluation: a worker pool
// decodes, preprocesses and (for training) augments images in parallel, keeps
// preprocessed images in a memory cache, and hands out batches as plain Go
// slices, prepared ahead of the consumer.
//
// Results never depend on scheduling: the shuffle of an epoch comes from
// (Seed, epoch) and the augmentation of a sample from (Seed, epoch, sample
// index), so any worker count gives the same batches.
package loader

import (
	"context"
	"errors"
	"fmt"
	"iter"
	"math/rand/v2"
	"runtime"
	"sort"
	"strings"
	"sync"

	"github.com/maddr-project/maddr/augment"
	"github.com/maddr-project/maddr/dataset"
	"github.com/maddr-project/maddr/medimg"
	"github.com/maddr-project/maddr/preprocess"
)

// Transform turns a decoded image into Size*Size network input values.
type Transform func(img medimg.Image, s dataset.Sample) ([]float32, error)

// Augment returns a randomly altered copy of a size x size input.
type Augment func(x []float32, size int, s dataset.Sample, rng *rand.Rand) []float32

// Preprocess is the Transform of a preprocess configuration (the organ picks
// the CT window).
func Preprocess(c preprocess.Config) Transform {
	return func(img medimg.Image, s dataset.Sample) ([]float32, error) { return c.Apply(img, s.Organ) }
}

// Augmentation is the Augment of an augment configuration, or nil when it
// changes nothing.
func Augmentation(c augment.Config) Augment {
	if !c.Enabled() {
		return nil
	}
	return func(x []float32, size int, s dataset.Sample, rng *rand.Rand) []float32 {
		return c.Apply(x, size, size, s.Modality, rng)
	}
}

// DefaultCacheBytes is the cache size when Config.CacheBytes is 0: the
// paper's three training sets at 64x64 need about 11 MB, full LiTS
// (~58 000 slices) about 1 GB.
const DefaultCacheBytes = 1 << 30

// Config configures a Loader.
type Config struct {
	// Size is the side of Transform's output; Transform is required.
	Size      int
	Transform Transform
	// Augment is applied to training batches only; nil disables it.
	Augment Augment

	BatchSize int
	// Workers decoding in parallel; 0 means runtime.NumCPU().
	Workers int
	// CacheBytes bounds the memory of cached preprocessed images; 0 means
	// DefaultCacheBytes, negative disables the cache. Images are cached first
	// come, first kept: with reshuffled epochs evicting old entries would not
	// raise the hit rate, only churn memory.
	CacheBytes int64
	// Seed drives shuffling and augmentation.
	Seed uint64
	// DropLast drops the last incomplete batch of a training epoch.
	DropLast bool
	// Prefetch is the number of batches prepared ahead; 0 means 2.
	Prefetch int

	// Vocabs fixes the class order; empty vocabularies are built from the
	// samples (dataset.BuildVocabs).
	Vocabs dataset.Vocabs

	// Lazy skips the up-front pass that decodes every sample once, reports
	// all bad files together and fills the cache. Bad files then end
	// iteration with an error when they are reached.
	Lazy bool
	// SkipBad leaves bad files out (logging them through Logf) instead of
	// failing with the list of them.
	SkipBad bool
	Logf    func(format string, args ...any)
}

// Batch is a set of samples ready for the network.
type Batch struct {
	X    []float32 // Len()*Size*Size values, sample-major
	Size int
	// Class indices in the loader's vocabularies and the labels
	// (0 normal, 1 abnormal).
	Organ, Modality, Label []int64
	Group                  []int
	// Index is each sample's position in Loader.Samples().
	Index []int
	Epoch int
}

// Len is the number of samples in the batch.
func (b Batch) Len() int { return len(b.Index) }

// Loader hands out batches of a fixed list of samples.
type Loader struct {
	cfg     Config
	samples []dataset.Sample
	vocabs  dataset.Vocabs
	organ   []int64
	modal   []int64
	group   []int
	reader  *dataset.Reader
	cache   *cache
}

// New validates the configuration, builds the vocabularies and, unless
// cfg.Lazy, decodes every sample once (in parallel), so that all bad files
// are reported together before any training starts.
func New(ctx context.Context, samples []dataset.Sample, cfg Config) (*Loader, error) {
	if cfg.Transform == nil {
		return nil, errors.New("loader: no Transform")
	}
	if cfg.Size <= 0 {
		return nil, fmt.Errorf("loader: size %d must be positive", cfg.Size)
	}
	if cfg.BatchSize <= 0 {
		return nil, fmt.Errorf("loader: batch size %d must be positive", cfg.BatchSize)
	}
	if cfg.Workers <= 0 {
		cfg.Workers = runtime.NumCPU()
	}
	if cfg.Prefetch <= 0 {
		cfg.Prefetch = 2
	}
	if cfg.CacheBytes == 0 {
		cfg.CacheBytes = DefaultCacheBytes
	}
	if len(samples) == 0 {
		return nil, errors.New("loader: no samples")
	}
	l := &Loader{cfg: cfg, samples: samples, reader: &dataset.Reader{MaxOpen: 2 * cfg.Workers},
		cache: newCache(cfg.CacheBytes)}
	if !cfg.Lazy {
		if err := l.verify(ctx); err != nil {
			return nil, err
		}
	}
	if len(l.samples) == 0 {
		return nil, errors.New("loader: every sample was bad")
	}
	var err error
	if l.vocabs, err = dataset.BuildVocabs(l.samples, cfg.Vocabs); err != nil {
		return nil, fmt.Errorf("loader: %w", err)
	}
	for _, s := range l.samples {
		o, _ := l.vocabs.Organ.Index(s.Organ)
		m, _ := l.vocabs.Modality.Index(s.Modality)
		g, _ := l.vocabs.Group.Index(s.Group)
		l.organ = append(l.organ, int64(o))
		l.modal = append(l.modal, int64(m))
		l.group = append(l.group, g)
	}
	return l, nil
}

// verify decodes every sample, keeping results in the cache, and reports
// or drops the bad ones.
func (l *Loader) verify(ctx context.Context) error {
	errs := make([]error, len(l.samples))
	l.parallel(ctx, len(l.samples), func(i int) { _, errs[i] = l.input(i) })
	if err := ctx.Err(); err != nil {
		return err
	}
	var problems []dataset.Problem
	var bad []int
	for i, err := range errs {
		if err != nil {
			problems = append(problems, dataset.Problem{Path: l.samples[i].Where(), Err: err})
			bad = append(bad, i)
		}
	}
	opts := dataset.Options{SkipBad: l.cfg.SkipBad, Logf: l.cfg.Logf}
	if err := opts.Report(problems); err != nil {
		return err
	}
	if len(bad) == 0 {
		return nil
	}
	// Sample indices shift when bad samples go, so the cache (keyed by
	// index) is rebuilt from the surviving entries.
	keep := make([]dataset.Sample, 0, len(l.samples)-len(bad))
	old := l.cache
	l.cache = newCache(l.cfg.CacheBytes)
	b := 0
	for i, s := range l.samples {
		if b < len(bad) && bad[b] == i {
			b++
			continue
		}
		if x, ok := old.get(i); ok {
			l.cache.put(len(keep), x)
		}
		keep = append(keep, s)
	}
	l.samples = keep
	return nil
}

// parallel runs fn(0..n-1) on the workers and waits.
func (l *Loader) parallel(ctx context.Context, n int, fn func(i int)) {
	next := make(chan int)
	var wg sync.WaitGroup
	for w := 0; w < l.cfg.Workers; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range next {
				fn(i)
			}
		}()
	}
	for i := 0; i < n && ctx.Err() == nil; i++ {
		next <- i
	}
	close(next)
	wg.Wait()
}

// Samples returns the samples in index order (bad ones removed).
func (l *Loader) Samples() []dataset.Sample { return l.samples }

// Vocabs returns the class vocabularies used for the batch indices.
func (l *Loader) Vocabs() dataset.Vocabs { return l.vocabs }

// Len is the number of samples.
func (l *Loader) Len() int { return len(l.samples) }

// Size is the side of the network input.
func (l *Loader) Size() int { return l.cfg.Size }

// CacheUsage returns the bytes and number of images held in the cache.
func (l *Loader) CacheUsage() (bytes int64, images int) { return l.cache.usage() }

// Close releases open volumes.
func (l *Loader) Close() error { return l.reader.Close() }

// Input returns the preprocessed (not augmented) input of sample i. The
// returned slice may be shared with the cache: do not modify it.
func (l *Loader) Input(i int) ([]float32, error) {
	if i < 0 || i >= len(l.samples) {
		return nil, fmt.Errorf("loader: sample %d out of range [0, %d)", i, len(l.samples))
	}
	return l.input(i)
}

func (l *Loader) input(i int) ([]float32, error) {
	if x, ok := l.cache.get(i); ok {
		return x, nil
	}
	s := l.samples[i]
	img, err := l.reader.Load(s)
	if err != nil {
		return nil, err
	}
	x, err := l.cfg.Transform(img, s)
	if err != nil {
		return nil, err
	}
	if len(x) != l.cfg.Size*l.cfg.Size {
		return nil, fmt.Errorf("%s: transform gave %d values, want %d", s.Where(), len(x), l.cfg.Size*l.cfg.Size)
	}
	l.cache.put(i, x)
	return x, nil
}

// sampleRand is the random source for augmenting sample i in an epoch; it
// depends on nothing else, so the worker that happens to run it is irrelevant.
func (l *Loader) sampleRand(epoch, i int) *rand.Rand {
	return rand.New(rand.NewPCG(l.cfg.Seed^0x6175676d656e74, uint64(epoch)<<32|uint64(uint32(i))))
}

// Order returns the sample order of a training epoch.
func (l *Loader) Order(epoch int) []int {
	rng := rand.New(rand.NewPCG(l.cfg.Seed, uint64(epoch)))
	return rng.Perm(len(l.samples))
}

// BatchesPerEpoch is the number of training batches in one epoch.
func (l *Loader) BatchesPerEpoch() int {
	n, b := len(l.samples), l.cfg.BatchSize
	if l.cfg.DropLast {
		return n / b
	}
	return (n + b - 1) / b
}

// plan yields the sample indices of successive batches with their epoch.
type plan func(yield func(indices []int, epoch int) bool)

// Train returns batches of shuffled, augmented epochs without end, starting
// at epoch `from` (to resume a run). Stop by breaking out of the loop.
func (l *Loader) Train(ctx context.Context, from int) iter.Seq2[Batch, error] {
	if l.BatchesPerEpoch() == 0 {
		return failed(fmt.Errorf("loader: %d samples make no batch of %d with drop-last", len(l.samples), l.cfg.BatchSize))
	}
	return l.run(ctx, true, func(yield func([]int, int) bool) {
		for e := from; ; e++ {
			if !l.epochPlan(e, yield) {
				return
			}
		}
	})
}

// Epoch returns the batches of one shuffled, augmented training epoch.
func (l *Loader) Epoch(ctx context.Context, epoch int) iter.Seq2[Batch, error] {
	return l.run(ctx, true, func(yield func([]int, int) bool) { l.epochPlan(epoch, yield) })
}

func (l *Loader) epochPlan(epoch int, yield func([]int, int) bool) bool {
	order := l.Order(epoch)
	b := l.cfg.BatchSize
	for k := 0; k < len(order); k += b {
		end := min(k+b, len(order))
		if end-k < b && l.cfg.DropLast {
			break
		}
		if !yield(order[k:end], epoch) {
			return false
		}
	}
	return true
}

// Eval returns every sample once, in index order, without augmentation;
// the last batch may be short.
func (l *Loader) Eval(ctx context.Context) iter.Seq2[Batch, error] {
	return l.run(ctx, false, func(yield func([]int, int) bool) {
		b := l.cfg.BatchSize
		for k := 0; k < len(l.samples); k += b {
			idx := make([]int, 0, b)
			for i := k; i < min(k+b, len(l.samples)); i++ {
				idx = append(idx, i)
			}
			if !yield(idx, 0) {
				return
			}
		}
	})
}

func failed(err error) iter.Seq2[Batch, error] {
	return func(yield func(Batch, error) bool) { yield(Batch{}, err) }
}

// pending is a batch being filled by the workers.
type pending struct {
	batch Batch
	left  int
	mu    sync.Mutex
	err   error
	done  chan struct{}
}

func (p *pending) finish(err error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if err != nil && p.err == nil {
		p.err = err
	}
	p.left--
	if p.left == 0 {
		close(p.done)
	}
}

type job struct {
	p   *pending
	pos int
}

// run executes a plan: a producer queues the samples of each batch for the
// workers and passes the batch on in order; the consumer waits for each
// batch to be complete. At most Prefetch batches wait ahead of the consumer.
func (l *Loader) run(parent context.Context, train bool, pl plan) iter.Seq2[Batch, error] {
	return func(yield func(Batch, error) bool) {
		ctx, cancel := context.WithCancel(parent)
		var wg sync.WaitGroup
		defer wg.Wait()
		defer cancel()
		jobs := make(chan job, l.cfg.BatchSize)
		ready := make(chan *pending, l.cfg.Prefetch)
		wg.Add(1)
		go func() {
			defer wg.Done()
			defer close(ready)
			defer close(jobs)
			pl(func(indices []int, epoch int) bool {
				p := l.newPending(indices, epoch)
				for pos := range indices {
					select {
					case jobs <- job{p, pos}:
					case <-ctx.Done():
						return false
					}
				}
				select {
				case ready <- p:
					return true
				case <-ctx.Done():
					return false
				}
			})
		}()
		for w := 0; w < l.cfg.Workers; w++ {
			wg.Add(1)
			go func() {
				defer wg.Done()
				for j := range jobs {
					if ctx.Err() != nil {
						j.p.finish(ctx.Err())
						continue
					}
					j.p.finish(l.fill(j.p, j.pos, train))
				}
			}()
		}
		for p := range ready {
			select {
			case <-p.done:
			case <-ctx.Done():
				yield(Batch{}, ctx.Err())
				return
			}
			if p.err != nil {
				yield(Batch{}, p.err)
				return
			}
			if !yield(p.batch, nil) {
				return
			}
		}
		if err := parent.Err(); err != nil {
			yield(Batch{}, err)
		}
	}
}

func (l *Loader) newPending(indices []int, epoch int) *pending {
	n := len(indices)
	b := Batch{
		X: make([]float32, n*l.cfg.Size*l.cfg.Size), Size: l.cfg.Size,
		Organ: make([]int64, n), Modality: make([]int64, n), Label: make([]int64, n),
		Group: make([]int, n), Index: append([]int(nil), indices...), Epoch: epoch,
	}
	for k, i := range indices {
		b.Organ[k], b.Modality[k], b.Group[k] = l.organ[i], l.modal[i], l.group[i]
		b.Label[k] = int64(l.samples[i].Label)
	}
	return &pending{batch: b, left: n, done: make(chan struct{})}
}

// fill writes sample pos of a pending batch into its slot of X (slots are
// disjoint, so workers need no lock).
func (l *Loader) fill(p *pending, pos int, train bool) error {
	i := p.batch.Index[pos]
	x, err := l.input(i)
	if err != nil {
		return err
	}
	pix := l.cfg.Size * l.cfg.Size
	if train && l.cfg.Augment != nil {
		x = l.cfg.Augment(x, l.cfg.Size, l.samples[i], l.sampleRand(p.batch.Epoch, i))
		if len(x) != pix {
			return fmt.Errorf("%s: augmentation gave %d values, want %d", l.samples[i].Where(), len(x), pix)
		}
	}
	copy(p.batch.X[pos*pix:(pos+1)*pix], x)
	return nil
}

// cache keeps preprocessed inputs by sample index up to a byte limit.
type cache struct {
	mu    sync.RWMutex
	limit int64
	bytes int64
	m     map[int][]float32
}

func newCache(limit int64) *cache { return &cache{limit: limit, m: map[int][]float32{}} }

func (c *cache) get(i int) ([]float32, bool) {
	c.mu.RLock()
	defer c.mu.RUnlock()
	x, ok := c.m[i]
	return x, ok
}

func (c *cache) put(i int, x []float32) {
	size := int64(4 * len(x))
	c.mu.Lock()
	defer c.mu.Unlock()
	if _, ok := c.m[i]; ok || c.bytes+size > c.limit {
		return
	}
	c.m[i] = x
	c.bytes += size
}

func (c *cache) usage() (int64, int) {
	c.mu.RLock()
	defer c.mu.RUnlock()
	return c.bytes, len(c.m)
}

// Describe summarises the samples per group, split and label, for logs.
func (l *Loader) Describe() string {
	var lines []string
	for _, c := range dataset.Counts(l.samples) {
		lines = append(lines, fmt.Sprintf("%s %s: %d normal, %d abnormal", c.Group, c.Split, c.Normal, c.Abnormal))
	}
	sort.Strings(lines)
	return strings.Join(lines, "\n")
}
