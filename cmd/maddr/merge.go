package main

import (
	"fmt"
	"io"
	"os"
	"path/filepath"

	"github.com/maddr-project/maddr/atomicfile"
	"github.com/maddr-project/maddr/score"
)

func init() {
	register("merge", "combine the outputs of 'maddr score --shard i/n' into one, as a single run would have written it", runMerge)
}

func runMerge(args []string, stdout, stderr io.Writer) error {
	fs := newFlagSet("merge", stderr)
	fs.Usage = func() {
		fmt.Fprintln(stderr, "usage: maddr merge [--out FILE] SHARD-OUTPUT...\n\nflags:")
		fs.PrintDefaults()
	}
	out := fs.String("out", "-", "merged output; .json gives JSON, anything else CSV; - writes CSV to stdout")
	format := fs.String("format", "", "csv or json (default: from --out)")
	partial := fs.Bool("partial", false, "merge even when some shards are missing")
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	if fs.NArg() == 0 {
		fmt.Fprintln(stderr, "maddr merge: give the shard outputs to merge")
		return errUsage
	}
	outFormat := *format
	if outFormat == "" {
		outFormat = score.FormatOf(*out)
	}
	h, results, err := score.Merge(fs.Args(), score.MergeOptions{Partial: *partial})
	if err != nil {
		return err
	}
	write := func(w io.Writer) error {
		sw, err := score.NewWriter(w, outFormat, h)
		if err != nil {
			return err
		}
		for _, r := range results {
			if err := sw.Write(r); err != nil {
				return err
			}
		}
		return sw.Close()
	}
	if *out == "-" {
		return write(stdout)
	}
	if err := os.MkdirAll(filepath.Dir(*out), 0o755); err != nil {
		return err
	}
	if err := atomicfile.Write(*out, write); err != nil {
		return err
	}
	fmt.Fprintf(stderr, "merged %d shard output(s), %d row(s), into %s\n", fs.NArg(), len(results), *out)
	return nil
}
