package main

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"maps"
	"math"
	"os"
	"os/signal"
	"path/filepath"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/maddr-project/maddr/atomicfile"
	"github.com/maddr-project/maddr/dataset"
	"github.com/maddr-project/maddr/evaluate"
	"github.com/maddr-project/maddr/experiment"
	"github.com/maddr-project/maddr/infer"
	"github.com/maddr-project/maddr/maddr"
	"github.com/maddr-project/maddr/medimg"
	"github.com/maddr-project/maddr/metrics"
	"github.com/maddr-project/maddr/modelfile"
	"github.com/maddr-project/maddr/preprocess"
	"github.com/maddr-project/maddr/report"
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
	demoDefaultSize       = 16
	demoDefaultSeeds      = "1,2,3"
	demoDefaultWindows    = "liver=60:160,lung=-800:400"
	demoDefaultScale      = 3.0
)

// demoIterations is each baseline's default schedule in the demo: 3 seeds x (3 single-group baselines, one
// shared baseline, one MADDR run), two at a time (--jobs), must fit in about 10 minutes on 2 idle cores.
func demoIterations(model string) int {
	switch model {
	case "dpa":
		return 120
	case "fanogan":
		return 150
	}
	return 1200
}

// demoMADDR is MADDR's configuration in the demo's MADDR row (its mixup window is scaled to the schedule): the
// paper's organ and modality heads and mixup, without the center loss. On validation, every center-loss weight
// tried (1, 0.1, 0.01, averaged over dimensions) cost the shared AE 10-15 AUC points on the chest X-ray at this
// budget (docs/demo-settings.md); docs/results.md runs the full method.
func demoMADDR() maddr.Config {
	c := maddr.Paper()
	c.Center = false
	return c
}

// demoMADDRName says which of MADDR's terms the demo's MADDR row trains with.
const demoMADDRName = "(heads + mixup, no center loss)"

// demoModelOptions narrow the GAN baselines for the demo; their paper-size networks need hours per run on a CPU.
var demoModelOptions = map[string]string{
	"fanogan": `{"width": 16}`,
}

// Method names of the demo's rows; a trained row's network before training is its name plus iter0Suffix.
const (
	rowStatistic = "statistic"
	rowBase      = "baseline"
	// rowBaseAll is the baseline trained once on all groups without MADDR's terms: it separates what sharing one
	// network across groups costs from what MADDR's heads, center loss and mixup add.
	rowBaseAll  = "baseline-all"
	rowMADDR    = "maddr"
	iter0Suffix = "-iter0"
	rowBase0    = rowBase + iter0Suffix
	rowMADDR0   = rowMADDR + iter0Suffix
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

// demoSettings are one demo run's settings, recorded in demo.json.
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
	Jobs         int             `json:"jobs"`
	HUWindows    string          `json:"hu_windows,omitempty"`
	// Preprocess is the pipeline Size, Crop and HUWindows give.
	Preprocess preprocess.Config `json:"-"`
}

// defaultDemoJobs is two cells at once where there are two cores or more.
func defaultDemoJobs() int { return min(2, runtime.NumCPU()) }

func runDemo(args []string, stdout, stderr io.Writer) error {
	st, out, err := parseDemoFlags(args, stderr)
	if err != nil {
		return err
	}
	ctx, cancel := signal.NotifyContext(context.Background(), os.Interrupt)
	defer cancel()
	setThreads(st.Threads)
	start, cpu0 := time.Now(), cpuSeconds()

	data, err := generateDemoData(st)
	if err != nil {
		return err
	}
	fmt.Fprintf(stderr, "demo: phantom data (seed %d, scale %.2f, difficulty %.2f): %d images in groups %s; %s, %d iterations per run, %dx%d input, training seeds %v\n",
		st.DataSeed, st.Scale, st.Difficulty, len(data.samples), strings.Join(data.groups, ", "), st.Model, st.Iterations, st.Size, st.Size, st.Seeds)
	cells, stat, err := runDemoCells(ctx, st, data, out, stderr)
	if err != nil {
		return err
	}
	runs, err := statisticRuns(stat, data.groups)
	if err != nil {
		return err
	}
	trained, err := runsOfCells(cells)
	if err != nil {
		return err
	}
	runs = append(runs, trained...)
	montage, montageTitles, err := demoMontage(ctx, st, data, cells)
	if err != nil {
		return err
	}
	var notes []string
	for _, c := range cells {
		notes = appendNew(notes, c.Notes...)
	}

	took, cpu := time.Since(start), cpuSeconds()-cpu0
	var b strings.Builder
	writeDemoSummary(&b, st, data.groups, runs, notes, took, cpu)
	sens := sensitivity(runs, data.lesions, data.groups)
	writeSensitivity(&b, sens, st)
	fmt.Fprint(stdout, b.String())

	plots, err := demoPlots(st, sens, montage, montageTitles)
	if err != nil {
		return err
	}
	files := map[string][]byte{"demo.md": []byte(b.String())}
	maps.Copy(files, plots)
	if files["demo.json"], err = json.MarshalIndent(map[string]any{"settings": st, "phantom": data.phantom, "runs": runs, "sensitivity": sens,
		"notes": notes, "wall_seconds": took.Seconds(), "cpu_seconds": cpu}, "", "  "); err != nil {
		return err
	}
	if err := writeFiles(out, files); err != nil {
		return err
	}
	fmt.Fprintf(stdout, "\nreport: %s (plots %s), models: %s\n", filepath.Join(out, "demo.md"),
		strings.Join(slices.Sorted(maps.Keys(plots)), ", "), filepath.Join(out, experiment.CellsDir, "*", train.ModelFile))
	return nil
}

// demoPlots are the sensitivity plots and the heat-map montage, as PNG files by name.
func demoPlots(st demoSettings, sens []sensBin, montage [][]report.Tile, montageTitles []string) (map[string][]byte, error) {
	plots, err := sensitivityPlots(sens, st)
	if err != nil {
		return nil, err
	}
	if len(montage) > 0 {
		img, err := report.HeatMontage(montage, montageTitles, st.Size)
		if err != nil {
			return nil, err
		}
		if plots["heatmaps.png"], err = report.PNG(img); err != nil {
			return nil, err
		}
	}
	return plots, nil
}

// parseDemoFlags reads the demo's flags into its settings and report directory.
func parseDemoFlags(args []string, stderr io.Writer) (demoSettings, string, error) {
	fs := newFlagSet("demo", stderr)
	model := fs.String("model", demoDefaultModel, "baseline to compare with and without MADDR (ae: the fastest baseline that detects here, see docs/demo-settings.md)")
	mo := addModelOptionFlags(fs)
	iterations := fs.Int("iterations", 0, "training iterations per run (0: the demo's schedule for the model, 1200 for ae)")
	batch := fs.Int("batch", 32, "batch size")
	size := fs.Int("size", demoDefaultSize, "network input side (the paper's is 64)")
	crop := fs.Int("crop", -1, "centre crop after the resize to 256 (-1: the default pipeline's 224; 0: none)")
	scale := fs.Float64("scale", demoDefaultScale, "phantom data set size as a multiple of the paper's split sizes (more distinct training images and larger validation and test splits; training runs a fixed number of iterations)")
	difficulty := fs.Float64("difficulty", demoDefaultDifficulty, "phantom anomaly subtlety (0 obvious .. 1 barely visible)")
	dataSeed := fs.Uint64("data-seed", 8499, "seed of the generated phantom data")
	seedList := fs.String("seeds", demoDefaultSeeds, "comma-separated training seeds; every trained row reports mean +- std over them")
	split := fs.String("split", "test", "split to report: test, or val to compare candidate settings without looking at the test split")
	windowList := fs.String("hu-windows", demoDefaultWindows, huWindowsUsage+"; the demo's narrower windows were chosen on validation")
	threads := fs.Int("threads", 0, "libtorch threads (0: all cores, divided among --jobs)")
	jobs := fs.Int("jobs", defaultDemoJobs(), "cells trained at once (the AE's small steps use two cores better as two one-thread runs than as one two-thread run)")
	out := fs.String("out", "demo-out", "report directory; the runs are experiment cells under its cells/, and a rerun with the same settings resumes them")
	if err := parseFlags(fs, args); err != nil {
		return demoSettings{}, "", err
	}
	if fs.NArg() > 0 {
		return demoSettings{}, "", errUsage
	}
	if *split != "test" && *split != "val" {
		return demoSettings{}, "", fmt.Errorf("--split %q: want test or val", *split)
	}
	seeds, err := parseSeeds(*seedList)
	if err != nil {
		return demoSettings{}, "", err
	}
	windows, err := parseWindows(*windowList)
	if err != nil {
		return demoSettings{}, "", err
	}
	opts, err := demoModelOptionsFor(*model, mo, stderr)
	if err != nil {
		return demoSettings{}, "", err
	}
	st := demoSettings{Model: *model, ModelOptions: opts, Iterations: *iterations, Batch: *batch, Size: *size,
		Difficulty: *difficulty, Scale: *scale, DataSeed: *dataSeed, Seeds: seeds, Split: *split, Threads: *threads, Jobs: *jobs, HUWindows: *windowList}
	if st.Iterations == 0 {
		st.Iterations = demoIterations(*model)
	}
	st.Preprocess = train.Defaults(st.Model).Preprocess
	st.Preprocess.Size, st.Preprocess.HUWindows = st.Size, windows
	if *crop >= 0 {
		st.Preprocess.Crop = *crop
	}
	st.Crop = st.Preprocess.Crop
	return st, *out, nil
}

// demoModelOptionsFor are the model options of the flags, or the demo's narrower network when none are given;
// DPA without VGG weights runs with a random VGG, said loudly.
func demoModelOptionsFor(model string, mo *modelOptionFlags, stderr io.Writer) (json.RawMessage, error) {
	opts, err := mo.options()
	if err != nil {
		return nil, err
	}
	if model == "dpa" && !*mo.vggRandomInit && *mo.vggWeights == "" && os.Getenv(vggWeightsEnv) == "" {
		// No ImageNet weights can be downloaded here; the demo says so loudly instead of refusing.
		fmt.Fprintln(stderr, "demo: no VGG19 weights configured ($"+vggWeightsEnv+"): DPA runs with a RANDOMLY initialised perceptual network, so numbers are not the paper's")
		*mo.vggRandomInit = true
		if opts, err = mo.options(); err != nil {
			return nil, err
		}
	}
	if len(opts) == 0 {
		if small, ok := demoModelOptions[model]; ok {
			opts = json.RawMessage(small)
			fmt.Fprintf(stderr, "demo: %s runs with %s so the demo fits a CPU budget (the paper's network is larger; see docs/models/%s.md)\n", model, small, model)
		}
	}
	return opts, nil
}

// heatmapRow shows a trained model's anomaly map (its reconstruction error for the autoencoders) on the abnormal
// cases with the largest, median and smallest largest-lesion, and on two normal cases, so a user sees what the
// network reconstructs and what it misses.
func heatmapRow(ctx context.Context, m *modelfile.Model, set []dataset.Sample, lesions map[string]caseLesion) ([]report.Tile, error) {
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
	pp := m.Manifest.Preprocess
	xs, err := experiment.Inputs(ctx, pp, pick)
	if err != nil {
		return nil, err
	}
	res, err := infer.New(m).InOrder(ctx, xs, infer.Scores|infer.Maps)
	if err != nil {
		return nil, err
	}
	var tiles []report.Tile
	for i, smp := range pick {
		caption := fmt.Sprintf("score %.4g", res.Scores[i])
		if l, ok := lesions[smp.ID]; ok {
			caption = fmt.Sprintf("r %.1f px, %.4g", l.RadiusPx, res.Scores[i])
		}
		tiles = append(tiles, report.Tile{Image: xs[i], Map: res.Maps[i], Caption: caption, Abnormal: smp.Label == dataset.Abnormal})
	}
	return tiles, nil
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
		return "reference: MADDR+" + model + " " + demoMADDRName + " before training (iteration 0)"
	case rowMADDR:
		return "MADDR+" + model + " " + demoMADDRName + " trained once on all groups"
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
	fmt.Fprintf(b, "MADDR row: organ and modality heads (focal loss) and mixup, center loss off (chosen on validation, docs/demo-settings.md; the full method is in docs/results.md).\n")
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
				lo, hi := metrics.BootstrapAUC(rs[0].Scores, rs[0].Abnormal, 2000, st.DataSeed)
				auc = fmt.Sprintf("%.2f [%.2f, %.2f]", 100*rs[0].AUC, 100*lo, 100*hi)
			}
			fmt.Fprintf(b, "| %s | %s | %s | %s | %s |\n", g, methodLabel(m, st.Model), auc,
				metrics.FormatMeanStd(field(rs, func(r demoRun) float64 { return r.Accuracy })),
				metrics.FormatMeanStd(field(rs, func(r demoRun) float64 { return r.MacroF1 })))
		}
	}
	writeVerdicts(b, st, groups, runs)
	b.WriteString("\n" + evaluate.F1Explanation + "\n")
	for _, n := range notes {
		fmt.Fprintf(b, "NOTE: %s\n", n)
	}
}

// writeVerdicts says per group whether each trained row beats the references by the clear margin.
func writeVerdicts(b *strings.Builder, st demoSettings, groups []string, runs []demoRun) {
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
			_, hi := metrics.BootstrapAUC(rs[0].Scores, rs[0].Abnormal, 2000, st.DataSeed)
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
}

// writeFiles writes each named content into dir.
func writeFiles(dir string, files map[string][]byte) error {
	for name, content := range files {
		if err := atomicfile.Write(filepath.Join(dir, name), func(w io.Writer) error { _, err := w.Write(content); return err }); err != nil {
			return err
		}
	}
	return nil
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
