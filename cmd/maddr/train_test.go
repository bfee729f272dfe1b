package main

import (
	"bytes"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// TestTrainPrintsTheLearningCurve runs 'maddr train --val-every' and reads
// the validation AUC it prints and the curve it draws.
func TestTrainPrintsTheLearningCurve(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "run")
	var out, errb bytes.Buffer
	args := []string{"train", "--model", "ae", "--data", "phantom,scale=0.04", "--size", "32", "--resize", "0", "--crop", "0",
		"--iterations", "6", "--batch", "4", "--threads", "1", "--val-every", "4", "--out", dir}
	if code := runMain(args, &out, &errb); code != 0 {
		t.Fatalf("exit %d: %s", code, errb.String())
	}
	text := out.String()
	for _, want := range []string{"validation AUC % during training:", "  iteration 0: chest-xray ", "  iteration 4: ", "  iteration 6: ",
		"learning curve: " + filepath.Join(dir, "learning-curve.png")} {
		if !strings.Contains(text, want) {
			t.Errorf("output lacks %q:\n%s", want, text)
		}
	}
	if strings.Contains(text, "iteration 2:") {
		t.Errorf("validated off schedule:\n%s", text)
	}
	if !strings.Contains(errb.String(), "validation: 3 evaluations of ") {
		t.Errorf("the log does not give the validation time:\n%s", errb.String())
	}
	if _, err := os.Stat(filepath.Join(dir, "learning-curve.png")); err != nil {
		t.Error(err)
	}
}
