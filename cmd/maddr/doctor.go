package main

import (
	"fmt"
	"io"
	"os"
	"runtime"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/maddr-project/maddr/modelfile"
	"github.com/maddr-project/maddr/perceptual"
	"github.com/maddr-project/maddr/torch"
	"github.com/maddr-project/maddr/version"
)

func init() {
	register("doctor", "report the linked libtorch, threads, CPU, CUDA and VGG19 weights", runDoctor)
}

// vggWeightsEnv names the environment variable that points at VGG19 weights
// (torchvision's vgg19-dcbb9e9d.pth or a .safetensors conversion).
const vggWeightsEnv = perceptual.WeightsEnv

func runDoctor(args []string, stdout, stderr io.Writer) error {
	fs := newFlagSet("doctor", stderr)
	threads := fs.Int("threads", 0, "libtorch intra-op threads (0: all cores)")
	vgg := fs.String("vgg-weights", "", "VGG19 weights file to check (default: $"+vggWeightsEnv+")")
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	torch.SetNumThreads(*threads)

	w := tabwriter.NewWriter(stdout, 0, 0, 2, ' ', 0)
	row := func(k, format string, a ...any) { fmt.Fprintf(w, "%s\t%s\n", k, fmt.Sprintf(format, a...)) }
	row("maddr", "%s", version.String())
	row("go", "%s %s/%s", runtime.Version(), runtime.GOOS, runtime.GOARCH)
	row("libtorch", "%s", torch.Version())
	row("threads", "%d libtorch intra-op threads, %d CPUs", torch.NumThreads(), runtime.NumCPU())
	row("cpu kernels", "%s", torch.CPUCapability())
	flags := torch.CPUFlags()
	if len(flags) == 0 {
		row("cpu extensions", "unknown (no /proc/cpuinfo)")
	} else {
		row("cpu extensions", "%s", strings.Join(flags, " "))
	}
	if p, _, _ := modelfile.ChoosePrecision(modelfile.AutoPrecision, "dpa"); p == torch.BFloat16 {
		row("precision auto", "bf16 for DPA models (native bfloat16), fp32 for the others")
	} else {
		row("precision auto", "fp32 for every model (no native bfloat16: avx512_bf16 or AMX)")
	}
	if torch.CUDAAvailable() {
		row("cuda", "available, %d device(s)", torch.CUDADeviceCount())
	} else {
		row("cuda", "not available (this libtorch is CPU-only; see README to link a CUDA build)")
	}
	gflops, err := measureMatmul()
	if err != nil {
		return fmt.Errorf("libtorch self-test failed: %w", err)
	}
	row("self-test", "512x512 float32 matmul at %.1f GFLOP/s", gflops)
	row("vgg19 weights", "%s", describeVGG(*vgg))
	return w.Flush()
}

// describeVGG says whether perceptual-loss weights are configured and
// actually load (the same reader DPA uses), not just whether a file exists.
func describeVGG(flagValue string) string {
	path, origin := flagValue, "--vgg-weights"
	if path == "" {
		path, origin = os.Getenv(vggWeightsEnv), "$"+vggWeightsEnv
	}
	if path == "" {
		return "not configured: set $" + vggWeightsEnv + " or --vgg-weights to torchvision's vgg19-dcbb9e9d.pth " +
			"(" + perceptual.WeightsURL + "); without it DPA needs --vgg-random-init"
	}
	vgg, err := perceptual.NewVGG(perceptual.Options{Weights: path})
	if err != nil {
		return fmt.Sprintf("%s=%s does not load: %v", origin, path, err)
	}
	defer vgg.Free()
	r32, r42 := vgg.Channels()
	return fmt.Sprintf("%s=%s loads (VGG19 conv1_1..conv4_2, r32 %d and r42 %d channels)", origin, path, r32, r42)
}

// measureMatmul runs a small matmul to prove the kernels work and report their speed.
func measureMatmul() (float64, error) {
	const n = 512
	var gflops float64
	err := torch.NoGrad(func() error {
		return torch.Run(func(s *torch.Scope) error {
			g, err := torch.NewGenerator(0)
			if err != nil {
				return err
			}
			a := s.Adopt(torch.Randn(g, n, n))
			b := s.Adopt(torch.Randn(g, n, n))
			if err := a.Matmul(b).Err(); err != nil { // warm-up
				return err
			}
			const reps = 10
			start := time.Now()
			for i := 0; i < reps; i++ {
				if err := a.Matmul(b).Err(); err != nil {
					return err
				}
			}
			gflops = 2 * n * n * n * reps / time.Since(start).Seconds() / 1e9
			return nil
		})
	})
	return gflops, err
}

// setThreads applies a --threads flag (0: all cores).
func setThreads(n int) { torch.SetNumThreads(n) }
