// Package metrics scores an anomaly detector the way the MADDR paper reports it:
// threshold-free ranking quality (ROC AUC, average precision), a decision
// threshold chosen on validation scores, and thresholded counts (accuracy and
// the F1 variants) on test scores, per dataset and pooled, summarised over seeds
// as mean ± std.
//
// Conventions throughout: a higher score means more abnormal, abnormal is the
// positive class (label true), and a sample is predicted abnormal iff its
// score >= threshold. Scores must be finite: a NaN or infinite score almost
// always means a diverged model, so it is reported instead of ranked.
package metrics

import (
	"fmt"
	"math"
	"sort"
)

// checkScores validates one scored set and counts its classes.
func checkScores(scores []float64, labels []bool) (abnormal, normal int, err error) {
	if len(scores) != len(labels) {
		return 0, 0, fmt.Errorf("metrics: %d scores but %d labels", len(scores), len(labels))
	}
	if len(scores) == 0 {
		return 0, 0, fmt.Errorf("metrics: no scores")
	}
	for i, s := range scores {
		if math.IsNaN(s) || math.IsInf(s, 0) {
			return 0, 0, fmt.Errorf("metrics: score %d is %v (scores must be finite)", i, s)
		}
		if labels[i] {
			abnormal++
		} else {
			normal++
		}
	}
	return abnormal, normal, nil
}

// needBothClasses reports why a ranking metric is undefined, or nil.
func needBothClasses(what string, abnormal, normal int) error {
	switch {
	case abnormal == 0:
		return fmt.Errorf("metrics: %s is undefined without abnormal samples (%d normal, 0 abnormal)", what, normal)
	case normal == 0:
		return fmt.Errorf("metrics: %s is undefined without normal samples (0 normal, %d abnormal)", what, abnormal)
	}
	return nil
}

// cut is the state of the ranking at one distinct score: TP and FP count the
// abnormal and normal samples whose score is >= Threshold.
type cut struct {
	threshold float64
	tp, fp    int
}

// cuts returns one cut per distinct score, in decreasing score order. Tied
// scores fall into the same cut, which is what makes ties count 1/2 in the
// AUC (the ROC segment across a tie group is a diagonal).
func cuts(scores []float64, labels []bool) []cut {
	order := make([]int, len(scores))
	for i := range order {
		order[i] = i
	}
	sort.Slice(order, func(a, b int) bool { return scores[order[a]] > scores[order[b]] })
	var out []cut
	tp, fp := 0, 0
	for k, i := range order {
		if labels[i] {
			tp++
		} else {
			fp++
		}
		if k == len(order)-1 || scores[order[k+1]] != scores[i] {
			out = append(out, cut{threshold: scores[i], tp: tp, fp: fp})
		}
	}
	return out
}

// AUC returns the area under the ROC curve, which equals the Mann–Whitney
// probability that a random abnormal sample scores above a random normal one,
// with ties counted as 1/2. Perfect ranking gives 1, inverted ranking 0, and
// all-equal scores 0.5.
func AUC(scores []float64, labels []bool) (float64, error) {
	abnormal, normal, err := checkScores(scores, labels)
	if err != nil {
		return 0, err
	}
	if err := needBothClasses("AUC", abnormal, normal); err != nil {
		return 0, err
	}
	// Trapezoids in integer counts: twice the area is exact, so the only
	// rounding is the final division.
	var twiceArea int64
	prevTP, prevFP := 0, 0
	for _, c := range cuts(scores, labels) {
		twiceArea += int64(c.fp-prevFP) * int64(c.tp+prevTP)
		prevTP, prevFP = c.tp, c.fp
	}
	return float64(twiceArea) / (2 * float64(abnormal) * float64(normal)), nil
}

// ROCCurve holds the ROC curve as parallel slices ordered by decreasing
// threshold (increasing FPR). The first point is (0, 0) with threshold +Inf,
// meaning "nothing predicted abnormal"; each later point is the rate pair when
// every sample scoring >= Thresholds[i] is predicted abnormal. +Inf does not
// encode as JSON: drop the first point before marshalling.
type ROCCurve struct {
	FPR        []float64 // false-positive rate = FP / normals
	TPR        []float64 // true-positive rate (recall) = TP / abnormals
	Thresholds []float64
}

// ROC returns the full ROC curve (one point per distinct score, no points
// dropped), for plotting.
func ROC(scores []float64, labels []bool) (ROCCurve, error) {
	abnormal, normal, err := checkScores(scores, labels)
	if err != nil {
		return ROCCurve{}, err
	}
	if err := needBothClasses("the ROC curve", abnormal, normal); err != nil {
		return ROCCurve{}, err
	}
	cs := cuts(scores, labels)
	curve := ROCCurve{
		FPR:        make([]float64, 0, len(cs)+1),
		TPR:        make([]float64, 0, len(cs)+1),
		Thresholds: make([]float64, 0, len(cs)+1),
	}
	curve.FPR = append(curve.FPR, 0)
	curve.TPR = append(curve.TPR, 0)
	curve.Thresholds = append(curve.Thresholds, math.Inf(1))
	for _, c := range cs {
		curve.FPR = append(curve.FPR, float64(c.fp)/float64(normal))
		curve.TPR = append(curve.TPR, float64(c.tp)/float64(abnormal))
		curve.Thresholds = append(curve.Thresholds, c.threshold)
	}
	return curve, nil
}

// PrecisionRecall holds the precision-recall curve as parallel slices ordered
// by decreasing threshold (increasing recall). The first point is recall 0,
// precision 1 at threshold +Inf (precision of an empty prediction is 0/0; 1 is
// the usual convention that anchors the curve). +Inf does not encode as JSON:
// drop the first point before marshalling.
type PrecisionRecall struct {
	Precision  []float64 // TP / (TP + FP)
	Recall     []float64 // TP / abnormals
	Thresholds []float64
}

// PRCurve returns the full precision-recall curve of the abnormal class, one
// point per distinct score.
func PRCurve(scores []float64, labels []bool) (PrecisionRecall, error) {
	abnormal, normal, err := checkScores(scores, labels)
	if err != nil {
		return PrecisionRecall{}, err
	}
	if err := needBothClasses("the precision-recall curve", abnormal, normal); err != nil {
		return PrecisionRecall{}, err
	}
	cs := cuts(scores, labels)
	curve := PrecisionRecall{
		Precision:  make([]float64, 0, len(cs)+1),
		Recall:     make([]float64, 0, len(cs)+1),
		Thresholds: make([]float64, 0, len(cs)+1),
	}
	curve.Precision = append(curve.Precision, 1)
	curve.Recall = append(curve.Recall, 0)
	curve.Thresholds = append(curve.Thresholds, math.Inf(1))
	for _, c := range cs {
		curve.Precision = append(curve.Precision, float64(c.tp)/float64(c.tp+c.fp))
		curve.Recall = append(curve.Recall, float64(c.tp)/float64(abnormal))
		curve.Thresholds = append(curve.Thresholds, c.threshold)
	}
	return curve, nil
}

// AUPR returns the average precision of the abnormal class as scikit-learn's
// average_precision_score defines it: the sum over distinct thresholds, from
// high to low, of (R_n - R_{n-1}) * P_n with R_0 = 0. It is a step-wise area,
// not a trapezoid, so it does not reward interpolating between operating
// points. A perfect ranking gives 1; a random one gives about the abnormal
// fraction.
func AUPR(scores []float64, labels []bool) (float64, error) {
	abnormal, normal, err := checkScores(scores, labels)
	if err != nil {
		return 0, err
	}
	if err := needBothClasses("average precision", abnormal, normal); err != nil {
		return 0, err
	}
	ap := 0.0
	prevTP := 0
	for _, c := range cuts(scores, labels) {
		if c.tp == prevTP {
			continue // recall did not move: no area
		}
		ap += float64(c.tp-prevTP) / float64(abnormal) * float64(c.tp) / float64(c.tp+c.fp)
		prevTP = c.tp
	}
	return ap, nil
}
