// Package torch is maddr's op-level binding to libtorch (ATen + autograd).
//
// Models, losses and training loops are Go; this package only forwards single
// ops to libtorch through a small C shim (shim.cc) that turns every C++
// exception into a Go error.
//
// # Errors
//
// A Tensor carries a sticky error, in the manner of bufio.Scanner: an op whose
// operand already failed returns a failed tensor without calling libtorch, so
// model code reads like PyTorch (x.Conv2d(...).LeakyRelu(0.2)) and checks the
// error once, where a value is read (Float32s, Item, Backward) or with Err.
//
// # Memory
//
// Go's garbage collector cannot see libtorch's allocations, so tensors are
// freed deterministically by a Scope: the result of an op joins the scope of
// its first scoped operand, and Scope.Close frees everything in the scope.
// Scope.Keep hands a result to the parent scope (or to the caller). Tensors
// outside every scope (parameters, optimizer state) are freed by Free, with a
// finalizer only as a safety net.
//
// # Memory of libtorch
//
// At start-up the package caps glibc's malloc at one arena (unless
// MALLOC_ARENA_MAX is set, which glibc then honours): cgo calls arrive on
// whatever OS thread runs the goroutine, and one arena per thread kept
// freed activations resident in each of them (a DPA training step used half
// the RSS and ran ~10% faster with one).
//
// It also fixes malloc's mmap threshold at 256 MiB and its trim threshold at
// 1 GiB (unless MALLOC_MMAP_THRESHOLD_ or MALLOC_TRIM_THRESHOLD_ is set). A
// Scope frees a whole step's tensors at once, at its end, where PyTorch frees
// each one as soon as autograd is done with it; with glibc's adaptive
// thresholds the freed top of the heap (often tens of MiB) went back to the
// kernel after every step, and every buffer above 32 MiB (a VGG activation of
// a DPA batch) was mapped and unmapped on each use, so the next step touched
// fresh zero pages. On the 2-core VMs of BENCHMARKS.md a page fault is
// expensive: an AE step spent about half its time in them, a DPA step a third
// (9,400 faults per AE step; with these thresholds about 0). The cost is
// that memory freed by a step stays with the process for the next one: the
// peak RSS is what it was, the RSS between steps stays near it.
//
// # Threads
//
// Grad mode is thread-local in libtorch while goroutines move between OS
// threads, so NoGrad pins the goroutine to its thread for the duration.
//
// Code that runs many ops (a training loop, scoring a data set) should call
// runtime.LockOSThread for its whole duration, as train.Run and
// evaluate.ScoreSamples do: libtorch's OpenMP pool and oneDNN's per-thread
// scratch buffers belong to the calling OS thread, so a goroutine that
// wanders between threads builds several of each. Measured on a DPA training
// step (batch 32, 2 cores): peak RSS 2085 -> 1112 MiB, both cores busy
// (CPU/wall 1.84 -> 1.99) and 8% less wall time.
//
// libtorch's matrix products call the BLAS it was built against; Debian's
// libtorch links OpenBLAS's pthreads build, which keeps a thread pool of its
// own beside libtorch's OpenMP pool (libtorch's thread count does not reach
// it). After every product OpenBLAS's idle worker polls for new work for about
// 0.1 s, calling sched_yield in a loop, so on the short ops of a small network
// it never sleeps: this is the system time of an AE run at 32x32 (see
// BENCHMARKS.md, "System time"). OPENBLAS_NUM_THREADS=1 in the environment, or
// SetBLASThreads(1), puts that pool to sleep for good. It is not the
// default because OpenBLAS splits a product differently on one thread, so the
// trained weights change at rounding level, as with another thread count.
//
// # Transposed convolutions
//
// libtorch 1.13 computes conv_transpose2d on the CPU with im2col and one
// OpenBLAS GEMM per image (PyTorch 2.0 added a oneDNN kernel). A transposed
// convolution is by definition the gradient of a convolution with respect to
// its input, and that gradient libtorch 1.13 does run in oneDNN, 2.4-8x
// faster on the decoder layers of the AE, MemAE and GANomaly at batch 32
// (forward and backward; tools/reference/deconv_kernels.py). ConvTranspose2d
// therefore takes that path for batches of at least 8 images with at least 8
// output channels, where it measured faster; SetConvTransposeByGradient(false)
// restores the direct kernel. The results agree to float rounding (about
// 1e-7 relative per layer), so trained weights differ at rounding level.
package torch

/*
#cgo CXXFLAGS: -std=c++17 -O2 -I/usr/include/torch/csrc/api/include
#cgo LDFLAGS: -ltorch -ltorch_cpu -lc10
#include <stdlib.h>
#include "shim.h"
*/
import "C"

import (
	"bufio"
	"fmt"
	"os"
	"runtime"
	"strings"
	"unsafe"
)

func init() {
	// libtorch starts with one intra-op thread on these machines.
	SetNumThreads(runtime.NumCPU())
	// glibc reads MALLOC_ARENA_MAX itself; without it, one arena (see shim.cc).
	if os.Getenv("MALLOC_ARENA_MAX") == "" {
		C.mt_limit_malloc_arenas(1)
	}
	// Setting either threshold turns glibc's adaptation off for both, so a
	// user who sets one gets exactly what they asked for.
	if os.Getenv("MALLOC_MMAP_THRESHOLD_") == "" && os.Getenv("MALLOC_TRIM_THRESHOLD_") == "" {
		mallocThresholdsSet = C.mt_set_malloc_mmap_threshold(mallocMmapThreshold) == 1 &&
			C.mt_set_malloc_trim_threshold(mallocTrimThreshold) == 1
	}
}

// glibc malloc thresholds set at start-up (see "Memory of libtorch").
const (
	mallocMmapThreshold = 256 << 20
	mallocTrimThreshold = 1 << 30
)

// mallocThresholdsSet records whether init set them (glibc may refuse).
var mallocThresholdsSet bool

// MallocEnv is the glibc environment that gives another process (the PyTorch
// reference of the bench) the malloc settings this process runs with: the
// variables the user set, or the ones init applied.
func MallocEnv() []string {
	var env []string
	for _, kv := range []struct {
		name    string
		value   int
		applied bool
	}{
		{"MALLOC_ARENA_MAX", 1, true},
		{"MALLOC_MMAP_THRESHOLD_", mallocMmapThreshold, mallocThresholdsSet},
		{"MALLOC_TRIM_THRESHOLD_", mallocTrimThreshold, mallocThresholdsSet},
	} {
		if v := os.Getenv(kv.name); v != "" {
			env = append(env, kv.name+"="+v)
		} else if kv.applied {
			env = append(env, fmt.Sprintf("%s=%d", kv.name, kv.value))
		}
	}
	return env
}

// SetBLASThreads sets the size of OpenBLAS's own thread pool (see Threads
// above) and reports whether libtorch's BLAS is OpenBLAS; with MKL, BLIS or
// the reference BLAS it does nothing and returns false.
func SetBLASThreads(n int) bool {
	if n <= 0 {
		n = runtime.NumCPU()
	}
	return C.mt_set_blas_threads(C.int(n)) != 0
}

// BLASThreads is the size of OpenBLAS's own thread pool, or 0 when libtorch's
// BLAS is not OpenBLAS (MKL shares libtorch's OpenMP threads).
func BLASThreads() int { return int(C.mt_get_blas_threads()) }

// Version is the version of the linked libtorch, e.g. "1.13.0".
func Version() string { return C.GoString(C.mt_version()) }

// BuildConfig is libtorch's own description of its build (compiler, BLAS,
// CPU capability, CUDA), as printed by torch.__config__.show().
func BuildConfig() string {
	p := C.mt_config()
	defer C.mt_free_string(p)
	return C.GoString(p)
}

// CPUCapability is the vector instruction set libtorch's kernels dispatch to
// (e.g. "AVX512"), read from BuildConfig.
func CPUCapability() string {
	for _, line := range strings.Split(BuildConfig(), "\n") {
		if _, after, ok := strings.Cut(line, "CPU capability usage:"); ok {
			return strings.TrimSpace(after)
		}
	}
	return "unknown"
}

// CPUFlags lists the vector extensions the processor reports in /proc/cpuinfo
// (sse4_2, avx, avx2, fma, avx512*, amx*). It is empty where that file does not exist.
func CPUFlags() []string {
	f, err := os.Open("/proc/cpuinfo")
	if err != nil {
		return nil
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	sc.Buffer(make([]byte, 64*1024), 1<<20)
	for sc.Scan() {
		name, value, ok := strings.Cut(sc.Text(), ":")
		if !ok || strings.TrimSpace(name) != "flags" {
			continue
		}
		var out []string
		for _, fl := range strings.Fields(value) {
			if fl == "sse4_2" || fl == "avx" || fl == "avx2" || fl == "fma" || fl == "f16c" ||
				strings.HasPrefix(fl, "avx512") || strings.HasPrefix(fl, "amx") || strings.HasPrefix(fl, "avx_vnni") {
				out = append(out, fl)
			}
		}
		return out
	}
	return nil
}

// CUDAAvailable reports whether the linked libtorch was built with CUDA and sees a device.
func CUDAAvailable() bool { return C.mt_cuda_available() != 0 }

// CUDADeviceCount is the number of CUDA devices libtorch sees (0 without CUDA).
func CUDADeviceCount() int { return int(C.mt_cuda_device_count()) }

// SetNumThreads sets libtorch's intra-op thread count; n <= 0 means all cores.
// OpenMP keeps the count per OS thread: it applies to the calling thread and
// to threads that first use libtorch afterwards, so a goroutine should lock
// its OS thread before calling it (see Threads above).
func SetNumThreads(n int) {
	if n <= 0 {
		n = runtime.NumCPU()
	}
	C.mt_set_num_threads(C.int(n))
}

// NumThreads is libtorch's current intra-op thread count.
func NumThreads() int { return int(C.mt_get_num_threads()) }

// ManualSeed seeds libtorch's default CPU generator, like torch.manual_seed.
func ManualSeed(seed uint64) error {
	return cerror("manual_seed", C.mt_manual_seed(C.uint64_t(seed)))
}

// Error is a failure reported by libtorch (a C++ exception) or by the binding.
type Error struct {
	Op  string
	Msg string
}

func (e *Error) Error() string { return "torch: " + e.Op + ": " + e.Msg }

// cerror converts a shim error string into a Go error and frees it.
func cerror(op string, e C.mt_err) error {
	if e == nil {
		return nil
	}
	msg := C.GoString(e)
	C.mt_free_string(e)
	return &Error{Op: op, Msg: strings.TrimSpace(msg)}
}

// Generator is an independent seeded random stream for the random ops.
// A nil *Generator means libtorch's default generator.
type Generator struct {
	g C.mt_generator
}

// NewGenerator returns a CPU generator seeded with seed.
func NewGenerator(seed uint64) (*Generator, error) {
	var g C.mt_generator
	if err := cerror("generator", C.mt_generator_new(C.uint64_t(seed), &g)); err != nil {
		return nil, err
	}
	gen := &Generator{g: g}
	runtime.SetFinalizer(gen, func(gen *Generator) { C.mt_generator_free(gen.g) })
	return gen, nil
}

// State returns the generator's full state (bytes), so a checkpoint can
// restore the random stream exactly.
func (g *Generator) State() ([]byte, error) {
	var h C.mt_tensor
	if err := cerror("generator.get_state", C.mt_generator_get_state(g.g, &h)); err != nil {
		return nil, err
	}
	t := wrap(h, nil)
	defer t.Free()
	v, err := t.Int64s()
	if err != nil {
		return nil, err
	}
	out := make([]byte, len(v))
	for i, b := range v {
		out[i] = byte(b)
	}
	return out, nil
}

// SetState restores a state returned by State.
func (g *Generator) SetState(state []byte) error {
	v := make([]int64, len(state))
	for i, b := range state {
		v[i] = int64(b)
	}
	t := FromInt64(v, int64(len(v))).To(Uint8)
	defer t.Free()
	if err := t.Err(); err != nil {
		return err
	}
	return cerror("generator.set_state", C.mt_generator_set_state(g.g, t.h))
}

func (g *Generator) handle() C.mt_generator {
	if g == nil {
		return nil
	}
	return g.g
}

// GradEnabled reports whether autograd records ops on the calling OS thread.
func GradEnabled() bool { return C.mt_is_grad_enabled() != 0 }

// NoGrad runs fn with autograd recording switched off, as torch.no_grad does.
// The goroutine stays on one OS thread while fn runs because grad mode is
// thread-local in libtorch.
func NoGrad(fn func() error) error {
	runtime.LockOSThread()
	defer runtime.UnlockOSThread()
	prev := C.mt_is_grad_enabled()
	C.mt_set_grad_enabled(0)
	defer C.mt_set_grad_enabled(prev)
	return fn()
}

// int64Ptr returns a C pointer to the first element of s (nil when empty).
func int64Ptr(s []int64) *C.int64_t {
	if len(s) == 0 {
		return nil
	}
	return (*C.int64_t)(unsafe.Pointer(&s[0]))
}

func boolInt(b bool) C.int {
	if b {
		return 1
	}
	return 0
}

// shapeString formats a shape like PyTorch does: [32, 1, 64, 64].
func shapeString(shape []int64) string {
	parts := make([]string, len(shape))
	for i, d := range shape {
		parts[i] = fmt.Sprint(d)
	}
	return "[" + strings.Join(parts, ", ") + "]"
}
