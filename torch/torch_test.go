package torch

import (
	"errors"
	"math"
	"os"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"testing"
)

func mustF32(t *testing.T, x *Tensor) []float32 {
	t.Helper()
	v, err := x.Float32s()
	if err != nil {
		t.Fatal(err)
	}
	return v
}

func near(a, b, tol float64) bool { return math.Abs(a-b) <= tol*(1+math.Abs(b)) }

func TestRoundTripAndShape(t *testing.T) {
	x := FromFloat32([]float32{1, 2, 3, 4, 5, 6}, 2, 3)
	defer x.Free()
	if got := x.Shape(); len(got) != 2 || got[0] != 2 || got[1] != 3 {
		t.Fatalf("shape %v", got)
	}
	if x.DType() != Float32 || x.Device() != CPU {
		t.Fatalf("dtype %v device %v", x.DType(), x.Device())
	}
	got := mustF32(t, x.T().Contiguous())
	want := []float32{1, 4, 2, 5, 3, 6}
	for i := range want {
		if got[i] != want[i] {
			t.Fatalf("transpose: got %v want %v", got, want)
		}
	}
	ix := FromInt64([]int64{7, -3}, 2)
	v, err := ix.Int64s()
	if err != nil || v[0] != 7 || v[1] != -3 {
		t.Fatalf("int64 round trip %v %v", v, err)
	}
	if err := FromFloat32([]float32{1, 2, 3}, 2, 2).Err(); err == nil {
		t.Fatal("want error for data that does not fill the shape")
	}
}

func TestShapeMismatchIsAnError(t *testing.T) {
	a := Zeros(2, 3)
	b := Zeros(4, 5)
	c := a.Matmul(b)
	err := c.Err()
	if err == nil {
		t.Fatal("matmul of [2,3] x [4,5] did not fail")
	}
	var te *Error
	if !errors.As(err, &te) || te.Op != "matmul" {
		t.Fatalf("error %v is not a torch.Error for matmul", err)
	}
	if strings.Contains(err.Error(), "frame #") {
		t.Fatalf("error carries a C++ backtrace: %q", err)
	}
	// The error is sticky: later ops pass it along without calling libtorch.
	d := c.Relu().AddScalar(1).Sum()
	if !errors.Is(d.Err(), err) && d.Err().Error() != err.Error() {
		t.Fatalf("sticky error lost: %v", d.Err())
	}
	if _, err := d.Item(); err == nil {
		t.Fatal("Item on failed tensor returned no error")
	}
	// conv with wrong channel count
	x := Zeros(1, 3, 8, 8)
	w := Zeros(4, 2, 3, 3)
	if err := x.Conv2d(w, nil, ConvOptions{}).Err(); err == nil {
		t.Fatal("conv2d with wrong in-channels did not fail")
	}
	if _, err := Zeros(2).Item(); err == nil {
		t.Fatal("Item of a 2-element tensor did not fail")
	}
}

func TestScopeFreesEverything(t *testing.T) {
	before := LiveTensors()
	var kept *Tensor
	err := Run(func(s *Scope) error {
		x := s.Adopt(FromFloat32([]float32{1, 2, 3, 4}, 2, 2))
		y := x.Mul(x).AddScalar(1).Exp().Sum()
		kept = s.Keep(y)
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if got := LiveTensors() - before; got != 1 {
		t.Fatalf("after the scope %d tensors are alive, want 1 (the kept one)", got)
	}
	v, err := kept.Item()
	if err != nil {
		t.Fatal(err)
	}
	want := math.Exp(2) + math.Exp(5) + math.Exp(10) + math.Exp(17)
	if !near(v, want, 1e-6) {
		t.Fatalf("got %v want %v", v, want)
	}
	kept.Free()
	if LiveTensors() != before {
		t.Fatalf("leak: %d", LiveTensors()-before)
	}
	// Using a tensor of a closed scope is an error, not a crash.
	var stale *Tensor
	_ = Run(func(s *Scope) error { stale = s.Adopt(Zeros(2)); return nil })
	if err := stale.AddScalar(1).Err(); !strings.Contains(err.Error(), ErrFreed.Error()) {
		t.Fatalf("use after free: %v", err)
	}
}

func TestChildScopeKeepMovesToParent(t *testing.T) {
	parent := NewScope()
	child := parent.Child()
	x := child.Adopt(Ones(3))
	y := child.Keep(x.MulScalar(2))
	child.Close()
	if err := y.Err(); err != nil {
		t.Fatalf("kept tensor freed with the child: %v", err)
	}
	if parent.Len() != 1 {
		t.Fatalf("parent owns %d tensors, want 1", parent.Len())
	}
	parent.Close()
	if y.Err() == nil {
		t.Fatal("parent close did not free the kept tensor")
	}
}

func TestAutogradAndDoubleBackward(t *testing.T) {
	s := NewScope()
	defer s.Close()
	x := s.Adopt(FromFloat32([]float32{0.5, -1.5, 2}, 3)).SetRequiresGrad(true)
	// f = sum(x^3); df/dx = 3x^2; d/dx sum(df/dx) = 6x
	f := x.PowScalar(3).Sum()
	g, err := Grad([]*Tensor{f}, []*Tensor{x}, GradOptions{CreateGraph: true})
	if err != nil {
		t.Fatal(err)
	}
	gv := mustF32(t, g[0])
	for i, xv := range []float64{0.5, -1.5, 2} {
		if !near(float64(gv[i]), 3*xv*xv, 1e-6) {
			t.Fatalf("first derivative %v", gv)
		}
	}
	if err := g[0].Sum().Backward(); err != nil {
		t.Fatal(err)
	}
	hv := mustF32(t, x.Grad())
	for i, xv := range []float64{0.5, -1.5, 2} {
		if !near(float64(hv[i]), 6*xv, 1e-6) {
			t.Fatalf("second derivative %v", hv)
		}
	}
	if err := x.ZeroGrad(false); err != nil {
		t.Fatal(err)
	}
	if v := mustF32(t, x.Grad()); v[0] != 0 || v[2] != 0 {
		t.Fatalf("zero_grad left %v", v)
	}
	// backward twice through the same graph needs retain_graph
	y := x.Square().Sum()
	if err := y.BackwardWith(nil, true, false); err != nil {
		t.Fatal(err)
	}
	if err := y.Backward(); err != nil {
		t.Fatalf("second backward with retained graph: %v", err)
	}
	if err := y.Backward(); err == nil {
		t.Fatal("third backward after the graph was freed should fail")
	}
}

func TestNoGrad(t *testing.T) {
	s := NewScope()
	defer s.Close()
	x := s.Adopt(Ones(2)).SetRequiresGrad(true)
	var y *Tensor
	if err := NoGrad(func() error {
		y = x.MulScalar(3)
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	if y.RequiresGrad() {
		t.Fatal("op under NoGrad requires grad")
	}
	if !x.MulScalar(3).RequiresGrad() {
		t.Fatal("grad mode not restored after NoGrad")
	}
}

func TestSeededRandomIsReproducible(t *testing.T) {
	draw := func() ([]float32, []int64) {
		g, err := NewGenerator(42)
		if err != nil {
			t.Fatal(err)
		}
		a := mustF32(t, Randn(g, 5))
		p, err := Randperm(g, 6).Int64s()
		if err != nil {
			t.Fatal(err)
		}
		return a, p
	}
	a1, p1 := draw()
	a2, p2 := draw()
	for i := range a1 {
		if a1[i] != a2[i] {
			t.Fatal("randn not reproducible")
		}
	}
	for i := range p1 {
		if p1[i] != p2[i] {
			t.Fatal("randperm not reproducible")
		}
	}
	// Same stream as torch.manual_seed(0); torch.randn(3) in PyTorch 1.13.
	if err := ManualSeed(0); err != nil {
		t.Fatal(err)
	}
	r := mustF32(t, Randn(nil, 3))
	want := []float64{1.5409960746765137, -0.293428897857666, -2.1787893772125244}
	for i := range want {
		if !near(float64(r[i]), want[i], 1e-6) {
			t.Fatalf("randn after manual_seed(0) = %v, want %v", r, want)
		}
	}
	b := mustF32(t, Full([]int64{1000}, 0.3, Float32, CPU).Bernoulli(nil))
	sum := 0.0
	for _, v := range b {
		if v != 0 && v != 1 {
			t.Fatalf("bernoulli gave %v", v)
		}
		sum += float64(v)
	}
	if sum < 230 || sum > 370 {
		t.Fatalf("bernoulli(0.3) mean %v", sum/1000)
	}
}

func TestGeneratorStateRoundTrip(t *testing.T) {
	g, _ := NewGenerator(9)
	Randn(g, 7).Free()
	st, err := g.State()
	if err != nil {
		t.Fatal(err)
	}
	a := mustF32(t, Randn(g, 4))
	h, _ := NewGenerator(1)
	if err := h.SetState(st); err != nil {
		t.Fatal(err)
	}
	b := mustF32(t, Randn(h, 4))
	for i := range a {
		if a[i] != b[i] {
			t.Fatalf("restored stream differs: %v vs %v", a, b)
		}
	}
	if err := h.SetState([]byte{1, 2, 3}); err == nil {
		t.Fatal("a short state was accepted")
	}
}

func TestCUDADeviceErrorIsClear(t *testing.T) {
	if CUDAAvailable() {
		t.Skip("CUDA present")
	}
	_, err := ParseDevice("cuda")
	if err == nil || !strings.Contains(err.Error(), "no CUDA support") {
		t.Fatalf("ParseDevice(cuda) = %v", err)
	}
	if _, err := ParseDevice("tpu"); err == nil {
		t.Fatal("unknown device accepted")
	}
}

func TestThreads(t *testing.T) {
	if NumThreads() != runtime.NumCPU() {
		t.Fatalf("default threads %d, want %d", NumThreads(), runtime.NumCPU())
	}
	SetNumThreads(1)
	if NumThreads() != 1 {
		t.Fatal("SetNumThreads(1) ignored")
	}
	SetNumThreads(0)
	if Version() == "" || !strings.HasPrefix(Version(), "1.") && !strings.HasPrefix(Version(), "2.") {
		t.Fatalf("version %q", Version())
	}
}

// TestThreadCountReachesEveryOSThread changes the thread count while other
// OS threads that already ran ops are alive: OpenMP keeps the count per
// thread and libtorch initialises it only on a thread's first op, so each of
// those threads must pick up the new request by itself.
func TestThreadCountReachesEveryOSThread(t *testing.T) {
	if runtime.NumCPU() < 2 {
		t.Skip("needs 2 CPUs to tell 1 thread from the default")
	}
	SetNumThreads(0)
	defer SetNumThreads(0)
	const n = 6
	ready, answers := make(chan struct{}, n), make(chan int, n)
	proceed, release := make(chan struct{}), make(chan struct{})
	for i := 0; i < n; i++ {
		go func() {
			runtime.LockOSThread() // hold distinct OS threads at the same time
			defer runtime.UnlockOSThread()
			x := Ones(4, 4)
			x.Matmul(x).Free()
			if NumThreads() != runtime.NumCPU() { // this thread is now set up with the default count
				t.Errorf("default thread count %d", NumThreads())
			}
			ready <- struct{}{}
			<-proceed
			x.Matmul(x).Free()
			x.Free()
			answers <- NumThreads()
			<-release
		}()
	}
	for i := 0; i < n; i++ {
		<-ready
	}
	SetNumThreads(1)
	close(proceed)
	for i := 0; i < n; i++ {
		if v := <-answers; v != 1 {
			t.Errorf("an OS thread runs ops with %d threads after SetNumThreads(1)", v)
		}
	}
	close(release)
}

// rssKiB reads the resident set size of this process.
func rssKiB(t *testing.T) int64 {
	b, err := os.ReadFile("/proc/self/status")
	if err != nil {
		t.Skip("no /proc/self/status")
	}
	for _, line := range strings.Split(string(b), "\n") {
		if v, ok := strings.CutPrefix(line, "VmRSS:"); ok {
			n, _ := strconv.ParseInt(strings.Fields(v)[0], 10, 64)
			return n
		}
	}
	t.Skip("no VmRSS")
	return 0
}

// TestMemoryStaysFlat runs 5,000 forward+backward+update steps of a small conv
// net and checks that neither live handles nor RSS grow after warm-up.
func TestMemoryStaysFlat(t *testing.T) {
	steps := 5000
	if testing.Short() {
		steps = 500
	}
	g, _ := NewGenerator(1)
	w1 := Randn(g, 8, 1, 3, 3).MulScalar(0.3).SetRequiresGrad(true)
	b1 := Zeros(8).SetRequiresGrad(true)
	w2 := Randn(g, 1, 8, 3, 3).MulScalar(0.1).SetRequiresGrad(true)
	rm, rv := Zeros(8), Ones(8)
	params := []*Tensor{w1, b1, w2}
	data := make([]float32, 4*16*16)
	for i := range data {
		data[i] = float32(math.Sin(float64(i)))
	}
	step := func() error {
		return Run(func(s *Scope) error {
			x := s.Adopt(FromFloat32(data, 4, 1, 16, 16))
			h := x.Conv2d(w1, b1, ConvOptions{Padding: [2]int64{1, 1}}).BatchNorm(nil, nil, rm, rv, true, 0.1, 1e-5).LeakyRelu(0.2)
			h = h.AvgPool2d(2, 2, 0).UpsampleNearest2d(16, 16)
			y := h.Conv2d(w2, nil, ConvOptions{Padding: [2]int64{1, 1}})
			loss := y.Sub(x).Abs().Mean()
			if err := loss.Backward(); err != nil {
				return err
			}
			for _, p := range params {
				gr := s.Adopt(p.Grad())
				if err := p.AddInPlace(gr, -1e-3); err != nil {
					return err
				}
				if err := p.ZeroGrad(true); err != nil {
					return err
				}
			}
			return nil
		})
	}
	warm := steps / 10
	for i := 0; i < warm; i++ {
		if err := step(); err != nil {
			t.Fatal(err)
		}
	}
	runtime.GC()
	live0, rss0 := LiveTensors(), rssKiB(t)
	for i := warm; i < steps; i++ {
		if err := step(); err != nil {
			t.Fatal(err)
		}
	}
	runtime.GC()
	live1, rss1 := LiveTensors(), rssKiB(t)
	if live1 > live0 {
		t.Fatalf("live tensor handles grew from %d to %d over %d steps", live0, live1, steps-warm)
	}
	if float64(rss1) > 1.10*float64(rss0) {
		t.Fatalf("RSS grew from %d KiB to %d KiB (more than 10%%) over %d steps", rss0, rss1, steps-warm)
	}
	t.Logf("RSS after warm-up %d KiB, after %d steps %d KiB", rss0, steps, rss1)
}

func TestSetBLASThreads(t *testing.T) {
	before := BLASThreads()
	if before == 0 {
		if SetBLASThreads(1) {
			t.Fatal("SetBLASThreads reports OpenBLAS but BLASThreads found none")
		}
		t.Skip("libtorch's BLAS is not OpenBLAS")
	}
	defer SetBLASThreads(before)
	if !SetBLASThreads(1) || BLASThreads() != 1 {
		t.Fatalf("after SetBLASThreads(1): %d OpenBLAS threads", BLASThreads())
	}
	// A product still works with the pool asleep.
	a := FromFloat32([]float32{1, 2, 3, 4}, 2, 2)
	defer a.Free()
	p := a.Matmul(a)
	defer p.Free()
	got, err := p.Float32s()
	if err != nil {
		t.Fatal(err)
	}
	if want := []float32{7, 10, 15, 22}; !slices.Equal(got, want) {
		t.Fatalf("matmul with one OpenBLAS thread: %v, want %v", got, want)
	}
}

// The thresholds of package doc "Memory of libtorch" must reach glibc (it
// refuses values it deems too large), or every step page-faults again.
func TestMallocThresholdsApplied(t *testing.T) {
	if os.Getenv("MALLOC_MMAP_THRESHOLD_") != "" || os.Getenv("MALLOC_TRIM_THRESHOLD_") != "" {
		t.Skip("the environment sets a malloc threshold; init leaves them alone")
	}
	if !mallocThresholdsSet {
		t.Fatal("glibc refused the mmap or trim threshold")
	}
	env := strings.Join(MallocEnv(), " ")
	for _, want := range []string{"MALLOC_MMAP_THRESHOLD_=268435456", "MALLOC_TRIM_THRESHOLD_=1073741824"} {
		if !strings.Contains(env, want) {
			t.Errorf("MallocEnv() = %q, missing %s", env, want)
		}
	}
}
