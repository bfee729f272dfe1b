package metrics

import (
	"encoding/json"
	"os"
	"testing"
)

// goldenCase is one case of testdata/sklearn_golden.json, written by
// tools/reference/metrics_reference.py with scikit-learn and numpy.
type goldenCase struct {
	Scores        []float64 `json:"scores"`
	Labels        []bool    `json:"labels"`
	AUC           float64   `json:"auc"`
	AUPR          float64   `json:"aupr"`
	ROCFPR        []float64 `json:"roc_fpr"`
	ROCTPR        []float64 `json:"roc_tpr"`
	ROCThresholds []float64 `json:"roc_thresholds"`
	PRPrecision   []float64 `json:"pr_precision"`
	PRRecall      []float64 `json:"pr_recall"`
	PRThresholds  []float64 `json:"pr_thresholds"`
	At            []struct {
		Threshold      float64 `json:"threshold"`
		TN, FP, FN, TP int
		Accuracy       float64 `json:"accuracy"`
		Precision      float64 `json:"precision"`
		Recall         float64 `json:"recall"`
		Specificity    float64 `json:"specificity"`
		F1             float64 `json:"f1"`
		NormalF1       float64 `json:"normal_f1"`
		MacroF1        float64 `json:"macro_f1"`
		WeightedF1     float64 `json:"weighted_f1"`
	} `json:"at"`
	Select1000 map[Criterion]goldenSelection `json:"select_1000"`
	Select37   map[Criterion]goldenSelection `json:"select_37"`
	NormalP95  float64                       `json:"normal_p95"`
	NormalP50  float64                       `json:"normal_p50"`
	NormalP125 float64                       `json:"normal_p12_5"`
	Mean       float64                       `json:"mean"`
	Std        float64                       `json:"std"`
}

type goldenSelection struct {
	Threshold float64 `json:"threshold"`
	Score     float64 `json:"score"`
}

func reversed(v []float64) []float64 {
	out := make([]float64, len(v))
	for i, x := range v {
		out[len(v)-1-i] = x
	}
	return out
}

func TestSklearnGolden(t *testing.T) {
	raw, err := os.ReadFile("testdata/sklearn_golden.json")
	if err != nil {
		t.Fatal(err)
	}
	var doc struct {
		Cases []goldenCase `json:"cases"`
	}
	if err := json.Unmarshal(raw, &doc); err != nil {
		t.Fatalf("reading testdata/sklearn_golden.json: %v", err)
	}
	if len(doc.Cases) == 0 {
		t.Fatal("no golden cases")
	}
	for ci, gc := range doc.Cases {
		check := func(what string, got, want float64) {
			t.Helper()
			if !near(got, want) {
				t.Errorf("case %d (n=%d): %s = %.17g, sklearn %.17g", ci, len(gc.Scores), what, got, want)
			}
		}
		auc, err := AUC(gc.Scores, gc.Labels)
		if err != nil {
			t.Fatal(err)
		}
		check("AUC", auc, gc.AUC)
		aupr, err := AUPR(gc.Scores, gc.Labels)
		if err != nil {
			t.Fatal(err)
		}
		check("AUPR", aupr, gc.AUPR)

		roc, err := ROC(gc.Scores, gc.Labels)
		if err != nil {
			t.Fatal(err)
		}
		if !floatsNear(roc.FPR, gc.ROCFPR) || !floatsNear(roc.TPR, gc.ROCTPR) || !floatsNear(roc.Thresholds[1:], gc.ROCThresholds) {
			t.Errorf("case %d: ROC curve differs from sklearn's roc_curve", ci)
		}
		// sklearn orders the PR curve by increasing threshold; ours runs the other way.
		pr, err := PRCurve(gc.Scores, gc.Labels)
		if err != nil {
			t.Fatal(err)
		}
		if !floatsNear(pr.Precision, reversed(gc.PRPrecision)) || !floatsNear(pr.Recall, reversed(gc.PRRecall)) ||
			!floatsNear(pr.Thresholds[1:], reversed(gc.PRThresholds)) {
			t.Errorf("case %d: PR curve differs from sklearn's precision_recall_curve", ci)
		}

		for _, at := range gc.At {
			c, err := Count(gc.Scores, gc.Labels, at.Threshold)
			if err != nil {
				t.Fatal(err)
			}
			if want := (Confusion{TP: at.TP, FP: at.FP, TN: at.TN, FN: at.FN}); c != want {
				t.Errorf("case %d t=%v: counts %+v, sklearn %+v", ci, at.Threshold, c, want)
			}
			check("accuracy", c.Accuracy(), at.Accuracy)
			check("precision", c.Precision(), at.Precision)
			check("recall", c.Recall(), at.Recall)
			check("specificity", c.Specificity(), at.Specificity)
			check("F1", c.F1(), at.F1)
			check("normal F1", c.NormalF1(), at.NormalF1)
			check("macro F1", c.MacroF1(), at.MacroF1)
			check("weighted F1", c.WeightedF1(), at.WeightedF1)
		}

		for steps, want := range map[int]map[Criterion]goldenSelection{1000: gc.Select1000, 37: gc.Select37} {
			for _, crit := range []Criterion{CriterionMacroF1, CriterionBinaryF1, CriterionAccuracy} {
				th, err := SelectThreshold(gc.Scores, gc.Labels, SelectOptions{Steps: steps, Criterion: crit})
				if err != nil {
					t.Fatal(err)
				}
				// Exact: the grid is rounded as numpy.linspace rounds it.
				if th.Value != want[crit].Threshold {
					t.Errorf("case %d, %d steps, %s: threshold %.17g, reference %.17g", ci, steps, crit, th.Value, want[crit].Threshold)
				}
				check(string(crit)+" at selected threshold", th.Score, want[crit].Score)
			}
		}

		var normals []float64
		for i, s := range gc.Scores {
			if !gc.Labels[i] {
				normals = append(normals, s)
			}
		}
		th, err := SelectThreshold(normals, make([]bool, len(normals)), SelectOptions{})
		if err != nil {
			t.Fatal(err)
		}
		check("fallback threshold (95th percentile)", th.Value, gc.NormalP95)
		check("50th percentile", Percentile(normals, 50), gc.NormalP50)
		check("12.5th percentile", Percentile(normals, 12.5), gc.NormalP125)
		mean, std := MeanStd(gc.Scores)
		check("mean", mean, gc.Mean)
		check("std", std, gc.Std)
	}
}
