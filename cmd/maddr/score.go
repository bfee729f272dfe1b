package main

import (
	"context"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/signal"
	"path/filepath"
	"strings"

	"github.com/maddr-project/maddr/atomicfile"
	"github.com/maddr-project/maddr/score"
	"github.com/maddr-project/maddr/version"
	"github.com/maddr-project/maddr/watch"
)

func init() {
	register("score", "score image files, folders, DICOM series and NIfTI volumes with a trained model (CSV or JSON)", runScore)
}

// scoreFlags are the scoring rules shared by 'score' and 'serve'.
type scoreFlags struct {
	minConf, ood *float64
	batch        *int
	hu           *bool
}

func addScoreFlags(fs *flag.FlagSet) *scoreFlags {
	d := score.DefaultOptions()
	return &scoreFlags{
		minConf: fs.Float64("min-confidence", d.MinConfidence, "out of scope when the organ or modality head's top probability is lower (0: off)"),
		ood:     fs.Float64("ood-factor", d.OODFactor, "out of scope when the raw score is more than this many times the group's threshold (0: off)"),
		batch:   fs.Int("batch", d.BatchSize, "images per forward pass (fixed: shards and single runs must use the same value to agree bit for bit)"),
		hu:      fs.Bool("hu", false, "NIfTI values are Hounsfield units (CT), so the organ's CT window applies"),
	}
}

func (f *scoreFlags) options() score.Options {
	return score.Options{MinConfidence: *f.minConf, OODFactor: *f.ood, BatchSize: *f.batch}
}

// scoreArgs are the parsed flags and inputs of 'maddr score'.
type scoreArgs struct {
	modelPath, out, format, heatmaps, group string
	shard                                   *score.Shard
	sf                                      *scoreFlags
	skipBad, quiet                          bool
	threads                                 int
	precision                               string
	af                                      *archiveFlags
	paths                                   []string
}

func runScore(args []string, stdout, stderr io.Writer) error {
	a, err := parseScoreArgs(args, stdout, stderr)
	if err != nil {
		return err
	}
	setThreads(a.threads)
	path := resolveModel(a.modelPath)
	m, sc, digest, err := openScorer(path, a.precision, a.sf, stderr)
	if err != nil {
		return err
	}
	req := score.Request{Group: a.group}
	if err := sc.CheckRequest(req); err != nil {
		return err
	}
	ctx, cancel := signal.NotifyContext(context.Background(), os.Interrupt)
	defer cancel()
	units, all, cleanup, err := scoreUnits(ctx, a, stderr)
	if err != nil {
		return err
	}
	defer cleanup()
	if len(m.Manifest.Thresholds) == 0 {
		fmt.Fprintf(stderr, "score: %s has no thresholds yet, so decisions will be %q: run 'maddr eval --model %s' first\n", path, score.Unknown, a.modelPath)
	}
	h := score.Header{Format: score.OutputFormat, Version: version.String(), Model: path, ModelSHA256: digest, Shard: a.shard,
		Settings: score.Settings{Options: sc.Options(), Group: a.group, HU: *a.sf.hu, Precision: sc.Precision()}}
	ro := score.RunOptions{Request: req, Read: score.ReadOptions{HU: *a.sf.hu}, HeatmapDir: a.heatmaps}
	if !a.quiet {
		ro.Progress = stderr
	}
	st, err := writeScores(ctx, sc, units, h, ro, a, stdout)
	if err != nil {
		return err
	}
	return summariseScoring(stderr, a, st, len(units), all, sc.Precision())
}

// parseScoreArgs reads the flags of 'maddr score' and checks them.
func parseScoreArgs(args []string, stdout, stderr io.Writer) (*scoreArgs, error) {
	fs := newFlagSet("score", stderr)
	fs.Usage = func() {
		fmt.Fprintln(stderr, "usage: maddr score --model M [flags] PATH...\n\nPATH: image files (PNG, JPEG, DICOM, NIfTI), "+
			"folders (walked; a folder's DICOM files form one series), or DICOMweb study/series URLs\n"+
			"(http(s)://HOST/ROOT/studies/UID[/series/UID], retrieved with WADO-RS; each series is one unit).\n\nflags:")
		fs.PrintDefaults()
	}
	modelPath := fs.String("model", "", "model file or run directory (required)")
	out := fs.String("out", "-", "output file; .json gives JSON, anything else CSV; - writes CSV to stdout")
	format := fs.String("format", "", "csv or json (default: from --out)")
	heatmaps := fs.String("heatmap", "", "write a heat map overlay PNG per image into this folder")
	group := fs.String("group", "", "judge every image against this group's threshold instead of routing by the heads")
	shard := fs.String("shard", "", "score only part i/n of the inputs (1 <= i <= n), e.g. $((JOB_COMPLETION_INDEX+1))/8")
	sf := addScoreFlags(fs)
	skipBad := fs.Bool("skip-bad", false, "exit 0 even when some images could not be read (their rows say error either way)")
	threads := fs.Int("threads", 0, "libtorch threads (0: all cores)")
	precision := precisionFlag(fs)
	quiet := fs.Bool("quiet", false, "no progress bar")
	af := addArchiveFlags(fs)
	if err := parseConfigured(fs, args, stdout); err != nil {
		return nil, err
	}
	if *modelPath == "" || fs.NArg() == 0 {
		fmt.Fprintln(stderr, "maddr score: --model and at least one PATH are required")
		return nil, errUsage
	}
	a := &scoreArgs{modelPath: *modelPath, out: *out, format: *format, heatmaps: *heatmaps, group: *group, sf: sf,
		skipBad: *skipBad, quiet: *quiet, threads: *threads, precision: *precision, af: af, paths: fs.Args()}
	if a.format == "" {
		a.format = score.FormatOf(a.out)
	}
	if a.format != "csv" && a.format != "json" {
		return nil, fmt.Errorf("--format %q: want csv or json", a.format)
	}
	if *shard != "" {
		s, err := score.ParseShard(*shard)
		if err != nil {
			return nil, err
		}
		a.shard = &s
	}
	return a, nil
}

// scoreUnits fetches URL inputs, expands the paths into units and keeps
// the shard's; all is the number of units of the whole job. cleanup removes
// what was fetched.
func scoreUnits(ctx context.Context, a *scoreArgs, stderr io.Writer) (units []score.Unit, all int, cleanup func(), err error) {
	inputs, cleanup, err := fetchURLInputs(ctx, a.paths, a.af, stderr)
	if err != nil {
		return nil, 0, nil, err
	}
	ex, err := score.Expand(inputs)
	if err != nil {
		cleanup()
		return nil, 0, nil, err
	}
	units = ex.Units
	if a.shard != nil {
		units = score.Select(units, *a.shard)
	}
	if len(ex.Skipped) > 0 {
		fmt.Fprintf(stderr, "score: passed over %d file(s) that are not images by name, e.g. %s\n", len(ex.Skipped), ex.Skipped[0])
	}
	return units, len(ex.Units), cleanup, nil
}

// writeScores scores units into --out (atomically) or stdout.
func writeScores(ctx context.Context, sc *score.Scorer, units []score.Unit, h score.Header, ro score.RunOptions, a *scoreArgs, stdout io.Writer) (score.Stats, error) {
	var st score.Stats
	write := func(w io.Writer) error {
		sw, err := score.NewWriter(w, a.format, h)
		if err != nil {
			return err
		}
		if st, err = sc.Run(ctx, units, sw, ro); err != nil {
			return err
		}
		return sw.Close()
	}
	if a.out == "-" {
		return st, write(stdout)
	}
	if dir := filepath.Dir(a.out); dir != "" {
		if err := os.MkdirAll(dir, 0o755); err != nil {
			return st, err
		}
	}
	return st, atomicfile.Write(a.out, write)
}

// summariseScoring prints the counts of a run and fails it when images
// could not be read (unless --skip-bad).
func summariseScoring(stderr io.Writer, a *scoreArgs, st score.Stats, units, all int, precision string) error {
	where := ""
	if a.shard != nil {
		where = fmt.Sprintf(" (shard %s: %d of %d inputs)", a.shard, units, all)
	}
	fmt.Fprintf(stderr, "scored %d image(s) in %d input(s)%s in %s: %d normal, %d abnormal, %d out of scope, %d without threshold, %d unreadable\n",
		st.Images, st.Units, where, precision, st.Normal, st.Abnormal, st.OutOfScope, st.Unknown, st.Failed)
	if a.out != "-" {
		fmt.Fprintf(stderr, "wrote %s\n", a.out)
	}
	if st.Failed > 0 && !a.skipBad {
		list := st.FailedPaths
		if len(list) > 10 {
			list = append(list[:10:10], fmt.Sprintf("... and %d more", len(st.FailedPaths)-10))
		}
		return fmt.Errorf("%d image(s) could not be read (rows with decision %q; --skip-bad exits 0):\n  %s",
			st.Failed, score.Failed, strings.Join(list, "\n  "))
	}
	return nil
}

// fetchURLInputs downloads DICOMweb URL inputs into a temporary folder
// (removed by cleanup) and returns the inputs with the URLs replaced.
func fetchURLInputs(ctx context.Context, args []string, af *archiveFlags, stderr io.Writer) ([]string, func(), error) {
	none := func() {}
	hasURL := false
	for _, a := range args {
		hasURL = hasURL || watch.IsDICOMwebURL(a)
	}
	if !hasURL {
		return args, none, nil
	}
	opts, err := af.options(slog.New(slog.NewJSONHandler(stderr, nil)))
	if err != nil {
		return nil, none, err
	}
	dir, err := os.MkdirTemp("", "maddr-dicomweb-")
	if err != nil {
		return nil, none, err
	}
	cleanup := func() { os.RemoveAll(dir) }
	inputs, err := watch.FetchInputs(ctx, args, opts, dir)
	if err != nil {
		cleanup()
		return nil, none, err
	}
	return inputs, cleanup, nil
}
