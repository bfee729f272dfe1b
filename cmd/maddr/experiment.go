package main

import (
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"strconv"
	"strings"

	"github.com/maddr-project/maddr/baselines"
	"github.com/maddr-project/maddr/dataset"
	"github.com/maddr-project/maddr/experiment"
	"github.com/maddr-project/maddr/metrics"
	"github.com/maddr-project/maddr/train"
	"github.com/maddr-project/maddr/version"
)

func init() {
	register("experiment", "run the paper's Table 1 / Table 2 protocols over seeds (resumable, shardable) and write tables, plots and an HTML report", runExperiment)
}

// phantomIterations is the default schedule when every source is the
// phantom: long enough to separate the methods a little, short enough for
// a laptop.
const phantomIterations = 200

func runExperiment(args []string, stdout, stderr io.Writer) error {
	usage := func() {
		fmt.Fprintln(stderr, `usage: maddr experiment table1|table2 [flags]   run (or resume) a protocol into --out
       maddr experiment merge --out DIR DIR...    tables and report from shard directories

Run 'maddr experiment table1 -h' for the flags.`)
	}
	if len(args) == 0 {
		usage()
		return errUsage
	}
	switch args[0] {
	case "table1":
		return runExperimentTable(experiment.Table1, args[1:], stdout, stderr)
	case "table2":
		return runExperimentTable(experiment.Table2, args[1:], stdout, stderr)
	case "merge":
		return runExperimentMerge(args[1:], stdout, stderr)
	case "-h", "--help", "help":
		usage()
		return nil
	}
	fmt.Fprintf(stderr, "maddr experiment: unknown protocol %q\n", args[0])
	usage()
	return errUsage
}

func runExperimentTable(table experiment.Table, args []string, stdout, stderr io.Writer) error {
	name := "experiment " + string(table)
	fs := newFlagSet(name, stderr)
	def := train.Defaults("dpa")
	f := addExperimentFlags(fs, table, def)
	if err := parseConfigured(fs, args, stdout); err != nil {
		return err
	}
	if fs.NArg() > 0 {
		fmt.Fprintf(stderr, "maddr %s: unexpected arguments %v\n", name, fs.Args())
		return errUsage
	}
	if err := checkDevice(*f.device); err != nil {
		return err
	}
	crit, err := metrics.ParseCriterion(*f.criterion)
	if err != nil {
		return err
	}
	sh, err := experiment.ParseShard(*f.shard)
	if err != nil {
		return err
	}
	s := experiment.Settings{
		Table: table, Sources: f.data, Seeds: nil, Iterations: *f.iterations, BatchSize: *f.batch, LatentDim: *f.latent,
		Preprocess: def.Preprocess, Mixed: *f.mixed, Roles: experiment.DefaultRoles(), Criterion: crit, Steps: *f.grid,
		HeatMaps: *f.heat, LatentPerGroup: *f.latentPer, Untrained: *f.untrained,
		Threads: *f.threads, Workers: *f.workers, CacheBytes: *f.cacheMB << 20, CheckpointEvery: *f.every, SkipBad: *f.skipBad,
	}
	if table == experiment.Table2 {
		s.Mixed = false
	}
	for _, id := range strings.Split(*f.skipCells, ",") {
		if id = strings.TrimSpace(id); id != "" {
			s.SkipCells = append(s.SkipCells, id)
		}
	}
	if *f.split != "test" { // the default stays unrecorded, as before the flag existed
		s.Split = *f.split
	}
	if len(s.Sources) == 0 {
		s.Sources = []dataset.Spec{{Kind: "phantom"}}
	}
	s.Preprocess.Size, s.Preprocess.Resize, s.Preprocess.Crop = *f.size, *f.resize, *f.crop
	if s.Preprocess.HUWindows, err = parseWindows(*f.windowList); err != nil {
		return err
	}
	if err := s.Preprocess.Validate(); err != nil {
		return err
	}
	if *f.roles != "" {
		if s.Roles, err = experiment.ParseRoles(*f.roles); err != nil {
			return err
		}
	}
	if s.Seeds, err = experimentSeeds(*f.seeds); err != nil {
		return err
	}
	if s.Iterations == 0 && allPhantom(s.Sources) {
		s.Iterations = phantomIterations
	}
	if s.Models, s.ModelOptions, err = experimentModels(*f.models, f.mo); err != nil {
		return err
	}
	dir := *f.out
	if dir == "" {
		dir = "experiment-" + string(table)
	}
	recorded, err := recordedConfig(fs)
	if err != nil {
		return err
	}
	setThreads(*f.threads)
	return runExperimentCells(s, dir, experiment.Options{
		Shard: sh, Jobs: *f.jobs, Progress: stderr, Logf: logTo(stderr), Version: version.String(), NoReport: *f.noReport, ValEvery: *f.valEvery,
		RunConfig: recorded,
	}, stdout)
}

// experimentFlags are the flags of 'maddr experiment table1|table2'.
type experimentFlags struct {
	data       specList
	models     *string
	mo         *modelOptionFlags
	seeds      *string
	iterations *int
	batch      *int
	latent     *int
	size       *int
	resize     *int
	crop       *int
	windowList *string
	untrained  *bool
	skipCells  *string
	split      *string
	mixed      *bool
	roles      *string
	criterion  *string
	grid       *int
	heat       *int
	latentPer  *int
	shard      *string
	jobs       *int
	out        *string
	noReport   *bool
	threads    *int
	workers    *int
	cacheMB    *int64
	valEvery   *int
	every      *int
	skipBad    *bool
	device     *string
}

// addExperimentFlags defines the experiment flags on fs; table decides the default baselines.
func addExperimentFlags(fs *flag.FlagSet, table experiment.Table, def train.Config) *experimentFlags {
	f := &experimentFlags{}
	fs.Var(&f.data, "data", "data source KIND[:ROOT][,key=value...] (repeatable; default phantom)")
	defModels := "dpa,memae,fanogan,ganomaly"
	if table == experiment.Table2 {
		defModels = "dpa"
	}
	f.models = fs.String("model", defModels, "baseline(s), comma-separated (table2: one); available: "+strings.Join(baselines.Names(), ", "))
	f.mo = addModelOptionFlags(fs)
	f.seeds = fs.String("seeds", "8499,8500,8501", "comma-separated seeds; each cell is repeated once per seed")
	f.iterations = fs.Int("iterations", 0, fmt.Sprintf("optimizer steps per run (0: %d on phantom data, else each baseline's paper schedule)", phantomIterations))
	f.batch = fs.Int("batch", def.BatchSize, "batch size")
	f.latent = fs.Int("latent", 0, "latent width (0: the baseline's default; table2 row 1 always uses 16)")
	f.size = fs.Int("size", def.Preprocess.Size, "network input side in pixels")
	f.resize = fs.Int("resize", def.Preprocess.Resize, "resize before the centre crop (0: skip)")
	f.crop = fs.Int("crop", def.Preprocess.Crop, "centre crop before the final resize (0: skip)")
	f.windowList = fs.String("hu-windows", "", huWindowsUsage)
	f.untrained = fs.Bool("untrained", true, "also score every cell's network before training (iteration 0, same seed and calibration; no training, one scoring pass): the reference rows that tell what training added; a rerun adds them to cells finished without them")
	f.skipCells = fs.String("skip-cells", "", "comma-separated cell IDs (as under OUT/cells/) or patterns such as 't1-dpa-mixed-*' to leave out of the plan: "+
		"the report lists them as not planned (skipped by the user) instead of INCOMPLETE and covers the others; shards and finished cells stay as they are, and a skipped cell counts again once no longer skipped")
	f.split = fs.String("split", "test", "split the cells are scored on: test, or val to compare candidate settings without looking at the test split")
	f.mixed = fs.Bool("mixed", true, "table1: also train each baseline on all data sets without MADDR (reference for the t-SNE figure; = table2 row 3)")
	f.roles = fs.String("roles", "", "table2: groups playing LiTS, Lung-CT and Lung-X-rays, comma-separated (default liver-ct,lung-ct,chest-xray as in the phantom; real Shenzhen data is lung-xray)")
	f.criterion = fs.String("criterion", "macro-f1", "threshold criterion on validation: macro-f1, f1 or accuracy")
	f.grid = fs.Int("grid", metrics.DefaultSteps, "threshold candidates between the min and max validation score")
	f.heat = fs.Int("heat-maps", 3, "most-abnormal and most-normal test images shown per group")
	f.latentPer = fs.Int("latent-per-group", 100, "test images per group embedded in the t-SNE figure")
	f.shard = fs.String("shard", "", "run only shard i of n (i/n, 1 <= i <= n): cell k of the plan belongs to shard (k mod n)+1")
	f.out = fs.String("out", "", "experiment directory (default experiment-"+string(table)+"); rerunning resumes it")
	f.noReport = fs.Bool("no-report", false, "skip the tables and report at the end (e.g. in a job array; run merge afterwards)")
	f.threads = fs.Int("threads", 0, "libtorch threads (0: all cores, divided among --jobs)")
	f.jobs = fs.Int("jobs", 1, "cells trained at once in this process (small networks use several cores better as several one-thread runs)")
	f.workers = fs.Int("workers", 0, "data loading workers (0: all cores)")
	f.cacheMB = fs.Int64("cache-mb", 1024, "memory for cached preprocessed images (MiB)")
	f.valEvery = fs.Int("val-every", 0, "evaluate validation AUC per group every N iterations, plus before the first and after the last (0: 5 times evenly spaced plus both ends; -1: never); it does not change the trained weights")
	f.every = fs.Int("checkpoint-every", 0, "checkpoint interval in iterations (0: a fifth of the run, at most 1000)")
	f.skipBad = fs.Bool("skip-bad", false, "log and skip unreadable images")
	f.device = fs.String("device", "cpu", "cpu or cuda[:N]")
	return f
}

// experimentSeeds reads --seeds: each cell is repeated once per seed.
func experimentSeeds(list string) ([]uint64, error) {
	var seeds []uint64
	for _, part := range strings.Split(list, ",") {
		v, err := strconv.ParseUint(strings.TrimSpace(part), 10, 64)
		if err != nil {
			return nil, fmt.Errorf("--seeds %q: %q is not a seed", list, part)
		}
		seeds = append(seeds, v)
	}
	return seeds, nil
}

// experimentModels reads --model and gives each baseline the --model-options
// that belong to it.
func experimentModels(list string, mo *modelOptionFlags) ([]string, map[string]json.RawMessage, error) {
	raw, err := mo.options()
	if err != nil {
		return nil, nil, err
	}
	var models []string
	options := map[string]json.RawMessage{}
	for _, m := range strings.Split(list, ",") {
		m = strings.TrimSpace(m)
		if m == "" {
			continue
		}
		models = append(models, m)
		// The VGG settings belong to DPA; other baselines reject unknown keys.
		if m == "dpa" {
			options[m] = raw
		} else if *mo.raw != "" {
			options[m] = json.RawMessage(*mo.raw)
		}
	}
	return models, options, nil
}

// runExperimentCells runs (or resumes) the planned cells into dir until done
// or interrupted, and prints what it did and wrote.
func runExperimentCells(s experiment.Settings, dir string, o experiment.Options, stdout io.Writer) error {
	ctx, cancel := signal.NotifyContext(context.Background(), os.Interrupt)
	defer cancel()
	sum, err := experiment.Run(ctx, s, dir, o)
	if err != nil {
		if ctx.Err() != nil {
			return fmt.Errorf("%w; finished cells are kept: rerun the same command to resume", err)
		}
		return err
	}
	notPlanned := ""
	if len(sum.NotPlanned) > 0 {
		notPlanned = fmt.Sprintf("; %d not planned (skipped by the user)", len(sum.NotPlanned))
	}
	fmt.Fprintf(stdout, "%s: %d cells planned, %d in this shard (%s): %d run now, %d finished before%s\n",
		s.Table, sum.Planned, sum.Owned, o.Shard, len(sum.Ran), len(sum.Skipped), notPlanned)
	return printOutputs(stdout, dir, string(s.Table), sum.Outputs)
}

func allPhantom(specs []dataset.Spec) bool {
	for _, s := range specs {
		if s.Kind != "phantom" {
			return false
		}
	}
	return len(specs) > 0
}

// printOutputs prints the Markdown table and where everything went.
func printOutputs(stdout io.Writer, dir, table string, files []string) error {
	if len(files) == 0 {
		return nil
	}
	b, err := os.ReadFile(dir + "/" + table + ".md")
	if err == nil {
		fmt.Fprintf(stdout, "\n%s\n", b)
	}
	fmt.Fprintf(stdout, "wrote %s/%s.{md,csv,json}, %s/report.html and %d plots in %s/plots\n", dir, table, dir, len(files)-4, dir)
	return nil
}

func runExperimentMerge(args []string, stdout, stderr io.Writer) error {
	fs := newFlagSet("experiment merge", stderr)
	out := fs.String("out", "", "directory for the merged tables and report (required)")
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	if *out == "" || fs.NArg() == 0 {
		fmt.Fprintln(stderr, "usage: maddr experiment merge --out DIR EXPERIMENT_DIR...")
		return errUsage
	}
	files, err := experiment.Merge(*out, fs.Args(), logTo(stderr))
	if err != nil {
		return err
	}
	table := ""
	for _, f := range files {
		if strings.HasSuffix(f, ".md") {
			table = strings.TrimSuffix(f[strings.LastIndex(f, "/")+1:], ".md")
		}
	}
	return printOutputs(stdout, *out, table, files)
}
