package torch

/*
#include "shim.h"
*/
import "C"

import "sync/atomic"

func (t *Tensor) binary(op string, code C.int, o *Tensor) *Tensor {
	if bad := precheck(op, t, o); bad != nil {
		return bad
	}
	var h C.mt_tensor
	return result(op, C.mt_binary(code, t.h, o.h, &h), h, t, o)
}

func (t *Tensor) binaryScalar(op string, code C.int, s float64) *Tensor {
	if bad := precheck(op, t); bad != nil {
		return bad
	}
	var h C.mt_tensor
	return result(op, C.mt_binary_scalar(code, t.h, C.double(s), &h), h, t)
}

func (t *Tensor) unary(op string, code C.int) *Tensor {
	if bad := precheck(op, t); bad != nil {
		return bad
	}
	var h C.mt_tensor
	return result(op, C.mt_unary(code, t.h, &h), h, t)
}

// Elementwise arithmetic with broadcasting, as in ATen.

func (t *Tensor) Add(o *Tensor) *Tensor       { return t.binary("add", C.MT_ADD, o) }
func (t *Tensor) Sub(o *Tensor) *Tensor       { return t.binary("sub", C.MT_SUB, o) }
func (t *Tensor) Mul(o *Tensor) *Tensor       { return t.binary("mul", C.MT_MUL, o) }
func (t *Tensor) Div(o *Tensor) *Tensor       { return t.binary("div", C.MT_DIV, o) }
func (t *Tensor) Pow(o *Tensor) *Tensor       { return t.binary("pow", C.MT_POW, o) }
func (t *Tensor) Maximum(o *Tensor) *Tensor   { return t.binary("maximum", C.MT_MAXIMUM, o) }
func (t *Tensor) Minimum(o *Tensor) *Tensor   { return t.binary("minimum", C.MT_MINIMUM, o) }
func (t *Tensor) Eq(o *Tensor) *Tensor        { return t.binary("eq", C.MT_EQ, o) }
func (t *Tensor) Ne(o *Tensor) *Tensor        { return t.binary("ne", C.MT_NE, o) }
func (t *Tensor) Gt(o *Tensor) *Tensor        { return t.binary("gt", C.MT_GT, o) }
func (t *Tensor) Ge(o *Tensor) *Tensor        { return t.binary("ge", C.MT_GE, o) }
func (t *Tensor) Lt(o *Tensor) *Tensor        { return t.binary("lt", C.MT_LT, o) }
func (t *Tensor) Le(o *Tensor) *Tensor        { return t.binary("le", C.MT_LE, o) }
func (t *Tensor) AddScalar(s float64) *Tensor { return t.binaryScalar("add", C.MT_ADD, s) }
func (t *Tensor) SubScalar(s float64) *Tensor { return t.binaryScalar("sub", C.MT_SUB, s) }
func (t *Tensor) MulScalar(s float64) *Tensor { return t.binaryScalar("mul", C.MT_MUL, s) }
func (t *Tensor) DivScalar(s float64) *Tensor { return t.binaryScalar("div", C.MT_DIV, s) }
func (t *Tensor) PowScalar(s float64) *Tensor { return t.binaryScalar("pow", C.MT_POW, s) }

// RSubScalar returns s - t.
func (t *Tensor) RSubScalar(s float64) *Tensor { return t.binaryScalar("rsub", C.MT_RSUB, s) }
func (t *Tensor) ClampMin(s float64) *Tensor   { return t.binaryScalar("clamp_min", C.MT_MAXIMUM, s) }
func (t *Tensor) ClampMax(s float64) *Tensor   { return t.binaryScalar("clamp_max", C.MT_MINIMUM, s) }
func (t *Tensor) EqScalar(s float64) *Tensor   { return t.binaryScalar("eq", C.MT_EQ, s) }
func (t *Tensor) GtScalar(s float64) *Tensor   { return t.binaryScalar("gt", C.MT_GT, s) }
func (t *Tensor) GeScalar(s float64) *Tensor   { return t.binaryScalar("ge", C.MT_GE, s) }
func (t *Tensor) LtScalar(s float64) *Tensor   { return t.binaryScalar("lt", C.MT_LT, s) }
func (t *Tensor) LeScalar(s float64) *Tensor   { return t.binaryScalar("le", C.MT_LE, s) }

func (t *Tensor) Neg() *Tensor      { return t.unary("neg", C.MT_NEG) }
func (t *Tensor) Abs() *Tensor      { return t.unary("abs", C.MT_ABS) }
func (t *Tensor) Sqrt() *Tensor     { return t.unary("sqrt", C.MT_SQRT) }
func (t *Tensor) Rsqrt() *Tensor    { return t.unary("rsqrt", C.MT_RSQRT) }
func (t *Tensor) Exp() *Tensor      { return t.unary("exp", C.MT_EXP) }
func (t *Tensor) Log() *Tensor      { return t.unary("log", C.MT_LOG) }
func (t *Tensor) Log1p() *Tensor    { return t.unary("log1p", C.MT_LOG1P) }
func (t *Tensor) Relu() *Tensor     { return t.unary("relu", C.MT_RELU) }
func (t *Tensor) Tanh() *Tensor     { return t.unary("tanh", C.MT_TANH) }
func (t *Tensor) Sigmoid() *Tensor  { return t.unary("sigmoid", C.MT_SIGMOID) }
func (t *Tensor) Sign() *Tensor     { return t.unary("sign", C.MT_SIGN) }
func (t *Tensor) Square() *Tensor   { return t.unary("square", C.MT_SQUARE) }
func (t *Tensor) Floor() *Tensor    { return t.unary("floor", C.MT_FLOOR) }
func (t *Tensor) Round() *Tensor    { return t.unary("round", C.MT_ROUND) }
func (t *Tensor) IsNaN() *Tensor    { return t.unary("isnan", C.MT_ISNAN) }
func (t *Tensor) IsFinite() *Tensor { return t.unary("isfinite", C.MT_ISFINITE) }

// LeakyRelu is max(x, slope*x).
func (t *Tensor) LeakyRelu(slope float64) *Tensor {
	if bad := precheck("leaky_relu", t); bad != nil {
		return bad
	}
	var h C.mt_tensor
	return result("leaky_relu", C.mt_leaky_relu(t.h, C.double(slope), &h), h, t)
}

// Clamp limits values to [lo, hi].
func (t *Tensor) Clamp(lo, hi float64) *Tensor {
	if bad := precheck("clamp", t); bad != nil {
		return bad
	}
	var h C.mt_tensor
	return result("clamp", C.mt_clamp(t.h, 1, C.double(lo), 1, C.double(hi), &h), h, t)
}

// Where picks a where cond is true and b elsewhere.
func Where(cond, a, b *Tensor) *Tensor {
	if bad := precheck("where", cond, a, b); bad != nil {
		return bad
	}
	var h C.mt_tensor
	return result("where", C.mt_where(cond.h, a.h, b.h, &h), h, cond, a, b)
}

// Softmax along dim.
func (t *Tensor) Softmax(dim int64) *Tensor { return t.softmax("softmax", dim, 0) }

// LogSoftmax along dim, computed stably by libtorch.
func (t *Tensor) LogSoftmax(dim int64) *Tensor { return t.softmax("log_softmax", dim, 1) }

func (t *Tensor) softmax(op string, dim int64, log C.int) *Tensor {
	if bad := precheck(op, t); bad != nil {
		return bad
	}
	var h C.mt_tensor
	return result(op, C.mt_softmax(t.h, C.int64_t(dim), log, &h), h, t)
}

func (t *Tensor) reduce(op string, code C.int, dims []int64, keep, unbiased bool) *Tensor {
	if bad := precheck(op, t); bad != nil {
		return bad
	}
	var h C.mt_tensor
	return result(op, C.mt_reduce(code, t.h, int64Ptr(dims), C.int(len(dims)), boolInt(keep), boolInt(unbiased), &h), h, t)
}

// Sum over all elements.
func (t *Tensor) Sum() *Tensor { return t.reduce("sum", C.MT_SUM, nil, false, false) }

// SumDims sums over dims.
func (t *Tensor) SumDims(dims []int64, keepdim bool) *Tensor {
	return t.reduce("sum", C.MT_SUM, dims, keepdim, false)
}

// Mean over all elements.
func (t *Tensor) Mean() *Tensor { return t.reduce("mean", C.MT_MEAN, nil, false, false) }

// MeanDims averages over dims.
func (t *Tensor) MeanDims(dims []int64, keepdim bool) *Tensor {
	return t.reduce("mean", C.MT_MEAN, dims, keepdim, false)
}

// Max over all elements (or over dims with MaxDims).
func (t *Tensor) Max() *Tensor { return t.reduce("amax", C.MT_AMAX, nil, false, false) }

// MaxDims is amax over dims.
func (t *Tensor) MaxDims(dims []int64, keepdim bool) *Tensor {
	return t.reduce("amax", C.MT_AMAX, dims, keepdim, false)
}

// Min over all elements.
func (t *Tensor) Min() *Tensor { return t.reduce("amin", C.MT_AMIN, nil, false, false) }

// MinDims is amin over dims.
func (t *Tensor) MinDims(dims []int64, keepdim bool) *Tensor {
	return t.reduce("amin", C.MT_AMIN, dims, keepdim, false)
}

// Argmax along dim.
func (t *Tensor) Argmax(dim int64, keepdim bool) *Tensor {
	return t.reduce("argmax", C.MT_ARGMAX, []int64{dim}, keepdim, false)
}

// ArgmaxAll is the flat index of the largest element.
func (t *Tensor) ArgmaxAll() *Tensor { return t.reduce("argmax", C.MT_ARGMAX, nil, false, false) }

// Argmin along dim.
func (t *Tensor) Argmin(dim int64, keepdim bool) *Tensor {
	return t.reduce("argmin", C.MT_ARGMIN, []int64{dim}, keepdim, false)
}

// Var is the variance over dims (all when dims is empty).
func (t *Tensor) Var(dims []int64, unbiased, keepdim bool) *Tensor {
	return t.reduce("var", C.MT_VAR, dims, keepdim, unbiased)
}

// Std is the standard deviation over dims (all when dims is empty).
func (t *Tensor) Std(dims []int64, unbiased, keepdim bool) *Tensor {
	return t.reduce("std", C.MT_STD, dims, keepdim, unbiased)
}

// Norm is the L2 norm over dims (all when dims is empty).
func (t *Tensor) Norm(dims []int64, keepdim bool) *Tensor {
	return t.reduce("norm", C.MT_NORM, dims, keepdim, false)
}

// Reshape returns t with a new shape (one dimension may be -1).
func (t *Tensor) Reshape(shape ...int64) *Tensor {
	if bad := precheck("reshape", t); bad != nil {
		return bad
	}
	var h C.mt_tensor
	return result("reshape", C.mt_reshape(t.h, int64Ptr(shape), C.int(len(shape)), &h), h, t)
}

// Permute reorders dimensions.
func (t *Tensor) Permute(dims ...int64) *Tensor {
	if bad := precheck("permute", t); bad != nil {
		return bad
	}
	var h C.mt_tensor
	return result("permute", C.mt_permute(t.h, int64Ptr(dims), C.int(len(dims)), &h), h, t)
}

// Transpose swaps two dimensions.
func (t *Tensor) Transpose(d0, d1 int64) *Tensor {
	if bad := precheck("transpose", t); bad != nil {
		return bad
	}
	var h C.mt_tensor
	return result("transpose", C.mt_transpose(t.h, C.int64_t(d0), C.int64_t(d1), &h), h, t)
}

// T transposes a matrix.
func (t *Tensor) T() *Tensor { return t.Transpose(0, 1) }

func joinTensors(op string, ts []*Tensor, dim int64, stack C.int) *Tensor {
	if len(ts) == 0 {
		return Failed(&Error{Op: op, Msg: "no tensors to join"})
	}
	if bad := precheck(op, ts...); bad != nil {
		return bad
	}
	hs := make([]C.mt_tensor, len(ts))
	for i, t := range ts {
		hs[i] = t.h
	}
	var h C.mt_tensor
	return result(op, C.mt_cat(&hs[0], C.int(len(hs)), C.int64_t(dim), stack, &h), h, ts...)
}

// Cat concatenates tensors along an existing dimension.
func Cat(ts []*Tensor, dim int64) *Tensor { return joinTensors("cat", ts, dim, 0) }

// Stack joins tensors along a new dimension.
func Stack(ts []*Tensor, dim int64) *Tensor { return joinTensors("stack", ts, dim, 1) }

// Narrow returns the slice [start, start+length) of dimension dim (a view).
func (t *Tensor) Narrow(dim, start, length int64) *Tensor {
	if bad := precheck("narrow", t); bad != nil {
		return bad
	}
	var h C.mt_tensor
	return result("narrow", C.mt_narrow(t.h, C.int64_t(dim), C.int64_t(start), C.int64_t(length), &h), h, t)
}

// Select returns index along dim, dropping that dimension.
func (t *Tensor) Select(dim, index int64) *Tensor {
	if bad := precheck("select", t); bad != nil {
		return bad
	}
	var h C.mt_tensor
	return result("select", C.mt_select(t.h, C.int64_t(dim), C.int64_t(index), &h), h, t)
}

// IndexSelect gathers whole slices along dim at the int64 indices in index.
func (t *Tensor) IndexSelect(dim int64, index *Tensor) *Tensor {
	if bad := precheck("index_select", t, index); bad != nil {
		return bad
	}
	var h C.mt_tensor
	return result("index_select", C.mt_index_select(t.h, C.int64_t(dim), index.h, &h), h, t, index)
}

// Gather picks, along dim, the elements named by index (same rank as t).
func (t *Tensor) Gather(dim int64, index *Tensor) *Tensor {
	if bad := precheck("gather", t, index); bad != nil {
		return bad
	}
	var h C.mt_tensor
	return result("gather", C.mt_gather(t.h, C.int64_t(dim), index.h, &h), h, t, index)
}

// Expand broadcasts size-1 dimensions to shape without copying (-1 keeps a size).
func (t *Tensor) Expand(shape ...int64) *Tensor {
	if bad := precheck("expand", t); bad != nil {
		return bad
	}
	var h C.mt_tensor
	return result("expand", C.mt_expand(t.h, int64Ptr(shape), C.int(len(shape)), &h), h, t)
}

// Repeat tiles t.
func (t *Tensor) Repeat(reps ...int64) *Tensor {
	if bad := precheck("repeat", t); bad != nil {
		return bad
	}
	var h C.mt_tensor
	return result("repeat", C.mt_repeat(t.h, int64Ptr(reps), C.int(len(reps)), &h), h, t)
}

// Unsqueeze inserts a size-1 dimension.
func (t *Tensor) Unsqueeze(dim int64) *Tensor {
	if bad := precheck("unsqueeze", t); bad != nil {
		return bad
	}
	var h C.mt_tensor
	return result("unsqueeze", C.mt_unsqueeze(t.h, C.int64_t(dim), &h), h, t)
}

// Squeeze removes dimension dim if it has size 1.
func (t *Tensor) Squeeze(dim int64) *Tensor {
	if bad := precheck("squeeze", t); bad != nil {
		return bad
	}
	var h C.mt_tensor
	return result("squeeze", C.mt_squeeze(t.h, C.int64_t(dim), &h), h, t)
}

// Flatten merges dimensions start..end (inclusive; negative counts from the end).
func (t *Tensor) Flatten(start, end int64) *Tensor {
	if bad := precheck("flatten", t); bad != nil {
		return bad
	}
	var h C.mt_tensor
	return result("flatten", C.mt_flatten(t.h, C.int64_t(start), C.int64_t(end), &h), h, t)
}

// OneHot encodes int64 class indices as int64 one-hot rows.
func (t *Tensor) OneHot(classes int64) *Tensor {
	if bad := precheck("one_hot", t); bad != nil {
		return bad
	}
	var h C.mt_tensor
	return result("one_hot", C.mt_one_hot(t.h, C.int64_t(classes), &h), h, t)
}

// Matmul is the batched matrix product.
func (t *Tensor) Matmul(o *Tensor) *Tensor {
	if bad := precheck("matmul", t, o); bad != nil {
		return bad
	}
	var h C.mt_tensor
	return result("matmul", C.mt_matmul(t.h, o.h, &h), h, t, o)
}

// Linear is x W^T + b; b may be nil.
func (t *Tensor) Linear(w, b *Tensor) *Tensor {
	ops := []*Tensor{t, w}
	if b != nil {
		ops = append(ops, b)
	}
	if bad := precheck("linear", ops...); bad != nil {
		return bad
	}
	var h C.mt_tensor
	return result("linear", C.mt_linear(t.h, w.h, optHandle(b), &h), h, ops...)
}

// ConvOptions are the geometry of a 2-D (transposed) convolution; zero values
// mean stride 1, padding 0, dilation 1, groups 1.
type ConvOptions struct {
	Stride, Padding, Dilation, OutputPadding [2]int64
	Groups                                   int64
}

func (o ConvOptions) normalised() ConvOptions {
	for i := range 2 {
		if o.Stride[i] == 0 {
			o.Stride[i] = 1
		}
		if o.Dilation[i] == 0 {
			o.Dilation[i] = 1
		}
	}
	if o.Groups == 0 {
		o.Groups = 1
	}
	return o
}

// Conv2d convolves an NCHW input with weight (out, in/groups, kh, kw); b may be nil.
func (t *Tensor) Conv2d(w, b *Tensor, o ConvOptions) *Tensor {
	ops := []*Tensor{t, w}
	if b != nil {
		ops = append(ops, b)
	}
	if bad := precheck("conv2d", ops...); bad != nil {
		return bad
	}
	o = o.normalised()
	var h C.mt_tensor
	return result("conv2d", C.mt_conv2d(t.h, w.h, optHandle(b), int64Ptr(o.Stride[:]), int64Ptr(o.Padding[:]),
		int64Ptr(o.Dilation[:]), C.int64_t(o.Groups), &h), h, ops...)
}

// ConvTranspose2d is the gradient of Conv2d with weight (in, out/groups, kh, kw); b may be nil.
func (t *Tensor) ConvTranspose2d(w, b *Tensor, o ConvOptions) *Tensor {
	ops := []*Tensor{t, w}
	if b != nil {
		ops = append(ops, b)
	}
	if bad := precheck("conv_transpose2d", ops...); bad != nil {
		return bad
	}
	o = o.normalised()
	if transposedByGradient(t, w, o) {
		return t.convTransposeByGradient(w, b, o)
	}
	var h C.mt_tensor
	return result("conv_transpose2d", C.mt_conv_transpose2d(t.h, w.h, optHandle(b), int64Ptr(o.Stride[:]), int64Ptr(o.Padding[:]),
		int64Ptr(o.OutputPadding[:]), C.int64_t(o.Groups), int64Ptr(o.Dilation[:]), &h), h, ops...)
}

// convTransposeByGradientOn selects, where transposedByGradient allows it,
// the faster of two kernels for one function; see SetConvTransposeByGradient.
var convTransposeByGradientOn atomic.Bool

func init() { convTransposeByGradientOn.Store(true) }

// SetConvTransposeByGradient chooses how ConvTranspose2d is computed on
// batches it applies to (on by default): as the gradient of Conv2d with
// respect to its input, which libtorch 1.13 runs in oneDNN, or (off) with
// at::conv_transpose2d, which in libtorch 1.13 is an im2col + one GEMM per
// image kernel (PyTorch 2.0 added a oneDNN one). Both compute the same
// function; results differ by float rounding (2-5e-7 of the largest output
// per layer, measured).
func SetConvTransposeByGradient(on bool) { convTransposeByGradientOn.Store(on) }

// The smallest batch and output channel count the oneDNN path is used for:
// below them it measured slower than the GEMM kernel (single images of the
// large GANomaly layers, single-channel output layers at any batch;
// BENCHMARKS.md, "2026-12-07, sixth session", per-layer table).
const (
	minBatchForGradientDeconv    = 8
	minChannelsForGradientDeconv = 8
)

// transposedByGradient says whether ConvTranspose2d of t by w takes the
// gradient path, which computes in float32: libtorch 1.13's CPU autocast
// runs conv_transpose2d in float32 (casting reduced-precision operands up),
// so under autocast the gradient path does the same; outside it, only
// float32 operands take the path.
func transposedByGradient(t, w *Tensor, o ConvOptions) bool {
	if !convTransposeByGradientOn.Load() || t.Dim() != 4 || w.Dim() != 4 {
		return false
	}
	if t.Size(0) < minBatchForGradientDeconv || w.Size(1)*o.Groups < minChannelsForGradientDeconv {
		return false
	}
	return AutocastEnabled() || (t.DType() == Float32 && w.DType() == Float32)
}

// convTransposeByGradient computes ConvTranspose2d as the input gradient of
// the Conv2d whose weight is w: same weight layout, output side
// (in-1)*stride - 2*padding + dilation*(k-1) + output_padding + 1.
// Operands in another element type (under autocast) are cast to float32.
func (t *Tensor) convTransposeByGradient(w, b *Tensor, o ConvOptions) *Tensor {
	x := t
	if x.DType() != Float32 {
		x = t.To(Float32)
		defer x.Free()
	}
	if w.DType() != Float32 {
		w = w.To(Float32)
		defer w.Free()
	}
	shape := [4]int64{t.Size(0), w.Size(1) * o.Groups, 0, 0}
	for i := range 2 {
		shape[2+i] = (t.Size(2+i)-1)*o.Stride[i] - 2*o.Padding[i] + o.Dilation[i]*(w.Size(2+i)-1) + o.OutputPadding[i] + 1
	}
	if bad := precheck("conv_transpose2d", x, w); bad != nil {
		return bad
	}
	var h C.mt_tensor
	out := result("conv_transpose2d", C.mt_conv2d_input_grad(x.h, w.h, int64Ptr(shape[:]), int64Ptr(o.Stride[:]), int64Ptr(o.Padding[:]),
		int64Ptr(o.Dilation[:]), C.int64_t(o.Groups), &h), h, t, w)
	if b == nil || out.Err() != nil {
		return out
	}
	if b.DType() != Float32 {
		b = b.To(Float32)
		defer b.Free()
	}
	bias := b.Reshape(1, -1, 1, 1)
	defer bias.Free()
	withBias := out.Add(bias)
	out.Free()
	return withBias
}

// BatchNorm normalises over all dimensions but the channel (dim 1). In
// training it uses batch statistics and updates runningMean/runningVar in
// place with momentum; in eval it uses them. Any of w, b and the running
// statistics may be nil.
func (t *Tensor) BatchNorm(w, b, runningMean, runningVar *Tensor, training bool, momentum, eps float64) *Tensor {
	ops := []*Tensor{t}
	for _, o := range []*Tensor{w, b, runningMean, runningVar} {
		if o != nil {
			ops = append(ops, o)
		}
	}
	if bad := precheck("batch_norm", ops...); bad != nil {
		return bad
	}
	var h C.mt_tensor
	return result("batch_norm", C.mt_batch_norm(t.h, optHandle(w), optHandle(b), optHandle(runningMean), optHandle(runningVar),
		boolInt(training), C.double(momentum), C.double(eps), &h), h, ops...)
}

// LayerNorm normalises over the trailing dimensions given by shape.
func (t *Tensor) LayerNorm(shape []int64, w, b *Tensor, eps float64) *Tensor {
	ops := []*Tensor{t}
	for _, o := range []*Tensor{w, b} {
		if o != nil {
			ops = append(ops, o)
		}
	}
	if bad := precheck("layer_norm", ops...); bad != nil {
		return bad
	}
	var h C.mt_tensor
	return result("layer_norm", C.mt_layer_norm(t.h, int64Ptr(shape), C.int(len(shape)), optHandle(w), optHandle(b), C.double(eps), &h), h, ops...)
}

// AvgPool2d averages kernel windows (padding counted, as PyTorch's default).
func (t *Tensor) AvgPool2d(kernel, stride, padding int64) *Tensor {
	if bad := precheck("avg_pool2d", t); bad != nil {
		return bad
	}
	k, s, p := []int64{kernel, kernel}, []int64{stride, stride}, []int64{padding, padding}
	var h C.mt_tensor
	return result("avg_pool2d", C.mt_avg_pool2d(t.h, int64Ptr(k), int64Ptr(s), int64Ptr(p), &h), h, t)
}

// MaxPool2d takes the maximum over kernel windows.
func (t *Tensor) MaxPool2d(kernel, stride, padding, dilation int64) *Tensor {
	if bad := precheck("max_pool2d", t); bad != nil {
		return bad
	}
	if dilation == 0 {
		dilation = 1
	}
	k, s, p, d := []int64{kernel, kernel}, []int64{stride, stride}, []int64{padding, padding}, []int64{dilation, dilation}
	var h C.mt_tensor
	return result("max_pool2d", C.mt_max_pool2d(t.h, int64Ptr(k), int64Ptr(s), int64Ptr(p), int64Ptr(d), &h), h, t)
}

// UpsampleNearest2d resizes NCHW to (h, w) by nearest neighbour.
func (t *Tensor) UpsampleNearest2d(outH, outW int64) *Tensor {
	if bad := precheck("upsample_nearest2d", t); bad != nil {
		return bad
	}
	var h C.mt_tensor
	return result("upsample_nearest2d", C.mt_upsample_nearest2d(t.h, C.int64_t(outH), C.int64_t(outW), &h), h, t)
}

// UpsampleBilinear2d resizes NCHW to (h, w) bilinearly.
func (t *Tensor) UpsampleBilinear2d(outH, outW int64, alignCorners bool) *Tensor {
	if bad := precheck("upsample_bilinear2d", t); bad != nil {
		return bad
	}
	var h C.mt_tensor
	return result("upsample_bilinear2d", C.mt_upsample_bilinear2d(t.h, C.int64_t(outH), C.int64_t(outW), boolInt(alignCorners), &h), h, t)
}

// Dropout zeroes elements with probability p in training (default generator).
func (t *Tensor) Dropout(p float64, training bool) *Tensor {
	if bad := precheck("dropout", t); bad != nil {
		return bad
	}
	var h C.mt_tensor
	return result("dropout", C.mt_dropout(t.h, C.double(p), boolInt(training), &h), h, t)
}

// Reduction selects how a loss combines per-element values.
type Reduction int

// Reductions, numbered as ATen's at::Reduction.
const (
	ReduceNone Reduction = 0
	ReduceMean Reduction = 1
	ReduceSum  Reduction = 2
)

// BinaryCrossEntropy of probabilities t against target, with ATen's clamping
// of log at -100 (so it matches torch.nn.BCELoss exactly).
func (t *Tensor) BinaryCrossEntropy(target *Tensor, r Reduction) *Tensor {
	if bad := precheck("binary_cross_entropy", t, target); bad != nil {
		return bad
	}
	var h C.mt_tensor
	return result("binary_cross_entropy", C.mt_binary_cross_entropy(t.h, target.h, C.int(r), &h), h, t, target)
}
