package reliability

import (
	"bufio"
	"bytes"
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"reflect"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/maddr-project/maddr/train"
)

// crashTrainArgs is the small run the kill test repeats; the checkpoint every
// 10 iterations means the kill (at iteration 15 or later) always loses work
// that the resumed run must redo identically.
func crashTrainArgs(out string, extra ...string) []string {
	args := []string{"train", "--model", "ae", "--data", "phantom,scale=0.05", "--size", "32", "--resize", "0", "--crop", "0",
		"--iterations", "40", "--batch", "8", "--checkpoint-every", "10", "--threads", "1", "--out", out}
	return append(args, extra...)
}

func runCLI(t *testing.T, bin string, args ...string) string {
	t.Helper()
	out, err := exec.Command(bin, args...).CombinedOutput()
	if err != nil {
		t.Fatalf("maddr %s: %v\n%s", strings.Join(args, " "), err, out)
	}
	return string(out)
}

// lastLoggedIter is the highest iteration in a run's log.jsonl (0 if none);
// a line still being written is ignored.
func lastLoggedIter(path string) int {
	data, err := os.ReadFile(path)
	if err != nil {
		return 0
	}
	last := 0
	sc := bufio.NewScanner(bytes.NewReader(data))
	for sc.Scan() {
		var e train.LogEntry
		if json.Unmarshal(sc.Bytes(), &e) == nil && e.Iter > last {
			last = e.Iter
		}
	}
	return last
}

// evalResults runs 'maddr eval' on a run directory and returns the metrics
// part of eval.json (everything but paths and notes).
func evalResults(t *testing.T, bin, dir string) any {
	t.Helper()
	runCLI(t, bin, "eval", "--model", dir, "--threads", "1")
	data, err := os.ReadFile(filepath.Join(dir, "eval.json"))
	if err != nil {
		t.Fatal(err)
	}
	var rep map[string]any
	if err := json.Unmarshal(data, &rep); err != nil {
		t.Fatal(err)
	}
	if rep["results"] == nil {
		t.Fatalf("eval.json has no results: %s", data)
	}
	return rep["results"]
}

// TestKillDuringTrainingAndResume kills 'maddr train' with SIGKILL once its
// log shows iteration 15 or later, resumes it with --resume, and requires the
// same final checkpoint (weights and optimizer state), model file and
// evaluation metrics as an uninterrupted run with the same flags.
func TestKillDuringTrainingAndResume(t *testing.T) {
	bin := maddrBinary(t)
	whole, split := filepath.Join(t.TempDir(), "whole"), filepath.Join(t.TempDir(), "split")
	runCLI(t, bin, crashTrainArgs(whole)...)

	cmd := exec.Command(bin, crashTrainArgs(split)...)
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- cmd.Wait() }()
	killedAt := 0
	deadline := time.After(60 * time.Second)
poll:
	for {
		select {
		case err := <-done:
			t.Fatalf("training finished before it could be killed (%v); make the run longer\n%s", err, stderr.String())
		case <-deadline:
			cmd.Process.Kill()
			t.Fatal("no iteration 15 in the log after 60 s")
		case <-time.After(5 * time.Millisecond):
			if it := lastLoggedIter(filepath.Join(split, train.LogFile)); it >= 15 {
				cmd.Process.Signal(syscall.SIGKILL)
				killedAt = it
				break poll
			}
		}
	}
	err := <-done
	if ws, ok := cmd.ProcessState.Sys().(syscall.WaitStatus); !ok || !ws.Signaled() || ws.Signal() != syscall.SIGKILL {
		t.Fatalf("training was not killed by SIGKILL: %v", err)
	}
	if _, err := os.Stat(filepath.Join(split, train.ModelFile)); err == nil {
		t.Fatal("the killed run wrote a model file")
	}
	t.Logf("killed at logged iteration %d", killedAt)

	// Without --resume the directory is refused, so a finished or running
	// job's checkpoint is never overwritten by accident.
	if out, err := exec.Command(bin, crashTrainArgs(split)...).CombinedOutput(); err == nil || !strings.Contains(string(out), "--resume") {
		t.Fatalf("rerun without --resume: %v\n%s", err, out)
	}
	out := runCLI(t, bin, crashTrainArgs(split, "--resume")...)
	if !strings.Contains(out, "trained ae for 40 iterations") {
		t.Fatalf("resumed run: %s", out)
	}

	for _, file := range []string{train.CheckpointFile, train.ModelFile} {
		d, where, err := tensorDiff(tensors(t, filepath.Join(whole, file)), tensors(t, filepath.Join(split, file)))
		if err != nil {
			t.Fatalf("%s: %v", file, err)
		}
		if d != 0 {
			t.Errorf("%s: the resumed run differs from the uninterrupted one by %g at %s", file, d, where)
		}
	}
	a, b := evalResults(t, bin, whole), evalResults(t, bin, split)
	if !reflect.DeepEqual(a, b) {
		ja, _ := json.Marshal(a)
		jb, _ := json.Marshal(b)
		t.Errorf("evaluation differs:\nuninterrupted %s\nresumed       %s", ja, jb)
	}
	// A kill during a checkpoint write may leave the temporary file behind;
	// it is never mistaken for a checkpoint.
	entries, _ := os.ReadDir(split)
	for _, e := range entries {
		if strings.Contains(e.Name(), ".tmp-") {
			t.Logf("left behind by the kill: %s", e.Name())
		}
	}
}
