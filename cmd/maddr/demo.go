package main

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"maps"
	"math"
	"math/rand/v2"
	"os"
	"os/signal"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/maddr-project/maddr/atomicfile"
	"github.com/maddr-project/maddr/baselines"
	"github.com/maddr-project/maddr/dataset"
	"github.com/maddr-project/maddr/evaluate"
	"github.com/maddr-project/maddr/loader"
	"github.com/maddr-project/maddr/maddr"
	"github.com/maddr-project/maddr/medimg"
	"github.com/maddr-project/maddr/metrics"
	"github.com/maddr-project/maddr/modelfile"
	"github.com/maddr-project/maddr/phantom"
	"github.com/maddr-project/maddr/report"
	"github.com/maddr-project/maddr/torch"
	"github.com/maddr-project/maddr/train"
)

func init() {
	register("demo", "train baseline vs MADDR on the built-in phantom data and print a Table-1-style comparison with reference rows", runDemo)
}

// The demo's defaults were chosen on the validation split with `maddr demo --split val`; the candidates and their
// validation AUCs are in docs/demo-settings.md. Change them only with a new selection run recorded there.
const (
	demoDefaultModel      = "ae"
	demoDefaultDifficulty = 0.0
	demoDefaultSize       = 32
	demoDefaultSeeds      = "1,2,3"
	demoDefaultWindows    = "liver=60:160,lung=-600:800"
)

// demoIterations is each baseline's default schedule in the demo: 3 seeds x (3 single-group baselines + one
// MADDR run) must fit in about 10 minutes on 2 idle cores.
func demoIterations(model string) int {
	switch model {
	case "dpa":
		return 120
	case "fanogan":
		return 150
	}
	return 600
}

// demoModelOptions narrow the GAN baselines for the demo; their paper-size networks need hours per run on a CPU.
var demoModelOptions = map[string]string{
	"fanogan": `{"width": 16}`,
}

// Method names of the demo's rows.
const (
	rowStatistic = "statistic"
	rowBase0     = "baseline-iter0"
	rowBase      = "baseline"
	// rowBaseAll is the baseline trained once on all groups without MADDR's terms: it separates what sharing one
	// network across groups costs from what MADDR's heads, center loss and mixup add.
	rowBaseAll = "baseline-all"
	rowMADDR0  = "maddr-iter0"
	rowMADDR   = "maddr"
)

// demoRun is one scored model (or the training-free statistic) for one group and seed.
type demoRun struct {
	Method    string    `json:"method"`
	Group     string    `json:"group"`
	Seed      uint64    `json:"seed"`
	AUC       float64   `json:"auc"`
	Accuracy  float64   `json:"accuracy"`
	MacroF1   float64   `json:"macro_f1"`
	Threshold float64   `json:"threshold"`
	Seconds   float64   `json:"train_seconds,omitempty"`
	IDs       []string  `json:"-"`
	Scores    []float64 `json:"-"`
	Abnormal  []bool    `json:"-"`
}

type demoSettings struct {
	Model        string          `json:"model"`
	ModelOptions json.RawMessage `json:"model_options,omitempty"`
	Iterations   int             `json:"iterations"`
	Batch        int             `json:"batch"`
	Size         int             `json:"size"`
	Crop         int             `json:"crop"`
	Difficulty   float64         `json:"difficulty"`
	Scale        float64         `json:"scale"`
	DataSeed     uint64          `json:"data_seed"`
	Seeds        []uint64        `json:"training_seeds"`
	Split        string          `json:"split"`
	Threads      int             `json:"threads"`
	HUWindows    string          `json:"hu_windows,omitempty"`
}

func runDemo(args []string, stdout, stderr io.Writer) error {
	fs := newFlagSet("demo", stderr)
	model := fs.String("model", demoDefaultModel, "baseline to compare with and without MADDR (ae: the fastest baseline that detects here, see docs/demo-settings.md)")
	mo := addModelOptionFlags(fs)
	iterations := fs.Int("iterations", 0, "training iterations per run (0: the demo's schedule for the model, 600 for ae)")
	batch := fs.Int("batch", 32, "batch size")
	size := fs.Int("size", demoDefaultSize, "network input side (the paper's is 64)")
	crop := fs.Int("crop", -1, "centre crop after the resize to 256 (-1: the default pipeline's 224; 0: none)")
	scale := fs.Float64("scale", 1, "phantom data set size as a fraction of the paper's split sizes (only evaluation grows with it; training runs a fixed number of iterations)")
	difficulty := fs.Float64("difficulty", demoDefaultDifficulty, "phantom anomaly subtlety (0 obvious .. 1 barely visible)")
	dataSeed := fs.Uint64("data-seed", 8499, "seed of the generated phantom data")
	seedList := fs.String("seeds", demoDefaultSeeds, "comma-separated training seeds; every trained row reports mean +- std over them")
	split := fs.String("split", "test", "split to report: test, or val to compare candidate settings without looking at the test split")
	windowList := fs.String("hu-windows", demoDefaultWindows, huWindowsUsage+"; the demo's narrower windows were chosen on validation")
	threads := fs.Int("threads", 0, "libtorch threads (0: all cores)")
	out := fs.String("out", "demo-out", "report directory")
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	if fs.NArg() > 0 {
		return errUsage
	}
	if *split != "test" && *split != "val" {
		return fmt.Errorf("--split %q: want test or val", *split)
	}
	seeds, err := parseSeeds(*seedList)
	if err != nil {
		return err
	}
	windows, err := parseWindows(*windowList)
	if err != nil {
		return err
	}
	opts, err := mo.options()
	if err != nil {
		return err
	}
	if *model == "dpa" && !*mo.vggRandomInit && *mo.vggWeights == "" && os.Getenv(vggWeightsEnv) == "" {
		// No ImageNet weights can be downloaded here; the demo says so loudly instead of refusing.
		fmt.Fprintln(stderr, "demo: no VGG19 weights configured ($"+vggWeightsEnv+"): DPA runs with a RANDOMLY initialised perceptual network, so numbers are not the paper's")
		*mo.vggRandomInit = true
		if opts, err = mo.options(); err != nil {
			return err
		}
	}
	if len(opts) == 0 {
		if small, ok := demoModelOptions[*model]; ok {
			opts = json.RawMessage(small)
			fmt.Fprintf(stderr, "demo: %s runs with %s so the demo fits a CPU budget (the paper's network is larger; see docs/models/%s.md)\n", *model, small, *model)
		}
	}
	st := demoSettings{Model: *model, ModelOptions: opts, Iterations: *iterations, Batch: *batch, Size: *size,
		Difficulty: *difficulty, Scale: *scale, DataSeed: *dataSeed, Seeds: seeds, Split: *split, Threads: *threads, HUWindows: *windowList}
	if st.Iterations == 0 {
		st.Iterations = demoIterations(*model)
	}
	ctx, cancel := signal.NotifyContext(context.Background(), os.Interrupt)
	defer cancel()
	setThreads(*threads)
	start, cpu0 := time.Now(), cpuSeconds()

	pc := phantom.DefaultConfig()
	pc.Seed, pc.Scale, pc.Difficulty = st.DataSeed, st.Scale, st.Difficulty
	cases, err := phantom.Generate(pc)
	if err != nil {
		return err
	}
	samples, _, err := dataset.PhantomSamples(cases, dataset.AllSplits)
	if err != nil {
		return err
	}
	groups := groupsOf(samples)

	base := train.Defaults(st.Model)
	base.Iterations, base.BatchSize, base.Threads, base.ModelOptions = st.Iterations, st.Batch, st.Threads, opts
	base.Preprocess.Size = st.Size
	base.Preprocess.HUWindows = windows
	if *crop >= 0 {
		base.Preprocess.Crop = *crop
	}
	st.Crop = base.Preprocess.Crop
	base.CheckpointEvery = st.Iterations
	base.Sources = nil
	fmt.Fprintf(stderr, "demo: phantom data (seed %d, scale %.2f, difficulty %.2f): %d images in groups %s; %s, %d iterations per run, %dx%d input, training seeds %v\n",
		st.DataSeed, st.Scale, st.Difficulty, len(samples), strings.Join(groups, ", "), st.Model, st.Iterations, st.Size, st.Size, st.Seeds)

	// The reported split is scored; thresholds always come from validation.
	reported := dataset.Test
	if st.Split == "val" {
		reported = dataset.Val
	}
	var notes []string
	var runs []demoRun
	var montage [][]report.Tile
	var montageTitles []string
	stat, err := meanImageStatistic(ctx, base, samples, groups, reported)
	if err != nil {
		return err
	}
	runs = append(runs, stat...)

	scoreModel := func(m *modelfile.Model, method string, seed uint64, secs float64, evalGroups []string) error {
		for _, g := range evalGroups {
			r, err := scoreGroup(ctx, m, samples, g, reported)
			if err != nil {
				return fmt.Errorf("%s, group %s, seed %d: %w", method, g, seed, err)
			}
			r.Method, r.Seed, r.Seconds = method, seed, secs
			runs = append(runs, r)
		}
		return nil
	}
	trainAndScore := func(cfg train.Config, dir, method, label string, evalGroups []string) error {
		untrained, err := untrainedModel(ctx, cfg, samples)
		if err != nil {
			return fmt.Errorf("%s before training: %w", label, err)
		}
		if err := scoreModel(untrained, method+"-iter0", cfg.Seed, 0, evalGroups); err != nil {
			return err
		}
		if err := os.RemoveAll(dir); err != nil {
			return err
		}
		res, err := train.Run(ctx, cfg, dir, train.Options{Samples: samples, Progress: stderr, Logf: logTo(stderr), Label: label})
		if err != nil {
			return fmt.Errorf("%s: %w", label, err)
		}
		notes = appendNew(notes, res.Notes...)
		m, err := modelfile.Load(res.ModelPath)
		if err != nil {
			return err
		}
		if err := scoreModel(m, method, cfg.Seed, res.Seconds, evalGroups); err != nil {
			return err
		}
		if method == rowBase && cfg.Seed == st.Seeds[0] {
			row, err := heatmapRow(ctx, m, cfg, splitOf(samples, cfg.Groups[0], reported), lesionsByID(cases, base.Preprocess, pc.Size))
			if err != nil {
				return fmt.Errorf("%s: heat maps: %w", label, err)
			}
			montage = append(montage, row)
			montageTitles = append(montageTitles, fmt.Sprintf("%s, %s seed %d: image | error map (3 abnormal: largest, median, smallest lesion; 2 normal)", cfg.Groups[0], st.Model, cfg.Seed))
		}
		if reported == dataset.Test {
			rep, err := evaluate.Evaluate(ctx, m, filterGroups(samples, evalGroups), metrics.SelectOptions{}, false)
			if err != nil {
				return err
			}
			th := rep.Thresholds()
			return modelfile.UpdateManifest(res.ModelPath, func(mf *modelfile.Manifest) error { mf.Thresholds = th; return nil })
		}
		return nil
	}
	for _, seed := range st.Seeds {
		for _, g := range groups {
			cfg := base
			cfg.Seed, cfg.Groups, cfg.MADDR = seed, []string{g}, maddr.BaselineOnly()
			dir := filepath.Join(*out, fmt.Sprintf("seed%d", seed), "baseline-"+g)
			if err := trainAndScore(cfg, dir, rowBase, fmt.Sprintf("%s on %s, seed %d", st.Model, g, seed), []string{g}); err != nil {
				return err
			}
		}
		cfg := base
		cfg.Seed, cfg.MADDR = seed, maddr.BaselineOnly()
		dir := filepath.Join(*out, fmt.Sprintf("seed%d", seed), "baseline-all")
		if err := trainAndScore(cfg, dir, rowBaseAll, fmt.Sprintf("%s on all, seed %d", st.Model, seed), groups); err != nil {
			return err
		}
		cfg = base
		cfg.Seed, cfg.MADDR = seed, maddr.Paper().ScaleMixup(st.Iterations)
		dir = filepath.Join(*out, fmt.Sprintf("seed%d", seed), "maddr")
		if err := trainAndScore(cfg, dir, rowMADDR, fmt.Sprintf("MADDR+%s on all, seed %d", st.Model, seed), groups); err != nil {
			return err
		}
	}

	lesions := lesionsByID(cases, base.Preprocess, pc.Size)
	took, cpu := time.Since(start), cpuSeconds()-cpu0
	var b strings.Builder
	writeDemoSummary(&b, st, groups, runs, notes, took, cpu)
	sens := sensitivity(runs, lesions, groups)
	writeSensitivity(&b, sens, st)
	fmt.Fprint(stdout, b.String())

	if err := os.MkdirAll(*out, 0o755); err != nil {
		return err
	}
	plots, err := sensitivityPlots(sens, st)
	if err != nil {
		return err
	}
	if len(montage) > 0 {
		img, err := report.HeatMontage(montage, montageTitles, st.Size)
		if err != nil {
			return err
		}
		if plots["heatmaps.png"], err = report.PNG(img); err != nil {
			return err
		}
	}
	for name, png := range plots {
		if err := atomicfile.WriteBytes(filepath.Join(*out, name), png); err != nil {
			return err
		}
	}
	js, err := json.MarshalIndent(map[string]any{"settings": st, "phantom": pc, "runs": runs, "sensitivity": sens, "notes": notes,
		"wall_seconds": took.Seconds(), "cpu_seconds": cpu}, "", "  ")
	if err != nil {
		return err
	}
	if err := atomicfile.WriteBytes(filepath.Join(*out, "demo.json"), js); err != nil {
		return err
	}
	if err := atomicfile.Write(filepath.Join(*out, "demo.md"), func(w io.Writer) error { _, err := io.WriteString(w, b.String()); return err }); err != nil {
		return err
	}
	fmt.Fprintf(stdout, "\nreport: %s (plots %s), models: %s/seed*/*/model.safetensors\n", filepath.Join(*out, "demo.md"),
		strings.Join(slices.Sorted(maps.Keys(plots)), ", "), *out)
	return nil
}

// heatmapRow shows a trained model's anomaly map (its reconstruction error for the autoencoders) on the abnormal
// cases with the largest, median and smallest largest-lesion, and on two normal cases, so a user sees what the
// network reconstructs and what it misses.
func heatmapRow(ctx context.Context, m *modelfile.Model, cfg train.Config, set []dataset.Sample, lesions map[string]caseLesion) ([]report.Tile, error) {
	var abnormal, normal []dataset.Sample
	for _, s := range set {
		if _, ok := lesions[s.ID]; ok && s.Label == dataset.Abnormal {
			abnormal = append(abnormal, s)
		} else if s.Label == dataset.Normal && len(normal) < 2 {
			normal = append(normal, s)
		}
	}
	slices.SortStableFunc(abnormal, func(a, b dataset.Sample) int {
		return cmpFloat(lesions[b.ID].RadiusPx, lesions[a.ID].RadiusPx)
	})
	var pick []dataset.Sample
	if len(abnormal) > 0 {
		pick = append(pick, abnormal[0], abnormal[len(abnormal)/2], abnormal[len(abnormal)-1])
	}
	pick = append(pick, normal...)
	xs, err := preprocessAll(ctx, cfg, pick)
	if err != nil {
		return nil, err
	}
	side := int64(cfg.Preprocess.Size)
	var tiles []report.Tile
	err = torch.NoGrad(func() error {
		return torch.Run(func(s *torch.Scope) error {
			x := s.Adopt(torch.FromFloat32(slices.Concat(xs...), int64(len(xs)), 1, side, side))
			maps, err := s.Adopt(m.Framework.Base.AnomalyMap(x)).Float32s()
			if err != nil {
				return err
			}
			scores, err := s.Adopt(m.Framework.Base.Score(x)).Float32s()
			if err != nil {
				return err
			}
			px := int(side * side)
			for i, smp := range pick {
				caption := fmt.Sprintf("score %.4g", scores[i])
				if l, ok := lesions[smp.ID]; ok {
					caption = fmt.Sprintf("r %.1f px, %.4g", l.RadiusPx, scores[i])
				}
				tiles = append(tiles, report.Tile{Image: xs[i], Map: maps[i*px : (i+1)*px], Caption: caption, Abnormal: smp.Label == dataset.Abnormal})
			}
			return nil
		})
	})
	return tiles, err
}

func cmpFloat(a, b float64) int {
	switch {
	case a < b:
		return -1
	case a > b:
		return 1
	}
	return 0
}

const huWindowsUsage = "CT windows as organ=centre:width,... in HU (empty: the default pipeline's liver 25:450, lung -600:1500)"

// parseWindows reads organ=centre:width pairs, e.g. "liver=60:160,lung=-600:800".
func parseWindows(list string) (map[string]medimg.Window, error) {
	if strings.TrimSpace(list) == "" {
		return nil, nil
	}
	out := map[string]medimg.Window{}
	for _, f := range strings.Split(list, ",") {
		organ, cw, ok := strings.Cut(strings.TrimSpace(f), "=")
		c, w, ok2 := strings.Cut(cw, ":")
		centre, err1 := strconv.ParseFloat(c, 32)
		width, err2 := strconv.ParseFloat(w, 32)
		if !ok || !ok2 || organ == "" || err1 != nil || err2 != nil || !(width > 0) {
			return nil, fmt.Errorf("--hu-windows: %q is not organ=centre:width with a positive width", f)
		}
		out[organ] = medimg.Window{Center: float32(centre), Width: float32(width)}
	}
	return out, nil
}

func parseSeeds(list string) ([]uint64, error) {
	var seeds []uint64
	for _, f := range strings.Split(list, ",") {
		f = strings.TrimSpace(f)
		if f == "" {
			continue
		}
		v, err := strconv.ParseUint(f, 10, 64)
		if err != nil {
			return nil, fmt.Errorf("--seeds: %q is not a seed: %w", f, err)
		}
		if slices.Contains(seeds, v) {
			return nil, fmt.Errorf("--seeds: seed %d given twice", v)
		}
		seeds = append(seeds, v)
	}
	if len(seeds) == 0 {
		return nil, fmt.Errorf("--seeds: no seed in %q", list)
	}
	return seeds, nil
}

// cpuSeconds is the user+system CPU time of this process so far, so the output can say how much of a shared
// machine's time the demo took besides its wall time.
func cpuSeconds() float64 {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return math.NaN()
	}
	return float64(ru.Utime.Nano()+ru.Stime.Nano()) / 1e9
}

// untrainedModel builds the network cfg describes exactly as train.Run does before its first step (same seed,
// so the same initial weights, and the same calibration for baselines that calibrate), for the iteration-0 row.
func untrainedModel(ctx context.Context, cfg train.Config, samples []dataset.Sample) (*modelfile.Model, error) {
	vocabs, err := dataset.BuildVocabs(samples, dataset.Vocabs{})
	if err != nil {
		return nil, err
	}
	base, err := baselines.New(cfg.Model, baselines.Options{ImageSize: cfg.Preprocess.Size, LatentDim: cfg.LatentDim, Seed: cfg.Seed,
		Iterations: cfg.Iterations, Raw: cfg.ModelOptions, ClipGradNorm: cfg.ClipGradNorm})
	if err != nil {
		return nil, err
	}
	fw, err := maddr.New(base, cfg.MADDR, maddr.Classes{Organs: vocabs.Organ, Modalities: vocabs.Modality}, cfg.Seed)
	if err != nil {
		return nil, err
	}
	if cal, ok := base.(baselines.Calibrator); ok {
		trainSet := trainingSamples(samples, cfg.Groups)
		var sample []dataset.Sample
		for _, i := range train.CalibrationSample(len(trainSet), cfg.Seed) {
			sample = append(sample, trainSet[i])
		}
		n := len(sample)
		x, err := preprocessAll(ctx, cfg, sample)
		if err != nil {
			return nil, err
		}
		side := int64(cfg.Preprocess.Size)
		flat := slices.Concat(x...)
		if err := torch.Run(func(s *torch.Scope) error {
			return cal.Calibrate(s.Adopt(torch.FromFloat32(flat, int64(n), 1, side, side)))
		}); err != nil {
			return nil, err
		}
	}
	return &modelfile.Model{Manifest: modelfile.Manifest{ImageSize: cfg.Preprocess.Size, Seed: cfg.Seed, Preprocess: cfg.Preprocess, Vocabs: vocabs},
		Framework: fw, Path: "(untrained " + cfg.Model + ")"}, nil
}

func trainingSamples(samples []dataset.Sample, groups []string) []dataset.Sample {
	var out []dataset.Sample
	for _, s := range samples {
		if s.Split == dataset.Train && s.Label == dataset.Normal && (len(groups) == 0 || slices.Contains(groups, s.Group)) {
			out = append(out, s)
		}
	}
	return out
}

// preprocessAll returns the network inputs of samples through the training preprocessing, in order.
func preprocessAll(ctx context.Context, cfg train.Config, samples []dataset.Sample) ([][]float32, error) {
	ld, err := loader.New(ctx, samples, loader.Config{Size: cfg.Preprocess.Size, Transform: loader.Preprocess(cfg.Preprocess),
		BatchSize: 64, Lazy: true, CacheBytes: -1})
	if err != nil {
		return nil, err
	}
	defer ld.Close()
	out := make([][]float32, len(samples))
	px := cfg.Preprocess.Size * cfg.Preprocess.Size
	for batch, err := range ld.Eval(ctx) {
		if err != nil {
			return nil, err
		}
		for j, idx := range batch.Index {
			out[idx] = slices.Clone(batch.X[j*px : (j+1)*px])
		}
	}
	for i, x := range out {
		if x == nil {
			return nil, fmt.Errorf("%s: not preprocessed", samples[i].Where())
		}
	}
	return out, nil
}

// scoreGroup scores one group's validation and reported split through evaluate's path, picks the threshold on
// validation (macro-F1) and returns the reported split's metrics with the per-image scores.
func scoreGroup(ctx context.Context, m *modelfile.Model, samples []dataset.Sample, group string, reported dataset.Split) (demoRun, error) {
	val, rep := splitOf(samples, group, dataset.Val), splitOf(samples, group, reported)
	vs, err := evaluate.ScoreSamples(ctx, m, val, 32, false)
	if err != nil {
		return demoRun{}, err
	}
	rs := vs
	if reported != dataset.Val {
		if rs, err = evaluate.ScoreSamples(ctx, m, rep, 32, false); err != nil {
			return demoRun{}, err
		}
	}
	return thresholdedRun(group, val, rep, vs, rs)
}

func thresholdedRun(group string, val, rep []dataset.Sample, vs, rs []float64) (demoRun, error) {
	th, err := metrics.SelectThreshold(vs, labelsOf(val), metrics.SelectOptions{})
	if err != nil {
		return demoRun{}, fmt.Errorf("choosing the threshold on validation: %w", err)
	}
	labels := labelsOf(rep)
	r, err := metrics.Evaluate(rs, labels, th.Value)
	if err != nil {
		return demoRun{}, err
	}
	if r.AUC == nil {
		return demoRun{}, fmt.Errorf("no AUC: %s", r.Note)
	}
	run := demoRun{Group: group, AUC: *r.AUC, Accuracy: r.Accuracy, MacroF1: r.MacroF1, Threshold: th.Value, Scores: rs, Abnormal: labels}
	for _, s := range rep {
		run.IDs = append(run.IDs, s.ID)
	}
	return run, nil
}

func splitOf(samples []dataset.Sample, group string, split dataset.Split) []dataset.Sample {
	var out []dataset.Sample
	for _, s := range samples {
		if s.Group == group && s.Split == split {
			out = append(out, s)
		}
	}
	return out
}

func labelsOf(samples []dataset.Sample) []bool {
	out := make([]bool, len(samples))
	for i, s := range samples {
		out[i] = s.Label == dataset.Abnormal
	}
	return out
}

// meanImageStatistic is the training-free reference: an image's score is the mean squared difference between
// its preprocessed pixels and the mean preprocessed training image of its group (the same error an L2
// reconstruction baseline would get from a decoder that always outputs the average normal image).
func meanImageStatistic(ctx context.Context, cfg train.Config, samples []dataset.Sample, groups []string, reported dataset.Split) ([]demoRun, error) {
	var out []demoRun
	for _, g := range groups {
		trainSet := trainingSamples(samples, []string{g})
		tx, err := preprocessAll(ctx, cfg, trainSet)
		if err != nil {
			return nil, err
		}
		mean := make([]float64, len(tx[0]))
		for _, x := range tx {
			for i, v := range x {
				mean[i] += float64(v) / float64(len(tx))
			}
		}
		score := func(set []dataset.Sample) ([]float64, error) {
			xs, err := preprocessAll(ctx, cfg, set)
			if err != nil {
				return nil, err
			}
			s := make([]float64, len(xs))
			for k, x := range xs {
				for i, v := range x {
					d := float64(v) - mean[i]
					s[k] += d * d / float64(len(x))
				}
			}
			return s, nil
		}
		val, rep := splitOf(samples, g, dataset.Val), splitOf(samples, g, reported)
		vs, err := score(val)
		if err != nil {
			return nil, err
		}
		rs, err := score(rep)
		if err != nil {
			return nil, err
		}
		r, err := thresholdedRun(g, val, rep, vs, rs)
		if err != nil {
			return nil, fmt.Errorf("mean-image statistic, group %s: %w", g, err)
		}
		r.Method = rowStatistic
		out = append(out, r)
	}
	return out, nil
}

// bootstrapAUC is the 95% percentile interval of the AUC over resamples that keep each class's count.
func bootstrapAUC(scores []float64, abnormal []bool, resamples int, seed uint64) (lo, hi float64) {
	var pos, neg []int
	for i, a := range abnormal {
		if a {
			pos = append(pos, i)
		} else {
			neg = append(neg, i)
		}
	}
	rng := rand.New(rand.NewPCG(seed, 0x5eed))
	aucs := make([]float64, 0, resamples)
	s := make([]float64, len(scores))
	l := make([]bool, len(scores))
	for range resamples {
		k := 0
		for _, class := range [][]int{pos, neg} {
			for range class {
				i := class[rng.IntN(len(class))]
				s[k], l[k] = scores[i], abnormal[i]
				k++
			}
		}
		if a, err := metrics.AUC(s, l); err == nil {
			aucs = append(aucs, a)
		}
	}
	if len(aucs) == 0 {
		return math.NaN(), math.NaN()
	}
	return metrics.Percentile(aucs, 2.5), metrics.Percentile(aucs, 97.5)
}

func methodLabel(method, model string) string {
	switch method {
	case rowStatistic:
		return "reference: distance to the group's mean training image (no training)"
	case rowBase0:
		return "reference: " + model + ", same network before training (iteration 0)"
	case rowBase:
		return model + " trained on this group alone"
	case rowBaseAll:
		return model + " trained once on all groups (no MADDR terms)"
	case rowMADDR0:
		return "reference: MADDR+" + model + " before training (iteration 0)"
	case rowMADDR:
		return "MADDR+" + model + " trained once on all groups"
	}
	return method
}

var demoMethods = []string{rowStatistic, rowBase0, rowMADDR0, rowBase, rowBaseAll, rowMADDR}

func runsOf(runs []demoRun, method, group string) []demoRun {
	var out []demoRun
	for _, r := range runs {
		if r.Method == method && r.Group == group {
			out = append(out, r)
		}
	}
	return out
}

func field(runs []demoRun, f func(demoRun) float64) []float64 {
	out := make([]float64, len(runs))
	for i, r := range runs {
		out[i] = f(r)
	}
	return out
}

// clearMargin is how many AUC points a trained row must stay above the better reference row (its mean minus
// its std against the reference's mean plus its std, or its bootstrap upper end) for the demo to call it a
// detector.
const clearMargin = 10.0

func writeDemoSummary(b *strings.Builder, st demoSettings, groups []string, runs []demoRun, notes []string, took time.Duration, cpu float64) {
	splitName := "test"
	if st.Split == "val" {
		splitName = "VALIDATION (selection mode: the test split was not scored)"
	}
	opts := "default options"
	if len(st.ModelOptions) > 0 {
		opts = "options " + string(st.ModelOptions)
	}
	crop := "no crop"
	if st.Crop > 0 {
		crop = fmt.Sprintf("resize 256, centre crop %d", st.Crop)
	}
	fmt.Fprintf(b, "\nmaddr demo on the phantom data: seed %d, scale %.2f, difficulty %.2f (0 obvious .. 1 barely visible).\n",
		st.DataSeed, st.Scale, st.Difficulty)
	fmt.Fprintf(b, "Model %s (%s), input %dx%d (%s), batch %d, %d iterations per run, training seeds %v.\n",
		st.Model, opts, st.Size, st.Size, crop, st.Batch, st.Iterations, st.Seeds)
	if st.HUWindows != "" {
		fmt.Fprintf(b, "CT windows (HU, centre:width): %s; other organs and the X-ray as in the default pipeline.\n", st.HUWindows)
	}
	fmt.Fprintf(b, "Took %s wall time, %.0f s CPU time (user+system of this process).\n", took.Round(time.Second), cpu)
	fmt.Fprintf(b, "Metrics in %% on each group's %s split; thresholds chosen on the group's validation split (macro-F1).\n", splitName)
	b.WriteString("Trained and iteration-0 rows: mean +- std over the training seeds; the statistic has no seed: its AUC\n")
	b.WriteString("comes with a 95% bootstrap interval (2000 resamples within each class).\n\n")
	b.WriteString("| group | row | AUC | ACC | macro-F1 |\n|---|---|---|---|---|\n")
	for _, g := range groups {
		for _, m := range demoMethods {
			rs := runsOf(runs, m, g)
			if len(rs) == 0 {
				continue
			}
			auc := metrics.FormatMeanStd(field(rs, func(r demoRun) float64 { return r.AUC }))
			if m == rowStatistic {
				lo, hi := bootstrapAUC(rs[0].Scores, rs[0].Abnormal, 2000, st.DataSeed)
				auc = fmt.Sprintf("%.2f [%.2f, %.2f]", 100*rs[0].AUC, 100*lo, 100*hi)
			}
			fmt.Fprintf(b, "| %s | %s | %s | %s | %s |\n", g, methodLabel(m, st.Model), auc,
				metrics.FormatMeanStd(field(rs, func(r demoRun) float64 { return r.Accuracy })),
				metrics.FormatMeanStd(field(rs, func(r demoRun) float64 { return r.MacroF1 })))
		}
	}
	b.WriteString("\nVerdict (a trained row counts as a detector when its mean AUC minus one std is at least ")
	fmt.Fprintf(b, "%.0f points above every reference's mean plus one std, or above the statistic's upper bootstrap end):\n", clearMargin)
	for _, g := range groups {
		ref := math.Inf(-1)
		for _, m := range []string{rowBase0, rowMADDR0} {
			if rs := runsOf(runs, m, g); len(rs) > 0 {
				mu, sd := metrics.MeanStd(field(rs, func(r demoRun) float64 { return r.AUC }))
				ref = math.Max(ref, 100*(mu+sd))
			}
		}
		if rs := runsOf(runs, rowStatistic, g); len(rs) > 0 {
			_, hi := bootstrapAUC(rs[0].Scores, rs[0].Abnormal, 2000, st.DataSeed)
			ref = math.Max(ref, 100*hi)
		}
		var parts []string
		for _, m := range []string{rowBase, rowBaseAll, rowMADDR} {
			rs := runsOf(runs, m, g)
			if len(rs) == 0 {
				continue
			}
			mu, sd := metrics.MeanStd(field(rs, func(r demoRun) float64 { return r.AUC }))
			mu, sd = 100*mu, 100*sd
			verdict := "DOES NOT clearly beat the references"
			if mu-sd >= ref+clearMargin {
				verdict = "detects"
			}
			name := st.Model
			switch m {
			case rowBaseAll:
				name = st.Model + " on all groups"
			case rowMADDR:
				name = "MADDR+" + st.Model
			}
			parts = append(parts, fmt.Sprintf("%s %s (%.1f - %.1f vs best reference %.1f)", name, verdict, mu, sd, ref))
		}
		fmt.Fprintf(b, "- %s: %s\n", g, strings.Join(parts, "; "))
	}
	b.WriteString("\n" + evaluate.F1Explanation + "\n")
	for _, n := range notes {
		fmt.Fprintf(b, "NOTE: %s\n", n)
	}
}

func filterGroups(samples []dataset.Sample, groups []string) []dataset.Sample {
	var out []dataset.Sample
	for _, s := range samples {
		if slices.Contains(groups, s.Group) {
			out = append(out, s)
		}
	}
	return out
}

func groupsOf(samples []dataset.Sample) []string {
	seen := map[string]bool{}
	var out []string
	for _, s := range samples {
		if !seen[s.Group] {
			seen[s.Group] = true
			out = append(out, s.Group)
		}
	}
	return out
}

func appendNew(list []string, items ...string) []string {
	for _, it := range items {
		if !slices.Contains(list, it) {
			list = append(list, it)
		}
	}
	return list
}
