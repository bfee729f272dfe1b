package main

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"os/signal"
	"path/filepath"
	"strings"
	"time"

	"github.com/maddr-project/maddr/dataset"
	"github.com/maddr-project/maddr/evaluate"
	"github.com/maddr-project/maddr/maddr"
	"github.com/maddr-project/maddr/metrics"
	"github.com/maddr-project/maddr/modelfile"
	"github.com/maddr-project/maddr/phantom"
	"github.com/maddr-project/maddr/safetensors"
	"github.com/maddr-project/maddr/train"
)

func init() {
	register("demo", "train baseline vs MADDR on the built-in phantom data and print a Table-1-style comparison", runDemo)
}

// demoRow is one group's line of the comparison.
type demoRow struct {
	Group    string            `json:"group"`
	Baseline metrics.Report    `json:"baseline"`
	MADDR    metrics.Report    `json:"maddr"`
	BaseTh   metrics.Threshold `json:"baseline_threshold"`
	MADDRTh  metrics.Threshold `json:"maddr_threshold"`
}

func runDemo(args []string, stdout, stderr io.Writer) error {
	fs := newFlagSet("demo", stderr)
	model := fs.String("model", "dpa", "baseline to compare with and without MADDR")
	mo := addModelOptionFlags(fs)
	iterations := fs.Int("iterations", 0, "training iterations per model (0: a short schedule that fits in ~10 minutes on 2 cores)")
	batch := fs.Int("batch", 32, "batch size")
	size := fs.Int("size", 64, "network input side")
	scale := fs.Float64("scale", 0.5, "phantom data set size as a fraction of the paper's split sizes")
	// At the phantom's default difficulty (0.5) a plain autoencoder stays at chance (AUC ~0.50 after 600
	// iterations); at 0.1 it reaches ~0.57-0.59, the range of the paper's baselines (phantom/README.md).
	difficulty := fs.Float64("difficulty", 0.1, "phantom anomaly subtlety (0 obvious .. 1 barely visible)")
	seed := fs.Uint64("seed", 8499, "random seed")
	threads := fs.Int("threads", 0, "libtorch threads (0: all cores)")
	out := fs.String("out", "demo-out", "report directory")
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	if fs.NArg() > 0 {
		return errUsage
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
	iters := *iterations
	if iters == 0 {
		iters = demoIterations(*model)
	}
	ctx, cancel := signal.NotifyContext(context.Background(), os.Interrupt)
	defer cancel()
	setThreads(*threads)
	train.Version = buildVersion()
	start := time.Now()

	pc := phantom.DefaultConfig()
	pc.Seed, pc.Scale, pc.Difficulty = *seed, *scale, *difficulty
	cases, err := phantom.Generate(pc)
	if err != nil {
		return err
	}
	samples, _, err := dataset.PhantomSamples(cases, dataset.AllSplits)
	if err != nil {
		return err
	}
	groups := groupsOf(samples)
	fmt.Fprintf(stderr, "demo: phantom data (seed %d, scale %.2f, difficulty %.2f): %d images in groups %s; %d iterations per model\n",
		*seed, *scale, *difficulty, len(samples), strings.Join(groups, ", "), iters)

	base := train.Defaults(*model)
	base.Iterations, base.BatchSize, base.Seed, base.Threads, base.ModelOptions = iters, *batch, *seed, *threads, opts
	base.Preprocess.Size = *size
	base.CheckpointEvery = iters
	base.Sources = nil

	var notes []string
	evalOne := func(dir string, cfg train.Config, label string, evalSamples []dataset.Sample) (*evaluate.Report, error) {
		if err := os.RemoveAll(dir); err != nil {
			return nil, err
		}
		res, err := train.Run(ctx, cfg, dir, train.Options{Samples: samples, Progress: stderr, Logf: logTo(stderr), Label: label})
		if err != nil {
			return nil, fmt.Errorf("%s: %w", label, err)
		}
		m, err := modelfile.Load(res.ModelPath)
		if err != nil {
			return nil, err
		}
		rep, err := evaluate.Evaluate(ctx, m, evalSamples, metrics.SelectOptions{}, false)
		if err != nil {
			return nil, fmt.Errorf("%s: %w", label, err)
		}
		th := rep.Thresholds()
		if err := modelfile.UpdateManifest(res.ModelPath, func(mf *modelfile.Manifest) error { mf.Thresholds = th; return nil }); err != nil {
			return nil, err
		}
		notes = appendNew(notes, res.Notes...)
		return rep, nil
	}

	rows := map[string]*demoRow{}
	for _, g := range groups {
		cfg := base
		cfg.Groups = []string{g}
		cfg.MADDR = maddr.BaselineOnly()
		rep, err := evalOne(filepath.Join(*out, "baseline-"+g), cfg, *model+" on "+g, filterGroup(samples, g))
		if err != nil {
			return err
		}
		rows[g] = &demoRow{Group: g, Baseline: rep.Results.Groups[0].Test, BaseTh: rep.Results.Groups[0].Threshold}
	}
	cfg := base
	cfg.MADDR = maddr.Paper().ScaleMixup(iters)
	rep, err := evalOne(filepath.Join(*out, "maddr"), cfg, "MADDR+"+*model+" on all", samples)
	if err != nil {
		return err
	}
	for _, gr := range rep.Results.Groups {
		if r, ok := rows[gr.Group]; ok {
			r.MADDR, r.MADDRTh = gr.Test, gr.Threshold
		}
	}
	var ordered []demoRow
	for _, g := range groups {
		ordered = append(ordered, *rows[g])
	}
	table := demoTable(*model, ordered, notes, iters, time.Since(start))
	fmt.Fprint(stdout, table)
	js, _ := json.MarshalIndent(map[string]any{"model": *model, "iterations": iters, "rows": ordered, "notes": notes,
		"phantom": pc, "seconds": time.Since(start).Seconds()}, "", "  ")
	if err := os.MkdirAll(*out, 0o755); err != nil {
		return err
	}
	if err := safetensors.WriteAtomic(filepath.Join(*out, "demo.json"), func(w io.Writer) error { _, err := w.Write(js); return err }); err != nil {
		return err
	}
	if err := safetensors.WriteAtomic(filepath.Join(*out, "demo.md"), func(w io.Writer) error { _, err := io.WriteString(w, table); return err }); err != nil {
		return err
	}
	fmt.Fprintf(stdout, "\nreport: %s, models: %s/*/model.safetensors\n", filepath.Join(*out, "demo.md"), *out)
	return nil
}

// demoModelOptions narrow the GAN baselines for the demo; their paper-size
// networks need hours per run on a CPU.
var demoModelOptions = map[string]string{
	"fanogan": `{"width": 16}`,
}

// demoIterations is a schedule that keeps the whole demo near 10 minutes on
// 2 CPU cores: 3 single-group baselines plus one MADDR run.
func demoIterations(model string) int {
	switch model {
	case "dpa":
		// ~0.8 s per step on 2 cores (BENCHMARKS.md): 4 runs x 120 steps plus scoring stay under 10 minutes.
		return 120
	case "fanogan":
		return 150
	}
	return 300
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

func filterGroup(samples []dataset.Sample, g string) []dataset.Sample {
	var out []dataset.Sample
	for _, s := range samples {
		if s.Group == g {
			out = append(out, s)
		}
	}
	return out
}

func appendNew(list []string, items ...string) []string {
	for _, it := range items {
		found := false
		for _, l := range list {
			if l == it {
				found = true
			}
		}
		if !found {
			list = append(list, it)
		}
	}
	return list
}

func pctOf(p *float64) string {
	if p == nil {
		return "  n/a"
	}
	return fmt.Sprintf("%5.2f", 100**p)
}

// demoTable formats the comparison like the paper's Table 1.
func demoTable(model string, rows []demoRow, notes []string, iters int, took time.Duration) string {
	var b strings.Builder
	fmt.Fprintf(&b, "\nPhantom data, %d iterations per model, %s in total. Metrics in %% on each group's test split;\n", iters, took.Round(time.Second))
	b.WriteString("thresholds chosen on the group's validation split (macro-F1 grid search).\n\n")
	fmt.Fprintf(&b, "| group | %s ACC | %s F1 | %s AUC | MADDR+%s ACC | MADDR+%s F1 | MADDR+%s AUC |\n", model, model, model, model, model, model)
	b.WriteString("|---|---|---|---|---|---|---|\n")
	for _, r := range rows {
		fmt.Fprintf(&b, "| %s | %.2f | %.2f | %s | %.2f | %.2f | %s |\n", r.Group,
			100*r.Baseline.Accuracy, 100*r.Baseline.MacroF1, pctOf(r.Baseline.AUC),
			100*r.MADDR.Accuracy, 100*r.MADDR.MacroF1, pctOf(r.MADDR.AUC))
	}
	b.WriteString("\n" + evaluate.F1Explanation + "\n")
	for _, n := range notes {
		fmt.Fprintf(&b, "NOTE: %s\n", n)
	}
	return b.String()
}
