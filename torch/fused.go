package torch

// #include "shim.h"
import "C"

import (
	"fmt"
	"runtime"
)

// ConvReLU is a 2-d convolution and the ReLU after it as one oneDNN
// primitive (libtorch's mkldnn_prepacked convolution with a ReLU post-op):
// the weights are reordered once, when it is built, and each output element
// is written once instead of written by the convolution and rewritten by
// the ReLU. Its results are bit-identical to Conv2d followed by Relu (the
// same kernel accumulates, then clamps). It has no autograd: Forward refuses
// to run while gradients are recorded.
type ConvReLU struct {
	h C.mt_conv_relu
}

// NewConvReLU prepacks weight w and bias b (b may be nil) for inputs of
// shape inputShape (N, C, H, W), in the element type of w. Inputs with
// another batch size run too; the reordered weights are chosen for
// inputShape.
func NewConvReLU(w, b *Tensor, o ConvOptions, inputShape []int64) (*ConvReLU, error) {
	ops := []*Tensor{w}
	if b != nil {
		ops = append(ops, b)
	}
	if bad := precheck("conv_relu_prepack", ops...); bad != nil {
		return nil, bad.Err()
	}
	if len(inputShape) != 4 {
		return nil, &Error{Op: "conv_relu_prepack", Msg: fmt.Sprintf("input shape %v is not N, C, H, W", inputShape)}
	}
	o = o.normalised()
	var h C.mt_conv_relu
	if err := cerror("conv_relu_prepack", C.mt_conv_relu_prepack(w.h, optHandle(b), int64Ptr(o.Stride[:]),
		int64Ptr(o.Padding[:]), int64Ptr(o.Dilation[:]), C.int64_t(o.Groups), int64Ptr(inputShape), &h)); err != nil {
		return nil, err
	}
	runtime.KeepAlive(w)
	runtime.KeepAlive(b)
	return &ConvReLU{h: h}, nil
}

// Forward is relu(conv2d(x)) for an input of the element type the weights
// were prepacked in.
func (c *ConvReLU) Forward(x *Tensor) *Tensor {
	if bad := precheck("conv_relu", x); bad != nil {
		return bad
	}
	if c == nil || c.h == nil {
		return Failed(&Error{Op: "conv_relu", Msg: ErrFreed.Error()})
	}
	if GradEnabled() && x.RequiresGrad() {
		return Failed(&Error{Op: "conv_relu", Msg: "the fused convolution has no autograd; run it under NoGrad"})
	}
	var h C.mt_tensor
	return result("conv_relu", C.mt_conv_relu_run(x.h, c.h, &h), h, x)
}

// Free releases the prepacked weights.
func (c *ConvReLU) Free() {
	if c != nil && c.h != nil {
		C.mt_conv_relu_free(c.h)
		c.h = nil
	}
}
