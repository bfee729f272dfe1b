package metrics

// Confusion holds the counts of a thresholded prediction, abnormal being the
// positive class.
type Confusion struct {
	TP int `json:"tp"` // abnormal predicted abnormal
	FP int `json:"fp"` // normal predicted abnormal
	TN int `json:"tn"` // normal predicted normal
	FN int `json:"fn"` // abnormal predicted normal
}

// Count thresholds the scores (abnormal iff score >= threshold) and counts
// the outcomes.
func Count(scores []float64, labels []bool, threshold float64) (Confusion, error) {
	if _, _, err := checkScores(scores, labels); err != nil {
		return Confusion{}, err
	}
	var c Confusion
	for i, s := range scores {
		predicted := s >= threshold
		switch {
		case labels[i] && predicted:
			c.TP++
		case labels[i]:
			c.FN++
		case predicted:
			c.FP++
		default:
			c.TN++
		}
	}
	return c, nil
}

// ratio returns a/b, or 0 when b is 0: an undefined rate counts as a miss,
// as scikit-learn does with zero_division=0.
func ratio(a, b int) float64 {
	if b == 0 {
		return 0
	}
	return float64(a) / float64(b)
}

// Total is the number of samples counted.
func (c Confusion) Total() int { return c.TP + c.FP + c.TN + c.FN }

// Abnormal is the number of truly abnormal samples (the support of the
// abnormal class).
func (c Confusion) Abnormal() int { return c.TP + c.FN }

// Normal is the number of truly normal samples.
func (c Confusion) Normal() int { return c.TN + c.FP }

// Accuracy is the fraction of samples classified correctly.
func (c Confusion) Accuracy() float64 { return ratio(c.TP+c.TN, c.Total()) }

// Precision is the fraction of predicted-abnormal samples that are abnormal
// (0 when nothing is predicted abnormal).
func (c Confusion) Precision() float64 { return ratio(c.TP, c.TP+c.FP) }

// Recall (sensitivity, TPR) is the fraction of abnormal samples flagged.
func (c Confusion) Recall() float64 { return ratio(c.TP, c.TP+c.FN) }

// Specificity (TNR) is the fraction of normal samples left unflagged.
func (c Confusion) Specificity() float64 { return ratio(c.TN, c.TN+c.FP) }

// F1 is the binary F1 of the abnormal class, 2TP / (2TP + FP + FN); 0 when the
// abnormal class has no true and no predicted members.
func (c Confusion) F1() float64 { return ratio(2*c.TP, 2*c.TP+c.FP+c.FN) }

// NormalF1 is the F1 of the normal class (normal taken as positive),
// 2TN / (2TN + FN + FP); 0 when the normal class has no true and no predicted
// members.
func (c Confusion) NormalF1() float64 { return ratio(2*c.TN, 2*c.TN+c.FN+c.FP) }

// MacroF1 is the unweighted mean of NormalF1 and F1 (scikit-learn's
// average="macro"). It is the F1 the paper's tables most likely report and the
// default threshold-selection criterion (METHODS 4.1).
func (c Confusion) MacroF1() float64 { return (c.F1() + c.NormalF1()) / 2 }

// WeightedF1 is the mean of NormalF1 and F1 weighted by each class's support
// (scikit-learn's average="weighted").
func (c Confusion) WeightedF1() float64 {
	abnormal, normal := c.Abnormal(), c.Normal()
	if abnormal+normal == 0 {
		return 0
	}
	return (float64(abnormal)*c.F1() + float64(normal)*c.NormalF1()) / float64(abnormal+normal)
}
