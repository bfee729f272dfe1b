package torch

/*
#include "shim.h"
*/
import "C"

import (
	"errors"
	"fmt"
	"runtime"
	"strings"
	"sync"
	"sync/atomic"
	"time"
	"unsafe"
)

// DType is a tensor element type.
type DType int

// The element types the binding moves across cgo.
const (
	Float32 DType = C.MT_FLOAT32
	Float64 DType = C.MT_FLOAT64
	Int64   DType = C.MT_INT64
	Bool    DType = C.MT_BOOL
	Uint8   DType = C.MT_UINT8
	Int32   DType = C.MT_INT32
	// Float16 and BFloat16 are reduced-precision storage and arithmetic
	// types; Go reads them as float32 (Float32s converts).
	Float16  DType = C.MT_FLOAT16
	BFloat16 DType = C.MT_BFLOAT16
)

func (d DType) String() string {
	switch d {
	case Float32:
		return "float32"
	case Float64:
		return "float64"
	case Int64:
		return "int64"
	case Bool:
		return "bool"
	case Uint8:
		return "uint8"
	case Int32:
		return "int32"
	case Float16:
		return "float16"
	case BFloat16:
		return "bfloat16"
	}
	return fmt.Sprintf("dtype(%d)", int(d))
}

func (d DType) size() int {
	switch d {
	case Float64, Int64:
		return 8
	case Float32, Int32:
		return 4
	case Float16, BFloat16:
		return 2
	}
	return 1
}

// DeviceKind tells CPU from CUDA.
type DeviceKind int

// Device kinds.
const (
	KindCPU DeviceKind = iota
	KindCUDA
)

// Device is where a tensor's storage lives.
type Device struct {
	Kind  DeviceKind
	Index int
}

// CPU is the host device.
var CPU = Device{Kind: KindCPU}

func (d Device) String() string {
	if d.Kind == KindCPU {
		return "cpu"
	}
	return fmt.Sprintf("cuda:%d", d.Index)
}

// ParseDevice reads "cpu", "cuda" or "cuda:N" and checks that the linked
// libtorch can use it.
func ParseDevice(s string) (Device, error) {
	switch {
	case s == "" || s == "cpu":
		return CPU, nil
	case s == "cuda" || strings.HasPrefix(s, "cuda:"):
		idx := 0
		if rest, ok := strings.CutPrefix(s, "cuda:"); ok {
			if _, err := fmt.Sscanf(rest, "%d", &idx); err != nil || idx < 0 {
				return CPU, fmt.Errorf("device %q: bad CUDA index", s)
			}
		}
		if !CUDAAvailable() {
			return CPU, fmt.Errorf("device %q: the linked libtorch %s has no CUDA support (Debian's libtorch-dev is CPU-only); "+
				"build against a CUDA libtorch with CGO_CXXFLAGS/CGO_LDFLAGS as the README explains, or use --device cpu", s, Version())
		}
		if n := CUDADeviceCount(); idx >= n {
			return CPU, fmt.Errorf("device %q: only %d CUDA device(s) visible", s, n)
		}
		return Device{Kind: KindCUDA, Index: idx}, nil
	}
	return CPU, fmt.Errorf("unknown device %q (want cpu, cuda or cuda:N)", s)
}

// liveTensors counts handles that have not been freed; tests use it to prove
// that a training step releases everything it creates.
var liveTensors atomic.Int64

// LiveTensors is the number of tensor handles currently allocated.
func LiveTensors() int64 { return liveTensors.Load() }

// SettleFinalizers runs the garbage collector until the finalizers of
// unreachable tensors (left by earlier tests) have run, so that LiveTensors
// counts only what is still in use. Leak tests take their starting count
// after it.
func SettleFinalizers() {
	for range 3 {
		runtime.GC()
		time.Sleep(10 * time.Millisecond)
	}
}

// Tensor is a handle to a libtorch tensor, with a sticky error (see package doc).
type Tensor struct {
	h     C.mt_tensor
	err   error
	scope *Scope
}

// ErrFreed is returned when a tensor is used after its scope closed or Free.
var ErrFreed = errors.New("tensor used after it was freed")

// Err returns the first error met while computing t, or nil.
func (t *Tensor) Err() error {
	if t == nil {
		return errors.New("torch: nil tensor")
	}
	if t.err != nil {
		return t.err
	}
	if t.h == nil {
		return &Error{Op: "use", Msg: ErrFreed.Error()}
	}
	return nil
}

// Failed returns a tensor that carries err; ops on it do nothing.
func Failed(err error) *Tensor { return &Tensor{err: err} }

// Free releases the tensor now. It is safe to call twice and on failed tensors.
func (t *Tensor) Free() {
	if t == nil || t.h == nil {
		return
	}
	C.mt_free(t.h)
	t.h = nil
	liveTensors.Add(-1)
	runtime.SetFinalizer(t, nil)
}

func (t *Tensor) finalize() {
	if t.h != nil {
		C.mt_free(t.h)
		t.h = nil
		liveTensors.Add(-1)
	}
}

// wrap turns a fresh handle into a Tensor owned by scope s (nil: unscoped).
func wrap(h C.mt_tensor, s *Scope) *Tensor {
	liveTensors.Add(1)
	t := &Tensor{h: h}
	if s != nil && s.add(t) {
		return t
	}
	runtime.SetFinalizer(t, (*Tensor).finalize)
	return t
}

// Scope frees, on Close, every tensor created in it. The result of an op
// belongs to the scope of its first scoped operand; tensors made from Go data
// or by factories join a scope through Adopt.
type Scope struct {
	mu      sync.Mutex
	tensors []*Tensor
	parent  *Scope
	closed  bool
}

// NewScope returns an empty root scope.
func NewScope() *Scope { return &Scope{} }

// Child returns a scope whose kept tensors move to s.
func (s *Scope) Child() *Scope { return &Scope{parent: s} }

func (s *Scope) add(t *Tensor) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return false
	}
	t.scope = s
	s.tensors = append(s.tensors, t)
	return true
}

// Adopt moves an unscoped tensor into s and returns it, so that Close frees it.
func (s *Scope) Adopt(t *Tensor) *Tensor {
	if t == nil || t.h == nil || t.scope == s {
		return t
	}
	if t.scope != nil {
		t.scope.remove(t)
	}
	runtime.SetFinalizer(t, nil)
	if !s.add(t) {
		runtime.SetFinalizer(t, (*Tensor).finalize)
		t.scope = nil
	}
	return t
}

func (s *Scope) remove(t *Tensor) {
	s.mu.Lock()
	defer s.mu.Unlock()
	for i, u := range s.tensors {
		if u == t {
			s.tensors[i] = nil
			break
		}
	}
	t.scope = nil
}

// Keep takes t out of s so that Close does not free it: t moves to the parent
// scope, or becomes the caller's (free it with Free) when s is a root scope.
func (s *Scope) Keep(t *Tensor) *Tensor {
	if t == nil || t.scope != s {
		return t
	}
	s.remove(t)
	if s.parent != nil && s.parent.add(t) {
		return t
	}
	runtime.SetFinalizer(t, (*Tensor).finalize)
	return t
}

// Close frees every tensor still in s. Later ops on them fail with ErrFreed.
func (s *Scope) Close() {
	s.mu.Lock()
	ts := s.tensors
	s.tensors = nil
	s.closed = true
	s.mu.Unlock()
	for _, t := range ts {
		if t != nil && t.scope == s {
			t.Free()
			t.scope = nil
		}
	}
}

// Len is the number of tensors s currently owns.
func (s *Scope) Len() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	n := 0
	for _, t := range s.tensors {
		if t != nil && t.scope == s {
			n++
		}
	}
	return n
}

// Run calls fn with a fresh scope and frees the scope's tensors when fn returns.
func Run(fn func(s *Scope) error) error {
	s := NewScope()
	defer s.Close()
	return fn(s)
}

// scopeOf picks the owner of an op's result.
func scopeOf(operands ...*Tensor) *Scope {
	for _, t := range operands {
		if t != nil && t.scope != nil {
			return t.scope
		}
	}
	return nil
}

// precheck returns a failed tensor when an operand is unusable.
func precheck(op string, operands ...*Tensor) *Tensor {
	for _, t := range operands {
		if t == nil {
			return Failed(&Error{Op: op, Msg: "nil tensor operand"})
		}
		if t.err != nil {
			return t
		}
		if t.h == nil {
			return Failed(&Error{Op: op, Msg: ErrFreed.Error()})
		}
	}
	return nil
}

// result wraps the outcome of a shim call.
func result(op string, e C.mt_err, h C.mt_tensor, operands ...*Tensor) *Tensor {
	if err := cerror(op, e); err != nil {
		return Failed(err)
	}
	return wrap(h, scopeOf(operands...))
}

// optHandle maps an optional tensor (nil allowed) to its handle.
func optHandle(t *Tensor) C.mt_tensor {
	if t == nil {
		return nil
	}
	return t.h
}

func fromData(op string, data unsafe.Pointer, n int, dtype DType, shape []int64) *Tensor {
	if err := checkShape(op, shape, n); err != nil {
		return Failed(err)
	}
	var h C.mt_tensor
	if n == 0 {
		data = nil
	}
	return result(op, C.mt_from_data(data, C.int(dtype), int64Ptr(shape), C.int(len(shape)), 0, 0, &h), h)
}

func checkShape(op string, shape []int64, n int) error {
	want := int64(1)
	for _, d := range shape {
		if d < 0 {
			return &Error{Op: op, Msg: "negative dimension in shape " + shapeString(shape)}
		}
		want *= d
	}
	if want != int64(n) {
		return &Error{Op: op, Msg: fmt.Sprintf("%d values do not fill shape %s (%d elements)", n, shapeString(shape), want)}
	}
	return nil
}

// FromFloat32 copies data into a new CPU float32 tensor of the given shape.
func FromFloat32(data []float32, shape ...int64) *Tensor {
	var p unsafe.Pointer
	if len(data) > 0 {
		p = unsafe.Pointer(&data[0])
	}
	return fromData("from_float32", p, len(data), Float32, shape)
}

// FromFloat64 copies data into a new CPU float64 tensor.
func FromFloat64(data []float64, shape ...int64) *Tensor {
	var p unsafe.Pointer
	if len(data) > 0 {
		p = unsafe.Pointer(&data[0])
	}
	return fromData("from_float64", p, len(data), Float64, shape)
}

// FromInt64 copies data into a new CPU int64 tensor.
func FromInt64(data []int64, shape ...int64) *Tensor {
	var p unsafe.Pointer
	if len(data) > 0 {
		p = unsafe.Pointer(&data[0])
	}
	return fromData("from_int64", p, len(data), Int64, shape)
}

// Scalar returns a 0-dimensional float32 tensor.
func Scalar(v float32) *Tensor { return FromFloat32([]float32{v}) }

// Full returns a tensor of the given shape, dtype and device filled with v.
func Full(shape []int64, v float64, dtype DType, dev Device) *Tensor {
	var h C.mt_tensor
	return result("full", C.mt_full(int64Ptr(shape), C.int(len(shape)), C.double(v), C.int(dtype), C.int(dev.Kind), C.int(dev.Index), &h), h)
}

// Zeros returns a float32 CPU tensor of zeros.
func Zeros(shape ...int64) *Tensor { return Full(shape, 0, Float32, CPU) }

// Ones returns a float32 CPU tensor of ones.
func Ones(shape ...int64) *Tensor { return Full(shape, 1, Float32, CPU) }

// Randn samples a float32 tensor from N(0, 1).
func Randn(g *Generator, shape ...int64) *Tensor {
	var h C.mt_tensor
	return result("randn", C.mt_randn(int64Ptr(shape), C.int(len(shape)), g.handle(), &h), h)
}

// Rand samples a float32 tensor from U[0, 1).
func Rand(g *Generator, shape ...int64) *Tensor {
	var h C.mt_tensor
	return result("rand", C.mt_rand(int64Ptr(shape), C.int(len(shape)), g.handle(), &h), h)
}

// Bernoulli draws 0/1 with the probabilities in t.
func (t *Tensor) Bernoulli(g *Generator) *Tensor {
	if bad := precheck("bernoulli", t); bad != nil {
		return bad
	}
	var h C.mt_tensor
	return result("bernoulli", C.mt_bernoulli(t.h, g.handle(), &h), h, t)
}

// Randperm returns a random permutation of 0..n-1 as int64.
func Randperm(g *Generator, n int64) *Tensor {
	var h C.mt_tensor
	return result("randperm", C.mt_randperm(C.int64_t(n), g.handle(), &h), h)
}

// Arange returns 0..n-1.
func Arange(n int64, dtype DType) *Tensor {
	var h C.mt_tensor
	return result("arange", C.mt_arange(C.int64_t(n), C.int(dtype), &h), h)
}

// Dim is the number of dimensions (0 for failed tensors).
func (t *Tensor) Dim() int {
	if t.Err() != nil {
		return 0
	}
	return int(C.mt_ndim(t.h))
}

// Shape returns the sizes of t (nil for failed tensors).
func (t *Tensor) Shape() []int64 {
	if t.Err() != nil {
		return nil
	}
	n := int(C.mt_ndim(t.h))
	out := make([]int64, n)
	if n > 0 {
		C.mt_shape(t.h, int64Ptr(out))
	}
	return out
}

// Size returns the size of dimension d (negative d counts from the end).
func (t *Tensor) Size(d int) int64 {
	s := t.Shape()
	if d < 0 {
		d += len(s)
	}
	if d < 0 || d >= len(s) {
		return 0
	}
	return s[d]
}

// Numel is the number of elements.
func (t *Tensor) Numel() int64 {
	n := int64(1)
	for _, d := range t.Shape() {
		n *= d
	}
	return n
}

// DType is t's element type (-1 for failed tensors or types the binding does not move).
func (t *Tensor) DType() DType {
	if t.Err() != nil {
		return -1
	}
	return DType(C.mt_dtype(t.h))
}

// Device is where t lives.
func (t *Tensor) Device() Device {
	if t.Err() != nil {
		return CPU
	}
	return Device{Kind: DeviceKind(C.mt_device_type(t.h)), Index: int(C.mt_device_index(t.h))}
}

// String describes t (shape, dtype, device), not its values.
func (t *Tensor) String() string {
	if err := t.Err(); err != nil {
		return "Tensor(error: " + err.Error() + ")"
	}
	return fmt.Sprintf("Tensor(%s, %s, %s)", shapeString(t.Shape()), t.DType(), t.Device())
}

func (t *Tensor) copyOut(op string, dst unsafe.Pointer, n int, dtype DType) error {
	if err := t.Err(); err != nil {
		return err
	}
	return cerror(op, C.mt_copy_to(t.h, dst, C.int64_t(n*dtype.size()), C.int(dtype)))
}

// Float32s copies t (converted to float32, made contiguous, moved to CPU) into a new slice.
func (t *Tensor) Float32s() ([]float32, error) {
	if err := t.Err(); err != nil {
		return nil, err
	}
	out := make([]float32, t.Numel())
	var p unsafe.Pointer
	if len(out) > 0 {
		p = unsafe.Pointer(&out[0])
	}
	return out, t.copyOut("float32s", p, len(out), Float32)
}

// CopyToFloat32 copies t into dst, which must hold exactly Numel values.
func (t *Tensor) CopyToFloat32(dst []float32) error {
	var p unsafe.Pointer
	if len(dst) > 0 {
		p = unsafe.Pointer(&dst[0])
	}
	return t.copyOut("copy_to_float32", p, len(dst), Float32)
}

// Float64s copies t converted to float64.
func (t *Tensor) Float64s() ([]float64, error) {
	if err := t.Err(); err != nil {
		return nil, err
	}
	out := make([]float64, t.Numel())
	var p unsafe.Pointer
	if len(out) > 0 {
		p = unsafe.Pointer(&out[0])
	}
	return out, t.copyOut("float64s", p, len(out), Float64)
}

// Int64s copies t converted to int64.
func (t *Tensor) Int64s() ([]int64, error) {
	if err := t.Err(); err != nil {
		return nil, err
	}
	out := make([]int64, t.Numel())
	var p unsafe.Pointer
	if len(out) > 0 {
		p = unsafe.Pointer(&out[0])
	}
	return out, t.copyOut("int64s", p, len(out), Int64)
}

// Item returns the value of a one-element tensor.
func (t *Tensor) Item() (float64, error) {
	if err := t.Err(); err != nil {
		return 0, err
	}
	var v C.double
	if err := cerror("item", C.mt_item(t.h, &v)); err != nil {
		return 0, err
	}
	return float64(v), nil
}

// To converts t to another element type.
func (t *Tensor) To(dtype DType) *Tensor { return t.ToDevice(dtype, t.Device()) }

// ToDevice converts t to dtype on dev.
func (t *Tensor) ToDevice(dtype DType, dev Device) *Tensor {
	if bad := precheck("to", t); bad != nil {
		return bad
	}
	var h C.mt_tensor
	return result("to", C.mt_to(t.h, C.int(dtype), C.int(dev.Kind), C.int(dev.Index), &h), h, t)
}

// Clone copies t (the copy stays in the autograd graph).
func (t *Tensor) Clone() *Tensor {
	if bad := precheck("clone", t); bad != nil {
		return bad
	}
	var h C.mt_tensor
	return result("clone", C.mt_clone(t.h, &h), h, t)
}

// Contiguous returns t laid out densely in row-major order.
func (t *Tensor) Contiguous() *Tensor {
	if bad := precheck("contiguous", t); bad != nil {
		return bad
	}
	var h C.mt_tensor
	return result("contiguous", C.mt_contiguous(t.h, &h), h, t)
}

// Detach returns a view of t outside the autograd graph.
func (t *Tensor) Detach() *Tensor {
	if bad := precheck("detach", t); bad != nil {
		return bad
	}
	var h C.mt_tensor
	return result("detach", C.mt_detach(t.h, &h), h, t)
}

// Alias returns a second handle to the same tensor (same storage and graph),
// useful to hand a parameter to a scope without giving up the original.
func (t *Tensor) Alias() *Tensor {
	if bad := precheck("alias", t); bad != nil {
		return bad
	}
	var h C.mt_tensor
	return result("alias", C.mt_alias(t.h, &h), h, t)
}

// AliasIn returns a handle to t (same storage, same autograd node) owned by s,
// so that ops on an unscoped tensor such as a parameter produce scoped results.
func (s *Scope) AliasIn(t *Tensor) *Tensor { return s.Adopt(t.Alias()) }
