package main

import (
	"bytes"
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"runtime/pprof"
	"slices"
	"strconv"
	"strings"

	"github.com/maddr-project/maddr/atomicfile"
	"github.com/maddr-project/maddr/bench"
	"github.com/maddr-project/maddr/torch"
	"github.com/maddr-project/maddr/version"
)

func init() {
	register("bench", "measure training and scoring speed against the PyTorch reference", runBench)
}

// benchFlags are the flags of maddr bench.
type benchFlags struct {
	child, cases                            *string
	batch, size, steps, warmup, threads     *int
	pool, rounds, schedule                  *int
	pytorch, python, script, pytorchMalloc  *string
	deconv, pytorchWith                     *string
	scaling                                 *bool
	scaleBatches, scaleSizes                *string
	markdown, jsonOut, plotOut, scalingPlot *string
	cpuProfile                              *string
}

func newBenchFlags(stderr io.Writer) (*flag.FlagSet, *benchFlags) {
	fs := newFlagSet("bench", stderr)
	return fs, &benchFlags{
		child:         fs.String("child", "", "internal: measure one case in this process and print its JSON result"),
		cases:         fs.String("cases", "", "comma-separated cases (default all): "+caseNames()),
		batch:         fs.Int("batch", 32, "batch size"),
		size:          fs.Int("size", 64, "image side"),
		steps:         fs.Int("steps", 10, "timed steps per case (the median is reported)"),
		warmup:        fs.Int("warmup", 2, "untimed steps before timing"),
		threads:       fs.Int("threads", 0, "libtorch threads on both sides (0: all cores)"),
		pool:          fs.Int("pool", bench.DefaultPool, "distinct training images cycled in shuffled epochs"),
		rounds:        fs.Int("rounds", 1, "alternate Go and PyTorch this many times per case and keep each side's best (use 2-3 on a shared machine)"),
		pytorch:       fs.String("pytorch", "auto", "PyTorch side: auto (when the interpreter imports torch), on (required), off"),
		python:        fs.String("python", "/usr/bin/python3", "Python interpreter with torch (Debian's python3-torch)"),
		pytorchMalloc: fs.String("pytorch-malloc", "same", "glibc malloc settings of the PyTorch side: same (the ones maddr sets for itself, see package torch) or default (glibc's adaptive thresholds)"),
		deconv:        fs.String("deconv", "gradient", "how the Go side computes transposed convolutions: gradient (as the input gradient of a convolution, in oneDNN; maddr's default) or direct (libtorch 1.13's conv_transpose2d, as the PyTorch reference does)"),
		pytorchWith:   fs.String("pytorch-with", "", "optional speed-ups of the PyTorch reference, comma-separated: deconv-by-gradient (transposed convolutions computed as maddr computes them)"),
		script:        fs.String("script", "", "the reference script (default: tools/reference/bench_torch.py found from the working directory)"),
		scaling:       fs.Bool("scaling", false, "also measure the DPA step against batch size and image size (Go)"),
		scaleBatches:  fs.String("scale-batches", "8,16,32,64,128", "batch sizes of the scaling table (at --size)"),
		scaleSizes:    fs.String("scale-sizes", "64,128,256:8", "image sizes of the scaling table, SIZE[:BATCH] (batch default --batch; DPA needs powers of two)"),
		schedule:      fs.Int("schedule", 0, "time this many iterations of the real MADDR+DPA training loop and extrapolate the paper's 16000 (0: skip)"),
		markdown:      fs.String("markdown", "", "write the results as Markdown (for BENCHMARKS.md)"),
		jsonOut:       fs.String("json", "", "write every measurement as JSON"),
		plotOut:       fs.String("plot", "", "write a PNG bar chart of each case's speed as a multiple of PyTorch's"),
		scalingPlot:   fs.String("scaling-plot", "", "write a PNG of the DPA step time against batch size and image size (needs --scaling)"),
		cpuProfile:    fs.String("cpuprofile", "", "with --child: write a Go CPU profile of the case (time inside libtorch shows as runtime.cgocall)"),
	}
}

func runBench(args []string, stdout, stderr io.Writer) error {
	fs, f := newBenchFlags(stderr)
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	if fs.NArg() > 0 {
		fmt.Fprintln(stderr, "maddr bench: positional arguments are not accepted")
		return errUsage
	}
	if *f.child != "" {
		return runBenchChild(f, stdout)
	}

	ctx, cancel := signal.NotifyContext(context.Background(), os.Interrupt)
	defer cancel()
	o, err := f.options(stderr)
	if err != nil {
		return err
	}
	versions := "maddr " + version.String() + ", libtorch " + torch.Version()
	pyVersion, err := f.pytorchSide(ctx, &o, stderr)
	if err != nil {
		return err
	}
	versions += pyVersion
	allocator, err := f.pythonMalloc(&o)
	if err != nil {
		return err
	}
	deconv, err := f.deconvSides(&o)
	if err != nil {
		return err
	}
	rep, err := bench.Run(ctx, o)
	if err != nil {
		return err
	}
	rep.Versions = versions
	rep.Allocator = allocator
	rep.Deconv = deconv
	rep.Command = "maddr bench " + strings.Join(args, " ")
	md := rep.Markdown()
	fmt.Fprint(stdout, md)
	return f.writeOutputs(rep, md)
}

// pythonMalloc gives the PyTorch side the Go side's malloc settings unless
// --pytorch-malloc default asks for glibc's own, and describes the choice.
func (f *benchFlags) pythonMalloc(o *bench.Options) (string, error) {
	goSide := strings.Join(torch.MallocEnv(), " ")
	// Both children inherit this process's OpenMP setting.
	openmp := "; OMP_WAIT_POLICY=" + os.Getenv("OMP_WAIT_POLICY") + " on both sides"
	switch *f.pytorchMalloc {
	case "same":
		o.PythonEnv = torch.MallocEnv()
		return "the same glibc malloc settings on both sides (" + goSide + ")" + openmp, nil
	case "default":
		return "Go side " + goSide + ", PyTorch side glibc's defaults" + openmp, nil
	}
	return "", fmt.Errorf("maddr bench: --pytorch-malloc %q is not same or default", *f.pytorchMalloc)
}

// deconvByGradient is the value of --deconv: true for gradient, false for
// direct.
func (f *benchFlags) deconvByGradient() (bool, error) {
	switch *f.deconv {
	case "gradient", "direct":
		return *f.deconv == "gradient", nil
	}
	return false, fmt.Errorf("maddr bench: --deconv %q is not gradient or direct", *f.deconv)
}

// deconvSides passes --deconv to the Go children and --pytorch-with to the
// reference, and says how each side computes transposed convolutions.
func (f *benchFlags) deconvSides(o *bench.Options) (string, error) {
	byGradient, err := f.deconvByGradient()
	if err != nil {
		return "", err
	}
	o.GoChild = append(o.GoChild, "--deconv", *f.deconv)
	goSide := "Go side as the input gradient of a convolution (oneDNN)"
	if !byGradient {
		goSide = "Go side with conv_transpose2d"
	}
	pySide := "PyTorch side with conv_transpose2d (nn.ConvTranspose2d)"
	if *f.pytorchWith != "" {
		o.PythonArgs = []string{"--with", *f.pytorchWith}
		if slices.Contains(strings.Split(*f.pytorchWith, ","), "deconv-by-gradient") {
			pySide = "PyTorch side as the input gradient of a convolution (--pytorch-with deconv-by-gradient)"
		}
	}
	return goSide + ", " + pySide, nil
}

// runBenchChild measures the one case --child names in this process (under
// the CPU profiler with --cpuprofile) and prints its result as JSON.
func runBenchChild(f *benchFlags, stdout io.Writer) error {
	byGradient, err := f.deconvByGradient()
	if err != nil {
		return err
	}
	torch.SetConvTransposeByGradient(byGradient)
	var prof bytes.Buffer
	if *f.cpuProfile != "" {
		if err := pprof.StartCPUProfile(&prof); err != nil {
			return err
		}
	}
	res, err := bench.RunChild(bench.Params{Case: *f.child, Batch: *f.batch, Size: *f.size, Steps: *f.steps, Warmup: *f.warmup,
		Threads: *f.threads, Pool: *f.pool})
	if *f.cpuProfile != "" {
		pprof.StopCPUProfile()
		if err := writeBenchFile(*f.cpuProfile, prof.Bytes()); err != nil {
			return err
		}
	}
	if err != nil {
		return err
	}
	return json.NewEncoder(stdout).Encode(res)
}

// options are the bench.Options the flags ask for, progress going to
// stderr; the Python side is left to pytorchSide.
func (f *benchFlags) options(stderr io.Writer) (bench.Options, error) {
	exe, err := os.Executable()
	if err != nil {
		return bench.Options{}, fmt.Errorf("locating the maddr binary for the child processes: %w", err)
	}
	o := bench.Options{Batch: *f.batch, Size: *f.size, Steps: *f.steps, Warmup: *f.warmup, Threads: *f.threads, Pool: *f.pool,
		Rounds: *f.rounds, GoChild: []string{exe, "bench"}, ScheduleSteps: *f.schedule, Progress: stderr}
	if *f.cases != "" {
		o.Cases = strings.Split(*f.cases, ",")
	}
	if *f.scaling {
		if o.ScaleBatches, err = intList(*f.scaleBatches); err != nil {
			return o, fmt.Errorf("--scale-batches: %w", err)
		}
		if o.ScaleSizes, err = scaleSizes(*f.scaleSizes, *f.batch); err != nil {
			return o, err
		}
	}
	return o, nil
}

// scaleSizes parses --scale-sizes: SIZE[:BATCH] entries, comma-separated,
// the batch defaulting to batch.
func scaleSizes(list string, batch int) ([]bench.SizeBatch, error) {
	var out []bench.SizeBatch
	for _, f := range strings.Split(list, ",") {
		sz, b, hasBatch := strings.Cut(strings.TrimSpace(f), ":")
		if !hasBatch {
			b = strconv.Itoa(batch)
		}
		v, err := intList(sz + "," + b)
		if err != nil || len(v) != 2 {
			return nil, fmt.Errorf("--scale-sizes: %q is not SIZE or SIZE:BATCH", f)
		}
		out = append(out, bench.SizeBatch{Size: v[0], Batch: v[1]})
	}
	return out, nil
}

// pytorchSide sets up the PyTorch side of o as --pytorch asks: with auto,
// an interpreter without torch (or no reference script) skips it with a
// message. It returns what to add to the report's versions line.
func (f *benchFlags) pytorchSide(ctx context.Context, o *bench.Options, stderr io.Writer) (string, error) {
	switch *f.pytorch {
	case "off":
		return "", nil
	case "auto", "on":
	default:
		return "", fmt.Errorf("--pytorch %q: want auto, on or off", *f.pytorch)
	}
	ver, err := bench.PythonWithTorch(ctx, *f.python)
	if err == nil {
		o.Script = *f.script
		if o.Script == "" {
			wd, _ := os.Getwd()
			o.Script, err = bench.ScriptPath(wd)
		}
	}
	if err != nil {
		if *f.pytorch == "on" {
			return "", err
		}
		fmt.Fprintf(stderr, "maddr bench: PyTorch side skipped: %v\n", err)
		return "", nil
	}
	o.Python = *f.python
	return ", PyTorch " + ver + " (" + *f.python + ")", nil
}

// writeOutputs writes the files --markdown, --json, --plot and
// --scaling-plot ask for.
func (f *benchFlags) writeOutputs(rep *bench.Report, md string) error {
	if *f.markdown != "" {
		if err := writeBenchFile(*f.markdown, []byte(md)); err != nil {
			return err
		}
	}
	if *f.jsonOut != "" {
		b, err := json.MarshalIndent(rep, "", "  ")
		if err != nil {
			return err
		}
		if err := writeBenchFile(*f.jsonOut, append(b, '\n')); err != nil {
			return err
		}
	}
	for _, plot := range []struct {
		path string
		draw func() ([]byte, error)
	}{{*f.plotOut, rep.PlotPNG}, {*f.scalingPlot, rep.ScalingPNG}} {
		if plot.path == "" {
			continue
		}
		png, err := plot.draw()
		if err != nil {
			return err
		}
		if err := writeBenchFile(plot.path, png); err != nil {
			return err
		}
	}
	return nil
}

// writeBenchFile replaces path by data all at once (write, then rename).
func writeBenchFile(path string, data []byte) error {
	return atomicfile.Write(path, func(w io.Writer) error {
		_, err := w.Write(data)
		return err
	})
}

func caseNames() string {
	var names []string
	for _, c := range bench.Cases() {
		names = append(names, c.Name)
	}
	return strings.Join(names, ", ")
}

func intList(s string) ([]int, error) {
	var out []int
	for _, f := range strings.Split(s, ",") {
		if f = strings.TrimSpace(f); f == "" {
			continue
		}
		n, err := strconv.Atoi(f)
		if err != nil || n < 1 {
			return nil, fmt.Errorf("%q is not a positive integer", f)
		}
		out = append(out, n)
	}
	return out, nil
}
