// Package score applies a trained model to images the way a deployment does:
// every 2-D image (a PNG, a DICOM frame, a NIfTI slice) gets a raw anomaly
// score, a 0..1 score with 0.5 at the threshold, a decision, the organ and
// modality the MADDR heads recognise, and optionally a heat map.
//
// Inputs go through the model file's preprocess.Config.Apply, the same call
// training and evaluation make, so a score here equals the score 'maddr
// eval' computed for the same image.
//
// Routing: an image is judged against the threshold of the group its
// predicted organ and modality belong to (or a group the caller names). It
// is flagged out of scope instead of being scored against a wrong threshold
// when a head is unsure, when the predicted pair is no trained group, when a
// DICOM file declares a modality the model never saw, or when the raw score
// lies far above anything normal (see Options.OODFactor).
//
// Scores are computed by package infer in fixed-size batches in which every
// image has a position of its own (from a hash of its pixels): an image then
// scores bit for bit the same alone, in a shard or in a whole archive.
package score

import (
	"context"
	"errors"
	"fmt"
	"math"
	"runtime"
	"strings"
	"sync"

	"github.com/maddr-project/maddr/infer"
	"github.com/maddr-project/maddr/maddr"
	"github.com/maddr-project/maddr/medimg"
	"github.com/maddr-project/maddr/modelfile"
)

// Decisions.
const (
	Normal     = "normal"
	Abnormal   = "abnormal"
	OutOfScope = "out_of_scope"
	// Unknown: the image's group has no threshold in the model (it was never
	// evaluated), so there is a score but no decision.
	Unknown = "unknown"
	// Failed: the image could not be read or prepared.
	Failed = "error"
)

// Where the group of a result came from.
const (
	FromHeads     = "heads"
	FromRequest   = "given"
	FromOnlyGroup = "only_group"
)

// Defaults of Options.
const (
	DefaultMinConfidence = 0.9
	DefaultOODFactor     = 5
	DefaultBatchSize     = infer.DefaultBatchSize
)

// Options are the model-wide scoring rules.
type Options struct {
	// MinConfidence: an image whose organ or modality head gives its top
	// class a lower probability is out of scope (0 disables).
	MinConfidence float64 `json:"min_confidence"`
	// OODFactor: an image whose raw score is more than this many times its
	// group's (positive) threshold is out of scope: the model has seen
	// nothing like it. 0 disables. Every baseline here scores by an error,
	// which is never negative, so a factor reads the same for all of them; a
	// grossly abnormal image of the right organ can trip it too, which is why
	// the note says so. (A margin in normal spreads, Threshold.Scale, was
	// tried first: with the few normal validation images of small data sets
	// the spread is too unstable to draw a line with.)
	OODFactor float64 `json:"ood_factor"`
	// BatchSize is the fixed number of images per forward pass.
	BatchSize int `json:"batch_size"`
	// Workers prepare images in parallel (0: all cores).
	Workers int `json:"-"`
}

// DefaultOptions returns the documented defaults.
func DefaultOptions() Options {
	return Options{MinConfidence: DefaultMinConfidence, OODFactor: DefaultOODFactor, BatchSize: DefaultBatchSize}
}

// Request are the per-call choices.
type Request struct {
	// Group judges every image against this group's threshold instead of
	// the one the heads route it to.
	Group string
	// Maps computes anomaly maps for heat maps.
	Maps bool
}

// Input is one 2-D image to score.
type Input struct {
	Image medimg.Image
	// Path and Slice name the image in results.
	Path  string
	Slice int
	// Volume is the file or DICOM series the image is a slice of, "" for a
	// plain 2-D image; results of one volume are also summarised together.
	Volume string
	// Err records a read failure; the result then says "error".
	Err error
}

// Result is the verdict on one image, or (Level "volume") the summary of a
// volume's slices.
type Result struct {
	Level           string   `json:"level"`
	Path            string   `json:"path"`
	Slice           int      `json:"slice"`
	Volume          string   `json:"volume,omitempty"`
	Raw             *float64 `json:"raw_score"`
	Normalised      *float64 `json:"normalised_score"`
	Decision        string   `json:"decision"`
	Group           string   `json:"group"`
	GroupFrom       string   `json:"group_from,omitempty"`
	Organ           string   `json:"organ"`
	OrganProb       *float64 `json:"organ_prob"`
	Modality        string   `json:"modality"`
	ModalityProb    *float64 `json:"modality_prob"`
	Threshold       *float64 `json:"threshold"`
	ThresholdMethod string   `json:"threshold_method,omitempty"`
	Slices          int      `json:"slices,omitempty"`
	AbnormalSlices  int      `json:"abnormal_slices,omitempty"`
	OutOfScope      int      `json:"out_of_scope_slices,omitempty"`
	Heatmap         string   `json:"heatmap,omitempty"`
	Notes           []string `json:"notes,omitempty"`

	// Map is the anomaly map (Size x Size) when requested.
	Map []float32 `json:"-"`
	// WindowOrgan is the organ whose HU window prepared the image.
	WindowOrgan string `json:"-"`
}

// Levels of a Result.
const (
	LevelImage  = "image"
	LevelVolume = "volume"
)

// Scorer scores images with one model. It is safe for concurrent use;
// forward passes run one at a time.
type Scorer struct {
	model   *modelfile.Model
	opts    Options
	trained []string
	// onlyGroup is the group used when nothing routes (a model without heads
	// trained on one group).
	onlyGroup string
	engine    *infer.Engine
	// mu lets one forward pass run at a time.
	mu sync.Mutex
}

// New prepares a scorer. A model without organ/modality heads cannot route,
// so it needs a single trained group or a group in every Request; New fails
// with that explanation when neither can hold.
func New(m *modelfile.Model, o Options) (*Scorer, error) {
	if m == nil || m.Framework == nil {
		return nil, errors.New("score: no model")
	}
	if err := m.Manifest.Validate(); err != nil {
		return nil, fmt.Errorf("%s: %w", m.Path, err)
	}
	if o.BatchSize <= 0 {
		o.BatchSize = DefaultBatchSize
	}
	if o.MinConfidence < 0 || o.MinConfidence > 1 || math.IsNaN(o.MinConfidence) {
		return nil, fmt.Errorf("score: minimum confidence %g outside 0..1", o.MinConfidence)
	}
	if o.OODFactor < 0 || math.IsNaN(o.OODFactor) {
		return nil, fmt.Errorf("score: out-of-distribution factor %g must be 0 (off) or positive", o.OODFactor)
	}
	s := &Scorer{model: m, opts: o, trained: m.Manifest.TrainedGroups(), engine: infer.New(m).WithBatchSize(o.BatchSize)}
	if len(s.trained) == 1 {
		s.onlyGroup = s.trained[0]
	}
	return s, nil
}

// Model returns the scorer's model.
func (s *Scorer) Model() *modelfile.Model { return s.model }

// Precision is the --precision name ("fp32" or "bf16") of the arithmetic
// the scores come from; outputs carry it because bf16 rounds them.
func (s *Scorer) Precision() string { return modelfile.PrecisionName(s.model.Precision) }

// Options returns the scoring rules in force.
func (s *Scorer) Options() Options { return s.opts }

// Groups lists the groups images can be routed to.
func (s *Scorer) Groups() []string { return append([]string(nil), s.trained...) }

// CanRoute tells whether the heads can pick a group for each image.
func (s *Scorer) CanRoute() bool {
	fw := s.model.Framework
	return s.onlyGroup != "" || (s.headOrgan() && s.headModality()) ||
		(fw.HasModalityHead() && s.sharedPart(func(p modelfile.GroupPair) string { return p.Organ }) != "") ||
		(s.headOrgan() && s.sharedPart(func(p modelfile.GroupPair) string { return p.Modality }) != "")
}

// CheckRequest reports a request this model cannot serve.
func (s *Scorer) CheckRequest(r Request) error {
	if r.Group != "" {
		for _, g := range s.trained {
			if g == r.Group {
				return nil
			}
		}
		return fmt.Errorf("group %q is not one this model was trained on (%s)", r.Group, strings.Join(s.trained, ", "))
	}
	if !s.CanRoute() {
		return fmt.Errorf("%s has no organ/modality heads (a baseline-only model) and was trained on %d groups (%s): "+
			"name the group of the images (--group)", s.model.Path, len(s.trained), strings.Join(s.trained, ", "))
	}
	return nil
}

// headOrgan: the organ head exists and predicts organs (not the reproduced
// label bug, which trains it on modalities).
func (s *Scorer) headOrgan() bool {
	fw := s.model.Framework
	return fw.HasOrganHead() && !fw.Config.ReproduceLabelBug
}

func (s *Scorer) headModality() bool { return s.model.Framework.HasModalityHead() }

// sharedPart returns the organ (or modality) every trained group shares, or "".
func (s *Scorer) sharedPart(part func(modelfile.GroupPair) string) string {
	common := ""
	for _, g := range s.trained {
		p, ok := s.model.Manifest.PairOf(g)
		if !ok {
			return ""
		}
		v := part(p)
		if common != "" && v != common {
			return ""
		}
		common = v
	}
	return common
}

// Score scores inputs; per-image problems are reported in the results, the
// error is for a cancelled context or a failing forward pass.
func (s *Scorer) Score(ctx context.Context, inputs []Input, r Request) ([]Result, error) {
	if err := s.CheckRequest(r); err != nil {
		return nil, err
	}
	group, from := r.Group, FromRequest
	if group == "" && s.onlyGroup != "" && !(s.headOrgan() && s.headModality()) {
		group, from = s.onlyGroup, FromOnlyGroup
	}
	prep := s.prepare(inputs, group)
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	cands := candidatesOf(prep)
	want := infer.Scores | infer.Heads
	if r.Maps {
		want |= infer.Maps
	}
	s.mu.Lock()
	out, err := s.engine.Slotted(ctx, cands.vecs, want)
	s.mu.Unlock()
	if err != nil {
		return nil, err
	}
	pick := s.pickWindows(prep, cands, out, len(inputs))
	results := make([]Result, len(inputs))
	for i, in := range inputs {
		results[i] = s.result(in, prep[i], cands, out, pick[i], group, from)
	}
	return results, nil
}

// prepared is one input made ready for the network: one vector per HU
// window tried (see windowOrgans).
type prepared struct {
	organs []string
	x      [][]float32
	err    error
}

// prepare applies the model's preprocessing to every input, in parallel.
func (s *Scorer) prepare(inputs []Input, group string) []prepared {
	pp := s.model.Manifest.Preprocess
	prep := make([]prepared, len(inputs))
	s.parallel(len(inputs), func(i int) {
		in := &inputs[i]
		p := &prep[i]
		if in.Err != nil {
			p.err = in.Err
			return
		}
		p.organs = s.windowOrgans(in.Image, group)
		for _, organ := range p.organs {
			x, err := pp.Apply(in.Image, organ)
			if err != nil {
				p.err = err
				return
			}
			p.x = append(p.x, x)
		}
	})
	return prep
}

// candidates are the network inputs of every prepared image and window:
// vecs[k] is window cand[k] of input owner[k].
type candidates struct {
	vecs        [][]float32
	owner, cand []int
}

func candidatesOf(prep []prepared) candidates {
	var c candidates
	for i := range prep {
		if prep[i].err == nil {
			for w := range prep[i].x {
				c.vecs = append(c.vecs, prep[i].x[w])
				c.owner = append(c.owner, i)
				c.cand = append(c.cand, w)
			}
		}
	}
	return c
}

// pickWindows chooses each input's candidate. A CT image's HU window
// depends on its organ, which only the network can tell: such an image is
// prepared with every organ's window and the window kept is the one under
// which the organ head names that organ and the image looks most normal
// (lowest raw score). -1: the input had no candidate.
func (s *Scorer) pickWindows(prep []prepared, c candidates, out infer.Results, n int) []int {
	pick := make([]int, n)
	for i := range pick {
		pick[i] = -1
	}
	agrees := func(k int) bool {
		if out.Organ == nil {
			return false
		}
		best, _ := argmax(out.Organ[k])
		return s.model.Framework.Classes.Organs[best] == prep[c.owner[k]].organs[c.cand[k]]
	}
	for k, i := range c.owner {
		j := pick[i]
		if j < 0 || agrees(k) && !agrees(j) || agrees(k) == agrees(j) && out.Scores[k] < out.Scores[j] {
			pick[i] = k
		}
	}
	return pick
}

// result is the verdict on input in from its picked candidate k.
func (s *Scorer) result(in Input, p prepared, c candidates, out infer.Results, k int, group, from string) Result {
	res := Result{Level: LevelImage, Path: in.Path, Slice: in.Slice, Volume: in.Volume}
	if p.err != nil {
		res.Decision = Failed
		res.Notes = []string{p.err.Error()}
		return res
	}
	raw := out.Scores[k]
	res.Raw = &raw
	res.WindowOrgan = p.organs[c.cand[k]]
	var organP, modalityP []float32
	if out.Organ != nil {
		organP = out.Organ[k]
	}
	if out.Modality != nil {
		modalityP = out.Modality[k]
	}
	if out.Maps != nil {
		res.Map = out.Maps[k]
	}
	s.route(&res, in.Image, organP, modalityP, group, from)
	return res
}

// windowOrgans lists the organs whose HU window to try for img.
func (s *Scorer) windowOrgans(img medimg.Image, group string) []string {
	if img.Kind != medimg.KindHU {
		return []string{""} // the organ only selects HU windows
	}
	if group != "" {
		if p, ok := s.model.Manifest.PairOf(group); ok {
			return []string{p.Organ}
		}
		return []string{""}
	}
	organs := s.model.Framework.Classes.Organs
	if s.headOrgan() && len(organs) > 1 {
		return append([]string(nil), organs...)
	}
	if o := s.sharedPart(func(p modelfile.GroupPair) string { return p.Organ }); o != "" {
		return []string{o}
	}
	return []string{""}
}

func (s *Scorer) parallel(n int, fn func(i int)) {
	workers := s.opts.Workers
	if workers <= 0 {
		workers = runtime.NumCPU()
	}
	workers = min(workers, n)
	var wg sync.WaitGroup
	next := make(chan int)
	for w := 0; w < workers; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range next {
				fn(i)
			}
		}()
	}
	for i := 0; i < n; i++ {
		next <- i
	}
	close(next)
	wg.Wait()
}

// argmax returns the index and value of the largest probability.
func argmax(p []float32) (int, float64) {
	best, bv := -1, math.Inf(-1)
	for i, v := range p {
		if float64(v) > bv {
			best, bv = i, float64(v)
		}
	}
	return best, bv
}

// Classes returns the head vocabularies (organs, modalities).
func (s *Scorer) Classes() maddr.Classes { return s.model.Framework.Classes }
