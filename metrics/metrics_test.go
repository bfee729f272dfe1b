package metrics

import (
	"encoding/json"
	"math"
	"strings"
	"testing"
)

// The six-sample example used by several tests, worked out by hand.
//
//	score  9  8  8  5  5  2
//	label  A  N  A  A  N  N      (A abnormal = positive, N normal)
//
// AUC, counting every (abnormal, normal) pair, 3 x 3 = 9 pairs:
//
//	A9 beats N8, N5, N2              -> 3
//	A8 ties N8 (1/2), beats N5, N2   -> 2.5
//	A5 loses to N8, ties N5, beats N2 -> 1.5
//	AUC = 7/9
//
// Cuts from high to low (TP, FP of samples scoring >= t):
//
//	t=9: 1,0   t=8: 2,1   t=5: 3,2   t=2: 3,3
//
// Average precision = sum (R_n - R_{n-1}) P_n:
//
//	1/3*1 + 1/3*2/3 + 1/3*3/5 + 0*1/2 = 15/45 + 10/45 + 9/45 = 34/45
var (
	sixScores = []float64{9, 8, 8, 5, 5, 2}
	sixLabels = []bool{true, false, true, true, false, false}
)

func near(a, b float64) bool { return math.Abs(a-b) <= 1e-12 }

func TestAUC(t *testing.T) {
	for _, tc := range []struct {
		name   string
		scores []float64
		labels []bool
		want   float64
	}{
		{"six with ties", sixScores, sixLabels, 7.0 / 9},
		{"perfect", []float64{0.1, 0.2, 0.8, 0.9}, []bool{false, false, true, true}, 1},
		{"inverted", []float64{0.1, 0.2, 0.8, 0.9}, []bool{true, true, false, false}, 0},
		{"all tied", []float64{3, 3, 3, 3, 3}, []bool{true, false, false, true, false}, 0.5},
		// One abnormal at 0.5 among normals 0.1, 0.5, 0.5, 0.9: (1 + 0.5 + 0.5 + 0)/4.
		{"one positive tied twice", []float64{0.1, 0.5, 0.5, 0.5, 0.9}, []bool{false, false, true, false, false}, 0.5},
		{"negative scores", []float64{-3, -2, -1}, []bool{false, true, true}, 1},
	} {
		got, err := AUC(tc.scores, tc.labels)
		if err != nil {
			t.Fatalf("%s: %v", tc.name, err)
		}
		if !near(got, tc.want) {
			t.Errorf("%s: AUC = %v, want %v", tc.name, got, tc.want)
		}
	}
}

func TestAUPR(t *testing.T) {
	for _, tc := range []struct {
		name   string
		scores []float64
		labels []bool
		want   float64
	}{
		{"six with ties", sixScores, sixLabels, 34.0 / 45},
		{"perfect", []float64{0.1, 0.2, 0.8, 0.9}, []bool{false, false, true, true}, 1},
		// Abnormals ranked last: R jumps 1/2 at P=1/3 and 1/2 at P=2/4.
		{"inverted", []float64{0.1, 0.2, 0.8, 0.9}, []bool{true, true, false, false}, 0.5*1/3 + 0.5*2/4},
		// One cut only: recall 0 -> 1 at precision 2/5.
		{"all tied", []float64{3, 3, 3, 3, 3}, []bool{true, false, false, true, false}, 0.4},
	} {
		got, err := AUPR(tc.scores, tc.labels)
		if err != nil {
			t.Fatalf("%s: %v", tc.name, err)
		}
		if !near(got, tc.want) {
			t.Errorf("%s: AUPR = %v, want %v", tc.name, got, tc.want)
		}
	}
}

func floatsNear(a, b []float64) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if !(near(a[i], b[i]) || a[i] == b[i]) { // == lets +Inf match
			return false
		}
	}
	return true
}

func TestCurves(t *testing.T) {
	roc, err := ROC(sixScores, sixLabels)
	if err != nil {
		t.Fatal(err)
	}
	inf := math.Inf(1)
	if want := []float64{inf, 9, 8, 5, 2}; !floatsNear(roc.Thresholds, want) {
		t.Errorf("ROC thresholds = %v, want %v", roc.Thresholds, want)
	}
	if want := []float64{0, 0, 1.0 / 3, 2.0 / 3, 1}; !floatsNear(roc.FPR, want) {
		t.Errorf("FPR = %v, want %v", roc.FPR, want)
	}
	if want := []float64{0, 1.0 / 3, 2.0 / 3, 1, 1}; !floatsNear(roc.TPR, want) {
		t.Errorf("TPR = %v, want %v", roc.TPR, want)
	}
	pr, err := PRCurve(sixScores, sixLabels)
	if err != nil {
		t.Fatal(err)
	}
	if want := []float64{inf, 9, 8, 5, 2}; !floatsNear(pr.Thresholds, want) {
		t.Errorf("PR thresholds = %v, want %v", pr.Thresholds, want)
	}
	if want := []float64{1, 1, 2.0 / 3, 3.0 / 5, 1.0 / 2}; !floatsNear(pr.Precision, want) {
		t.Errorf("precision = %v, want %v", pr.Precision, want)
	}
	if want := []float64{0, 1.0 / 3, 2.0 / 3, 1, 1}; !floatsNear(pr.Recall, want) {
		t.Errorf("recall = %v, want %v", pr.Recall, want)
	}
}

func TestBadInput(t *testing.T) {
	nan, inf := math.NaN(), math.Inf(1)
	for _, tc := range []struct {
		name   string
		scores []float64
		labels []bool
		want   string
	}{
		{"NaN", []float64{0.1, nan, 0.3}, []bool{false, true, true}, "score 1 is NaN"},
		{"Inf", []float64{0.1, 0.2, -inf}, []bool{false, true, true}, "score 2 is -Inf"},
		{"lengths", []float64{0.1, 0.2}, []bool{false}, "2 scores but 1 labels"},
		{"empty", nil, nil, "no scores"},
		{"no abnormal", []float64{0.1, 0.2}, []bool{false, false}, "without abnormal samples"},
		{"no normal", []float64{0.1, 0.2}, []bool{true, true}, "without normal samples"},
	} {
		checks := map[string]error{}
		_, checks["AUC"] = AUC(tc.scores, tc.labels)
		_, checks["AUPR"] = AUPR(tc.scores, tc.labels)
		_, checks["ROC"] = ROC(tc.scores, tc.labels)
		_, checks["PRCurve"] = PRCurve(tc.scores, tc.labels)
		for fn, err := range checks {
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Errorf("%s %s: error %v, want one containing %q", fn, tc.name, err, tc.want)
			}
		}
	}
	// Thresholded metrics need no second class but still refuse NaN.
	if _, err := Count([]float64{0.1, math.NaN()}, []bool{false, false}, 0.5); err == nil {
		t.Error("Count accepted a NaN score")
	}
	if _, err := Evaluate([]float64{math.NaN()}, []bool{true}, 0.5); err == nil || !strings.Contains(err.Error(), "NaN") {
		t.Errorf("Evaluate NaN error = %v", err)
	}
	if _, err := SelectThreshold([]float64{0.1, math.NaN()}, []bool{false, true}, SelectOptions{}); err == nil ||
		!strings.Contains(err.Error(), "NaN") {
		t.Errorf("SelectThreshold NaN error = %v", err)
	}
}

// At t=8 on the six-sample example: predicted abnormal 9A 8N 8A.
// TP=2 FP=1 TN=2 (5N, 2N) FN=1 (5A); every rate is 2/3.
// At t=5: TP=3 FP=2 TN=1 FN=0: F1 = 6/8, normal F1 = 2/4, macro = weighted = 5/8.
func TestConfusion(t *testing.T) {
	for _, tc := range []struct {
		threshold                                   float64
		want                                        Confusion
		acc, prec, rec, spec, f1, nf1, macro, wghtd float64
	}{
		{8, Confusion{TP: 2, FP: 1, TN: 2, FN: 1}, 4.0 / 6, 2.0 / 3, 2.0 / 3, 2.0 / 3, 2.0 / 3, 2.0 / 3, 2.0 / 3, 2.0 / 3},
		{5, Confusion{TP: 3, FP: 2, TN: 1, FN: 0}, 4.0 / 6, 3.0 / 5, 1, 1.0 / 3, 3.0 / 4, 1.0 / 2, 5.0 / 8, 5.0 / 8},
		// Nothing flagged: abnormal F1 has true members but no predicted ones -> 0;
		// precision 0/0 -> 0.
		{10, Confusion{TN: 3, FN: 3}, 0.5, 0, 0, 1, 0, 2.0 / 3, 1.0 / 3, 1.0 / 3},
	} {
		c, err := Count(sixScores, sixLabels, tc.threshold)
		if err != nil {
			t.Fatal(err)
		}
		if c != tc.want {
			t.Fatalf("t=%v: counts %+v, want %+v", tc.threshold, c, tc.want)
		}
		for name, pair := range map[string][2]float64{
			"accuracy": {c.Accuracy(), tc.acc}, "precision": {c.Precision(), tc.prec}, "recall": {c.Recall(), tc.rec},
			"specificity": {c.Specificity(), tc.spec}, "F1": {c.F1(), tc.f1}, "normal F1": {c.NormalF1(), tc.nf1},
			"macro F1": {c.MacroF1(), tc.macro}, "weighted F1": {c.WeightedF1(), tc.wghtd},
		} {
			if !near(pair[0], pair[1]) {
				t.Errorf("t=%v: %s = %v, want %v", tc.threshold, name, pair[0], pair[1])
			}
		}
	}
	// Supports 1 abnormal, 3 normal; all flagged: F1 = 2/5, normal F1 = 0 -> weighted 0.1.
	c := Confusion{TP: 1, FP: 3}
	if !near(c.WeightedF1(), 0.1) || !near(c.MacroF1(), 0.2) {
		t.Errorf("weighted/macro = %v/%v, want 0.1/0.2", c.WeightedF1(), c.MacroF1())
	}
	// A class with no true and no predicted members counts 0 in the macro mean.
	c = Confusion{TN: 4}
	if c.F1() != 0 || c.NormalF1() != 1 || c.MacroF1() != 0.5 {
		t.Errorf("all-normal: F1 %v normal F1 %v macro %v, want 0, 1, 0.5", c.F1(), c.NormalF1(), c.MacroF1())
	}
}

// On the six-sample example a grid of 8 steps from 2 to 9 is the integers
// 2..9. Criterion values per candidate (hand-computed, see TestConfusion):
//
//	t        2    3,4,5   6,7,8   9
//	TP FP    3 3  3 2     2 1     1 0
//	macro    1/3  5/8     2/3     5/8
//	F1       2/3  3/4     2/3     1/2
//	accuracy 1/2  2/3     2/3     2/3
//
// Ties must go to the lowest threshold, even across different confusion
// tables (accuracy ties between 3..9).
func TestSelectThresholdGrid(t *testing.T) {
	for _, tc := range []struct {
		criterion Criterion
		want      float64
		score     float64
	}{
		{"", 6, 2.0 / 3},
		{CriterionMacroF1, 6, 2.0 / 3},
		{CriterionBinaryF1, 3, 3.0 / 4},
		{CriterionAccuracy, 3, 2.0 / 3},
	} {
		th, err := SelectThreshold(sixScores, sixLabels, SelectOptions{Steps: 8, Criterion: tc.criterion})
		if err != nil {
			t.Fatal(err)
		}
		if th.Value != tc.want || !near(th.Score, tc.score) || th.Method != MethodGrid || th.Candidates != 8 {
			t.Errorf("criterion %q: got %+v, want threshold %v score %v", tc.criterion, th, tc.want, tc.score)
		}
	}
	// Default grid: 1000 candidates; best macro-F1 region is (5, 8].
	th, err := SelectThreshold(sixScores, sixLabels, SelectOptions{})
	if err != nil {
		t.Fatal(err)
	}
	lowest := 2 + 7*float64(429)/999 // first candidate above 5: i = ceil(3*999/7) = 429
	if th.Candidates != 1000 || th.Criterion != CriterionMacroF1 || !near(th.Value, lowest) || th.Value <= 5 {
		t.Errorf("default grid: %+v, want lowest candidate above 5 (%v)", th, lowest)
	}
	if th.Validation != (Confusion{TP: 2, FP: 1, TN: 2, FN: 1}) {
		t.Errorf("validation counts %+v", th.Validation)
	}
	// All validation scores equal: a single candidate.
	th, err = SelectThreshold([]float64{4, 4, 4}, []bool{true, false, true}, SelectOptions{})
	if err != nil || th.Value != 4 || th.Candidates != 1 {
		t.Errorf("constant scores: %+v, %v", th, err)
	}
	// Abnormal-only validation: everything is flagged, the reason says why.
	th, err = SelectThreshold([]float64{0.7, 0.3, 0.9}, []bool{true, true, true}, SelectOptions{})
	if err != nil || th.Value != 0.3 || th.Method != MethodGrid || !strings.Contains(th.Reason, "no normal") {
		t.Errorf("abnormal-only validation: %+v, %v", th, err)
	}
}

func TestSelectThresholdFallback(t *testing.T) {
	normals := []float64{4, 1, 3, 2} // sorted 1 2 3 4; 95th: rank 2.85 -> 3.85
	th, err := SelectThreshold(normals, make([]bool, 4), SelectOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if th.Method != MethodNormalPercentile || !near(th.Value, 3.85) || th.Percentile != 95 ||
		!strings.Contains(th.Reason, "no abnormal") || !strings.Contains(th.Reason, "95th percentile") {
		t.Errorf("fallback: %+v", th)
	}
	if th.Validation != (Confusion{TN: 3, FP: 1}) { // 4 >= 3.85 is flagged
		t.Errorf("fallback validation counts %+v", th.Validation)
	}
	th, err = SelectThreshold(normals, make([]bool, 4), SelectOptions{FallbackPercentile: 50})
	if err != nil || !near(th.Value, 2.5) {
		t.Errorf("50th percentile: %+v, %v", th, err)
	}
	for _, tc := range []struct {
		name   string
		scores []float64
		labels []bool
		opts   SelectOptions
		want   string
	}{
		{"empty", nil, nil, SelectOptions{}, "no scores"},
		{"percentile", normals, make([]bool, 4), SelectOptions{FallbackPercentile: 120}, "percentile"},
		{"criterion", normals, make([]bool, 4), SelectOptions{Criterion: "auc"}, "unknown threshold criterion"},
		{"steps", normals, make([]bool, 4), SelectOptions{Steps: -3}, "grid steps"},
		{"range", []float64{-1e308, 1e308}, []bool{false, true}, SelectOptions{}, "too wide"},
	} {
		if _, err := SelectThreshold(tc.scores, tc.labels, tc.opts); err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s: error %v, want one containing %q", tc.name, err, tc.want)
		}
	}
}

func TestPercentile(t *testing.T) {
	values := []float64{10, 0, 30, 20} // sorted 0 10 20 30
	for p, want := range map[float64]float64{0: 0, 100: 30, 50: 15, 25: 7.5, 95: 28.5} {
		if got := Percentile(values, p); !near(got, want) {
			t.Errorf("Percentile(%v) = %v, want %v", p, got, want)
		}
	}
	if values[0] != 10 {
		t.Error("Percentile sorted its input")
	}
	if !math.IsNaN(Percentile(nil, 50)) {
		t.Error("Percentile of nothing is not NaN")
	}
}

func TestEvaluate(t *testing.T) {
	r, err := Evaluate(sixScores, sixLabels, 5)
	if err != nil {
		t.Fatal(err)
	}
	if r.AUC == nil || !near(*r.AUC, 7.0/9) || r.AUPR == nil || !near(*r.AUPR, 34.0/45) {
		t.Errorf("AUC/AUPR = %v/%v", r.AUC, r.AUPR)
	}
	if r.Threshold == nil || *r.Threshold != 5 || r.Samples != 6 || r.Normal != 3 || r.Abnormal != 3 {
		t.Errorf("header fields: %+v", r)
	}
	if !near(r.MacroF1, 5.0/8) || !near(r.BinaryF1, 3.0/4) || !near(r.NormalF1, 0.5) || !near(r.WeightedF1, 5.0/8) ||
		!near(r.Accuracy, 4.0/6) || !near(r.Specificity, 1.0/3) || r.Recall != 1 || !near(r.Precision, 0.6) {
		t.Errorf("thresholded fields: %+v", r)
	}
	if _, err := json.Marshal(r); err != nil {
		t.Errorf("report does not marshal: %v", err)
	}

	// A one-class test set keeps its thresholded metrics and says why AUC is absent.
	r, err = Evaluate([]float64{0.1, 0.6}, []bool{false, false}, 0.5)
	if err != nil {
		t.Fatal(err)
	}
	if r.AUC != nil || r.AUPR != nil || !strings.Contains(r.Note, "abnormal") || r.Accuracy != 0.5 || r.Specificity != 0.5 {
		t.Errorf("one-class report: %+v", r)
	}
	b, err := json.Marshal(r)
	if err != nil || strings.Contains(string(b), `"auc"`) {
		t.Errorf("one-class JSON %s, %v", b, err)
	}
}

func TestEvaluateGroups(t *testing.T) {
	// Group "ct" scores live around 10, group "xr" around 0.1: a single
	// threshold could not serve both, each gets its own.
	val := Scored{
		Scores: []float64{9, 10, 11, 12, 0.125, 0.25, 0.375, 0.5},
		Labels: []bool{false, false, true, true, false, false, true, true},
		Groups: []string{"ct", "ct", "ct", "ct", "xr", "xr", "xr", "xr"},
	}
	test := Scored{
		Scores: []float64{0.2, 9.5, 0.4, 11.5, 12.5, 0.1},
		Labels: []bool{false, false, true, true, false, true},
		Groups: []string{"xr", "ct", "xr", "ct", "ct", "xr"},
	}
	g, err := EvaluateGroups(val, test, SelectOptions{Steps: 4})
	if err != nil {
		t.Fatal(err)
	}
	if len(g.Groups) != 2 || g.Groups[0].Group != "ct" || g.Groups[1].Group != "xr" {
		t.Fatalf("groups %+v", g.Groups)
	}
	// Grids 9,10,11,12 and 1/8,2/8,3/8,4/8 (exact in binary): perfect at the third candidate.
	if g.Groups[0].Threshold.Value != 11 || g.Groups[1].Threshold.Value != 0.375 {
		t.Errorf("thresholds %v, %v; want 11, 0.375", g.Groups[0].Threshold.Value, g.Groups[1].Threshold.Value)
	}
	// ct test: 9.5N ok, 11.5A ok, 12.5N flagged -> TP1 FP1 TN1.
	// xr test: 0.2N ok, 0.4A ok, 0.1A missed -> TP1 TN1 FN1.
	if want := (Confusion{TP: 1, FP: 1, TN: 1}); g.Groups[0].Test.Counts != want {
		t.Errorf("ct counts %+v, want %+v", g.Groups[0].Test.Counts, want)
	}
	if want := (Confusion{TP: 1, TN: 1, FN: 1}); g.Groups[1].Test.Counts != want {
		t.Errorf("xr counts %+v, want %+v", g.Groups[1].Test.Counts, want)
	}
	if want := (Confusion{TP: 2, FP: 1, TN: 2, FN: 1}); g.Overall.Counts != want || g.Overall.Threshold != nil {
		t.Errorf("overall %+v, want counts %+v and no threshold", g.Overall, want)
	}
	// Pooled AUC over all six test scores, abnormal {0.4, 11.5, 0.1} vs
	// normal {0.2, 9.5, 12.5}: 0.4 beats 0.2; 11.5 beats 0.2, 9.5; 0.1 none -> 3/9.
	if g.Overall.AUC == nil || !near(*g.Overall.AUC, 3.0/9) {
		t.Errorf("overall AUC %v, want 1/3", g.Overall.AUC)
	}
	if _, err := json.Marshal(g); err != nil {
		t.Errorf("grouped report does not marshal: %v", err)
	}

	test.Groups[0] = "mr"
	if _, err := EvaluateGroups(val, test, SelectOptions{}); err == nil || !strings.Contains(err.Error(), `"mr"`) {
		t.Errorf("missing validation group: %v", err)
	}
	test.Groups = test.Groups[:3]
	if _, err := EvaluateGroups(val, test, SelectOptions{}); err == nil || !strings.Contains(err.Error(), "group ids") {
		t.Errorf("short group ids: %v", err)
	}
}

func TestMeanStd(t *testing.T) {
	// mean 2.5, squared deviations 2.25+0.25+0.25+2.25 = 5, /4 -> std sqrt(1.25)
	// (ddof=1 would give sqrt(5/3) = 1.29).
	mean, std := MeanStd([]float64{1, 2, 3, 4})
	if !near(mean, 2.5) || !near(std, math.Sqrt(1.25)) {
		t.Errorf("MeanStd = %v, %v", mean, std)
	}
	// 0.70, 0.74, 0.78: mean 0.74, std sqrt(2*0.0016/3) = 0.0326599.
	if got, want := FormatMeanStd([]float64{0.70, 0.74, 0.78}), "74.00 ± 3.27"; got != want {
		t.Errorf("FormatMeanStd = %q, want %q", got, want)
	}
	if got, want := FormatMeanStd([]float64{0.7238}), "72.38 ± 0.00"; got != want {
		t.Errorf("FormatMeanStd = %q, want %q", got, want)
	}
	if m, s := MeanStd(nil); !math.IsNaN(m) || !math.IsNaN(s) {
		t.Errorf("MeanStd(nil) = %v, %v", m, s)
	}
}
