package reliability

import (
	"encoding/json"
	"fmt"
	"math"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"sort"
	"sync"
	"testing"

	"github.com/maddr-project/maddr/dataset"
	"github.com/maddr-project/maddr/maddr"
	"github.com/maddr-project/maddr/nn"
	"github.com/maddr-project/maddr/phantom"
	"github.com/maddr-project/maddr/train"
)

var (
	phantomOnce    sync.Once
	phantomSamples []dataset.Sample
	phantomErr     error
)

// smallPhantom is the built-in data set at 4% of its size, 32 x 32 pixels,
// generated once per test binary.
func smallPhantom(t *testing.T) []dataset.Sample {
	t.Helper()
	phantomOnce.Do(func() {
		pc := phantom.DefaultConfig()
		pc.Scale, pc.Size = 0.04, 32
		cases, err := phantom.Generate(pc)
		if err != nil {
			phantomErr = err
			return
		}
		phantomSamples, _, phantomErr = dataset.PhantomSamples(cases, dataset.AllSplits)
	})
	if phantomErr != nil {
		t.Fatal(phantomErr)
	}
	return phantomSamples
}

// tinyConfig is a run of a baseline at 32 x 32 with MADDR (mixup window
// scaled into the run), small enough to train in well under a second.
func tinyConfig(model, rawOptions string, latent, iterations, threads int) train.Config {
	cfg := train.Defaults(model)
	cfg.Sources = nil
	cfg.ModelOptions = json.RawMessage(rawOptions)
	cfg.LatentDim = latent
	cfg.Preprocess.Size, cfg.Preprocess.Resize, cfg.Preprocess.Crop = 32, 0, 0
	cfg.Iterations, cfg.BatchSize, cfg.CheckpointEvery = iterations, 4, iterations
	cfg.MADDR = maddr.Paper().ScaleMixup(iterations)
	cfg.Threads, cfg.Workers, cfg.Seed = threads, 2, 11
	return cfg
}

// tensors reads every tensor of a checkpoint or model file as float64s.
func tensors(t *testing.T, path string) map[string][]float64 {
	t.Helper()
	ck, err := nn.ReadCheckpoint(path)
	if err != nil {
		t.Fatal(err)
	}
	out := map[string][]float64{}
	for name, ts := range ck.File.Tensors {
		v := make([]float64, 0, len(ts.F32)+len(ts.I64))
		for _, x := range ts.F32 {
			v = append(v, float64(x))
		}
		for _, x := range ts.I64 {
			v = append(v, float64(x))
		}
		out[name] = v
	}
	return out
}

// tensorDiff compares two tensor sets; it returns the largest absolute
// difference, the tensor where it occurs, and an error when the sets do not
// hold the same names and sizes.
func tensorDiff(a, b map[string][]float64) (float64, string, error) {
	if len(a) != len(b) {
		return 0, "", fmt.Errorf("%d tensors against %d", len(a), len(b))
	}
	names := make([]string, 0, len(a))
	for n := range a {
		names = append(names, n)
	}
	sort.Strings(names)
	worst, where := 0.0, ""
	for _, n := range names {
		x, y := a[n], b[n]
		if len(x) != len(y) {
			return 0, "", fmt.Errorf("%s: %d values against %d", n, len(x), len(y))
		}
		for i := range x {
			if x[i] == y[i] || math.IsNaN(x[i]) && math.IsNaN(y[i]) {
				continue
			}
			d := math.Abs(x[i] - y[i])
			if math.IsNaN(d) {
				d = math.Inf(1) // NaN on one side only
			}
			if d > worst || where == "" {
				worst, where = d, fmt.Sprintf("%s[%d]", n, i)
			}
		}
	}
	return worst, where, nil
}

var (
	binOnce sync.Once
	binPath string
	binErr  error
)

// maddrBinary builds cmd/maddr once per test binary; tests that run the CLI
// as a separate process (to kill it, or to see its exit status) use it.
func maddrBinary(t *testing.T) string {
	t.Helper()
	if testing.Short() {
		t.Skip("builds and runs the maddr binary; skipped under -short")
	}
	binOnce.Do(func() {
		dir, err := os.MkdirTemp("", "maddr-reliability-")
		if err != nil {
			binErr = err
			return
		}
		binPath = filepath.Join(dir, "maddr")
		cmd := exec.Command("go", "build", "-o", binPath, "./cmd/maddr")
		cmd.Dir = ".."
		if out, err := cmd.CombinedOutput(); err != nil {
			binErr = fmt.Errorf("go build ./cmd/maddr: %v\n%s", err, out)
		}
	})
	if binErr != nil {
		t.Fatal(binErr)
	}
	return binPath
}

func TestMain(m *testing.M) {
	// The torch package's init ran a libtorch call on this goroutine's OS
	// thread (the process's first), fixing that thread's OpenMP thread
	// count at all cores; keeping the thread locked here means no test runs
	// a libtorch op on it, so every op follows the count a test sets.
	runtime.LockOSThread()
	code := m.Run()
	if binPath != "" {
		os.RemoveAll(filepath.Dir(binPath))
	}
	os.Exit(code)
}
