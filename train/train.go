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
	// OnEpochLength, when set, receives the number of iterations in an
	// epoch once the training set is loaded (the bench uses it to time
	// steps after the first epoch, when DPA's target features are cached).
	OnEpochLength func(iterations int)
	// ValEvery evaluates validation AUC per group every so many iterations
	// (and before the first and after the last); 0 does it
	// DefaultValidations times evenly spaced plus both ends; negative never.
	// It does not change the trained weights.
	ValEvery int
	// OnValidation, when set, receives every point of the learning curve as
	// it is measured.
	OnValidation func(Validation)
	// RunConfig is the configuration of the command that started the run,
	// as YAML that --config reads (see package flagconfig). It is written to
	// RunConfigFile and recorded in the model file.
	RunConfig string
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
	RunConfigFile  = "run-config.yaml"
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
	r := &run{cfg: cfg, dir: dir, o: o, logf: o.Logf, ckPath: filepath.Join(dir, CheckpointFile)}
	if r.logf == nil {
		r.logf = func(string, ...any) {}
	}
	if err := checkRunConfig(cfg); err != nil {
		return nil, err
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, err
	}
	// One OS thread drives libtorch for the whole run (see package torch,
	// Threads): it halved the peak memory of a DPA step and kept both cores busy.
	// Locked before the thread count is set, because OpenMP keeps that count
	// per OS thread: set first, the run could move to a thread that still has
	// another count (with cells side by side, a one-thread cell on a
	// two-thread OpenMP team competes with its neighbour for the cores).
	runtime.LockOSThread()
	defer runtime.UnlockOSThread()
	torch.SetNumThreads(cfg.Threads)

	if err := r.openData(ctx); err != nil {
		return nil, err
	}
	defer r.ld.Close()
	if err := r.buildModel(); err != nil {
		return nil, err
	}
	if err := r.writeConfig(); err != nil {
		return nil, err
	}
	if err := r.resumeOrCalibrate(); err != nil {
		return nil, err
	}
	for _, n := range r.fw.Notes() {
		r.logf("note: %s", n)
	}
	logFile, err := r.openLog()
	if err != nil {
		return nil, err
	}
	defer logFile.Close()
	r.startProgress()
	r.curve, err = startCurve(ctx, r.cfg, r.all, r.base, filepath.Join(dir, LogFile), r.start, o, r.bar, r.logf)
	if err != nil {
		return nil, err
	}
	defer r.curve.close()
	if r.start == 0 {
		if err := logUntrained(ctx, r.curve, r.log); err != nil {
			return nil, err
		}
	}
	last, t0, err := r.train(ctx)
	if err != nil {
		return nil, err
	}
	if r.bar != nil {
		r.bar.Finish()
	}
	return r.finish(last, t0)
}

// run is one training run in progress: what Run sets up, and the training
// loop and the final save share.
type run struct {
	cfg    Config
	dir    string
	o      Options
	logf   func(string, ...any)
	ckPath string

	all    []dataset.Sample
	vocabs dataset.Vocabs
	ld     *loader.Loader
	base   baselines.Baseline
	fw     *maddr.Framework

	// start is the iteration the run resumes after (0: a fresh run);
	// elapsedBefore the seconds spent before it.
	start         int
	elapsedBefore float64

	log   *json.Encoder
	bar   *progress.Bar
	curve *curveRecorder
}

// checkRunConfig rejects settings that cannot train before anything is
// read or written.
func checkRunConfig(cfg Config) error {
	if cfg.BatchSize < 2 {
		return fmt.Errorf("batch size %d: MADDR's center loss needs at least 2 images per batch", cfg.BatchSize)
	}
	return cfg.Preprocess.Validate()
}

// openData reads the samples (unless Options supplied them), builds the
// vocabularies and opens the loader over the normal training images.
func (r *run) openData(ctx context.Context) error {
	cfg := r.cfg
	r.all = r.o.Samples
	if r.all == nil {
		var err error
		r.all, err = dataset.Open(cfg.Sources, dataset.Options{SkipBad: cfg.SkipBad, Logf: r.logf})
		if err != nil {
			return err
		}
	}
	var err error
	r.vocabs, err = dataset.BuildVocabs(r.all, dataset.Vocabs{})
	if err != nil {
		return err
	}
	trainSet := selectTrain(r.all, cfg.Groups)
	if len(trainSet) == 0 {
		return fmt.Errorf("no normal training images in %s (groups %v)", describeSources(cfg.Sources), cfg.Groups)
	}
	r.ld, err = loader.New(ctx, trainSet, loader.Config{
		Size: cfg.Preprocess.Size, Transform: loader.Preprocess(cfg.Preprocess), Augment: loader.Augmentation(cfg.Augment),
		BatchSize: cfg.BatchSize, Workers: cfg.Workers, CacheBytes: cfg.CacheBytes, Seed: cfg.Seed,
		DropLast: true, Vocabs: r.vocabs, SkipBad: cfg.SkipBad, Logf: r.logf,
	})
	if err != nil {
		return err
	}
	if r.ld.BatchesPerEpoch() == 0 {
		r.ld.Close()
		return fmt.Errorf("the training set has %d images, fewer than one batch of %d", r.ld.Len(), cfg.BatchSize)
	}
	if r.o.OnEpochLength != nil {
		r.o.OnEpochLength(r.ld.BatchesPerEpoch())
	}
	return nil
}

// buildModel builds the baseline wrapped by MADDR and fills in the
// baseline's default schedule length when cfg leaves it open.
func (r *run) buildModel() error {
	cfg := &r.cfg
	fw, err := newFramework(cfg, r.vocabs)
	if err != nil {
		return err
	}
	if w := fw.MixupWarning(cfg.Iterations); w != "" {
		r.logf("warning: %s", w)
	}
	r.base, r.fw = fw.Base, fw
	return nil
}

// writeConfig records the run's configuration in the run directory.
func (r *run) writeConfig() error {
	cfgJSON, _ := json.MarshalIndent(r.cfg, "", "  ")
	if err := atomicfile.Write(filepath.Join(r.dir, ConfigFile), func(w io.Writer) error {
		_, err := w.Write(append(cfgJSON, '\n'))
		return err
	}); err != nil {
		return err
	}
	return writeRunConfig(r.dir, r.o.RunConfig)
}

// resumeOrCalibrate continues from the checkpoint when Options.Resume asks
// for it (and one exists), refuses to overwrite a checkpoint otherwise, and
// lets a fresh run's baseline look at its training images first.
func (r *run) resumeOrCalibrate() error {
	if r.o.Resume {
		st, found, err := resume(r.ckPath, r.cfg, r.fw)
		if err != nil {
			return err
		}
		if found {
			r.start, r.elapsedBefore = st.Iter, st.Elapsed
			r.logf("resuming %s at iteration %d of %d", r.ckPath, r.start, r.cfg.Iterations)
		}
	} else if _, err := os.Stat(r.ckPath); err == nil {
		return fmt.Errorf("%s already holds a checkpoint: pass --resume to continue it, or choose another output directory", r.dir)
	}
	if r.start == 0 {
		if cal, ok := r.base.(baselines.Calibrator); ok {
			return calibrate(cal, r.ld, r.cfg.Preprocess.Size, r.cfg.Seed)
		}
	}
	return nil
}

// openLog opens the JSONL log: new for a fresh run, appended to (without
// the lines after the checkpoint) for a resumed one. The caller closes it.
func (r *run) openLog() (*os.File, error) {
	logMode := os.O_CREATE | os.O_WRONLY | os.O_TRUNC
	if r.start > 0 {
		logMode = os.O_CREATE | os.O_WRONLY | os.O_APPEND
		// Iterations after the checkpoint were lost with the crash and run again: drop their old lines.
		if err := truncateLog(filepath.Join(r.dir, LogFile), r.start); err != nil {
			return nil, err
		}
	}
	removeStaleTemps(r.dir)
	logFile, err := os.OpenFile(filepath.Join(r.dir, LogFile), logMode, 0o644)
	if err != nil {
		return nil, err
	}
	r.log = json.NewEncoder(logFile)
	return logFile, nil
}

// startProgress shows the progress bar when Options ask for one, already
// advanced past the iterations a resumed run has done.
func (r *run) startProgress() {
	if r.o.Progress == nil {
		return
	}
	r.bar = progress.New(r.o.Progress, r.cfg.Iterations, progress.Options{Label: runLabel(r.cfg, r.o), Unit: "img"})
	if r.start > 0 {
		r.bar.Add(r.start, 0)
	}
}

// train runs the iterations after r.start: one MADDR step each, logged,
// validated and checkpointed as configured. It returns the last step's
// losses and when the steps began.
func (r *run) train(ctx context.Context) (baselines.Losses, time.Time, error) {
	next, stop, err := r.batchesFrom(ctx, r.start)
	if err != nil {
		return nil, time.Time{}, err
	}
	defer stop()
	every := r.cfg.CheckpointEvery
	if every <= 0 {
		every = 1000
	}
	t0 := time.Now()
	var last baselines.Losses
	for it := r.start + 1; it <= r.cfg.Iterations; it++ {
		if err := ctx.Err(); err != nil {
			return nil, t0, err
		}
		batch, err, ok := next()
		if !ok {
			return nil, t0, errors.New("the data loader stopped early")
		}
		if err != nil {
			return nil, t0, err
		}
		if last, err = r.step(it, batch); err != nil {
			return nil, t0, err
		}
		elapsed, err := r.logStep(ctx, it, batch.Epoch, last, t0)
		if err != nil {
			return nil, t0, err
		}
		if it%every == 0 && it < r.cfg.Iterations {
			if err := saveCheckpoint(r.ckPath, r.cfg, r.fw, it, r.elapsedBefore+elapsed); err != nil {
				return nil, t0, err
			}
		}
		if r.o.AfterStep != nil {
			r.o.AfterStep(it, last)
		}
	}
	return last, t0, nil
}

// batchesFrom pulls the loader's batches from the one iteration start+1
// trains on: the epochs before are skipped whole, the batches of the
// current epoch one by one.
func (r *run) batchesFrom(ctx context.Context, start int) (func() (loader.Batch, error, bool), func(), error) {
	bpe := r.ld.BatchesPerEpoch()
	next, stop := iter.Pull2(r.ld.Train(ctx, start/bpe))
	for skip := start % bpe; skip > 0; skip-- {
		if _, err, ok := next(); !ok || err != nil {
			stop()
			return nil, nil, fmt.Errorf("resuming: repositioning the data: %v", err)
		}
	}
	return next, stop, nil
}

// step runs MADDR's training step it on batch and checks that every loss
// term is finite.
func (r *run) step(it int, batch loader.Batch) (baselines.Losses, error) {
	side := int64(r.cfg.Preprocess.Size)
	// Without augmentation a sample's input is the same every epoch, so the
	// baseline may reuse what it computed from it (DPA's target features).
	stableInputs := !r.cfg.Augment.Enabled()
	var last baselines.Losses
	err := torch.Run(func(s *torch.Scope) error {
		x := s.Adopt(torch.FromFloat32(batch.X, int64(batch.Len()), 1, side, side))
		b := maddr.Batch{X: x, Organ: batch.Organ, Modality: batch.Modality}
		if stableInputs {
			b.Samples = batch.Index
		}
		l, err := r.fw.Step(s, it, b)
		last = l
		return err
	})
	if err != nil {
		return nil, fmt.Errorf("iteration %d: %w", it, err)
	}
	if bad := nonFinite(last); bad != "" {
		return nil, fmt.Errorf("iteration %d: loss term %q is %v; stopping. The last good checkpoint (if any) is %s",
			it, bad, last[bad], r.ckPath)
	}
	return last, nil
}

// logStep measures the learning curve when iteration it is due for it,
// writes the iteration's log line and advances the progress bar. It returns
// the seconds since t0.
func (r *run) logStep(ctx context.Context, it, epoch int, last baselines.Losses, t0 time.Time) (float64, error) {
	val, err := r.curve.at(ctx, it)
	if err != nil {
		return 0, err
	}
	elapsed := time.Since(t0).Seconds()
	rate := float64((it-r.start)*r.cfg.BatchSize) / math.Max(elapsed-r.curve.inLoop, 1e-9)
	var ms runtime.MemStats
	if it%100 == 0 {
		runtime.ReadMemStats(&ms)
	}
	if err := r.log.Encode(LogEntry{Iter: it, Epoch: epoch, Losses: last, Mixup: r.fw.MixupActive(it),
		ImagesPS: rate, ElapsedS: r.elapsedBefore + elapsed, LiveHeapM: float64(ms.HeapAlloc) / (1 << 20), Validation: val}); err != nil {
		return 0, err
	}
	if r.bar != nil {
		r.bar.Step(r.cfg.BatchSize, progressValues(last)...)
	}
	return elapsed, nil
}

// finish writes the last checkpoint, the model file and the learning curve
// of a run whose steps began at t0 and ended with losses last.
func (r *run) finish(last baselines.Losses, t0 time.Time) (*Result, error) {
	cfg := r.cfg
	total := r.elapsedBefore + time.Since(t0).Seconds()
	if err := saveCheckpoint(r.ckPath, cfg, r.fw, cfg.Iterations, total); err != nil {
		return nil, err
	}
	training, _ := json.Marshal(map[string]any{
		"sources": cfg.Sources, "groups": cfg.Groups, "iterations": cfg.Iterations, "batch_size": cfg.BatchSize,
		"seconds": total, "train_images": r.ld.Len(), "validation": r.curve.points,
	})
	modelPath := filepath.Join(r.dir, ModelFile)
	err := modelfile.Save(modelPath, r.fw, modelfile.Manifest{
		Version: r.o.buildVersion(), ImageSize: cfg.Preprocess.Size, Seed: cfg.Seed, Iterations: cfg.Iterations,
		ModelOptions: cfg.ModelOptions, Vocabs: r.vocabs, Preprocess: cfg.Preprocess, Training: training,
		GroupPairs: modelfile.GroupPairs(r.all), RunConfig: r.o.RunConfig,
	})
	if err != nil {
		return nil, err
	}
	steps := time.Since(t0).Seconds() - r.curve.inLoop
	curvePath := r.curve.finish(r.dir, runLabel(cfg, r.o), steps, r.logf)
	return &Result{
		Dir: r.dir, ModelPath: modelPath, Iterations: cfg.Iterations, Seconds: total,
		ImagesPerS: float64((cfg.Iterations-r.start)*cfg.BatchSize) / math.Max(steps, 1e-9),
		Final:      last, Notes: r.fw.Notes(), Validation: r.curve.points, CurvePath: curvePath,
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

// writeRunConfig keeps the starting command's configuration beside the
// run's other files, so the run can be repeated with --config.
func writeRunConfig(dir, text string) error {
	if text == "" {
		return nil
	}
	return atomicfile.Write(filepath.Join(dir, RunConfigFile), func(w io.Writer) error {
		_, err := io.WriteString(w, text)
		return err
	})
}
