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

	"github.com/maddr-project/maddr/safetensors"
	"github.com/maddr-project/maddr/score"
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

func runScore(args []string, stdout, stderr io.Writer) error {
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
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	if *modelPath == "" || fs.NArg() == 0 {
		fmt.Fprintln(stderr, "maddr score: --model and at least one PATH are required")
		return errUsage
	}
	outFormat := *format
	if outFormat == "" {
		outFormat = score.FormatOf(*out)
	}
	if outFormat != "csv" && outFormat != "json" {
		return fmt.Errorf("--format %q: want csv or json", outFormat)
	}
	var sh *score.Shard
	if *shard != "" {
		s, err := score.ParseShard(*shard)
		if err != nil {
			return err
		}
		sh = &s
	}
	setThreads(*threads)
	path := resolveModel(*modelPath)
	m, sc, digest, err := openScorer(path, *precision, sf)
	if err != nil {
		return err
	}
	req := score.Request{Group: *group}
	if err := sc.CheckRequest(req); err != nil {
		return err
	}
	ctx, cancel := signal.NotifyContext(context.Background(), os.Interrupt)
	defer cancel()
	inputs, cleanup, err := fetchURLInputs(ctx, fs.Args(), af, stderr)
	if err != nil {
		return err
	}
	defer cleanup()
	ex, err := score.Expand(inputs)
	if err != nil {
		return err
	}
	units := ex.Units
	if sh != nil {
		units = score.Select(units, *sh)
	}
	if len(ex.Skipped) > 0 {
		fmt.Fprintf(stderr, "score: passed over %d file(s) that are not images by name, e.g. %s\n", len(ex.Skipped), ex.Skipped[0])
	}
	if len(m.Manifest.Thresholds) == 0 {
		fmt.Fprintf(stderr, "score: %s has no thresholds yet, so decisions will be %q: run 'maddr eval --model %s' first\n", path, score.Unknown, *modelPath)
	}
	h := score.Header{Format: score.OutputFormat, Version: buildVersion(), Model: path, ModelSHA256: digest, Shard: sh,
		Settings: score.Settings{Options: sc.Options(), Group: *group, HU: *sf.hu}}
	ro := score.RunOptions{Request: req, Read: score.ReadOptions{HU: *sf.hu}, HeatmapDir: *heatmaps}
	if !*quiet {
		ro.Progress = stderr
	}
	var st score.Stats
	write := func(w io.Writer) error {
		sw, err := score.NewWriter(w, outFormat, h)
		if err != nil {
			return err
		}
		if st, err = sc.Run(ctx, units, sw, ro); err != nil {
			return err
		}
		return sw.Close()
	}
	if *out == "-" {
		err = write(stdout)
	} else {
		if dir := filepath.Dir(*out); dir != "" {
			if err := os.MkdirAll(dir, 0o755); err != nil {
				return err
			}
		}
		err = safetensors.WriteAtomic(*out, write)
	}
	if err != nil {
		return err
	}
	where := ""
	if sh != nil {
		where = fmt.Sprintf(" (shard %s: %d of %d inputs)", sh, len(units), len(ex.Units))
	}
	fmt.Fprintf(stderr, "scored %d image(s) in %d input(s)%s: %d normal, %d abnormal, %d out of scope, %d without threshold, %d unreadable\n",
		st.Images, st.Units, where, st.Normal, st.Abnormal, st.OutOfScope, st.Unknown, st.Failed)
	if *out != "-" {
		fmt.Fprintf(stderr, "wrote %s\n", *out)
	}
	if st.Failed > 0 && !*skipBad {
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
