package main

import (
	"flag"
	"fmt"
	"image/png"
	"io"
	"os"
	"path/filepath"

	"github.com/maddr-project/maddr/dataset"
	"github.com/maddr-project/maddr/phantom"
	"github.com/maddr-project/maddr/preprocess"
)

func init() {
	register("data", "build and inspect datasets", runData)
}

func runData(args []string, stdout, stderr io.Writer) error {
	usage := func() {
		fmt.Fprintln(stderr, "usage: maddr data synth --out DIR [--seed N --scale F --difficulty F --size N]")
		fmt.Fprintln(stderr, "       maddr data inspect [SOURCE...] [--montage out.png --skip-bad --size N]")
		fmt.Fprintln(stderr, "\nSOURCE is KIND[:ROOT][,key=value...] (kinds: folder, manifest, lits, covidct, shenzhen,")
		fmt.Fprintln(stderr, "montgomery, phantom) or a JSON object; default phantom.")
		fmt.Fprintln(stderr, "Examples: lits:/data/LiTS,seed=1  shenzhen:/data/ChinaSet_AllFiles  manifest:out/manifest.csv")
	}
	if len(args) == 0 || args[0] == "-h" || args[0] == "--help" {
		usage()
		if len(args) == 0 {
			return errUsage
		}
		return flag.ErrHelp
	}
	switch args[0] {
	case "synth":
		return runDataSynth(args[1:], stdout, stderr)
	case "inspect":
		return runDataInspect(args[1:], stdout, stderr)
	}
	fmt.Fprintf(stderr, "maddr data: unknown sub-command %q\n", args[0])
	usage()
	return errUsage
}

func runDataSynth(args []string, stdout, stderr io.Writer) error {
	def := phantom.DefaultConfig()
	fs := newFlagSet("data synth", stderr)
	out := fs.String("out", "", "output `directory` (created)")
	seed := fs.Uint64("seed", def.Seed, "generator seed")
	scale := fs.Float64("scale", def.Scale, "fraction of the paper's split sizes")
	difficulty := fs.Float64("difficulty", def.Difficulty, "anomaly subtlety, 0 (obvious) .. 1 (barely visible)")
	size := fs.Int("size", def.Size, "native image side in pixels")
	fs.Usage = func() {
		fmt.Fprintln(stderr, "usage: maddr data synth --out DIR [flags]")
		fmt.Fprintln(stderr, "Writes the phantom data set as images plus manifest.csv (load it back with manifest:DIR/manifest.csv).")
		fs.PrintDefaults()
	}
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	if *out == "" || fs.NArg() > 0 {
		fs.Usage()
		return errUsage
	}
	cfg := phantom.Config{Seed: *seed, Scale: *scale, Difficulty: *difficulty, Size: *size}
	samples, _, err := (&dataset.Phantom{Config: cfg}).Samples(dataset.AllSplits)
	if err != nil {
		return err
	}
	if err := os.MkdirAll(*out, 0o755); err != nil {
		return err
	}
	written, err := dataset.WriteSamples(*out, samples)
	if err != nil {
		return err
	}
	if err := dataset.WriteCounts(stdout, dataset.Counts(written)); err != nil {
		return err
	}
	fmt.Fprintf(stdout, "wrote %d images and %s\n", len(written), filepath.Join(*out, dataset.ManifestName))
	return nil
}

func runDataInspect(args []string, stdout, stderr io.Writer) error {
	fs := newFlagSet("data inspect", stderr)
	montage := fs.String("montage", "", "write a montage of normal and abnormal examples per group to this PNG `file`")
	perRow := fs.Int("per-row", 8, "examples per montage row")
	size := fs.Int("size", 64, "side of the preprocessed images in the montage")
	skipBad := fs.Bool("skip-bad", false, "list bad files and go on instead of stopping")
	fs.Usage = func() {
		fmt.Fprintln(stderr, "usage: maddr data inspect [SOURCE...] [flags]")
		fs.PrintDefaults()
	}
	var positional []string
	// Flags may follow the sources, so parse again after each positional argument.
	for {
		if err := parseFlags(fs, args); err != nil {
			return err
		}
		if fs.NArg() == 0 {
			break
		}
		positional = append(positional, fs.Arg(0))
		args = fs.Args()[1:]
	}
	if len(positional) == 0 {
		positional = []string{"phantom"}
	}
	specs := make([]dataset.Spec, len(positional))
	for i, p := range positional {
		sp, err := dataset.ParseSpec(p)
		if err != nil {
			return err
		}
		specs[i] = sp
	}
	opts := dataset.Options{SkipBad: *skipBad, AllowEmptySplits: true, Logf: func(f string, a ...any) { fmt.Fprintf(stderr, f+"\n", a...) }}
	samples, err := dataset.Open(specs, opts)
	if err != nil {
		return err
	}
	if err := dataset.WriteCounts(stdout, dataset.Counts(samples)); err != nil {
		return err
	}
	reader := &dataset.Reader{}
	defer reader.Close()
	stats, problems := dataset.ImageSizes(samples, reader, 0)
	fmt.Fprintf(stdout, "\n%d images decoded; width min/median/max %d/%d/%d, height %d/%d/%d\n", stats.Images,
		stats.MinWidth, stats.MedianWidth, stats.MaxWidth, stats.MinHeight, stats.MedianHeight, stats.MaxHeight)
	if err := opts.Report(problems); err != nil {
		return err
	}
	if *montage == "" {
		return nil
	}
	if err := writeDataMontage(*montage, withoutProblems(samples, problems), reader, *size, *perRow); err != nil {
		return err
	}
	fmt.Fprintf(stdout, "montage: %s\n", *montage)
	return nil
}

// withoutProblems drops the samples whose file is listed in problems.
func withoutProblems(samples []dataset.Sample, problems []dataset.Problem) []dataset.Sample {
	bad := map[string]bool{}
	for _, p := range problems {
		bad[p.Path] = true
	}
	var good []dataset.Sample
	for _, s := range samples {
		if !bad[s.Where()] {
			good = append(good, s)
		}
	}
	return good
}

// writeDataMontage draws normal and abnormal examples of each group, as the
// default pipeline preprocesses them at size x size, into a PNG at path.
func writeDataMontage(path string, samples []dataset.Sample, reader *dataset.Reader, size, perRow int) error {
	pre := preprocess.Default()
	pre.Size = size
	input := func(i int) ([]float32, error) {
		img, err := reader.Load(samples[i])
		if err != nil {
			return nil, err
		}
		return pre.Apply(img, samples[i].Organ)
	}
	m, err := dataset.Montage(samples, input, size, perRow)
	if err != nil {
		return err
	}
	f, err := os.Create(path)
	if err != nil {
		return err
	}
	if err := png.Encode(f, m); err != nil {
		f.Close()
		return fmt.Errorf("writing %s: %w", path, err)
	}
	if err := f.Close(); err != nil {
		return fmt.Errorf("writing %s: %w", path, err)
	}
	return nil
}
