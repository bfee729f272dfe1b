package metrics

import (
	"fmt"
	"sort"
)

// Report is the evaluation of one test set at one threshold, ready for JSON.
// All rates are fractions in [0, 1].
type Report struct {
	Samples  int `json:"samples"`
	Normal   int `json:"normal"`
	Abnormal int `json:"abnormal"`
	// Threshold applied to get the thresholded metrics below (abnormal iff
	// score >= threshold); nil in a pooled report, where each group used its own.
	Threshold *float64 `json:"threshold,omitempty"`
	// AUC is the ROC AUC (threshold-free, ties count 1/2), the paper's main
	// metric. nil when the test set lacks a class (see Note).
	AUC *float64 `json:"auc,omitempty"`
	// AUPR is the average precision of the abnormal class (scikit-learn's
	// average_precision_score). nil when the test set lacks a class.
	AUPR *float64 `json:"aupr,omitempty"`
	// Accuracy is the paper's ACC.
	Accuracy float64 `json:"accuracy"`
	// MacroF1 is the mean of the normal-class and abnormal-class F1: the
	// paper's F1 column as this project reads it (METHODS 4.1).
	MacroF1 float64 `json:"macro_f1"`
	// BinaryF1 is the F1 of the abnormal class alone (abnormal = positive).
	BinaryF1 float64 `json:"binary_f1"`
	// NormalF1 is the F1 of the normal class alone (normal = positive).
	NormalF1 float64 `json:"normal_f1"`
	// WeightedF1 is the class-support-weighted mean of NormalF1 and BinaryF1.
	WeightedF1 float64 `json:"weighted_f1"`
	// Precision, Recall (sensitivity) and Specificity of the abnormal class.
	Precision   float64   `json:"precision"`
	Recall      float64   `json:"recall"`
	Specificity float64   `json:"specificity"`
	Counts      Confusion `json:"counts"`
	// Note explains missing or unusual values.
	Note string `json:"note,omitempty"`
}

// Evaluate scores a test set at a threshold chosen beforehand (normally by
// SelectThreshold on validation scores). A test set with one class only still
// gets the thresholded metrics; AUC and AUPR are then left out and Note says why.
func Evaluate(testScores []float64, testLabels []bool, threshold float64) (Report, error) {
	conf, err := Count(testScores, testLabels, threshold)
	if err != nil {
		return Report{}, fmt.Errorf("evaluating: %w", err)
	}
	r := fromCounts(testScores, testLabels, conf)
	r.Threshold = &threshold
	return r, nil
}

// fromCounts fills a report from already validated scores and the counts of
// their thresholded prediction.
func fromCounts(scores []float64, labels []bool, conf Confusion) Report {
	r := Report{
		Samples:     conf.Total(),
		Normal:      conf.Normal(),
		Abnormal:    conf.Abnormal(),
		Accuracy:    conf.Accuracy(),
		MacroF1:     conf.MacroF1(),
		BinaryF1:    conf.F1(),
		NormalF1:    conf.NormalF1(),
		WeightedF1:  conf.WeightedF1(),
		Precision:   conf.Precision(),
		Recall:      conf.Recall(),
		Specificity: conf.Specificity(),
		Counts:      conf,
	}
	if err := needBothClasses("AUC", r.Abnormal, r.Normal); err != nil {
		r.Note = err.Error()
		return r
	}
	auc, _ := AUC(scores, labels)   // cannot fail: input checked, both classes present
	aupr, _ := AUPR(scores, labels) // same
	r.AUC, r.AUPR = &auc, &aupr
	return r
}

// Scored is a set of scored samples. Groups names each sample's group (for
// example its dataset: "lits", "covid-ct", "shenzhen"); EvaluateGroups needs
// it, elsewhere it may be nil.
type Scored struct {
	Scores []float64
	Labels []bool
	Groups []string
}

// GroupResult is the evaluation of one group with its own threshold.
type GroupResult struct {
	Group     string    `json:"group"`
	Threshold Threshold `json:"threshold"` // chosen on this group's validation scores
	Test      Report    `json:"test"`
}

// GroupedReport holds per-group results and the pooled test set.
type GroupedReport struct {
	Groups []GroupResult `json:"groups"` // sorted by group name
	// Overall pools all test samples: AUC and AUPR rank all scores together;
	// the thresholded metrics sum the groups' counts, each group predicted
	// with its own threshold (so Overall.Threshold is nil).
	Overall Report `json:"overall"`
}

// EvaluateGroups applies the paper's protocol for a model trained on several
// datasets: each test group is thresholded with a threshold selected on the
// validation samples of the same group, then everything is also pooled.
// Every test group needs validation samples; validation groups absent from
// the test set are ignored.
func EvaluateGroups(val, test Scored, opts SelectOptions) (GroupedReport, error) {
	if len(val.Groups) != len(val.Scores) {
		return GroupedReport{}, fmt.Errorf("evaluating groups: %d validation scores but %d group ids", len(val.Scores), len(val.Groups))
	}
	if len(test.Groups) != len(test.Scores) {
		return GroupedReport{}, fmt.Errorf("evaluating groups: %d test scores but %d group ids", len(test.Scores), len(test.Groups))
	}
	if _, _, err := checkScores(val.Scores, val.Labels); err != nil {
		return GroupedReport{}, fmt.Errorf("evaluating groups: validation: %w", err)
	}
	if _, _, err := checkScores(test.Scores, test.Labels); err != nil {
		return GroupedReport{}, fmt.Errorf("evaluating groups: test: %w", err)
	}
	valByGroup, testByGroup := split(val), split(test)
	names := make([]string, 0, len(testByGroup))
	for name := range testByGroup {
		names = append(names, name)
	}
	sort.Strings(names)

	var out GroupedReport
	var pooled Confusion
	for _, name := range names {
		v, ok := valByGroup[name]
		if !ok {
			return GroupedReport{}, fmt.Errorf("evaluating groups: group %q has %d test samples but no validation samples to choose its threshold",
				name, len(testByGroup[name].Scores))
		}
		th, err := SelectThreshold(v.Scores, v.Labels, opts)
		if err != nil {
			return GroupedReport{}, fmt.Errorf("evaluating groups: group %q: %w", name, err)
		}
		t := testByGroup[name]
		rep, err := Evaluate(t.Scores, t.Labels, th.Value)
		if err != nil {
			return GroupedReport{}, fmt.Errorf("evaluating groups: group %q: %w", name, err)
		}
		out.Groups = append(out.Groups, GroupResult{Group: name, Threshold: th, Test: rep})
		pooled.TP += rep.Counts.TP
		pooled.FP += rep.Counts.FP
		pooled.TN += rep.Counts.TN
		pooled.FN += rep.Counts.FN
	}
	out.Overall = fromCounts(test.Scores, test.Labels, pooled)
	return out, nil
}

// split partitions a scored set by group id, keeping sample order.
func split(s Scored) map[string]Scored {
	out := map[string]Scored{}
	for i, g := range s.Groups {
		part := out[g]
		part.Scores = append(part.Scores, s.Scores[i])
		part.Labels = append(part.Labels, s.Labels[i])
		part.Groups = append(part.Groups, g)
		out[g] = part
	}
	return out
}
