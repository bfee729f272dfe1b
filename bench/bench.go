// Package bench measures how fast maddr trains and scores, side by side with
// the same networks in PyTorch (tools/reference/bench_torch.py), in one run.
//
// Every measured case runs in a child process of its own (the maddr binary
// with `bench --child`, or the Python script), so that peak resident memory
// (VmHWM) belongs to that case alone. A child runs a few warm-up steps, then
// times each of the following steps by wall clock and by the process's CPU
// time, and prints one JSON Result. The parent alternates Go and PyTorch
// children case by case and round by round, so that load from other
// processes on a shared machine hits both sides alike, keeps the best round
// of each, and reports Go/PyTorch ratios. CPU time per wall time is recorded
// for every case: about the thread count when the cores were free, less when
// the run was contended.
package bench

import (
	"bufio"
	"fmt"
	"os"
	"runtime"
	"sort"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/maddr-project/maddr/torch"
)

// Params select one measurement.
type Params struct {
	Case   string `json:"case"`
	Batch  int    `json:"batch"`
	Size   int    `json:"size"`
	Steps  int    `json:"steps"`
	Warmup int    `json:"warmup"`
	// Threads is libtorch's intra-op thread count on both sides.
	Threads int `json:"threads"`
	// Pool is the number of distinct training images cycled through in
	// shuffled epochs (the paper's three training sets hold 648).
	Pool int `json:"pool"`
}

// Result is what a child reports.
type Result struct {
	Impl string `json:"impl"` // "go" or "pytorch"
	Params
	// StepSeconds and CPUSeconds are medians over the timed steps (a step is
	// one batch: an optimizer update, a scored batch, or a loaded batch).
	StepSeconds float64 `json:"step_s"`
	CPUSeconds  float64 `json:"cpu_s"`
	// ImagesPerS is Batch / StepSeconds.
	ImagesPerS float64 `json:"images_per_s"`
	// CPUPerWall is total CPU time over total wall time of the timed steps.
	CPUPerWall float64 `json:"cpu_per_wall"`
	PeakRSSMiB float64 `json:"peak_rss_mib"`
	// Extra holds case-specific numbers (e.g. the extrapolated schedule).
	Extra map[string]float64 `json:"extra,omitempty"`
	Note  string             `json:"note,omitempty"`
}

// Case describes a benchmark case.
type Case struct {
	Name  string
	Title string
	// PyTorch is true when tools/reference/bench_torch.py implements it.
	PyTorch bool
	run     func(p Params, tm *timer) (note string, err error)
}

// timer times the steps of a case after its warm-up steps.
type timer struct {
	warmup, calls int
	walls, cpus   []float64
	extra         map[string]float64
}

// Step runs fn as one step, timing it unless it is a warm-up step.
func (t *timer) Step(fn func() error) error {
	c0, t0 := cpuTime(), time.Now()
	err := fn()
	t.record(time.Since(t0).Seconds(), cpuTime()-c0)
	return err
}

// record counts a step measured by the case itself.
func (t *timer) record(wall, cpu float64) {
	t.calls++
	if t.calls > t.warmup {
		t.walls = append(t.walls, wall)
		t.cpus = append(t.cpus, cpu)
	}
}

// total is the number of steps a case must run.
func (p Params) total() int { return p.Warmup + p.Steps }

// Cases lists the cases in report order.
func Cases() []Case {
	return []Case{
		{Name: "dpa-train", Title: "DPA train step (VGG19 to r42, Adam), target features cached across epochs", PyTorch: true, run: runDPATrain},
		{Name: "dpa-train-nocache", Title: "DPA train step, target features computed every step", PyTorch: true, run: runDPATrainNoCache},
		{Name: "maddr-dpa-train", Title: "MADDR+DPA train step (heads, focal, center, mixup)", PyTorch: true, run: runMADDRDPATrain},
		{Name: "ae-train", Title: "AE train step (MSE, Adam)", PyTorch: true, run: runAETrain},
		{Name: "maddr-ae-train", Title: "MADDR+AE train step (mixup)", PyTorch: true, run: runMADDRAETrain},
		{Name: "memae-train", Title: "MemAE train step (memory, entropy)", PyTorch: true, run: runMemAETrain},
		{Name: "maddr-memae-train", Title: "MADDR+MemAE train step (mixup)", PyTorch: true, run: runMADDRMemAETrain},
		{Name: "ganomaly-train", Title: "GANomaly train step (G then D)", PyTorch: true, run: runGANomalyTrain},
		{Name: "maddr-ganomaly-train", Title: "MADDR+GANomaly train step (mixup)", PyTorch: true, run: runMADDRGANomalyTrain},
		{Name: "fanogan-train", Title: "f-AnoGAN stage-1 step (WGAN-GP critic, G every 5th)", PyTorch: true, run: runFAnoGANTrain},
		{Name: "maddr-fanogan-train", Title: "MADDR+f-AnoGAN stage-2 step (encoder, izif, mixup)", PyTorch: true, run: runMADDRFAnoGANTrain},
		{Name: "dpa-score", Title: "DPA scoring (RP + 0.1 L1 per image)", PyTorch: true, run: runDPAScore},
		{Name: "dpa-score-bf16", Title: "DPA scoring, --precision bf16 (against PyTorch fp32)", PyTorch: true, run: runDPAScoreBF16},
		{Name: "ae-score", Title: "AE scoring", PyTorch: true, run: runAEScore},
		{Name: "ae-score-bf16", Title: "AE scoring, --precision bf16 (against PyTorch fp32)", PyTorch: true, run: runScoreIn("ae", torch.BFloat16)},
		{Name: "memae-score", Title: "MemAE scoring", PyTorch: true, run: runMemAEScore},
		{Name: "memae-score-bf16", Title: "MemAE scoring, --precision bf16 (against PyTorch fp32)", PyTorch: true, run: runScoreIn("memae", torch.BFloat16)},
		{Name: "ganomaly-score", Title: "GANomaly scoring", PyTorch: true, run: runGANomalyScore},
		{Name: "ganomaly-score-bf16", Title: "GANomaly scoring, --precision bf16 (against PyTorch fp32)", PyTorch: true, run: runScoreIn("ganomaly", torch.BFloat16)},
		{Name: "fanogan-score", Title: "f-AnoGAN scoring (izif)", PyTorch: true, run: runFAnoGANScore},
		{Name: "fanogan-score-bf16", Title: "f-AnoGAN scoring, --precision bf16 (against PyTorch fp32)", PyTorch: true, run: runScoreIn("fanogan", torch.BFloat16)},
		{Name: "loader-cold", Title: "data loader, every image decoded and preprocessed", run: runLoaderCold},
		{Name: "loader-cached", Title: "data loader, preprocessed images cached", run: runLoaderCached},
	}
}

// CaseByName finds a case.
func CaseByName(name string) (Case, error) {
	var names []string
	for _, c := range Cases() {
		if c.Name == name {
			return c, nil
		}
		names = append(names, c.Name)
	}
	if name == scheduleCase {
		return Case{Name: scheduleCase, Title: "DPA+MADDR training, real loop", run: runSchedule}, nil
	}
	return Case{}, fmt.Errorf("unknown benchmark case %q (cases: %s, %s)", name, strings.Join(names, ", "), scheduleCase)
}

// RunChild measures one case in this process (the Go side of a child).
func RunChild(p Params) (Result, error) {
	c, err := CaseByName(p.Case)
	if err != nil {
		return Result{}, err
	}
	if p.Batch < 1 || p.Size < 8 || p.Steps < 1 || p.Warmup < 0 {
		return Result{}, fmt.Errorf("bench: batch %d, size %d, steps %d, warm-up %d: need batch >= 1, size >= 8, steps >= 1, warm-up >= 0",
			p.Batch, p.Size, p.Steps, p.Warmup)
	}
	if p.Pool < p.Batch {
		p.Pool = max(DefaultPool, p.Batch)
	}
	// As train.Run and evaluate.ScoreSamples do (see package torch, Threads).
	runtime.LockOSThread()
	defer runtime.UnlockOSThread()
	torch.SetNumThreads(p.Threads)
	p.Threads = torch.NumThreads()
	tm := &timer{warmup: p.Warmup}
	res := Result{Impl: "go", Params: p}
	note, err := c.run(p, tm)
	if err != nil {
		return res, fmt.Errorf("bench %s: %w", p.Case, err)
	}
	walls, cpus := tm.walls, tm.cpus
	if len(walls) == 0 {
		return res, fmt.Errorf("bench %s: no timed step ran", p.Case)
	}
	res.Note = note
	res.StepSeconds, res.CPUSeconds = median(walls), median(cpus)
	res.ImagesPerS = float64(p.Batch) / res.StepSeconds
	res.CPUPerWall = sum(cpus) / sum(walls)
	res.PeakRSSMiB = PeakRSSMiB()
	res.Extra = tm.extra
	return res, nil
}

// DefaultPool is the paper's number of training images (LiTS 186 + Shenzhen
// 228 + COVID-CT 234).
const DefaultPool = 648

// PeakRSSMiB is the process's peak resident set (VmHWM), 0 where unknown.
func PeakRSSMiB() float64 {
	f, err := os.Open("/proc/self/status")
	if err != nil {
		return 0
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		if rest, ok := strings.CutPrefix(sc.Text(), "VmHWM:"); ok {
			fields := strings.Fields(rest)
			if len(fields) > 0 {
				kb, err := strconv.ParseFloat(fields[0], 64)
				if err == nil {
					return kb / 1024
				}
			}
		}
	}
	return 0
}

// cpuTime is the CPU time (user + system) of every thread of the process.
func cpuTime() float64 {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0
	}
	tv := func(t syscall.Timeval) float64 { return float64(t.Sec) + float64(t.Usec)/1e6 }
	return tv(ru.Utime) + tv(ru.Stime)
}

func median(v []float64) float64 {
	s := append([]float64(nil), v...)
	sort.Float64s(s)
	n := len(s)
	if n%2 == 1 {
		return s[n/2]
	}
	return (s[n/2-1] + s[n/2]) / 2
}

func sum(v []float64) float64 {
	t := 0.0
	for _, x := range v {
		t += x
	}
	return t
}

// Machine describes the computer for the report: CPU model, cores, memory,
// kernel and Go version.
func Machine() string {
	model := "unknown CPU"
	if b, err := os.ReadFile("/proc/cpuinfo"); err == nil {
		for _, line := range strings.Split(string(b), "\n") {
			if k, v, ok := strings.Cut(line, ":"); ok && strings.TrimSpace(k) == "model name" {
				model = strings.TrimSpace(v)
				break
			}
		}
	}
	mem := ""
	if b, err := os.ReadFile("/proc/meminfo"); err == nil {
		for _, line := range strings.Split(string(b), "\n") {
			if rest, ok := strings.CutPrefix(line, "MemTotal:"); ok {
				if f := strings.Fields(rest); len(f) > 0 {
					if kb, err := strconv.ParseFloat(f[0], 64); err == nil {
						mem = fmt.Sprintf(", %.0f GiB RAM", kb/(1<<20))
					}
				}
			}
		}
	}
	kernel := ""
	if b, err := os.ReadFile("/proc/sys/kernel/osrelease"); err == nil {
		kernel = ", Linux " + strings.TrimSpace(string(b))
	}
	return fmt.Sprintf("%s, %d cores%s%s, %s", model, runtime.NumCPU(), mem, kernel, runtime.Version())
}
