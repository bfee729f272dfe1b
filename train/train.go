// Package train runs a training job end to end: it collects the data,
// builds the baseline wrapped by MADDR, loops over batches with a progress
// bar, logs every loss term to a JSONL file, measures validation AUC per
// group now and then to show whether it is learning (the learning curve),
// writes atomic checkpoints, can resume from the last one, and finally writes
// the model file that scoring needs (weights, preprocessing, vocabularies,
// configuration).
package train

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"iter"
	"math"
	"math/rand/v2"
	"os"
	"path/filepath"
	"runtime"
	"sort"
	"time"

	"github.com/maddr-project/maddr/atomicfile"
	"github.com/maddr-project/maddr/augment"
	"github.com/maddr-project/maddr/baselines"
	"github.com/maddr-project/maddr/dataset"
	"github.com/maddr-project/maddr/loader"
	"github.com/maddr-project/maddr/maddr"
	"github.com/maddr-project/maddr/modelfile"
	"github.com/maddr-project/maddr/nn"
	"github.com/maddr-project/maddr/preprocess"
	"github.com/maddr-project/maddr/progress"
	"github.com/maddr-project/maddr/torch"
	"github.com/maddr-project/maddr/version"
)

// Config is a complete, JSON-serialisable description of a training run.
type Config struct {
	Sources []dataset.Spec `json:"sources"`
	// Groups restricts training to these organ/modality groups (empty: all),
	// e.g. to train a baseline on one data set alone.
	Groups       []string          `json:"groups,omitempty"`
	Model        string            `json:"model"`
	ModelOptions json.RawMessage   `json:"model_options,omitempty"`
	LatentDim    int               `json:"latent_dim,omitempty"`
	Preprocess   preprocess.Config `json:"preprocess"`
	Augment      augment.Config    `json:"augment"`
	MADDR        maddr.Config      `json:"maddr"`
	// Iterations is the number of optimizer steps (0: the baseline's default).
	Iterations int    `json:"iterations"`
	BatchSize  int    `json:"batch_size"`
	Seed       uint64 `json:"seed"`
	// Threads for libtorch (0: all cores).
	Threads int `json:"threads"`
	// CheckpointEvery writes a checkpoint every so many iterations (0: 1000).
	CheckpointEvery int `json:"checkpoint_every"`
	// ClipGradNorm > 0 clips the gradients' joint L2 norm before every
	// optimizer update of the baseline (off in the papers).
	ClipGradNorm float64 `json:"clip_grad_norm,omitempty"`
	Workers      int     `json:"workers,omitempty"`
	CacheBytes   int64   `json:"cache_bytes,omitempty"`
	SkipBad      bool    `json:"skip_bad,omitempty"`
}

// Defaults returns the paper's settings for a model: batch 32, 64x64, seed 8499.
func Defaults(model string) Config {
	return Config{
		Sources:         []dataset.Spec{{Kind: "phantom"}},
		Model:           model,
		Preprocess:      preprocess.Default(),
		MADDR:           maddr.Paper(),
		BatchSize:       32,
		Seed:            8499,
		CheckpointEvery: 1000,
	}
}

// Options are the parts of a run that are not part of its identity.
type Options struct {
	// Resume continues from dir/checkpoint.safetensors when it exists.
	Resume bool
	// Samples, when set, replaces loading Sources (the demo generates its
	// data once for several runs).
	Samples []dataset.Sample
	// Progress receives the progress bar (nil: no bar).
	Progress io.Writer
	// Logf receives notes and warnings (nil: discarded).
	Logf func(format string, args ...any)
	// Label prefixes the progress bar.
	Label string
	// AfterStep, when set, is called after every iteration (experiments use
	// it to watch losses; tests use it to interrupt a run).
	AfterStep func(iter int, losses baselines.Losses)
	// ValEvery evaluates validation AUC per group every so many iterations
	// (and before the first and after the last); 0 does it
	// DefaultValidations times evenly spaced plus both ends; negative never.
	// It does not change the trained weights.
	ValEvery int
	// OnValidation, when set, receives every point of the learning curve as
	// it is measured.
	OnValidation func(Validation)
	// Version is the maddr build recorded in the model file; empty means
	// this binary's (package version).
	Version string
}

// buildVersion is the maddr build recorded in the model file.
func (o Options) buildVersion() string {
	if o.Version != "" {
		return o.Version
	}
	return version.String()
}

// File names inside a run directory.
const (
	ConfigFile     = "config.json"
	LogFile        = "log.jsonl"
	CheckpointFile = "checkpoint.safetensors"
	ModelFile      = "model.safetensors"
)

// Result summarises a finished run.
type Result struct {
	Dir        string
	ModelPath  string
	Iterations int
	Seconds    float64
	ImagesPerS float64
	Final      baselines.Losses
	Notes      []string
	// Validation is the learning curve's AUC part, including the points
	// measured before a resume.
	Validation []Validation
	// CurvePath is the learning-curve PNG ("" if it could not be drawn).
	CurvePath string
}

// LogEntry is one line of the JSONL training log.
type LogEntry struct {
	Iter      int                `json:"iter"`
	Epoch     int                `json:"epoch"`
	Losses    map[string]float64 `json:"losses,omitempty"`
	Mixup     bool               `json:"mixup,omitempty"`
	ImagesPS  float64            `json:"images_per_s"`
	ElapsedS  float64            `json:"elapsed_s"`
	LiveHeapM float64            `json:"go_heap_mib,omitempty"`
	// Validation is set on the iterations after which the model was
	// evaluated on the validation split (iteration 0: before training).
	Validation *Validation `json:"validation,omitempty"`
}

// checkpointState is the JSON stored with a checkpoint.
type checkpointState struct {
	Iter       int             `json:"iter"`
	ConfigHash string          `json:"config_hash"`
	Baseline   json.RawMessage `json:"baseline"`
	MixupRNG   string          `json:"mixup_rng"`
	Elapsed    float64         `json:"elapsed_s"`
}

func configHash(c Config) string {
	c.Threads, c.Workers, c.CacheBytes, c.CheckpointEvery = 0, 0, 0, 0
	b, _ := json.Marshal(c)
	h := sha256.Sum256(b)
	return hex.EncodeToString(h[:8])
}

// Run trains according to cfg and writes everything to dir.
func Run(ctx context.Context, cfg Config, dir string, o Options) (*Result, error) {
	logf := o.Logf
	if logf == nil {
		logf = func(string, ...any) {}
	}
	if cfg.BatchSize < 2 {
		return nil, fmt.Errorf("batch size %d: MADDR's center loss needs at least 2 images per batch", cfg.BatchSize)
	}
	if err := cfg.Preprocess.Validate(); err != nil {
		return nil, err
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, err
	}
	torch.SetNumThreads(cfg.Threads)
	// One OS thread drives libtorch for the whole run (see package torch,
	// Threads): it halved the peak memory of a DPA step and kept both cores busy.
	runtime.LockOSThread()
	defer runtime.UnlockOSThread()

	all := o.Samples
	if all == nil {
		var err error
		all, err = dataset.Open(cfg.Sources, dataset.Options{SkipBad: cfg.SkipBad, Logf: logf})
		if err != nil {
			return nil, err
		}
	}
	vocabs, err := dataset.BuildVocabs(all, dataset.Vocabs{})
	if err != nil {
		return nil, err
	}
	trainSet := selectTrain(all, cfg.Groups)
	if len(trainSet) == 0 {
		return nil, fmt.Errorf("no normal training images in %s (groups %v)", describeSources(cfg.Sources), cfg.Groups)
	}
	ld, err := loader.New(ctx, trainSet, loader.Config{
		Size: cfg.Preprocess.Size, Transform: loader.Preprocess(cfg.Preprocess), Augment: loader.Augmentation(cfg.Augment),
		BatchSize: cfg.BatchSize, Workers: cfg.Workers, CacheBytes: cfg.CacheBytes, Seed: cfg.Seed,
		DropLast: true, Vocabs: vocabs, SkipBad: cfg.SkipBad, Logf: logf,
	})
	if err != nil {
		return nil, err
	}
	defer ld.Close()
	if ld.BatchesPerEpoch() == 0 {
		return nil, fmt.Errorf("the training set has %d images, fewer than one batch of %d", ld.Len(), cfg.BatchSize)
	}

	base, err := baselines.New(cfg.Model, baselines.Options{
		ImageSize: cfg.Preprocess.Size, LatentDim: cfg.LatentDim, Seed: cfg.Seed, Iterations: cfg.Iterations, Raw: cfg.ModelOptions,
		ClipGradNorm: cfg.ClipGradNorm,
	})
	if err != nil {
		return nil, err
	}
	if cfg.Iterations <= 0 {
		cfg.Iterations = base.DefaultIterations()
	}
	classes := maddr.Classes{Organs: vocabs.Organ, Modalities: vocabs.Modality}
	fw, err := maddr.New(base, cfg.MADDR, classes, cfg.Seed)
	if err != nil {
		return nil, err
	}
	if w := fw.MixupWarning(cfg.Iterations); w != "" {
		logf("warning: %s", w)
	}
	cfgJSON, _ := json.MarshalIndent(cfg, "", "  ")
	if err := atomicfile.Write(filepath.Join(dir, ConfigFile), func(w io.Writer) error {
		_, err := w.Write(append(cfgJSON, '\n'))
		return err
	}); err != nil {
		return nil, err
	}

	start, elapsedBefore := 0, 0.0
	ckPath := filepath.Join(dir, CheckpointFile)
	if o.Resume {
		st, found, err := resume(ckPath, cfg, fw)
		if err != nil {
			return nil, err
		}
		if found {
			start, elapsedBefore = st.Iter, st.Elapsed
			logf("resuming %s at iteration %d of %d", ckPath, start, cfg.Iterations)
		}
	} else if _, err := os.Stat(ckPath); err == nil {
		return nil, fmt.Errorf("%s already holds a checkpoint: pass --resume to continue it, or choose another output directory", dir)
	}
	if start == 0 {
		if cal, ok := base.(baselines.Calibrator); ok {
			if err := calibrate(cal, ld, cfg.Preprocess.Size, cfg.Seed); err != nil {
				return nil, err
			}
		}
	}

	for _, n := range fw.Notes() {
		logf("note: %s", n)
	}

	logMode := os.O_CREATE | os.O_WRONLY | os.O_TRUNC
	if start > 0 {
		logMode = os.O_CREATE | os.O_WRONLY | os.O_APPEND
		// Iterations after the checkpoint were lost with the crash and run again: drop their old lines.
		if err := truncateLog(filepath.Join(dir, LogFile), start); err != nil {
			return nil, err
		}
	}
	removeStaleTemps(dir)
	logFile, err := os.OpenFile(filepath.Join(dir, LogFile), logMode, 0o644)
	if err != nil {
		return nil, err
	}
	defer logFile.Close()
	enc := json.NewEncoder(logFile)

	var bar *progress.Bar
	if o.Progress != nil {
		bar = progress.New(o.Progress, cfg.Iterations, progress.Options{Label: runLabel(cfg, o), Unit: "img"})
		if start > 0 {
			bar.Add(start, 0)
		}
	}
	every := cfg.CheckpointEvery
	if every <= 0 {
		every = 1000
	}

	curve, err := startCurve(ctx, cfg, all, base, filepath.Join(dir, LogFile), start, o, bar, logf)
	if err != nil {
		return nil, err
	}
	defer curve.close()
	if start == 0 {
		if err := logUntrained(ctx, curve, enc); err != nil {
			return nil, err
		}
	}

	bpe := ld.BatchesPerEpoch()
	next, stop := iter.Pull2(ld.Train(ctx, start/bpe))
	defer stop()
	for skip := start % bpe; skip > 0; skip-- {
		if _, err, ok := next(); !ok || err != nil {
			return nil, fmt.Errorf("resuming: repositioning the data: %v", err)
		}
	}

	t0 := time.Now()
	side := int64(cfg.Preprocess.Size)
	// Without augmentation a sample's input is the same every epoch, so the
	// baseline may reuse what it computed from it (DPA's target features).
	stableInputs := !cfg.Augment.Enabled()
	var last baselines.Losses
	for it := start + 1; it <= cfg.Iterations; it++ {
		if err := ctx.Err(); err != nil {
			return nil, err
		}
		batch, err, ok := next()
		if !ok {
			return nil, errors.New("the data loader stopped early")
		}
		if err != nil {
			return nil, err
		}
		err = torch.Run(func(s *torch.Scope) error {
			x := s.Adopt(torch.FromFloat32(batch.X, int64(batch.Len()), 1, side, side))
			b := maddr.Batch{X: x, Organ: batch.Organ, Modality: batch.Modality}
			if stableInputs {
				b.Samples = batch.Index
			}
			l, err := fw.Step(s, it, b)
			last = l
			return err
		})
		if err != nil {
			return nil, fmt.Errorf("iteration %d: %w", it, err)
		}
		if bad := nonFinite(last); bad != "" {
			return nil, fmt.Errorf("iteration %d: loss term %q is %v; stopping. The last good checkpoint (if any) is %s",
				it, bad, last[bad], ckPath)
		}
		val, err := curve.at(ctx, it)
		if err != nil {
			return nil, err
		}
		elapsed := time.Since(t0).Seconds()
		rate := float64((it-start)*cfg.BatchSize) / math.Max(elapsed-curve.inLoop, 1e-9)
		var ms runtime.MemStats
		if it%100 == 0 {
			runtime.ReadMemStats(&ms)
		}
		if err := enc.Encode(LogEntry{Iter: it, Epoch: batch.Epoch, Losses: last, Mixup: fw.MixupActive(it),
			ImagesPS: rate, ElapsedS: elapsedBefore + elapsed, LiveHeapM: float64(ms.HeapAlloc) / (1 << 20), Validation: val}); err != nil {
			return nil, err
		}
		if bar != nil {
			bar.Step(cfg.BatchSize, progressValues(last)...)
		}
		if it%every == 0 && it < cfg.Iterations {
			if err := saveCheckpoint(ckPath, cfg, fw, it, elapsedBefore+elapsed); err != nil {
				return nil, err
			}
		}
		if o.AfterStep != nil {
			o.AfterStep(it, last)
		}
	}
	if bar != nil {
		bar.Finish()
	}
	total := elapsedBefore + time.Since(t0).Seconds()
	if err := saveCheckpoint(ckPath, cfg, fw, cfg.Iterations, total); err != nil {
		return nil, err
	}
	training, _ := json.Marshal(map[string]any{
		"sources": cfg.Sources, "groups": cfg.Groups, "iterations": cfg.Iterations, "batch_size": cfg.BatchSize,
		"seconds": total, "train_images": ld.Len(), "validation": curve.points,
	})
	modelPath := filepath.Join(dir, ModelFile)
	err = modelfile.Save(modelPath, fw, modelfile.Manifest{
		Version: o.buildVersion(), ImageSize: cfg.Preprocess.Size, Seed: cfg.Seed, Iterations: cfg.Iterations,
		ModelOptions: cfg.ModelOptions, Vocabs: vocabs, Preprocess: cfg.Preprocess, Training: training,
		GroupPairs: modelfile.GroupPairs(all),
	})
	if err != nil {
		return nil, err
	}
	steps := time.Since(t0).Seconds() - curve.inLoop
	curvePath := curve.finish(dir, runLabel(cfg, o), steps, logf)
	return &Result{
		Dir: dir, ModelPath: modelPath, Iterations: cfg.Iterations, Seconds: total,
		ImagesPerS: float64((cfg.Iterations-start)*cfg.BatchSize) / math.Max(steps, 1e-9),
		Final:      last, Notes: fw.Notes(), Validation: curve.points, CurvePath: curvePath,
	}, nil
}

// runLabel names the run on its progress bar and learning curve.
func runLabel(cfg Config, o Options) string {
	if o.Label != "" {
		return o.Label
	}
	return "train " + cfg.Model
}

// logUntrained evaluates the model before its first step, so the curve
// starts from what an untrained network scores, and logs it as iteration 0.
func logUntrained(ctx context.Context, curve *curveRecorder, enc *json.Encoder) error {
	val, err := curve.at(ctx, 0)
	if err != nil || val == nil {
		return err
	}
	return enc.Encode(LogEntry{Iter: 0, Validation: val})
}

// truncateLog keeps the lines of the JSONL log up to iteration last.
func truncateLog(path string, last int) error {
	data, err := os.ReadFile(path)
	if errors.Is(err, os.ErrNotExist) {
		return nil
	}
	if err != nil {
		return err
	}
	var keep []byte
	for _, line := range bytes.SplitAfter(data, []byte("\n")) {
		var e struct {
			Iter int `json:"iter"`
		}
		if json.Unmarshal(line, &e) != nil || e.Iter > last {
			break
		}
		keep = append(keep, line...)
	}
	return atomicfile.WriteBytes(path, keep)
}

// removeStaleTemps deletes temporary files an interrupted atomic write left behind.
func removeStaleTemps(dir string) {
	matches, _ := filepath.Glob(filepath.Join(dir, ".*.tmp-*"))
	for _, m := range matches {
		os.Remove(m)
	}
}

// selectTrain keeps the normal training samples of the wanted groups.
func selectTrain(all []dataset.Sample, groups []string) []dataset.Sample {
	want := map[string]bool{}
	for _, g := range groups {
		want[g] = true
	}
	var out []dataset.Sample
	for _, s := range all {
		if s.Split != dataset.Train || s.Label != dataset.Normal {
			continue
		}
		if len(want) > 0 && !want[s.Group] {
			continue
		}
		out = append(out, s)
	}
	return out
}

func describeSources(specs []dataset.Spec) string {
	if len(specs) == 0 {
		return "the given samples"
	}
	s := ""
	for i, sp := range specs {
		if i > 0 {
			s += ", "
		}
		s += sp.String()
	}
	return s
}

// calibrationImages bounds the sample a Calibrator sees (memory, and one
// VGG pass per 32 images before training starts).
const calibrationImages = 256

// calibrationSalt separates the calibration sample's random stream from the
// other users of the run's seed (loader order, initialisation, mixup).
const calibrationSalt = 0x63616c6962726174 // "calibrat"

// CalibrationSample returns which of n training images a Calibrator sees:
// min(n, 256) distinct indices drawn uniformly without replacement with a
// generator seeded from the run's seed, in increasing order. The training set
// is in group order, so its first 256 images would mostly come from one
// group; a uniform sample holds each group in proportion to its share of
// the training set. The same seed and n always give the same sample.
func CalibrationSample(n int, seed uint64) []int {
	if n <= calibrationImages {
		all := make([]int, n)
		for i := range all {
			all[i] = i
		}
		return all
	}
	rng := rand.New(rand.NewPCG(seed, calibrationSalt))
	idx := rng.Perm(n)[:calibrationImages]
	sort.Ints(idx)
	return idx
}

// calibrate shows the baseline the calibration sample of the training set
// (CalibrationSample) before training.
func calibrate(cal baselines.Calibrator, ld *loader.Loader, size int, seed uint64) error {
	idx := CalibrationSample(ld.Len(), seed)
	data := make([]float32, 0, len(idx)*size*size)
	for _, i := range idx {
		x, err := ld.Input(i)
		if err != nil {
			return err
		}
		data = append(data, x...)
	}
	return torch.Run(func(s *torch.Scope) error {
		return cal.Calibrate(s.Adopt(torch.FromFloat32(data, int64(len(idx)), 1, int64(size), int64(size))))
	})
}

func nonFinite(l baselines.Losses) string {
	names := make([]string, 0, len(l))
	for k := range l {
		names = append(names, k)
	}
	sort.Strings(names)
	for _, k := range names {
		if math.IsNaN(l[k]) || math.IsInf(l[k], 0) {
			return k
		}
	}
	return ""
}

func progressValues(l baselines.Losses) []progress.Value {
	names := make([]string, 0, len(l))
	for k := range l {
		names = append(names, k)
	}
	sort.Strings(names)
	out := make([]progress.Value, len(names))
	for i, k := range names {
		out[i] = progress.Value{Name: k, Value: l[k]}
	}
	return out
}

const optimPrefix = "optim."

func saveCheckpoint(path string, cfg Config, fw *maddr.Framework, it int, elapsed float64) error {
	bs, err := fw.Base.TrainingState()
	if err != nil {
		return err
	}
	rng, err := fw.RNGState()
	if err != nil {
		return err
	}
	extra := map[string]*torch.Tensor{}
	for k, v := range fw.Base.OptimizerState() {
		extra[optimPrefix+k] = v
	}
	st := checkpointState{Iter: it, ConfigHash: configHash(cfg), Baseline: bs, MixupRNG: base64.StdEncoding.EncodeToString(rng), Elapsed: elapsed}
	return nn.SaveCheckpoint(path, fw.Base.Store(), extra, st)
}

// resume loads a checkpoint into fw; found is false when there is none.
func resume(path string, cfg Config, fw *maddr.Framework) (checkpointState, bool, error) {
	var st checkpointState
	if _, err := os.Stat(path); errors.Is(err, os.ErrNotExist) {
		return st, false, nil
	}
	ck, err := nn.ReadCheckpoint(path)
	if err != nil {
		return st, false, err
	}
	if err := json.Unmarshal(ck.Config, &st); err != nil {
		return st, false, fmt.Errorf("%s: unreadable training state: %w", path, err)
	}
	if st.ConfigHash != configHash(cfg) {
		return st, false, fmt.Errorf("%s was written by a run with another configuration (hash %s, now %s): resume with the same flags or use a new directory",
			path, st.ConfigHash, configHash(cfg))
	}
	if err := ck.LoadInto(fw.Base.Store(), optimPrefix); err != nil {
		return st, false, err
	}
	if err := fw.Base.Restore(ck.Extra(optimPrefix), st.Baseline); err != nil {
		return st, false, fmt.Errorf("%s: %w", path, err)
	}
	rng, err := base64.StdEncoding.DecodeString(st.MixupRNG)
	if err == nil {
		err = fw.SetRNGState(rng)
	}
	if err != nil {
		return st, false, fmt.Errorf("%s: mixup random state: %w", path, err)
	}
	return st, true, nil
}
