package bench

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"iter"
	"math"
	"math/rand/v2"
	"os"
	"time"

	"github.com/maddr-project/maddr/baselines"
	_ "github.com/maddr-project/maddr/baselines/all"
	"github.com/maddr-project/maddr/dataset"
	"github.com/maddr-project/maddr/loader"
	"github.com/maddr-project/maddr/maddr"
	"github.com/maddr-project/maddr/modelfile"
	"github.com/maddr-project/maddr/perceptual"
	"github.com/maddr-project/maddr/preprocess"
	"github.com/maddr-project/maddr/torch"
	"github.com/maddr-project/maddr/train"
)

// dpaOptions runs DPA with a randomly initialised VGG19 on both sides: no
// ImageNet weights can be fetched here, and the weights' values do not
// change the arithmetic. dpaNoCacheOptions also switches off the cache of
// target features, so every step runs the target's VGG forward.
var (
	dpaOptions        = json.RawMessage(`{"vgg_random_init": true}`)
	dpaNoCacheOptions = json.RawMessage(`{"vgg_random_init": true, "target_cache_mib": -1}`)
)

// pool is the training images of a case: uniform values in [-1, 1], drawn
// in shuffled epochs as the training loop draws them. Image i belongs to
// group i mod 3 (liver CT, lung CT, lung X-ray), as in the paper's mix.
type pool struct {
	data  []float32
	n     int
	pix   int
	rng   *rand.Rand
	order []int
	pos   int
}

func newPool(n, side int, seed uint64) *pool {
	rng := rand.New(rand.NewPCG(seed, 0x62656e6368))
	p := &pool{data: make([]float32, n*side*side), n: n, pix: side * side, rng: rng}
	for i := range p.data {
		p.data[i] = 2*rng.Float32() - 1
	}
	return p
}

// next returns a batch of b images (copied, as a loader batch is) and their indices.
func (p *pool) next(b int) ([]float32, []int) {
	if p.pos+b > len(p.order) {
		p.order, p.pos = p.rng.Perm(p.n), 0
	}
	idx := p.order[p.pos : p.pos+b]
	p.pos += b
	out := make([]float32, 0, b*p.pix)
	for _, i := range idx {
		out = append(out, p.data[i*p.pix:(i+1)*p.pix]...)
	}
	return out, idx
}

// Organs and modalities of the three groups.
var (
	groupOrgan    = [3]int64{0, 1, 1}
	groupModality = [3]int64{0, 0, 1}
)

func newBaseline(name string, p Params) (baselines.Baseline, error) {
	var raw json.RawMessage
	switch name {
	case "dpa":
		raw = dpaOptions
	case "dpa-nocache":
		name, raw = "dpa", dpaNoCacheOptions
	case "fanogan-encoder":
		// MADDR constrains f-AnoGAN's encoder, which trains in stage 2:
		// one WGAN iteration (a warm-up step) and stage 2 from then on.
		name, raw = "fanogan", json.RawMessage(`{"wgan_iters": 1}`)
		return baselines.New(name, baselines.Options{ImageSize: p.Size, Seed: 1, Raw: raw, Iterations: 1 + p.total()})
	}
	return baselines.New(name, baselines.Options{ImageSize: p.Size, Seed: 1, Raw: raw})
}

// cacheWarmup is the number of extra untimed steps a baseline that caches
// per-image results needs to reach its steady state: one epoch of the pool,
// after which every image has been seen (DPA's target features). A
// paper-length run spends 1 of its 16000 / 20 epochs there.
func cacheWarmup(b baselines.Baseline, p Params) int {
	if d, ok := b.(interface {
		TargetCache() *perceptual.TargetCache
	}); ok && d.TargetCache() != nil {
		return (p.Pool + p.Batch - 1) / p.Batch
	}
	return 0
}

// trainLoop runs p.total() training steps of fn on pool batches.
func trainLoop(p Params, tm *timer, fn func(s *torch.Scope, it int, x *torch.Tensor, idx []int) error) error {
	data := newPool(p.Pool, p.Size, 1)
	side := int64(p.Size)
	for it := 1; it <= p.total(); it++ {
		xs, idx := data.next(p.Batch)
		err := tm.Step(func() error {
			return torch.Run(func(s *torch.Scope) error {
				x := s.Adopt(torch.FromFloat32(xs, int64(p.Batch), 1, side, side))
				return fn(s, it, x, idx)
			})
		})
		if err != nil {
			return err
		}
	}
	return nil
}

func runTrain(name string) func(p Params, tm *timer) (string, error) {
	return func(p Params, tm *timer) (string, error) {
		b, err := newBaseline(name, p)
		if err != nil {
			return "", err
		}
		defer b.Store().Free()
		note := notes(b)
		if extra := cacheWarmup(b, p); extra > 0 {
			p.Warmup += extra
			tm.warmup += extra
			note = fmt.Sprintf("target VGG features cached: %d extra warm-up steps (one epoch) fill the cache; %s", extra, note)
		}
		// The pool's images never change, so each keeps its identity.
		return note, trainLoop(p, tm, func(s *torch.Scope, it int, x *torch.Tensor, idx []int) error {
			_, err := b.TrainStep(s, baselines.Step{Iter: it, X: x, Samples: idx})
			return err
		})
	}
}

var (
	runDPATrain        = runTrain("dpa")
	runDPATrainNoCache = runTrain("dpa-nocache")
	runGANomalyTrain   = runTrain("ganomaly")
)

// runMADDRTrain is a baseline wrapped by MADDR with every constraint and
// mixup on every step (the costliest iterations of the paper's schedule).
func runMADDRTrain(name string) func(p Params, tm *timer) (string, error) {
	return func(p Params, tm *timer) (string, error) {
		return maddrTrain(name, p, tm)
	}
}

var (
	runMADDRDPATrain      = runMADDRTrain("dpa")
	runMADDRAETrain       = runMADDRTrain("ae")
	runMADDRMemAETrain    = runMADDRTrain("memae")
	runMADDRGANomalyTrain = runMADDRTrain("ganomaly")
	runMADDRFAnoGANTrain  = runMADDRTrain("fanogan-encoder")
)

func maddrTrain(name string, p Params, tm *timer) (string, error) {
	b, err := newBaseline(name, p)
	if err != nil {
		return "", err
	}
	defer b.Store().Free()
	cfg := maddr.Paper()
	cfg.Mixup.Mode, cfg.Mixup.Start, cfg.Mixup.End = "on", 1, math.MaxInt32
	fw, err := maddr.New(b, cfg, maddr.Classes{Organs: []string{"liver", "lung"}, Modalities: []string{"ct", "xray"}}, 1)
	if err != nil {
		return "", err
	}
	return notes(b), trainLoop(p, tm, func(s *torch.Scope, it int, x *torch.Tensor, idx []int) error {
		organ, modality := make([]int64, len(idx)), make([]int64, len(idx))
		for j, i := range idx {
			organ[j], modality[j] = groupOrgan[i%3], groupModality[i%3]
		}
		_, err := fw.Step(s, it, maddr.Batch{X: x, Organ: organ, Modality: modality, Samples: idx})
		return err
	})
}

var (
	runAETrain      = runTrain("ae")
	runMemAETrain   = runTrain("memae")
	runFAnoGANTrain = runTrain("fanogan")
	runAEScore      = runScore("ae")
	runMemAEScore   = runScore("memae")
	runFAnoGANScore = runScore("fanogan")
)

func runScore(name string) func(p Params, tm *timer) (string, error) {
	return runScoreIn(name, torch.Float32)
}

// runScoreIn scores as maddr score --precision does: precision BFloat16
// runs the baseline's Score under bfloat16 autocast (modelfile.Model.Score).
func runScoreIn(name string, precision torch.DType) func(p Params, tm *timer) (string, error) {
	return func(p Params, tm *timer) (string, error) {
		b, err := newBaseline(name, p)
		if err != nil {
			return "", err
		}
		defer b.Store().Free()
		m := &modelfile.Model{Framework: &maddr.Framework{Base: b}, Precision: precision}
		data := newPool(p.Pool, p.Size, 2)
		side := int64(p.Size)
		for range p.total() {
			xs, _ := data.next(p.Batch)
			err := tm.Step(func() error {
				// As evaluate.ScoreSamples does: no autograd, scores read back.
				return torch.NoGrad(func() error {
					return torch.Run(func(s *torch.Scope) error {
						x := s.Adopt(torch.FromFloat32(xs, int64(p.Batch), 1, side, side))
						_, err := s.Adopt(m.Score(x)).Float32s()
						return err
					})
				})
			})
			if err != nil {
				return "", err
			}
		}
		return notes(b), nil
	}
}

var (
	runDPAScore      = runScore("dpa")
	runDPAScoreBF16  = runScoreIn("dpa", torch.BFloat16)
	runGANomalyScore = runScore("ganomaly")
)

func notes(b baselines.Baseline) string {
	for _, n := range b.Notes() {
		if n != "" {
			return n
		}
	}
	return ""
}

// phantomTrain is the built-in phantom's training images, scaled so that
// there are about pool of them (the paper's 648 at the default pool).
func phantomTrain(pool int) ([]dataset.Sample, error) {
	return dataset.Open([]dataset.Spec{{Kind: "phantom", Scale: float64(pool) / DefaultPool}},
		dataset.Options{Splits: []dataset.Split{dataset.Train}})
}

func runLoader(cached bool) func(p Params, tm *timer) (string, error) {
	return func(p Params, tm *timer) (string, error) {
		samples, err := phantomTrain(p.Pool)
		if err != nil {
			return "", err
		}
		pp := preprocess.Default()
		pp.Size = p.Size
		cfg := loader.Config{Size: p.Size, Transform: loader.Preprocess(pp), BatchSize: p.Batch, DropLast: true, Seed: 1}
		if !cached {
			cfg.CacheBytes, cfg.Lazy = -1, true
		}
		ctx, cancel := context.WithCancel(context.Background())
		defer cancel()
		ld, err := loader.New(ctx, samples, cfg)
		if err != nil {
			return "", err
		}
		defer ld.Close()
		next, stop := iter.Pull2(ld.Train(ctx, 0))
		defer stop()
		pull := func() error {
			_, err, ok := next()
			if !ok {
				return errors.New("the loader stopped")
			}
			return err
		}
		for range p.Warmup {
			if err := pull(); err != nil {
				return "", err
			}
		}
		// Batches are prepared ahead, so single batches arrive in bursts:
		// the rate is the whole run's, over at least two epochs' worth.
		n := max(p.Steps, 2*ld.BatchesPerEpoch())
		c0, t0 := cpuTime(), time.Now()
		for range n {
			if err := pull(); err != nil {
				return "", err
			}
		}
		wall, cpu := time.Since(t0).Seconds()/float64(n), (cpuTime()-c0)/float64(n)
		tm.warmup = 0
		for range n {
			tm.record(wall, cpu)
		}
		return fmt.Sprintf("phantom %d training images, resize %d, crop %d, size %d", len(samples), pp.Resize, pp.Crop, pp.Size), nil
	}
}

var (
	runLoaderCold   = runLoader(false)
	runLoaderCached = runLoader(true)
)

// scheduleCase times the real training loop (train.Run: loader, MADDR+DPA,
// logging) over a prefix of the paper's 16000 iterations.
const scheduleCase = "schedule"

// runSchedule starts the paper's full MADDR+DPA run on the phantom data and
// stops it p.total() iterations after its first epoch; each iteration is
// timed from the previous one's end, so the loader's share is included. The
// first epoch computes and caches every image's target features, so its
// iterations are slower than the rest of the run: they are timed apart and
// weighted as the one epoch of the 16000 iterations they are.
func runSchedule(p Params, tm *timer) (string, error) {
	dir, err := os.MkdirTemp("", "maddr-bench-schedule-")
	if err != nil {
		return "", err
	}
	defer os.RemoveAll(dir)
	cfg := train.Defaults("dpa")
	cfg.ModelOptions = dpaOptions
	cfg.Preprocess.Size = p.Size
	cfg.BatchSize = p.Batch
	cfg.Threads = p.Threads
	cfg.Iterations = maddr.PaperIterations
	cfg.MADDR = maddr.Paper().ScaleMixup(cfg.Iterations)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	start := time.Now()
	var last time.Time
	var lastCPU float64
	var firstEpoch []float64
	setup, epoch := 0.0, 0
	_, err = train.Run(ctx, cfg, dir, train.Options{ValEvery: -1,
		OnEpochLength: func(n int) { epoch = n },
		AfterStep: func(it int, _ baselines.Losses) {
			now, cpu := time.Now(), cpuTime()
			switch {
			case it == 1:
				setup = now.Sub(start).Seconds()
			case it <= epoch:
				firstEpoch = append(firstEpoch, now.Sub(last).Seconds())
			default:
				tm.record(now.Sub(last).Seconds(), cpu-lastCPU)
			}
			last, lastCPU = now, cpu
			if it >= epoch+p.total() {
				cancel()
			}
		}})
	if err != nil && !errors.Is(err, context.Canceled) {
		return "", err
	}
	if len(tm.walls) > 0 {
		perIter := median(tm.walls)
		firstPerIter := perIter
		if len(firstEpoch) > 0 {
			firstPerIter = median(firstEpoch)
		}
		tm.extra = map[string]float64{
			"setup_and_first_iteration_s": setup,
			"first_epoch_iterations":      float64(epoch),
			"first_epoch_s_per_iteration": firstPerIter,
			"full_schedule_h":             (setup + float64(epoch-1)*firstPerIter + float64(cfg.Iterations-epoch)*perIter) / 3600,
			"iterations":                  float64(cfg.Iterations),
		}
	}
	return fmt.Sprintf("train.Run on the phantom data, %d of %d iterations measured after a first epoch of %d",
		len(tm.walls), cfg.Iterations, epoch), nil
}
