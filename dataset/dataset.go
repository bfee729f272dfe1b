// Package dataset turns the public anomaly-detection data sets used by MADDR
// (LiTS, COVID-CT, Shenzhen, Montgomery), plain folders, CSV manifests and the
// built-in phantom into one list of labelled samples with train/val/test
// splits, and builds the organ and modality vocabularies stored with a model.
//
// A source never decodes pixels of every file up front (real sets are
// gigabytes); it checks the layout, names and sizes, and the loader's first
// pass decodes each sample once and reports every undecodable file together.
package dataset

import (
	"errors"
	"fmt"
	"sort"
	"strings"

	"github.com/maddr-project/maddr/medimg"
)

// Split names the part of a data set a sample belongs to.
type Split string

// The three splits of the paper's protocol: models train on normal train
// images only, thresholds are chosen on val, results are reported on test.
const (
	Train Split = "train"
	Val   Split = "val"
	Test  Split = "test"
)

// AllSplits lists the splits in protocol order.
var AllSplits = []Split{Train, Val, Test}

// ParseSplit accepts train, val (or valid, validation) and test.
func ParseSplit(s string) (Split, error) {
	switch strings.ToLower(strings.TrimSpace(s)) {
	case "train":
		return Train, nil
	case "val", "valid", "validation":
		return Val, nil
	case "test":
		return Test, nil
	}
	return "", fmt.Errorf("unknown split %q (want train, val or test)", s)
}

// Label is the ground truth of a sample; its integer value is the class
// index used in batches (abnormal is the positive class).
type Label int

// Labels.
const (
	Normal   Label = 0
	Abnormal Label = 1
)

func (l Label) String() string {
	if l == Abnormal {
		return "abnormal"
	}
	return "normal"
}

// ParseLabel accepts normal/abnormal and 0/1.
func ParseLabel(s string) (Label, error) {
	switch strings.ToLower(strings.TrimSpace(s)) {
	case "normal", "0":
		return Normal, nil
	case "abnormal", "1":
		return Abnormal, nil
	}
	return 0, fmt.Errorf("unknown label %q (want normal, abnormal, 0 or 1)", s)
}

// Sample is one 2-D image of a data set: either a file (with a slice index
// for volumes) or an image already in memory (the phantom).
type Sample struct {
	Path  string        `json:"path,omitempty"`
	Slice int           `json:"slice,omitempty"`
	Image *medimg.Image `json:"-"`

	Organ    string `json:"organ"`
	Modality string `json:"modality"`
	Group    string `json:"group"`
	Split    Split  `json:"split"`
	Label    Label  `json:"label"`
	ID       string `json:"id"`

	// HU marks values as Hounsfield units when the file format cannot say
	// so itself (NIfTI has no modality field), so CT windowing applies.
	HU bool `json:"hu,omitempty"`
	// Lo and Hi, when Hi > Lo, replace the reader's nominal value range;
	// they let exported images keep the range they had in memory.
	Lo float32 `json:"lo,omitempty"`
	Hi float32 `json:"hi,omitempty"`
}

// Where names the sample in messages: the file (and slice) or the ID.
func (s Sample) Where() string {
	switch {
	case s.Path == "":
		return s.ID
	case s.Slice != 0 || isVolumePath(s.Path):
		return fmt.Sprintf("%s slice %d", s.Path, s.Slice)
	}
	return s.Path
}

// Source produces the samples of one data set for the requested splits.
// Problems with single files are returned as a list (so a user sees all of
// them at once); err is for problems that make the whole source unusable.
type Source interface {
	Name() string
	Samples(splits []Split) (samples []Sample, problems []Problem, err error)
}

// Problem is one bad file (or an empty split) and what is wrong with it.
type Problem struct {
	Path string
	Err  error
}

func (p Problem) String() string {
	msg := p.Err.Error()
	// Readers already name the file; saying it twice only adds noise.
	if p.Path == "" || strings.Contains(msg, p.Path) {
		return msg
	}
	return p.Path + ": " + msg
}

// BadFilesError lists every bad input found, so a user can fix them all in
// one go instead of one per run.
type BadFilesError struct {
	Problems []Problem
}

func (e *BadFilesError) Error() string {
	var b strings.Builder
	fmt.Fprintf(&b, "%d bad input file(s) (use the skip-bad option to leave them out):", len(e.Problems))
	for _, p := range e.Problems {
		b.WriteString("\n  ")
		b.WriteString(p.String())
	}
	return b.String()
}

// Options control how sources are combined.
type Options struct {
	// Splits to produce; nil means all three.
	Splits []Split
	// SkipBad logs bad files through Logf and leaves them out instead of
	// stopping with the list.
	SkipBad bool
	// Logf receives one line per skipped file; nil discards.
	Logf func(format string, args ...any)
	// AllowEmptySplits accepts sources with a requested split that has no
	// images (inspection describes such data; training must not).
	AllowEmptySplits bool
}

// ErrEmptySplit marks the problem of a requested split without images.
var ErrEmptySplit = errors.New("split has no images")

type emptySplitError struct{ split Split }

func (e emptySplitError) Error() string        { return fmt.Sprintf("split %s has no images", e.split) }
func (e emptySplitError) Is(target error) bool { return target == ErrEmptySplit }

func (o Options) splits() []Split {
	if len(o.Splits) == 0 {
		return AllSplits
	}
	return o.Splits
}

// Report stops with a BadFilesError listing problems, or, with SkipBad,
// logs them and returns nil.
func (o Options) Report(problems []Problem) error {
	if len(problems) == 0 {
		return nil
	}
	if !o.SkipBad {
		return &BadFilesError{Problems: problems}
	}
	if o.Logf != nil {
		for _, p := range problems {
			o.Logf("skipping %s", p)
		}
	}
	return nil
}

// Collect gathers the samples of several sources into one set (in source
// order). Every source is read even after a bad one so the returned
// BadFilesError lists all problems.
func Collect(sources []Source, opts Options) ([]Sample, error) {
	var all []Sample
	var problems []Problem
	for _, src := range sources {
		samples, probs, err := src.Samples(opts.splits())
		if err != nil {
			return nil, fmt.Errorf("source %s: %w", src.Name(), err)
		}
		all = append(all, samples...)
		for _, p := range probs {
			if opts.AllowEmptySplits && errors.Is(p.Err, ErrEmptySplit) {
				continue
			}
			problems = append(problems, p)
		}
	}
	if err := opts.Report(problems); err != nil {
		return nil, err
	}
	if len(all) == 0 {
		return nil, fmt.Errorf("no samples in %s", sourceNames(sources))
	}
	return all, nil
}

// Open builds the sources named by specs and collects their samples.
func Open(specs []Spec, opts Options) ([]Sample, error) {
	sources := make([]Source, 0, len(specs))
	for _, sp := range specs {
		src, err := sp.Source()
		if err != nil {
			return nil, err
		}
		sources = append(sources, src)
	}
	return Collect(sources, opts)
}

func sourceNames(sources []Source) string {
	names := make([]string, len(sources))
	for i, s := range sources {
		names[i] = s.Name()
	}
	return strings.Join(names, ", ")
}

// Filter returns the samples of one split.
func Filter(samples []Sample, split Split) []Sample {
	var out []Sample
	for _, s := range samples {
		if s.Split == split {
			out = append(out, s)
		}
	}
	return out
}

// Count is the number of normal and abnormal samples of one group and split.
type Count struct {
	Group, Organ, Modality string
	Split                  Split
	Normal, Abnormal       int
}

// Counts tabulates samples per group and split, sorted by group then split
// in protocol order.
func Counts(samples []Sample) []Count {
	type key struct {
		group string
		split Split
	}
	idx := map[key]int{}
	var out []Count
	for _, s := range samples {
		k := key{s.Group, s.Split}
		i, ok := idx[k]
		if !ok {
			i = len(out)
			idx[k] = i
			out = append(out, Count{Group: s.Group, Organ: s.Organ, Modality: s.Modality, Split: s.Split})
		}
		if s.Label == Abnormal {
			out[i].Abnormal++
		} else {
			out[i].Normal++
		}
	}
	order := map[Split]int{Train: 0, Val: 1, Test: 2}
	sort.Slice(out, func(a, b int) bool {
		if out[a].Group != out[b].Group {
			return out[a].Group < out[b].Group
		}
		return order[out[a].Split] < order[out[b].Split]
	})
	return out
}

// checkSplits reports each requested split that received no sample; a
// split without images would make threshold selection or training silently
// meaningless.
func checkSplits(name string, samples []Sample, splits []Split) []Problem {
	var probs []Problem
	for _, sp := range splits {
		n := 0
		for _, s := range samples {
			if s.Split == sp {
				n++
			}
		}
		if n == 0 {
			probs = append(probs, Problem{Path: name, Err: emptySplitError{sp}})
		}
	}
	return probs
}

func wants(splits []Split, sp Split) bool {
	for _, s := range splits {
		if s == sp {
			return true
		}
	}
	return false
}

// groupName is the default group: organ and modality joined by a dash.
func groupName(organ, modality string) string { return organ + "-" + modality }
