package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"os/signal"
	"runtime/pprof"
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

func runBench(args []string, stdout, stderr io.Writer) error {
	fs := newFlagSet("bench", stderr)
	child := fs.String("child", "", "internal: measure one case in this process and print its JSON result")
	cases := fs.String("cases", "", "comma-separated cases (default all): "+caseNames())
	batch := fs.Int("batch", 32, "batch size")
	size := fs.Int("size", 64, "image side")
	steps := fs.Int("steps", 10, "timed steps per case (the median is reported)")
	warmup := fs.Int("warmup", 2, "untimed steps before timing")
	threads := fs.Int("threads", 0, "libtorch threads on both sides (0: all cores)")
	pool := fs.Int("pool", bench.DefaultPool, "distinct training images cycled in shuffled epochs")
	rounds := fs.Int("rounds", 1, "alternate Go and PyTorch this many times per case and keep each side's best (use 2-3 on a shared machine)")
	pytorch := fs.String("pytorch", "auto", "PyTorch side: auto (when the interpreter imports torch), on (required), off")
	python := fs.String("python", "/usr/bin/python3", "Python interpreter with torch (Debian's python3-torch)")
	script := fs.String("script", "", "the reference script (default: tools/reference/bench_torch.py found from the working directory)")
	scaling := fs.Bool("scaling", false, "also measure the DPA step against batch size and image size (Go)")
	scaleBatches := fs.String("scale-batches", "8,16,32,64,128", "batch sizes of the scaling table (at --size)")
	scaleSizes := fs.String("scale-sizes", "64,128,256:8", "image sizes of the scaling table, SIZE[:BATCH] (batch default --batch; DPA needs powers of two)")
	schedule := fs.Int("schedule", 0, "time this many iterations of the real MADDR+DPA training loop and extrapolate the paper's 16000 (0: skip)")
	markdown := fs.String("markdown", "", "write the results as Markdown (for BENCHMARKS.md)")
	jsonOut := fs.String("json", "", "write every measurement as JSON")
	plotOut := fs.String("plot", "", "write a PNG bar chart of images/s")
	scalingPlot := fs.String("scaling-plot", "", "write a PNG of the DPA step time against batch size and image size (needs --scaling)")
	cpuProfile := fs.String("cpuprofile", "", "with --child: write a Go CPU profile of the case (time inside libtorch shows as runtime.cgocall)")
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	if fs.NArg() > 0 {
		fmt.Fprintln(stderr, "maddr bench: positional arguments are not accepted")
		return errUsage
	}
	if *child != "" {
		var prof bytes.Buffer
		if *cpuProfile != "" {
			if err := pprof.StartCPUProfile(&prof); err != nil {
				return err
			}
		}
		res, err := bench.RunChild(bench.Params{Case: *child, Batch: *batch, Size: *size, Steps: *steps, Warmup: *warmup,
			Threads: *threads, Pool: *pool})
		if *cpuProfile != "" {
			pprof.StopCPUProfile()
			if err := atomicfile.Write(*cpuProfile, func(w io.Writer) error {
				_, err := w.Write(prof.Bytes())
				return err
			}); err != nil {
				return err
			}
		}
		if err != nil {
			return err
		}
		return json.NewEncoder(stdout).Encode(res)
	}

	ctx, cancel := signal.NotifyContext(context.Background(), os.Interrupt)
	defer cancel()
	exe, err := os.Executable()
	if err != nil {
		return fmt.Errorf("locating the maddr binary for the child processes: %w", err)
	}
	o := bench.Options{Batch: *batch, Size: *size, Steps: *steps, Warmup: *warmup, Threads: *threads, Pool: *pool,
		Rounds: *rounds, GoChild: []string{exe, "bench"}, ScheduleSteps: *schedule, Progress: stderr}
	if *cases != "" {
		o.Cases = strings.Split(*cases, ",")
	}
	if *scaling {
		if o.ScaleBatches, err = intList(*scaleBatches); err != nil {
			return fmt.Errorf("--scale-batches: %w", err)
		}
		for _, f := range strings.Split(*scaleSizes, ",") {
			sz, b, hasBatch := strings.Cut(strings.TrimSpace(f), ":")
			if !hasBatch {
				b = strconv.Itoa(*batch)
			}
			v, err := intList(sz + "," + b)
			if err != nil || len(v) != 2 {
				return fmt.Errorf("--scale-sizes: %q is not SIZE or SIZE:BATCH", f)
			}
			o.ScaleSizes = append(o.ScaleSizes, bench.SizeBatch{Size: v[0], Batch: v[1]})
		}
	}
	versions := "maddr " + version.String() + ", libtorch " + torch.Version()
	switch *pytorch {
	case "off":
	case "auto", "on":
		ver, err := bench.PythonWithTorch(ctx, *python)
		if err == nil {
			o.Script = *script
			if o.Script == "" {
				wd, _ := os.Getwd()
				o.Script, err = bench.ScriptPath(wd)
			}
		}
		if err != nil {
			if *pytorch == "on" {
				return err
			}
			fmt.Fprintf(stderr, "maddr bench: PyTorch side skipped: %v\n", err)
			break
		}
		o.Python = *python
		versions += ", PyTorch " + ver + " (" + *python + ")"
	default:
		return fmt.Errorf("--pytorch %q: want auto, on or off", *pytorch)
	}
	rep, err := bench.Run(ctx, o)
	if err != nil {
		return err
	}
	rep.Versions = versions
	rep.Command = "maddr bench " + strings.Join(args, " ")
	md := rep.Markdown()
	fmt.Fprint(stdout, md)
	write := func(path string, data []byte) error {
		if path == "" {
			return nil
		}
		return atomicfile.Write(path, func(w io.Writer) error {
			_, err := w.Write(data)
			return err
		})
	}
	if err := write(*markdown, []byte(md)); err != nil {
		return err
	}
	if *jsonOut != "" {
		b, err := json.MarshalIndent(rep, "", "  ")
		if err != nil {
			return err
		}
		if err := write(*jsonOut, append(b, '\n')); err != nil {
			return err
		}
	}
	if *plotOut != "" {
		png, err := rep.PlotPNG()
		if err != nil {
			return err
		}
		if err := write(*plotOut, png); err != nil {
			return err
		}
	}
	if *scalingPlot != "" {
		png, err := rep.ScalingPNG()
		if err != nil {
			return err
		}
		if err := write(*scalingPlot, png); err != nil {
			return err
		}
	}
	return nil
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
