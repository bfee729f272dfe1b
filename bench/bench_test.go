package bench

import (
	"bytes"
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// childEnv makes the test binary act as a Go child, as `maddr bench --child` does.
const childEnv = "MADDR_BENCH_TEST_CHILD"

func TestMain(m *testing.M) {
	if os.Getenv(childEnv) == "1" {
		os.Exit(testChild(os.Args[1:]))
	}
	os.Exit(m.Run())
}

func testChild(args []string) int {
	fs := flag.NewFlagSet("child", flag.ContinueOnError)
	var p Params
	fs.StringVar(&p.Case, "child", "", "")
	fs.IntVar(&p.Batch, "batch", 0, "")
	fs.IntVar(&p.Size, "size", 0, "")
	fs.IntVar(&p.Steps, "steps", 0, "")
	fs.IntVar(&p.Warmup, "warmup", 0, "")
	fs.IntVar(&p.Threads, "threads", 0, "")
	fs.IntVar(&p.Pool, "pool", 0, "")
	if err := fs.Parse(args); err != nil {
		return 2
	}
	res, err := RunChild(p)
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	json.NewEncoder(os.Stdout).Encode(res)
	return 0
}

// tiny is a configuration that runs every case in well under a second.
func tiny(c string) Params {
	return Params{Case: c, Batch: 2, Size: 16, Steps: 1, Warmup: 1, Threads: 1, Pool: 20}
}

func TestEveryCaseRunsInProcess(t *testing.T) {
	for _, c := range Cases() {
		t.Run(c.Name, func(t *testing.T) {
			res, err := RunChild(tiny(c.Name))
			if err != nil {
				t.Fatal(err)
			}
			if res.Impl != "go" || res.Case != c.Name || res.Threads != 1 {
				t.Errorf("result %+v does not describe the request", res)
			}
			if !(res.StepSeconds > 0) || !(res.ImagesPerS > 0) || res.PeakRSSMiB <= 0 || res.Steps < 1 {
				t.Errorf("implausible measurement %+v", res)
			}
		})
	}
}

func TestBadParamsAreRefused(t *testing.T) {
	if _, err := RunChild(Params{Case: "nope", Batch: 2, Size: 16, Steps: 1}); err == nil || !strings.Contains(err.Error(), "dpa-train") {
		t.Errorf("unknown case: %v (want the list of cases)", err)
	}
	if _, err := RunChild(Params{Case: "dpa-train", Batch: 0, Size: 16, Steps: 1}); err == nil {
		t.Error("batch 0 accepted")
	}
}

func TestRunComparesThroughChildren(t *testing.T) {
	t.Setenv(childEnv, "1")
	o := Options{Cases: []string{"dpa-score", "loader-cold"}, Batch: 2, Size: 16, Steps: 1, Warmup: 0, Threads: 1, Pool: 4,
		GoChild: []string{os.Args[0]}, ScaleBatches: []int{2}}
	o.Pool = 20
	// The PyTorch side runs when Debian's python3-torch is installed; it is optional here.
	if _, err := PythonWithTorch(context.Background(), "/usr/bin/python3"); err == nil {
		if wd, err := os.Getwd(); err == nil {
			if script, err := ScriptPath(wd); err == nil {
				o.Python, o.Script = "/usr/bin/python3", script
			}
		}
	}
	var progress bytes.Buffer
	o.Progress = &progress
	rep, err := Run(context.Background(), o)
	if err != nil {
		t.Fatal(err)
	}
	if len(rep.Pairs) != 2 || rep.Pairs[0].Go == nil || rep.Pairs[1].Go == nil {
		t.Fatalf("pairs %+v, progress:\n%s", rep.Pairs, progress.String())
	}
	for _, p := range rep.Pairs {
		if len(p.Errors) > 0 {
			t.Errorf("%s: %v", p.Case.Name, p.Errors)
		}
	}
	if o.Python != "" {
		if rep.Pairs[0].PyTorch == nil || rep.Pairs[0].Ratio() <= 0 {
			t.Errorf("PyTorch side missing: %+v\n%s", rep.Pairs[0], progress.String())
		}
	} else {
		t.Log("python3-torch not installed: PyTorch side not exercised")
	}
	if len(rep.Scaling) != 1 || rep.Scaling[0].Batch != 2 {
		t.Errorf("scaling %+v", rep.Scaling)
	}
	md := rep.Markdown()
	for _, want := range []string{"dpa-score", "loader-cold", "| batch | size |", "Machine:"} {
		if !strings.Contains(md, want) {
			t.Errorf("markdown lacks %q:\n%s", want, md)
		}
	}
	if o.Python != "" {
		png, err := rep.PlotPNG()
		if err != nil {
			t.Fatal(err)
		}
		if !bytes.HasPrefix(png, []byte("\x89PNG")) {
			t.Error("plot is not a PNG")
		}
		os.WriteFile(filepath.Join(t.TempDir(), "bench.png"), png, 0o644)
	}
}

func TestVerdicts(t *testing.T) {
	res := func(ips, rss float64) *Result { return &Result{ImagesPerS: ips, PeakRSSMiB: rss, CPUSeconds: 1} }
	r := &Report{Pairs: []Pair{
		{Case: Case{Name: "dpa-train"}, Go: res(12, 900), PyTorch: res(10, 1000)},
		{Case: Case{Name: "ganomaly-train"}, Go: res(12, 900), PyTorch: res(10, 1000)},
		{Case: Case{Name: "dpa-score"}, Go: res(12, 900), PyTorch: res(10, 800)},
		{Case: Case{Name: "dpa-score-bf16"}, Go: res(19, 700), PyTorch: res(10, 800)},
		{Case: Case{Name: "loader-cold"}, Go: res(100, 100)},
	}}
	for i, want := range []string{"speed >= 1.3x: NOT met; memory <= PyTorch: met", "speed >= 1.0x: met; memory <= PyTorch: met",
		"speed >= 1.0x: met; memory <= PyTorch: NOT met", "speed >= 2.0x: NOT met; memory <= PyTorch: met",
		"8x the fastest training step (>= 5x): met"} {
		if got := r.verdict(r.Pairs[i]); got != want {
			t.Errorf("%s: verdict %q, want %q", r.Pairs[i].Case.Name, got, want)
		}
	}
	r.Schedule = &Result{Params: Params{Batch: 32, Size: 64, Steps: 20}, StepSeconds: 1.5,
		Extra: map[string]float64{"iterations": 16000, "full_schedule_h": 6.67, "setup_and_first_iteration_s": 12,
			"first_epoch_iterations": 23, "first_epoch_s_per_iteration": 1.9}}
	if md := r.Markdown(); !strings.Contains(md, "**6.7 hours**") || !strings.Contains(md, "first epoch of 23 iterations at 1.90 s") {
		t.Errorf("schedule missing from markdown:\n%s", md)
	}
}

func TestScalingPlotAndPaperLength(t *testing.T) {
	r := &Report{Params: Params{Batch: 32, Size: 64}}
	if _, err := r.ScalingPNG(); err == nil {
		t.Error("scaling plot drawn without scaling measurements")
	}
	for _, bs := range [][2]int{{8, 64}, {32, 64}, {32, 128}, {8, 256}} {
		r.Scaling = append(r.Scaling, Result{Params: Params{Batch: bs[0], Size: bs[1]}, StepSeconds: float64(bs[0]*bs[1]*bs[1]) / 1e5})
	}
	png, err := r.ScalingPNG()
	if err != nil || len(png) < 1000 || string(png[1:4]) != "PNG" {
		t.Fatalf("scaling plot: %d bytes, %v", len(png), err)
	}
	r.Pairs = []Pair{
		{Case: Case{Name: "dpa-train"}, Go: &Result{StepSeconds: 0.5}},
		{Case: Case{Name: "maddr-dpa-train"}, Go: &Result{StepSeconds: 1.0}},
		{Case: Case{Name: "dpa-score"}, Go: &Result{ImagesPerS: 43.2}},
	}
	var b strings.Builder
	r.paperLength(&b)
	// DPA: 16000 x 0.5 s + 16 x 216 / 43.2 s = 8080 s; MADDR+DPA adds 3000 x 0.5 s.
	if !strings.Contains(b.String(), "**DPA 2.2 hours**") || !strings.Contains(b.String(), "**MADDR+DPA 2.7 hours**") {
		t.Errorf("paper-length text: %s", b.String())
	}
}
