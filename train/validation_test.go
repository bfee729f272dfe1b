package train

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"image/png"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"

	"github.com/maddr-project/maddr/baselines"
	"github.com/maddr-project/maddr/dataset"
	"github.com/maddr-project/maddr/evaluate"
	"github.com/maddr-project/maddr/metrics"
	"github.com/maddr-project/maddr/modelfile"
)

func TestValidationSchedule(t *testing.T) {
	cases := []struct {
		total, every int
		want         []int
	}{
		{12, 0, []int{0, 2, 4, 6, 8, 10, 12}},
		{100, 0, []int{0, 16, 33, 50, 66, 83, 100}},
		{12, 5, []int{0, 5, 10, 12}},
		{12, 4, []int{0, 4, 8, 12}},
		{3, 0, []int{0, 1, 2, 3}},
		{12, -1, nil},
	}
	for _, c := range cases {
		var got []int
		for it := 0; it <= c.total; it++ {
			if validationDue(it, c.total, c.every) {
				got = append(got, it)
			}
		}
		if !slices.Equal(got, c.want) {
			t.Errorf("%d iterations, every %d: validations after %v, want %v", c.total, c.every, got, c.want)
		}
	}
}

// loggedValidations returns the iterations whose log line holds a validation.
func loggedValidations(t *testing.T, dir string) []int {
	t.Helper()
	c, err := ReadCurve(filepath.Join(dir, LogFile))
	if err != nil {
		t.Fatal(err)
	}
	var out []int
	for _, p := range c.Validation {
		out = append(out, p.Iter)
	}
	return out
}

func iters(points []Validation) []int {
	var out []int
	for _, p := range points {
		out = append(out, p.Iter)
	}
	return out
}

// TestLearningCurve trains briefly with validation every 5 iterations and
// checks the curve everywhere it is written, and that its last point is
// exactly what the evaluation path of 'maddr eval' finds on the validation
// split with the saved model.
func TestLearningCurve(t *testing.T) {
	cfg, samples := smallConfig(t)
	dir := t.TempDir()
	var seen []Validation
	var logMu sync.Mutex
	var logged []string
	res, err := Run(context.Background(), cfg, dir, Options{Samples: samples, ValEvery: 5,
		OnValidation: func(v Validation) { seen = append(seen, v) },
		Logf: func(f string, a ...any) {
			logMu.Lock()
			defer logMu.Unlock()
			logged = append(logged, fmt.Sprintf(f, a...))
		}})
	if err != nil {
		t.Fatal(err)
	}
	want := []int{0, 5, 10, 12}
	if got := iters(res.Validation); !slices.Equal(got, want) {
		t.Fatalf("result curve at iterations %v, want %v", got, want)
	}
	if got := iters(seen); !slices.Equal(got, want) {
		t.Fatalf("callback saw iterations %v, want %v", got, want)
	}
	if got := loggedValidations(t, dir); !slices.Equal(got, want) {
		t.Fatalf("log holds validations at %v, want %v", got, want)
	}
	if !slices.ContainsFunc(logged, func(s string) bool { return strings.HasPrefix(s, "validation: 4 evaluations of ") }) {
		t.Errorf("the validation time is not in the log: %q", logged)
	}

	m, err := modelfile.Load(res.ModelPath)
	if err != nil {
		t.Fatal(err)
	}
	defer m.Framework.Base.Store().Free()
	val := dataset.Filter(samples, dataset.Val)
	scores, err := evaluate.ScoreSamples(context.Background(), m, val, 32, false)
	if err != nil {
		t.Fatal(err)
	}
	rep, err := evaluate.FromScores(m, val, val, scores, scores, metrics.SelectOptions{})
	if err != nil {
		t.Fatal(err)
	}
	final := res.Validation[len(res.Validation)-1]
	if len(rep.Results.Groups) != 3 || len(final.AUC) != 3 {
		t.Fatalf("groups: eval %d, curve %v", len(rep.Results.Groups), final.AUC)
	}
	if final.Images != len(val) {
		t.Errorf("the curve scored %d images, the validation split has %d", final.Images, len(val))
	}
	for _, g := range rep.Results.Groups {
		got, ok := final.AUC[g.Group]
		if !ok || g.Test.AUC == nil || got != *g.Test.AUC {
			t.Errorf("%s: validation AUC during training %v, with the saved model %v", g.Group, got, g.Test.AUC)
		}
	}
	// The untrained model's AUC differs from the trained one's somewhere:
	// the points are measured, not copied.
	if fmt.Sprint(res.Validation[0].AUC) == fmt.Sprint(final.AUC) {
		t.Errorf("AUC before and after training are identical: %v", final.AUC)
	}

	// The model file carries its curve.
	var training struct {
		Validation []Validation `json:"validation"`
	}
	if err := json.Unmarshal(m.Manifest.Training, &training); err != nil {
		t.Fatal(err)
	}
	if got := iters(training.Validation); !slices.Equal(got, want) {
		t.Errorf("model file curve at %v, want %v", got, want)
	}

	if res.CurvePath != filepath.Join(dir, CurveFile) {
		t.Fatalf("curve path %q", res.CurvePath)
	}
	b, err := os.ReadFile(res.CurvePath)
	if err != nil {
		t.Fatal(err)
	}
	img, err := png.Decode(bytes.NewReader(b))
	if err != nil {
		t.Fatalf("%s: %v", res.CurvePath, err)
	}
	if r := img.Bounds(); r.Dx() < 200 || r.Dy() < 200 {
		t.Errorf("learning curve is only %v", r)
	}
}

// TestValidationLeavesTrainingUnchanged: validating must not touch the
// training's random streams, normalisation statistics or optimizer, so
// runs with and without it end with bit-identical weights; and a resumed
// run's curve continues the interrupted one's with the same values and
// no point twice.
func TestValidationLeavesTrainingUnchanged(t *testing.T) {
	cfg, samples := smallConfig(t)
	without, with := t.TempDir(), t.TempDir()
	if _, err := Run(context.Background(), cfg, without, Options{Samples: samples, ValEvery: -1}); err != nil {
		t.Fatal(err)
	}
	whole, err := Run(context.Background(), cfg, with, Options{Samples: samples, ValEvery: 3})
	if err != nil {
		t.Fatal(err)
	}
	if got := loggedValidations(t, without); len(got) != 0 {
		t.Fatalf("validation off, yet logged at %v", got)
	}
	a, b := weights(t, filepath.Join(without, CheckpointFile)), weights(t, filepath.Join(with, CheckpointFile))
	if len(a) == 0 || len(a) != len(b) {
		t.Fatalf("%d and %d tensors", len(a), len(b))
	}
	for name, wa := range a {
		if !slices.Equal(wa, b[name]) {
			t.Fatalf("%s differs between the runs with and without validation", name)
		}
	}

	// Interrupted after iteration 7 (checkpoint at 5, validations at 0, 3, 6).
	split := t.TempDir()
	ctx, cancel := context.WithCancel(context.Background())
	_, err = Run(ctx, cfg, split, Options{Samples: samples, ValEvery: 3, AfterStep: func(it int, _ baselines.Losses) {
		if it == 7 {
			cancel()
		}
	}})
	if !errors.Is(err, context.Canceled) {
		t.Fatalf("interrupted run: %v", err)
	}
	var again []int
	res, err := Run(context.Background(), cfg, split, Options{Samples: samples, ValEvery: 3, Resume: true,
		OnValidation: func(v Validation) { again = append(again, v.Iter) }})
	if err != nil {
		t.Fatal(err)
	}
	want := []int{0, 3, 6, 9, 12}
	if got := iters(res.Validation); !slices.Equal(got, want) {
		t.Fatalf("resumed curve at %v, want %v", got, want)
	}
	if got := loggedValidations(t, split); !slices.Equal(got, want) {
		t.Fatalf("resumed log holds validations at %v, want %v", got, want)
	}
	if !slices.Equal(again, []int{6, 9, 12}) {
		t.Errorf("the resumed run measured %v, want the points after its checkpoint (6, 9, 12)", again)
	}
	for i, p := range res.Validation {
		if fmt.Sprint(p.AUC) != fmt.Sprint(whole.Validation[i].AUC) {
			t.Errorf("iteration %d: resumed AUC %v, uninterrupted %v", p.Iter, p.AUC, whole.Validation[i].AUC)
		}
	}
}

// TestValidationNamesGroupsWithoutBothClasses: a group whose validation
// split lacks abnormal images gets no AUC, and the run says so once.
func TestValidationNamesGroupsWithoutBothClasses(t *testing.T) {
	cfg, samples := smallConfig(t)
	cfg.Iterations = 4
	var kept []dataset.Sample
	for _, s := range samples {
		if s.Group == "lung-ct" && s.Split == dataset.Val && s.Label == dataset.Abnormal {
			continue
		}
		kept = append(kept, s)
	}
	var notes []string
	res, err := Run(context.Background(), cfg, t.TempDir(), Options{Samples: kept, ValEvery: 1,
		Logf: func(f string, a ...any) { notes = append(notes, fmt.Sprintf(f, a...)) }})
	if err != nil {
		t.Fatal(err)
	}
	if len(res.Validation) != 5 {
		t.Fatalf("%d points, want 5", len(res.Validation))
	}
	for _, p := range res.Validation {
		if _, ok := p.AUC["lung-ct"]; ok || len(p.AUC) != 2 {
			t.Fatalf("iteration %d: AUC %v, want every group but lung-ct", p.Iter, p.AUC)
		}
	}
	n := 0
	for _, s := range notes {
		if strings.Contains(s, "lung-ct") && strings.Contains(s, "0 abnormal validation images") {
			n++
		}
	}
	if n != 1 {
		t.Errorf("the missing class was reported %d times, want once: %q", n, notes)
	}
}

// TestBadValidationImage: an unreadable validation image stops the run
// before its first step, naming the file, unless bad images are skipped.
func TestBadValidationImage(t *testing.T) {
	cfg, samples := smallConfig(t)
	cfg.Iterations = 2
	missing := filepath.Join(t.TempDir(), "gone.png")
	bad := dataset.Sample{Path: missing, Organ: "liver", Modality: "ct", Group: "liver-ct", Split: dataset.Val, Label: dataset.Abnormal}
	with := append(slices.Clone(samples), bad)
	steps := 0
	_, err := Run(context.Background(), cfg, t.TempDir(), Options{Samples: with, AfterStep: func(int, baselines.Losses) { steps++ }})
	if err == nil || !strings.Contains(err.Error(), missing) || steps != 0 {
		t.Fatalf("after %d steps: err = %v, want an error naming %s before training", steps, err, missing)
	}
	cfg.SkipBad = true
	res, err := Run(context.Background(), cfg, t.TempDir(), Options{Samples: with})
	if err != nil {
		t.Fatal(err)
	}
	nVal := 0
	for _, s := range samples {
		if s.Split == dataset.Val {
			nVal++
		}
	}
	if got := res.Validation[0].Images; got != nVal {
		t.Errorf("scored %d validation images, want the %d readable ones", got, nVal)
	}
}
