package main

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"os/signal"
	"path/filepath"

	"github.com/maddr-project/maddr/atomicfile"
	"github.com/maddr-project/maddr/dataset"
	"github.com/maddr-project/maddr/evaluate"
	"github.com/maddr-project/maddr/metrics"
	"github.com/maddr-project/maddr/modelfile"
	"github.com/maddr-project/maddr/train"
)

func init() {
	register("eval", "evaluate a trained model per organ/modality group (AUC, F1, ACC, AUPR)", runEval)
}

// resolveModel accepts a model file or a run directory holding one.
func resolveModel(path string) string {
	if st, err := os.Stat(path); err == nil && st.IsDir() {
		return filepath.Join(path, train.ModelFile)
	}
	return path
}

// trainingSources reads the data sources a model was trained on.
func trainingSources(m modelfile.Manifest) []dataset.Spec {
	var t struct {
		Sources []dataset.Spec `json:"sources"`
	}
	if len(m.Training) > 0 && json.Unmarshal(m.Training, &t) == nil {
		return t.Sources
	}
	return nil
}

func runEval(args []string, stdout, stderr io.Writer) error {
	fs := newFlagSet("eval", stderr)
	modelPath := fs.String("model", "", "model file or run directory (required)")
	var data specList
	fs.Var(&data, "data", "data source with val/test splits (repeatable; default: the sources the model was trained on)")
	outDir := fs.String("out", "", "where to write eval.json and eval.md (default: the model's directory)")
	criterion := fs.String("criterion", "macro-f1", "threshold criterion on validation: macro-f1, f1 (abnormal class) or accuracy")
	steps := fs.Int("grid", 1000, "number of threshold candidates between the min and max validation score")
	fallback := fs.Float64("fallback-percentile", 95, "percentile of normal validation scores used when validation has no abnormal image")
	save := fs.Bool("save-thresholds", true, "store the chosen per-group thresholds in the model file (used by 'maddr score')")
	skipBad := fs.Bool("skip-bad", false, "skip unreadable images instead of stopping")
	threads := fs.Int("threads", 0, "libtorch threads (0: all cores)")
	precision := precisionFlag(fs)
	comparePrecision := fs.Bool("compare-precision", false, "score val and test in fp32 and in bf16 and report the per-group AUC difference "+
		"(writes precision.json and precision.md; no thresholds are saved)")
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	if *modelPath == "" || fs.NArg() > 0 {
		fmt.Fprintln(stderr, "maddr eval: --model is required")
		return errUsage
	}
	crit, err := metrics.ParseCriterion(*criterion)
	if err != nil {
		return err
	}
	setThreads(*threads)
	path := resolveModel(*modelPath)
	m, err := modelfile.Load(path)
	if err != nil {
		return err
	}
	if err := setPrecision(m, *precision, stderr); err != nil {
		return err
	}
	specs := []dataset.Spec(data)
	if len(specs) == 0 {
		specs = trainingSources(m.Manifest)
		if len(specs) == 0 {
			return fmt.Errorf("%s does not record its training data: give --data", path)
		}
	}
	ctx, cancel := signal.NotifyContext(context.Background(), os.Interrupt)
	defer cancel()
	samples, err := dataset.Open(specs, dataset.Options{Splits: []dataset.Split{dataset.Val, dataset.Test}, SkipBad: *skipBad, Logf: logTo(stderr)})
	if err != nil {
		return err
	}
	dir := *outDir
	if dir == "" {
		dir = filepath.Dir(path)
	}
	if *comparePrecision {
		return runComparePrecision(ctx, m, samples, metrics.SelectOptions{Steps: *steps, Criterion: crit, FallbackPercentile: *fallback}, *skipBad, dir, stdout)
	}
	rep, err := evaluate.Evaluate(ctx, m, samples, metrics.SelectOptions{Steps: *steps, Criterion: crit, FallbackPercentile: *fallback}, *skipBad)
	if err != nil {
		return err
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return err
	}
	if err := atomicfile.Write(filepath.Join(dir, "eval.json"), rep.WriteJSON); err != nil {
		return err
	}
	if err := atomicfile.Write(filepath.Join(dir, "eval.md"), rep.WriteMarkdown); err != nil {
		return err
	}
	if *save {
		th := rep.Thresholds()
		if err := modelfile.UpdateManifest(path, func(mf *modelfile.Manifest) error { mf.Thresholds = th; return nil }); err != nil {
			return err
		}
	}
	if err := rep.WriteMarkdown(stdout); err != nil {
		return err
	}
	fmt.Fprintf(stdout, "\nwrote %s and %s\n", filepath.Join(dir, "eval.json"), filepath.Join(dir, "eval.md"))
	return nil
}

// runComparePrecision is eval --compare-precision.
func runComparePrecision(ctx context.Context, m *modelfile.Model, samples []dataset.Sample, opts metrics.SelectOptions, skipBad bool, dir string, stdout io.Writer) error {
	c, err := evaluate.ComparePrecision(ctx, m, samples, opts, skipBad)
	if err != nil {
		return err
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return err
	}
	if err := atomicfile.Write(filepath.Join(dir, "precision.json"), c.WriteJSON); err != nil {
		return err
	}
	if err := atomicfile.Write(filepath.Join(dir, "precision.md"), c.WriteMarkdown); err != nil {
		return err
	}
	if err := c.WriteMarkdown(stdout); err != nil {
		return err
	}
	fmt.Fprintf(stdout, "\nwrote %s and %s\n", filepath.Join(dir, "precision.json"), filepath.Join(dir, "precision.md"))
	return nil
}
