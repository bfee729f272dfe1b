package metrics

import (
	"fmt"
	"math"
	"sort"
)

// Criterion names what a threshold search maximises on validation scores.
type Criterion string

// The criteria SelectThreshold understands.
const (
	CriterionMacroF1  Criterion = "macro-f1" // mean of the normal and abnormal F1 (default)
	CriterionBinaryF1 Criterion = "f1"       // F1 of the abnormal class
	CriterionAccuracy Criterion = "accuracy"
)

// ParseCriterion turns a flag or config value into a Criterion.
func ParseCriterion(s string) (Criterion, error) {
	switch c := Criterion(s); c {
	case CriterionMacroF1, CriterionBinaryF1, CriterionAccuracy:
		return c, nil
	}
	return "", fmt.Errorf("metrics: unknown threshold criterion %q (want %q, %q or %q)",
		s, CriterionMacroF1, CriterionBinaryF1, CriterionAccuracy)
}

func (c Criterion) of(conf Confusion) float64 {
	switch c {
	case CriterionBinaryF1:
		return conf.F1()
	case CriterionAccuracy:
		return conf.Accuracy()
	}
	return conf.MacroF1()
}

// How a threshold was chosen (Threshold.Method).
const (
	MethodGrid             = "grid"
	MethodNormalPercentile = "normal-percentile"
)

// Defaults of SelectOptions.
const (
	DefaultSteps              = 1000
	DefaultFallbackPercentile = 95.0
)

// SelectOptions tunes SelectThreshold; the zero value means the paper's
// protocol: 1000 candidates, macro-F1, 95th-percentile fallback.
type SelectOptions struct {
	// Steps is the number of evenly spaced candidates from the minimum to the
	// maximum validation score, both included (0 = DefaultSteps).
	Steps int
	// Criterion is what the grid maximises ("" = CriterionMacroF1).
	Criterion Criterion
	// FallbackPercentile (0 < p <= 100; 0 = DefaultFallbackPercentile) of the
	// normal validation scores is the threshold when validation holds no
	// abnormal image, so that about (100-p)% of normal images get flagged.
	FallbackPercentile float64
}

// tieTolerance absorbs rounding when two different confusion tables give the
// same criterion value on paper (e.g. two F1 fractions that reduce to the
// same number), so that "ties go to the lowest threshold" holds as intended.
const tieTolerance = 1e-12

// Threshold is a decision threshold together with how it was obtained, so a
// report can say when the fallback was used.
type Threshold struct {
	Value float64 `json:"value"` // predict abnormal iff score >= Value
	// Method is MethodGrid (search on validation) or MethodNormalPercentile
	// (fallback: validation had no abnormal image).
	Method string `json:"method"`
	// Reason explains the choice in one sentence, for logs and reports.
	Reason string `json:"reason"`
	// Criterion and Candidates describe the grid search (Method == MethodGrid).
	Criterion  Criterion `json:"criterion,omitempty"`
	Candidates int       `json:"candidates,omitempty"`
	// Score is the criterion's value on validation at Value (grid only).
	Score float64 `json:"score,omitempty"`
	// Percentile is the fallback percentile (Method == MethodNormalPercentile).
	Percentile float64 `json:"percentile,omitempty"`
	// Validation counts the validation outcomes at Value.
	Validation Confusion `json:"validation"`
}

// SelectThreshold chooses the decision threshold on validation scores: the
// candidate of an evenly spaced grid from the minimum to the maximum score
// that maximises the criterion, the lowest one among equals. Without abnormal
// validation images no criterion can be measured, so the threshold falls back
// to a high percentile of the normal scores and the result says so. Without
// any normal image either (empty validation) it is an error. Validation with
// abnormal images only is searched as usual; every criterion then picks the
// lowest validation score, and Reason warns about it.
func SelectThreshold(valScores []float64, valLabels []bool, opts SelectOptions) (Threshold, error) {
	abnormal, normal, err := checkScores(valScores, valLabels)
	if err != nil {
		return Threshold{}, fmt.Errorf("selecting threshold: %w", err)
	}
	steps := opts.Steps
	if steps == 0 {
		steps = DefaultSteps
	}
	if steps < 0 {
		return Threshold{}, fmt.Errorf("selecting threshold: %d grid steps (want > 0)", steps)
	}
	criterion := opts.Criterion
	if criterion == "" {
		criterion = CriterionMacroF1
	}
	if _, err := ParseCriterion(string(criterion)); err != nil {
		return Threshold{}, fmt.Errorf("selecting threshold: %w", err)
	}
	percentile := opts.FallbackPercentile
	if percentile == 0 {
		percentile = DefaultFallbackPercentile
	}
	if !(percentile > 0 && percentile <= 100) {
		return Threshold{}, fmt.Errorf("selecting threshold: fallback percentile %v outside (0, 100]", percentile)
	}

	var pos, neg []float64
	for i, s := range valScores {
		if valLabels[i] {
			pos = append(pos, s)
		} else {
			neg = append(neg, s)
		}
	}
	sort.Float64s(pos)
	sort.Float64s(neg)
	countAt := func(t float64) Confusion {
		// sort.SearchFloat64s gives the first index holding a score >= t.
		fn := sort.SearchFloat64s(pos, t)
		tn := sort.SearchFloat64s(neg, t)
		return Confusion{TP: len(pos) - fn, FN: fn, TN: tn, FP: len(neg) - tn}
	}

	if abnormal == 0 {
		value := Percentile(neg, percentile)
		return Threshold{
			Value:  value,
			Method: MethodNormalPercentile,
			Reason: fmt.Sprintf("validation holds no abnormal image (%d normal), so no %s can be measured; "+
				"the threshold is the %gth percentile of the normal validation scores", normal, criterion, percentile),
			Percentile: percentile,
			Validation: countAt(value),
		}, nil
	}

	lo, hi := valScores[0], valScores[0]
	for _, s := range valScores {
		lo, hi = math.Min(lo, s), math.Max(hi, s)
	}
	if math.IsInf(hi-lo, 0) {
		return Threshold{}, fmt.Errorf("selecting threshold: validation scores span [%g, %g], too wide for a grid", lo, hi)
	}
	if lo == hi {
		steps = 1 // every candidate would be the same number
	}
	best := Threshold{Method: MethodGrid, Criterion: criterion, Candidates: steps, Score: math.Inf(-1)}
	step := 0.0
	if steps > 1 {
		step = (hi - lo) / float64(steps-1)
	}
	for i := 0; i < steps; i++ {
		// Rounded exactly as numpy.linspace, whose last value is the maximum itself.
		t := float64(i)*step + lo
		if i == steps-1 && steps > 1 {
			t = hi
		}
		conf := countAt(t)
		if score := criterion.of(conf); score > best.Score+tieTolerance {
			best.Value, best.Score, best.Validation = t, score, conf
		}
	}
	best.Reason = fmt.Sprintf("best %s %.4f on validation (%d normal, %d abnormal) over %d evenly spaced thresholds "+
		"in [%g, %g]; ties go to the lowest threshold", criterion, best.Score, normal, abnormal, steps, lo, hi)
	if normal == 0 {
		best.Reason = fmt.Sprintf("validation holds no normal image (%d abnormal), so the search can only learn to flag "+
			"everything it saw: threshold = lowest validation score %g", abnormal, best.Value)
	}
	return best, nil
}

// Percentile returns the p-th percentile (0..100) of values with linear
// interpolation between order statistics, as numpy.percentile does by
// default. values is not modified. It returns NaN for no values.
func Percentile(values []float64, p float64) float64 {
	if len(values) == 0 {
		return math.NaN()
	}
	sorted := append([]float64(nil), values...)
	sort.Float64s(sorted)
	rank := p / 100 * float64(len(sorted)-1)
	below := int(math.Floor(rank))
	if below >= len(sorted)-1 {
		return sorted[len(sorted)-1]
	}
	if below < 0 {
		return sorted[0]
	}
	frac := rank - float64(below)
	a, b := sorted[below], sorted[below+1]
	if frac >= 0.5 {
		return b - (b-a)*(1-frac) // numpy interpolates from the nearer end
	}
	return a + (b-a)*frac
}
