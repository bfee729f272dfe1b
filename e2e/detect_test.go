package e2e

import (
	"testing"
)

// Thresholds of the detection tests. Chance is an AUC of 0.5 and a head
// accuracy of 1/3 (organ) or 2/3 (modality, the larger class's share).
const (
	minAUC = 0.90
	// minGainOverUntrained is how far the trained network's mean test AUC
	// must exceed that of the same network after its first update.
	minGainOverUntrained = 0.20
	minHeadAccuracy      = 0.90
)

// detectionCases are the ten end-to-end cases: every baseline alone and
// wrapped by MADDR, with the same network settings and schedule for both.
var detectionCases = func() []detectionCase {
	base := []detectionCase{
		{model: "ae", options: `{"base_width": 8, "hidden": 256}`, iterations: 400, batch: 32},
		{model: "memae", options: `{"base_width": 8, "hidden": 256}`, iterations: 400, batch: 32},
	}
	var out []detectionCase
	for _, c := range base {
		out = append(out, c)
		c.maddr = true
		out = append(out, c)
	}
	return out
}()

// TestDetection trains every case on the generated set and checks that it
// detects the lesions in every group, that it learned (the same network after
// one update scores far lower), and, with MADDR, that the heads recognise
// organ and modality.
func TestDetection(t *testing.T) {
	if testing.Short() {
		t.Skip("trains ten models (minutes of CPU); skipped with -short")
	}
	samples := generate(1, genCounts{train: 96, val: 16, test: 32})
	for _, c := range detectionCases {
		t.Run(c.name(), func(t *testing.T) {
			trained := trainAndEvaluate(t, c, c.iterations, samples)
			untrained := trainAndEvaluate(t, c, c.untrainedIterations(), samples)
			t.Logf("%d iterations: %s", c.iterations, trained)
			t.Logf("%d iteration(s): %s", c.untrainedIterations(), untrained)
			for g, auc := range trained.auc {
				if auc < minAUC {
					t.Errorf("%s: test AUC %.3f < %.2f after %d iterations", g, auc, minAUC, c.iterations)
				}
			}
			if gain := trained.meanAUC() - untrained.meanAUC(); gain < minGainOverUntrained {
				t.Errorf("mean test AUC %.3f after %d iterations is only %.3f above the %.3f after %d: training did not teach the detection",
					trained.meanAUC(), c.iterations, gain, untrained.meanAUC(), c.untrainedIterations())
			}
			switch {
			case !c.maddr && (trained.organAcc >= 0 || trained.modalityAcc >= 0):
				t.Errorf("the baseline alone has MADDR heads")
			case c.maddr && (trained.organAcc < minHeadAccuracy || trained.modalityAcc < minHeadAccuracy):
				t.Errorf("head accuracy on the test images: organ %.3f, modality %.3f; want both >= %.2f",
					trained.organAcc, trained.modalityAcc, minHeadAccuracy)
			}
		})
	}
}
