package metrics

import (
	"fmt"
	"math"
)

// MeanStd returns the mean and the population standard deviation (divisor n,
// ddof=0, numpy.std's default) of values, e.g. one metric over the runs of
// several seeds. The paper does not say which convention it used; numpy's
// default is the likely one. It returns NaN, NaN for no values.
func MeanStd(values []float64) (mean, std float64) {
	if len(values) == 0 {
		return math.NaN(), math.NaN()
	}
	for _, v := range values {
		mean += v
	}
	mean /= float64(len(values))
	// Two passes: summing squared deviations avoids the cancellation of
	// E[x²] - E[x]² when the spread is tiny next to the mean.
	var sq float64
	for _, v := range values {
		sq += (v - mean) * (v - mean)
	}
	return mean, math.Sqrt(sq / float64(len(values)))
}

// FormatMeanStd formats fractions (e.g. AUCs of three seeds) as the paper's
// tables do: mean ± population std in percent with two decimals, "72.38 ± 1.99".
func FormatMeanStd(values []float64) string {
	mean, std := MeanStd(values)
	return fmt.Sprintf("%.2f ± %.2f", 100*mean, 100*std)
}
