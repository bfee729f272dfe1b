package main

import (
	"bytes"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/maddr-project/maddr/experiment"
	"github.com/maddr-project/maddr/modelfile"
	"github.com/maddr-project/maddr/train"
)

// printConfig runs a command with --print-config and returns what it wrote.
func printConfig(t *testing.T, args ...string) string {
	t.Helper()
	var out, errb bytes.Buffer
	if code := runMain(append(args, "--print-config"), &out, &errb); code != 0 {
		t.Fatalf("%v: exit %d: %s", args, code, errb.String())
	}
	return out.String()
}

func writeConfig(t *testing.T, text string) string {
	t.Helper()
	path := filepath.Join(t.TempDir(), "run.yaml")
	if err := os.WriteFile(path, []byte(text), 0o644); err != nil {
		t.Fatal(err)
	}
	return path
}

// TestConfigPrintRoundTripEveryCommand prints each command's configuration,
// loads it with --config and prints again: the texts must be equal.
func TestConfigPrintRoundTripEveryCommand(t *testing.T) {
	for _, c := range []struct {
		args []string
		want []string
	}{
		{[]string{"train", "--model", "ae", "--data", "phantom,scale=0.04", "--data", "folder:/x/y,organ=liver,modality=ct",
			"--hu-windows", "liver=60:160", "--iterations", "600", "--lambda-center", "0.1", "--augment"},
			[]string{"# maddr train configuration", "model: ae\n", "data:\n  - phantom,scale=0.04\n  - folder:/x/y,organ=liver,modality=ct\n",
				"hu-windows: liver=60:160\n", "iterations: 600\n", "lambda-center: 0.1\n", "augment: true\n", "batch: 32\n"}},
		{[]string{"experiment", "table1", "--seeds", "1,2", "--iterations", "20"},
			[]string{"# maddr experiment table1 configuration", "seeds: 1,2\n", "iterations: 20\n", "data: []\n", "model: dpa,memae,fanogan,ganomaly\n"}},
		{[]string{"experiment", "table2", "--shard", "1/2"}, []string{"shard: 1/2\n", "model: dpa\n"}},
		{[]string{"score", "--model", "m.safetensors", "--min-confidence", "0.5"},
			[]string{"# maddr score configuration", "model: m.safetensors\n", "min-confidence: 0.5\n", "out: '-'\n"}},
		{[]string{"serve", "--model", "m.safetensors", "--timeout", "90s"}, []string{"# maddr serve configuration", "timeout: 1m30s\n", "addr: 127.0.0.1:8080\n"}},
	} {
		first := printConfig(t, c.args...)
		for _, want := range c.want {
			if !strings.Contains(first, want) {
				t.Errorf("%v: configuration lacks %q:\n%s", c.args, want, first)
			}
		}
		if strings.Contains(first, "print-config") || strings.Contains(first, "\nconfig:") {
			t.Errorf("%v: the configuration names --config or --print-config:\n%s", c.args, first)
		}
		command := c.args[:1]
		if command[0] == "experiment" {
			command = c.args[:2]
		}
		second := printConfig(t, append(command, "--config", writeConfig(t, first))...)
		if first != second {
			t.Errorf("%v: print, load, print differs:\n%s\n---\n%s", c.args, first, second)
		}
	}
}

// TestConfigFileAppliedAndCommandLineWins sets flags from a file and
// overrides one on the command line, before or after --config.
func TestConfigFileAppliedAndCommandLineWins(t *testing.T) {
	path := writeConfig(t, "iterations: 600\nbatch: 4\nhu-windows: liver=60:160\ndata:\n  - phantom,scale=0.04\n  - phantom,seed=3\n")
	for _, args := range [][]string{
		{"train", "--iterations", "6", "--config", path},
		{"train", "--config", path, "--iterations", "6"},
	} {
		got := printConfig(t, args...)
		for _, want := range []string{"iterations: 6\n", "batch: 4\n", "hu-windows: liver=60:160\n", "data:\n  - phantom,scale=0.04\n  - phantom,seed=3\n"} {
			if !strings.Contains(got, want) {
				t.Errorf("%v: configuration lacks %q:\n%s", args, want, got)
			}
		}
	}
}

func TestConfigUnknownKeyAndBadValue(t *testing.T) {
	for _, c := range []struct {
		args []string
		file string
		want []string
	}{
		{[]string{"train"}, "iteration: 600\n", []string{`unknown key "iteration"`, `did you mean "iterations"`}},
		{[]string{"experiment", "table1"}, "seed: 1\n", []string{`unknown key "seed"`, `did you mean "seeds"`}},
		{[]string{"score"}, "min-confidence: high\n", []string{`key "min-confidence"`, "is not a number"}},
		{[]string{"serve"}, "insecure: maybe\n", []string{`key "insecure"`, "a boolean (true or false)"}},
	} {
		path := writeConfig(t, c.file)
		var out, errb bytes.Buffer
		if code := runMain(append(c.args, "--config", path), &out, &errb); code != 1 {
			t.Errorf("%v with %q: exit %d, want 1 (%s)", c.args, c.file, code, errb.String())
			continue
		}
		for _, want := range append(c.want, path+":1") {
			if !strings.Contains(errb.String(), want) {
				t.Errorf("%v with %q: error lacks %q: %s", c.args, c.file, want, errb.String())
			}
		}
	}
}

// TestTrainConfigRecordedInModel trains from a configuration file and
// reads the configuration back from the run directory, the model file and
// 'maddr config'; loading it again reproduces the same configuration.
func TestTrainConfigRecordedInModel(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "run")
	path := writeConfig(t, "model: ae\ndata:\n  - phantom,scale=0.04\nsize: 32\nresize: 0\ncrop: 0\niterations: 600\nbatch: 4\nthreads: 1\nval-every: -1\nout: "+dir+"\n")
	args := []string{"train", "--config", path, "--iterations", "3"}
	want := printConfig(t, args...)
	var out, errb bytes.Buffer
	if code := runMain(args, &out, &errb); code != 0 {
		t.Fatalf("exit %d: %s", code, errb.String())
	}
	if !strings.Contains(out.String(), "for 3 iterations") {
		t.Errorf("the command line's --iterations did not win:\n%s", out.String())
	}
	inDir, err := os.ReadFile(filepath.Join(dir, train.RunConfigFile))
	if err != nil {
		t.Fatal(err)
	}
	if string(inDir) != want {
		t.Errorf("%s differs from --print-config:\n%s\n---\n%s", train.RunConfigFile, inDir, want)
	}
	m, _, err := modelfile.ReadManifest(filepath.Join(dir, train.ModelFile))
	if err != nil {
		t.Fatal(err)
	}
	if m.RunConfig != want {
		t.Errorf("the model file records\n%s\nwant\n%s", m.RunConfig, want)
	}
	out.Reset()
	if code := runMain([]string{"config", dir}, &out, &errb); code != 0 || out.String() != want {
		t.Errorf("maddr config: exit %d, printed\n%s\nwant\n%s", code, out.String(), want)
	}
	if again := printConfig(t, "train", "--config", filepath.Join(dir, train.RunConfigFile)); again != want {
		t.Errorf("the recorded configuration does not load back to itself:\n%s\n---\n%s", again, want)
	}

	// A model without a record (older, or trained through the library)
	// makes 'maddr config' say so instead of printing nothing.
	if err := modelfile.UpdateManifest(filepath.Join(dir, train.ModelFile), func(mf *modelfile.Manifest) error { mf.RunConfig = ""; return nil }); err != nil {
		t.Fatal(err)
	}
	errb.Reset()
	if code := runMain([]string{"config", dir}, &out, &errb); code != 1 || !strings.Contains(errb.String(), "records no configuration") {
		t.Errorf("model without a record: exit %d, stderr %q", code, errb.String())
	}
	if code := runMain([]string{"config"}, &out, &errb); code != 2 {
		t.Errorf("no argument: exit %d, want 2", code)
	}
}

// TestExperimentConfigRecordedInCells runs one shard of a tiny Table 1 from
// a configuration file and finds the configuration in experiment.json and in
// every cell's cell.json, run directory and model file.
func TestExperimentConfigRecordedInCells(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "exp")
	path := writeConfig(t, "model: ae\ndata:\n  - phantom,scale=0.05\nsize: 32\nresize: 0\ncrop: 0\niterations: 2\nbatch: 4\n"+
		"seeds: \"7\"\nmixed: false\nthreads: 1\nno-report: true\nval-every: -1\nout: "+dir+"\n")
	args := []string{"experiment", "table1", "--config", path, "--shard", "1/4"}
	want := printConfig(t, args...)
	var out, errb bytes.Buffer
	if code := runMain(args, &out, &errb); code != 0 {
		t.Fatalf("exit %d: %s", code, errb.String())
	}
	var rec experiment.Record
	readJSONFile(t, filepath.Join(dir, experiment.ExperimentFile), &rec)
	if rec.RunConfig != want {
		t.Errorf("%s records\n%s\nwant\n%s", experiment.ExperimentFile, rec.RunConfig, want)
	}
	cells, err := filepath.Glob(filepath.Join(dir, experiment.CellsDir, "*", experiment.CellFile))
	if err != nil || len(cells) == 0 {
		t.Fatalf("no finished cells (%v)", err)
	}
	for _, cellFile := range cells {
		cellDir := filepath.Dir(cellFile)
		var res experiment.Result
		readJSONFile(t, cellFile, &res)
		m, _, err := modelfile.ReadManifest(filepath.Join(cellDir, train.ModelFile))
		if err != nil {
			t.Fatal(err)
		}
		inDir, err := os.ReadFile(filepath.Join(cellDir, train.RunConfigFile))
		if err != nil {
			t.Fatal(err)
		}
		if res.RunConfig != want || m.RunConfig != want || string(inDir) != want {
			t.Errorf("%s: cell.json, the model file or %s do not record the configuration", cellDir, train.RunConfigFile)
		}
	}
}

func readJSONFile(t *testing.T, path string, v any) {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	if err := json.Unmarshal(b, v); err != nil {
		t.Fatalf("%s: %v", path, err)
	}
}
