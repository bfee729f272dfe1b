package metrics

import "testing"

func TestBootstrapAUC(t *testing.T) {
	scores := []float64{0.1, 0.4, 0.35, 0.8, 0.2, 0.7, 0.9, 0.3, 0.6, 0.5}
	labels := []bool{false, false, true, true, false, true, true, false, false, true}
	point, err := AUC(scores, labels)
	if err != nil {
		t.Fatal(err)
	}
	lo, hi := BootstrapAUC(scores, labels, 500, 1)
	if !(lo < point && point < hi && lo >= 0 && hi <= 1) {
		t.Errorf("interval [%g, %g] does not bracket the AUC %g", lo, hi, point)
	}
	lo2, hi2 := BootstrapAUC(scores, labels, 500, 1)
	if lo != lo2 || hi != hi2 {
		t.Error("same seed gave another interval")
	}
	perfect := []float64{0, 0, 1, 1}
	if lo, hi := BootstrapAUC(perfect, []bool{false, false, true, true}, 100, 1); lo != 1 || hi != 1 {
		t.Errorf("perfectly separated scores: [%g, %g], want [1, 1]", lo, hi)
	}
}
