package infer_test

import (
	"bytes"
	"context"
	"encoding/json"
	"flag"
	"math"
	"os"
	"strconv"
	"testing"

	_ "github.com/maddr-project/maddr/baselines/ae" // the fixture's baseline
	"github.com/maddr-project/maddr/dataset"
	"github.com/maddr-project/maddr/evaluate"
	"github.com/maddr-project/maddr/metrics"
	"github.com/maddr-project/maddr/modelfile"
	"github.com/maddr-project/maddr/score"
	"github.com/maddr-project/maddr/score/scoretest"
	"github.com/maddr-project/maddr/torch"
)

// updateGolden rewrites the saved outputs (and, when missing, trains the
// fixture model). Only ever run it on code whose outputs are known good.
var updateGolden = flag.Bool("update-golden", false, "rewrite testdata/golden.json from the current code")

// Fixture paths, shared with experiment's golden test.
const (
	goldenModel = "testdata/golden-model.safetensors"
	goldenFile  = "testdata/golden.json"
)

// golden is what the scoring paths produced before they were routed through
// this package. Floats are written with strconv's shortest exact form, so
// one ulp of difference fails the comparison.
type golden struct {
	EvalVal    []string      `json:"eval_val"`
	EvalTest   []string      `json:"eval_test"`
	EvalReport string        `json:"eval_report"`
	Score      []scoreGolden `json:"score"`
}

type scoreGolden struct {
	Path         string `json:"path"`
	Raw          string `json:"raw"`
	Normalised   string `json:"normalised"`
	OrganProb    string `json:"organ_prob"`
	ModalityProb string `json:"modality_prob"`
	Decision     string `json:"decision"`
	Group        string `json:"group"`
	WindowOrgan  string `json:"window_organ"`
	MapSHA256    string `json:"map_sha256"`
}

func exact(v float64) string { return strconv.FormatFloat(v, 'g', -1, 64) }

func exactAll(v []float64) []string {
	out := make([]string, len(v))
	for i, f := range v {
		out[i] = exact(f)
	}
	return out
}

func exactPtr(p *float64) string {
	if p == nil {
		return "-"
	}
	return exact(*p)
}

// fixtureModel returns the committed fixture model, training it first when
// -update-golden is given and it is missing (scoretest.TrainSmall, small
// enough to commit).
func fixtureModel(t *testing.T) *modelfile.Model {
	t.Helper()
	if _, err := os.Stat(goldenModel); err != nil && *updateGolden {
		trainFixture(t)
	}
	m, err := modelfile.Load(goldenModel)
	if err != nil {
		t.Fatal(err)
	}
	return m
}

func trainFixture(t *testing.T) {
	t.Helper()
	b, err := os.ReadFile(scoretest.TrainSmall(t, t.TempDir()).Path)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(goldenModel, b, 0o644); err != nil {
		t.Fatal(err)
	}
}

// currentOutputs computes with today's code everything golden records.
func currentOutputs(t *testing.T, m *modelfile.Model) golden {
	t.Helper()
	ctx := context.Background()
	samples := scoretest.Phantom(t)
	val, test := dataset.Filter(samples, dataset.Val), dataset.Filter(samples, dataset.Test)
	var g golden
	vs, err := evaluate.ScoreSamples(ctx, m, val, 32, false)
	if err != nil {
		t.Fatal(err)
	}
	ts, err := evaluate.ScoreSamples(ctx, m, test, 32, false)
	if err != nil {
		t.Fatal(err)
	}
	g.EvalVal, g.EvalTest = exactAll(vs), exactAll(ts)
	rep, err := evaluate.Evaluate(ctx, m, samples, metrics.SelectOptions{}, false)
	if err != nil {
		t.Fatal(err)
	}
	var js bytes.Buffer
	if err := rep.WriteJSON(&js); err != nil {
		t.Fatal(err)
	}
	g.EvalReport = js.String()
	g.Score = scoreOutputs(t, m, test)
	return g
}

// scoreOutputs scores the test images as 'maddr score' and 'maddr serve' do.
func scoreOutputs(t *testing.T, m *modelfile.Model, test []dataset.Sample) []scoreGolden {
	t.Helper()
	sc, err := score.New(m, score.DefaultOptions())
	if err != nil {
		t.Fatal(err)
	}
	var r dataset.Reader
	var inputs []score.Input
	for _, s := range test {
		img, err := r.Load(s)
		if err != nil {
			t.Fatal(err)
		}
		inputs = append(inputs, score.Input{Image: img, Path: s.ID})
	}
	results, err := sc.Score(context.Background(), inputs, score.Request{Maps: true})
	if err != nil {
		t.Fatal(err)
	}
	var out []scoreGolden
	for _, res := range results {
		out = append(out, scoreGolden{
			Path: res.Path, Raw: exactPtr(res.Raw), Normalised: exactPtr(res.Normalised), OrganProb: exactPtr(res.OrganProb),
			ModalityProb: exactPtr(res.ModalityProb), Decision: res.Decision, Group: res.Group, WindowOrgan: res.WindowOrgan,
			MapSHA256: scoretest.BitsSHA256(res.Map),
		})
	}
	return out
}

// readGolden reads the recorded outputs.
func readGolden(t *testing.T) golden {
	t.Helper()
	b, err := os.ReadFile(goldenFile)
	if err != nil {
		t.Fatal(err)
	}
	var g golden
	if err := json.Unmarshal(b, &g); err != nil {
		t.Fatalf("%s: %v", goldenFile, err)
	}
	return g
}

// TestOutputsBitForBitAsBefore fails if any score, probability or anomaly
// map of evaluation or scoring differs by as much as one ulp from what the
// code produced before inference went through this package.
//
// The golden outputs were recorded with libtorch's conv_transpose2d kernel,
// so this test runs with it; TestGradientDeconvWithinRoundingOfGolden checks
// the default kernel against the same file.
func TestOutputsBitForBitAsBefore(t *testing.T) {
	m := fixtureModel(t)
	defer m.Framework.Base.Store().Free()
	torch.SetConvTransposeByGradient(false)
	defer torch.SetConvTransposeByGradient(true)
	got := currentOutputs(t, m)
	if *updateGolden {
		b, err := json.MarshalIndent(got, "", " ")
		if err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(goldenFile, append(b, '\n'), 0o644); err != nil {
			t.Fatal(err)
		}
		return
	}
	want := readGolden(t)
	compareStrings(t, "evaluation validation score", want.EvalVal, got.EvalVal)
	compareStrings(t, "evaluation test score", want.EvalTest, got.EvalTest)
	if want.EvalReport != got.EvalReport {
		t.Errorf("evaluation report changed:\nwant %s\ngot  %s", want.EvalReport, got.EvalReport)
	}
	if len(want.Score) != len(got.Score) {
		t.Fatalf("%d scored images, want %d", len(got.Score), len(want.Score))
	}
	for i := range want.Score {
		if want.Score[i] != got.Score[i] {
			t.Errorf("scoring %s:\nwant %+v\ngot  %+v", want.Score[i].Path, want.Score[i], got.Score[i])
		}
	}
}

func compareStrings(t *testing.T, what string, want, got []string) {
	t.Helper()
	if len(want) != len(got) {
		t.Fatalf("%d values of %s, want %d", len(got), what, len(want))
	}
	for i := range want {
		if want[i] != got[i] {
			t.Errorf("%s %d: got %s, want %s", what, i, got[i], want[i])
		}
	}
}

// TestGradientDeconvWithinRoundingOfGolden scores with the default
// transposed-convolution kernel (the gradient of a convolution, oneDNN): it
// computes the same function as the kernel the golden outputs were recorded
// with, so every score and probability agrees to float rounding and every
// decision is the same. If nothing differed at all, the fixture would not
// reach that kernel and the test would check nothing.
func TestGradientDeconvWithinRoundingOfGolden(t *testing.T) {
	m := fixtureModel(t)
	defer m.Framework.Base.Store().Free()
	got := currentOutputs(t, m)
	want := readGolden(t)
	differ := 0
	near := func(what, w, g string) {
		t.Helper()
		if w == g {
			return
		}
		differ++
		wv, err1 := strconv.ParseFloat(w, 64)
		gv, err2 := strconv.ParseFloat(g, 64)
		if err1 != nil || err2 != nil || math.Abs(wv-gv) > 1e-5*math.Max(math.Abs(wv), 1e-3) {
			t.Errorf("%s: %s, golden %s", what, g, w)
		}
	}
	for i := range want.EvalVal {
		near("validation score "+strconv.Itoa(i), want.EvalVal[i], got.EvalVal[i])
	}
	for i := range want.EvalTest {
		near("test score "+strconv.Itoa(i), want.EvalTest[i], got.EvalTest[i])
	}
	if len(got.Score) != len(want.Score) {
		t.Fatalf("%d scored images, want %d", len(got.Score), len(want.Score))
	}
	for i, w := range want.Score {
		g := got.Score[i]
		near(w.Path+" raw", w.Raw, g.Raw)
		near(w.Path+" normalised", w.Normalised, g.Normalised)
		near(w.Path+" organ probability", w.OrganProb, g.OrganProb)
		near(w.Path+" modality probability", w.ModalityProb, g.ModalityProb)
		if g.Decision != w.Decision || g.Group != w.Group || g.WindowOrgan != w.WindowOrgan {
			t.Errorf("%s: decision %s, group %s, window %q; golden %s, %s, %q", w.Path, g.Decision, g.Group, g.WindowOrgan, w.Decision, w.Group, w.WindowOrgan)
		}
	}
	if differ == 0 {
		t.Error("every value is bit-identical to the golden outputs: the fixture never ran the gradient kernel")
	}
}
