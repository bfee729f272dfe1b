package train

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"maps"
	"math"
	"os"
	"path/filepath"
	"slices"
	"sort"
	"time"

	"github.com/maddr-project/maddr/atomicfile"
	"github.com/maddr-project/maddr/baselines"
	"github.com/maddr-project/maddr/dataset"
	"github.com/maddr-project/maddr/evaluate"
	"github.com/maddr-project/maddr/loader"
	"github.com/maddr-project/maddr/metrics"
	"github.com/maddr-project/maddr/progress"
	"github.com/maddr-project/maddr/report"
)

// Validation is one evaluation of the model on the validation split of the
// training data during training: the point of the learning curve that says
// whether the network is learning to separate abnormal from normal images.
type Validation struct {
	Iter int `json:"iter"`
	// AUC per organ/modality group, for the groups whose validation split
	// has both normal and abnormal images.
	AUC map[string]float64 `json:"auc"`
	// Images is the number of validation images scored.
	Images int `json:"images"`
	// Seconds is the wall-clock time of this evaluation.
	Seconds float64 `json:"seconds"`
}

// DefaultValidations is how many evenly spaced validations a run makes
// between the first iteration and the last when Options.ValEvery is 0.
const DefaultValidations = 5

// CurveFile is the learning curve drawn in a run directory.
const CurveFile = "learning-curve.png"

// validationDue says whether the model is evaluated after iteration it (0:
// before training) of a run of total iterations. every > 0 validates at its
// multiples, every == 0 DefaultValidations times evenly spaced, every < 0
// never; the untrained model and the final one are always evaluated
// unless every < 0, so each curve has both ends.
func validationDue(it, total, every int) bool {
	switch {
	case every < 0:
		return false
	case it == 0 || it == total:
		return true
	case every > 0:
		return it%every == 0
	}
	for k := 1; k <= DefaultValidations; k++ {
		if it == k*total/(DefaultValidations+1) {
			return true
		}
	}
	return false
}

// validator scores the validation images of the training groups with the
// model being trained. It owns its own loader, whose batches never touch
// the training's random streams; the baseline's Score runs without
// gradients and in evaluation mode (normalisation layers use their running
// statistics and update nothing), so training continues exactly as if no
// validation had happened.
type validator struct {
	base   baselines.Baseline
	ld     *loader.Loader
	every  int
	groups []string // groups with both classes, sorted
	spent  float64  // seconds spent validating in this process
	count  int
}

// newValidator prepares the validation split of the training groups; it
// returns nil when validation is off or there is nothing to validate on,
// after saying why once.
func newValidator(ctx context.Context, cfg Config, all []dataset.Sample, base baselines.Baseline,
	every int, logf func(string, ...any)) (*validator, error) {
	if every < 0 {
		return nil, nil
	}
	var trained []string
	for _, s := range selectTrain(all, cfg.Groups) {
		if !slices.Contains(trained, s.Group) {
			trained = append(trained, s.Group)
		}
	}
	sort.Strings(trained)
	normal, abnormal := map[string]int{}, map[string]int{}
	for _, s := range all {
		if s.Split != dataset.Val {
			continue
		}
		if s.Label == dataset.Abnormal {
			abnormal[s.Group]++
		} else {
			normal[s.Group]++
		}
	}
	var groups []string
	for _, g := range trained {
		if normal[g] > 0 && abnormal[g] > 0 {
			groups = append(groups, g)
			continue
		}
		logf("validation: group %s has %d normal and %d abnormal validation images, so the learning curve has no AUC for it",
			g, normal[g], abnormal[g])
	}
	var val []dataset.Sample
	for _, s := range all {
		if s.Split == dataset.Val && slices.Contains(groups, s.Group) {
			val = append(val, s)
		}
	}
	if len(groups) == 0 {
		logf("validation: no training group has both normal and abnormal validation images; the learning curve shows losses only")
		return nil, nil
	}
	ld, err := evaluate.NewScoringLoader(ctx, val, cfg.Preprocess, evaluate.ScoringOptions{
		SkipBad: cfg.SkipBad, CacheBytes: cfg.CacheBytes, Workers: cfg.Workers, Verify: true, Logf: logf,
	})
	if err != nil {
		return nil, fmt.Errorf("validation images: %w", err)
	}
	return &validator{base: base, ld: ld, every: every, groups: groups}, nil
}

func (v *validator) close() {
	if v != nil {
		v.ld.Close()
	}
}

func (v *validator) due(it, total int) bool { return v != nil && validationDue(it, total, v.every) }

// evaluate scores every validation image with the model as it is after
// iteration it and returns the AUC of each group.
func (v *validator) evaluate(ctx context.Context, it int) (*Validation, error) {
	t0 := time.Now()
	scores, err := evaluate.ScoreLoader(ctx, v.base, v.ld)
	if err != nil {
		return nil, fmt.Errorf("validation after iteration %d: %w", it, err)
	}
	type labelled struct {
		scores   []float64
		abnormal []bool
	}
	byGroup := map[string]*labelled{}
	scored := 0
	for i, s := range v.ld.Samples() {
		if math.IsNaN(scores[i]) {
			continue
		}
		scored++
		g := byGroup[s.Group]
		if g == nil {
			g = &labelled{}
			byGroup[s.Group] = g
		}
		g.scores = append(g.scores, scores[i])
		g.abnormal = append(g.abnormal, s.Label == dataset.Abnormal)
	}
	out := &Validation{Iter: it, AUC: map[string]float64{}, Images: scored}
	for _, name := range v.groups {
		g := byGroup[name]
		if g == nil {
			continue
		}
		// A group whose images were skipped or scored NaN down to one
		// class has no AUC at this point; the curve shows a gap.
		if auc, err := metrics.AUC(g.scores, g.abnormal); err == nil {
			out.AUC[name] = auc
		}
	}
	out.Seconds = time.Since(t0).Seconds()
	v.spent += out.Seconds
	v.count++
	return out, nil
}

// show puts the latest AUC of each group on the progress line.
func (v *validator) show(bar *progress.Bar, p *Validation) {
	if bar == nil {
		return
	}
	values := make([]progress.Value, 0, len(v.groups))
	for _, g := range v.groups {
		if auc, ok := p.AUC[g]; ok {
			values = append(values, progress.Value{Name: "val_auc[" + g + "]", Value: auc})
		}
	}
	bar.Set(values...)
}

// Curve is what a run's log says about its learning: every loss term and
// the validation AUC of every group, by iteration.
type Curve struct {
	Losses     []report.LossSeries
	Validation []Validation
}

// ReadCurve reads a run's JSONL log.
func ReadCurve(path string) (*Curve, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	losses := seriesByName{}
	c := &Curve{}
	sc := bufio.NewScanner(f)
	sc.Buffer(make([]byte, 1<<16), 1<<24)
	line := 0
	for sc.Scan() {
		line++
		var e LogEntry
		if err := json.Unmarshal(sc.Bytes(), &e); err != nil {
			return nil, fmt.Errorf("%s line %d: %w", path, line, err)
		}
		for k, v := range e.Losses {
			losses.add(k, e.Iter, v)
		}
		if e.Validation != nil {
			c.Validation = append(c.Validation, *e.Validation)
		}
	}
	if err := sc.Err(); err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	losses.each(func(name string, iter, value []float64) {
		c.Losses = append(c.Losses, report.LossSeries{Name: name, Iter: iter, Value: value})
	})
	return c, nil
}

// AUCSeries turns the validation points into one series per group.
func (c *Curve) AUCSeries() []report.AUCSeries {
	groups := seriesByName{}
	for _, p := range c.Validation {
		for g, auc := range p.AUC {
			groups.add(g, p.Iter, auc)
		}
	}
	out := make([]report.AUCSeries, 0, len(groups))
	groups.each(func(name string, iter, value []float64) {
		out = append(out, report.AUCSeries{Name: name, Iter: iter, Value: value})
	})
	return out
}

// seriesByName gathers (iteration, value) points per name, in the order they
// come, for the loss and AUC curves.
type seriesByName map[string]*struct{ iter, value []float64 }

func (s seriesByName) add(name string, iter int, v float64) {
	p := s[name]
	if p == nil {
		p = &struct{ iter, value []float64 }{}
		s[name] = p
	}
	p.iter = append(p.iter, float64(iter))
	p.value = append(p.value, v)
}

// each calls f for every name in sorted order.
func (s seriesByName) each(f func(name string, iter, value []float64)) {
	for _, name := range slices.Sorted(maps.Keys(s)) {
		f(name, s[name].iter, s[name].value)
	}
}

// PNG draws the learning curve.
func (c *Curve) PNG(title string) ([]byte, error) {
	return report.LearningCurve(title, c.Losses, c.AUCSeries())
}

// writeCurve draws the run's learning curve from its log into dir.
func writeCurve(logPath, pngPath, title string) (*Curve, error) {
	c, err := ReadCurve(logPath)
	if err != nil {
		return nil, err
	}
	b, err := c.PNG(title)
	if err != nil {
		return c, err
	}
	return c, atomicfile.Write(pngPath, func(w io.Writer) error {
		_, err := w.Write(b)
		return err
	})
}

// curveRecorder keeps a run's learning curve: it evaluates the validation
// split when due, shows each point on the progress line, hands it to the
// caller and remembers it for the result and the model file.
type curveRecorder struct {
	v      *validator
	total  int
	points []Validation
	bar    *progress.Bar
	notify func(Validation)
	// inLoop is the time spent on validations after training steps, which
	// the training throughput leaves out.
	inLoop float64
}

// startCurve prepares validation for a run that starts after iteration
// start; a resumed run's earlier points come from its (already trimmed) log,
// so its curve continues without repeating them.
func startCurve(ctx context.Context, cfg Config, all []dataset.Sample, base baselines.Baseline,
	logPath string, start int, o Options, bar *progress.Bar, logf func(string, ...any)) (*curveRecorder, error) {
	v, err := newValidator(ctx, cfg, all, base, o.ValEvery, logf)
	if err != nil {
		return nil, err
	}
	c := &curveRecorder{v: v, total: cfg.Iterations, bar: bar, notify: o.OnValidation}
	if start > 0 {
		earlier, err := ReadCurve(logPath)
		if err != nil {
			v.close()
			return nil, fmt.Errorf("resuming the learning curve: %w", err)
		}
		c.points = earlier.Validation
		if n := len(c.points); n > 0 && v != nil {
			v.show(bar, &c.points[n-1])
		}
	}
	return c, nil
}

func (c *curveRecorder) close() { c.v.close() }

// at evaluates the model after iteration it when a validation is due, and
// returns the point (nil when none is due).
func (c *curveRecorder) at(ctx context.Context, it int) (*Validation, error) {
	if !c.v.due(it, c.total) {
		return nil, nil
	}
	p, err := c.v.evaluate(ctx, it)
	if err != nil {
		return nil, err
	}
	c.points = append(c.points, *p)
	if it > 0 {
		c.inLoop += p.Seconds
	}
	c.v.show(c.bar, p)
	if c.notify != nil {
		c.notify(*p)
	}
	return p, nil
}

// finish reports what validation cost and draws the curve into dir; a
// curve that cannot be drawn is a warning, not a failed run.
func (c *curveRecorder) finish(dir, title string, stepSeconds float64, logf func(string, ...any)) string {
	if c.v != nil && c.v.count > 0 {
		logf("validation: %d evaluations of %d images took %.1f s (%.2f s each); the training steps took %.1f s",
			c.v.count, c.v.ld.Len(), c.v.spent, c.v.spent/float64(c.v.count), stepSeconds)
	}
	path := filepath.Join(dir, CurveFile)
	if _, err := writeCurve(filepath.Join(dir, LogFile), path, title); err != nil {
		logf("warning: learning curve not drawn: %v", err)
		return ""
	}
	return path
}
