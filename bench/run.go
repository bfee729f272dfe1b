package bench

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"time"
)

// Options configure a benchmark run.
type Options struct {
	// Cases to compare (empty: all).
	Cases []string
	// Batch, Size, Steps, Warmup, Threads and Pool apply to every compared
	// case (0: 32, 64, 10, 2, all cores, 648).
	Batch, Size, Steps, Warmup, Threads, Pool int
	// Rounds alternates Go and PyTorch this many times per case; the best
	// round of each side is reported (0: 1).
	Rounds int
	// GoChild is the command that runs a Go child; RunChild's flags are
	// appended (for the CLI: the maddr binary and "bench").
	GoChild []string
	// Python is the interpreter with torch and Script the reference script;
	// an empty Python skips the PyTorch side.
	Python, Script string
	// PythonEnv is added to the PyTorch child's environment (the glibc
	// malloc settings the Go side runs with, torch.MallocEnv).
	PythonEnv []string
	// PythonArgs are added to the PyTorch child's command line (its
	// optional speed-ups, --with).
	PythonArgs []string
	// ScaleBatches and ScaleSizes add the scaling table of the DPA training
	// step (Go only): every batch at Size, then every size at its batch.
	ScaleBatches []int
	ScaleSizes   []SizeBatch
	// ScaleSteps is the timed steps per scaling point (0: 3).
	ScaleSteps int
	// ScheduleSteps > 0 times that many iterations of the real training loop
	// and extrapolates the paper's 16000.
	ScheduleSteps int
	// Progress receives one line per child (nil: silent).
	Progress io.Writer
}

// SizeBatch is a point of the image-size scaling (Batch 0: Options.Batch).
type SizeBatch struct{ Size, Batch int }

// Pair is one case measured on both sides.
type Pair struct {
	Case Case
	// Go and PyTorch are the best rounds (nil when missing).
	Go, PyTorch *Result
	// All holds every round of both sides.
	All []Result
	// Errors of failed children.
	Errors []string
}

// Ratio is Go images/s over PyTorch images/s (0 when a side is missing).
func (p Pair) Ratio() float64 {
	if p.Go == nil || p.PyTorch == nil || p.PyTorch.ImagesPerS == 0 {
		return 0
	}
	return p.Go.ImagesPerS / p.PyTorch.ImagesPerS
}

// CPURatio is PyTorch's CPU time per step over Go's (higher: Go does less work).
func (p Pair) CPURatio() float64 {
	if p.Go == nil || p.PyTorch == nil || p.Go.CPUSeconds == 0 {
		return 0
	}
	return p.PyTorch.CPUSeconds / p.Go.CPUSeconds
}

// MemoryRatio is Go's peak RSS over PyTorch's.
func (p Pair) MemoryRatio() float64 {
	if p.Go == nil || p.PyTorch == nil || p.PyTorch.PeakRSSMiB == 0 {
		return 0
	}
	return p.Go.PeakRSSMiB / p.PyTorch.PeakRSSMiB
}

// Report is the outcome of Run.
type Report struct {
	Machine  string
	Command  string
	Versions string
	// Allocator says which glibc malloc settings each side ran with.
	Allocator string
	// Deconv says how each side computes transposed convolutions.
	Deconv   string
	Params   Params
	Rounds   int
	Pairs    []Pair
	Scaling  []Result
	Schedule *Result
	Notes    []string
	Started  time.Time
	Seconds  float64
}

func (o *Options) defaults() {
	if o.Batch <= 0 {
		o.Batch = 32
	}
	if o.Size <= 0 {
		o.Size = 64
	}
	if o.Steps <= 0 {
		o.Steps = 10
	}
	if o.Warmup < 0 {
		o.Warmup = 0
	}
	if o.Pool <= 0 {
		o.Pool = DefaultPool
	}
	if o.Rounds <= 0 {
		o.Rounds = 1
	}
	if o.ScaleSteps <= 0 {
		o.ScaleSteps = 3
	}
}

// Run measures the cases, then the scaling table and the schedule.
func Run(ctx context.Context, o Options) (*Report, error) {
	o.defaults()
	if len(o.GoChild) == 0 {
		return nil, errors.New("bench: no command to run the Go side (GoChild)")
	}
	cases, err := o.selectedCases()
	if err != nil {
		return nil, err
	}
	r := &Report{Machine: Machine(), Params: Params{Batch: o.Batch, Size: o.Size, Steps: o.Steps, Warmup: o.Warmup,
		Threads: o.Threads, Pool: o.Pool}, Rounds: o.Rounds, Started: time.Now()}
	if o.Python == "" {
		r.Notes = append(r.Notes, "PyTorch side skipped (no interpreter with torch)")
	}
	total := len(cases)*o.Rounds*2 + len(o.ScaleBatches) + len(o.ScaleSizes)
	if o.ScheduleSteps > 0 {
		total++
	}
	m := &measurer{o: &o, r: r, total: total}
	for _, c := range cases {
		pair, err := m.pair(ctx, c)
		if err != nil {
			return r, err
		}
		r.Pairs = append(r.Pairs, pair)
	}
	m.scalingTable(ctx)
	m.schedule(ctx)
	r.Seconds = time.Since(r.Started).Seconds()
	return r, nil
}

// selectedCases are the cases Options.Cases names, all of them by default.
func (o *Options) selectedCases() ([]Case, error) {
	if len(o.Cases) == 0 {
		return Cases(), nil
	}
	var cases []Case
	for _, name := range o.Cases {
		c, err := CaseByName(name)
		if err != nil {
			return nil, err
		}
		cases = append(cases, c)
	}
	return cases, nil
}

// measurer runs the child processes of one Run, counts them against the
// total for the progress lines, and fills in the report.
type measurer struct {
	o     *Options
	r     *Report
	total int
	n     int
}

// progress counts a measurement done and prints its line (or its failure)
// when Options.Progress is set.
func (m *measurer) progress(res Result, err error) {
	m.n++
	if m.o.Progress == nil {
		return
	}
	if err != nil {
		fmt.Fprintf(m.o.Progress, "bench [%d/%d] %s %s: FAILED: %v\n", m.n, m.total, res.Case, res.Impl, err)
		return
	}
	fmt.Fprintf(m.o.Progress, "bench [%d/%d] %-15s %-7s batch %3d size %3d: %7.1f img/s  step %.3f s  cpu %.3f s  cpu/wall %.2f  peak %6.0f MiB\n",
		m.n, m.total, res.Case, res.Impl, res.Batch, res.Size, res.ImagesPerS, res.StepSeconds, res.CPUSeconds, res.CPUPerWall, res.PeakRSSMiB)
}

// pair measures case c on both sides, Options.Rounds times alternating,
// and keeps each side's best; a failed measurement is recorded in the pair.
// Only a cancelled context stops it with an error.
func (m *measurer) pair(ctx context.Context, c Case) (Pair, error) {
	pair := Pair{Case: c}
	p := m.r.Params
	p.Case = c.Name
	for round := 0; round < m.o.Rounds; round++ {
		for _, impl := range []string{"go", "pytorch"} {
			if err := ctx.Err(); err != nil {
				return pair, err
			}
			if impl == "pytorch" && (!c.PyTorch || m.o.Python == "") {
				m.n++
				continue
			}
			res, err := m.o.child(ctx, impl, p)
			m.progress(res, err)
			if err != nil {
				pair.Errors = append(pair.Errors, fmt.Sprintf("%s: %v", impl, err))
				continue
			}
			pair.All = append(pair.All, res)
			best := &pair.Go
			if impl == "pytorch" {
				best = &pair.PyTorch
			}
			if *best == nil || res.ImagesPerS > (*best).ImagesPerS {
				keep := res
				*best = &keep
			}
		}
	}
	return pair, nil
}

// scalingTable measures the Go DPA step at each batch size of
// Options.ScaleBatches and each image size of Options.ScaleSizes; a failure
// becomes a note.
func (m *measurer) scalingTable(ctx context.Context) {
	o := m.o
	scale := func(batch, size int) {
		p := Params{Case: "dpa-train", Batch: batch, Size: size, Steps: o.ScaleSteps, Warmup: 1, Threads: o.Threads, Pool: o.Pool}
		res, err := o.child(ctx, "go", p)
		m.progress(res, err)
		if err != nil {
			m.r.Notes = append(m.r.Notes, fmt.Sprintf("scaling batch %d size %d failed: %v", batch, size, err))
			return
		}
		m.r.Scaling = append(m.r.Scaling, res)
	}
	for _, b := range o.ScaleBatches {
		scale(b, o.Size)
	}
	for _, s := range o.ScaleSizes {
		b := s.Batch
		if b == 0 {
			b = o.Batch
		}
		scale(b, s.Size)
	}
}

// schedule times Options.ScheduleSteps iterations of the real training
// loop when asked to; a failure becomes a note.
func (m *measurer) schedule(ctx context.Context) {
	o := m.o
	if o.ScheduleSteps <= 0 {
		return
	}
	p := Params{Case: scheduleCase, Batch: o.Batch, Size: o.Size, Steps: o.ScheduleSteps, Warmup: 2, Threads: o.Threads, Pool: o.Pool}
	res, err := o.child(ctx, "go", p)
	m.progress(res, err)
	if err != nil {
		m.r.Notes = append(m.r.Notes, fmt.Sprintf("schedule measurement failed: %v", err))
	} else {
		m.r.Schedule = &res
	}
}

// childArgs are the flags both children understand.
func childArgs(p Params) []string {
	return []string{"--batch", strconv.Itoa(p.Batch), "--size", strconv.Itoa(p.Size), "--steps", strconv.Itoa(p.Steps),
		"--warmup", strconv.Itoa(p.Warmup), "--threads", strconv.Itoa(p.Threads), "--pool", strconv.Itoa(p.Pool)}
}

// child runs one measurement in a fresh process and reads its JSON result.
func (o *Options) child(ctx context.Context, impl string, p Params) (Result, error) {
	var argv []string
	if impl == "go" {
		argv = append(append(append([]string{}, o.GoChild...), "--child", p.Case), childArgs(p)...)
	} else {
		argv = append(append([]string{o.Python, o.Script, "--case", p.Case}, childArgs(p)...), o.PythonArgs...)
	}
	res := Result{Impl: impl, Params: p}
	cmd := exec.CommandContext(ctx, argv[0], argv[1:]...)
	if impl != "go" && len(o.PythonEnv) > 0 {
		cmd.Env = append(os.Environ(), o.PythonEnv...)
	}
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Run(); err != nil {
		return res, fmt.Errorf("%s: %v: %s", strings.Join(argv, " "), err, tail(stderr.String(), 600))
	}
	lines := strings.Split(strings.TrimSpace(stdout.String()), "\n")
	last := lines[len(lines)-1]
	if err := json.Unmarshal([]byte(last), &res); err != nil {
		return res, fmt.Errorf("%s printed no result (%v): %s", strings.Join(argv, " "), err, tail(stdout.String()+stderr.String(), 600))
	}
	res.Impl = impl
	return res, nil
}

func tail(s string, n int) string {
	s = strings.TrimSpace(s)
	if len(s) > n {
		return "..." + s[len(s)-n:]
	}
	return s
}

// PythonWithTorch returns path when it runs and imports torch, with torch's version.
func PythonWithTorch(ctx context.Context, path string) (string, error) {
	out, err := exec.CommandContext(ctx, path, "-c", "import torch; print(torch.__version__)").Output()
	if err != nil {
		return "", fmt.Errorf("%s cannot import torch (install Debian's python3-torch: apt-get install -y python3-torch): %v", path, err)
	}
	return strings.TrimSpace(string(out)), nil
}

// ScriptPath finds tools/reference/bench_torch.py from dir or its parents.
func ScriptPath(dir string) (string, error) {
	for d := dir; ; {
		p := d + "/tools/reference/bench_torch.py"
		if _, err := os.Stat(p); err == nil {
			return p, nil
		}
		parent := d[:max(strings.LastIndex(d, "/"), 0)]
		if parent == d || parent == "" {
			break
		}
		d = parent
	}
	return "", fmt.Errorf("tools/reference/bench_torch.py not found from %s upwards: run from the repository or pass --script", dir)
}
