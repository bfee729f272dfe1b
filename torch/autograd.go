package torch

/*
#include "shim.h"
*/
import "C"

// SetRequiresGrad switches gradient tracking for a leaf tensor and returns t.
func (t *Tensor) SetRequiresGrad(on bool) *Tensor {
	if err := t.Err(); err != nil {
		return t
	}
	if err := cerror("requires_grad", C.mt_set_requires_grad(t.h, boolInt(on))); err != nil {
		t.err = err
	}
	return t
}

// RequiresGrad reports whether autograd tracks t.
func (t *Tensor) RequiresGrad() bool {
	return t.Err() == nil && C.mt_requires_grad(t.h) != 0
}

// Grad returns the gradient accumulated in t by Backward, or nil when there is
// none. The returned handle shares storage with the stored gradient and joins
// t's scope (parameters are unscoped, so adopt it into a step scope).
func (t *Tensor) Grad() *Tensor {
	if bad := precheck("grad", t); bad != nil {
		return bad
	}
	var h C.mt_tensor
	if err := cerror("grad", C.mt_grad(t.h, &h)); err != nil {
		return Failed(err)
	}
	if h == nil {
		return nil
	}
	return wrap(h, t.scope)
}

// ZeroGrad clears the accumulated gradient: setToNone drops it (as PyTorch's
// optimizer.zero_grad(set_to_none=True)), otherwise it is zeroed in place.
func (t *Tensor) ZeroGrad(setToNone bool) error {
	if err := t.Err(); err != nil {
		return err
	}
	return cerror("zero_grad", C.mt_zero_grad(t.h, boolInt(setToNone)))
}

// Backward accumulates d t / d leaves into the leaves' Grad; t must be a scalar.
func (t *Tensor) Backward() error { return t.BackwardWith(nil, false, false) }

// BackwardWith is Backward with an explicit output gradient (nil: ones),
// retain_graph and create_graph.
func (t *Tensor) BackwardWith(grad *Tensor, retainGraph, createGraph bool) error {
	ops := []*Tensor{t}
	if grad != nil {
		ops = append(ops, grad)
	}
	if bad := precheck("backward", ops...); bad != nil {
		return bad.err
	}
	return cerror("backward", C.mt_backward(t.h, optHandle(grad), boolInt(retainGraph), boolInt(createGraph)))
}

// GradOptions configure Grad.
type GradOptions struct {
	// GradOutputs weight each output (nil entries or a nil slice mean ones).
	GradOutputs []*Tensor
	RetainGraph bool
	// CreateGraph records the gradient computation so it can be
	// differentiated again (double backward, as WGAN-GP's penalty needs).
	CreateGraph bool
	// AllowUnused returns nil for inputs the outputs do not depend on
	// instead of failing.
	AllowUnused bool
}

// Grad computes d outputs / d inputs without touching any .grad, like
// torch.autograd.grad. The results join the scope of the first scoped output.
func Grad(outputs, inputs []*Tensor, o GradOptions) ([]*Tensor, error) {
	all := append(append([]*Tensor{}, outputs...), inputs...)
	for _, g := range o.GradOutputs {
		if g != nil {
			all = append(all, g)
		}
	}
	if bad := precheck("autograd.grad", all...); bad != nil {
		return nil, bad.err
	}
	if len(outputs) == 0 || len(inputs) == 0 {
		return nil, &Error{Op: "autograd.grad", Msg: "need at least one output and one input"}
	}
	if o.GradOutputs != nil && len(o.GradOutputs) != len(outputs) {
		return nil, &Error{Op: "autograd.grad", Msg: "grad outputs must match outputs one to one"}
	}
	outs := make([]C.mt_tensor, len(outputs))
	for i, t := range outputs {
		outs[i] = t.h
	}
	var gouts *C.mt_tensor
	if o.GradOutputs != nil {
		gs := make([]C.mt_tensor, len(outputs))
		for i, g := range o.GradOutputs {
			gs[i] = optHandle(g)
		}
		gouts = &gs[0]
	}
	ins := make([]C.mt_tensor, len(inputs))
	for i, t := range inputs {
		ins[i] = t.h
	}
	res := make([]C.mt_tensor, len(inputs))
	err := cerror("autograd.grad", C.mt_autograd_grad(&outs[0], C.int(len(outs)), gouts, &ins[0], C.int(len(ins)),
		boolInt(o.RetainGraph), boolInt(o.CreateGraph), boolInt(o.AllowUnused), &res[0]))
	if err != nil {
		return nil, err
	}
	s := scopeOf(outputs...)
	grads := make([]*Tensor, len(inputs))
	for i, h := range res {
		if h != nil {
			grads[i] = wrap(h, s)
		}
	}
	return grads, nil
}

func (t *Tensor) inplace(op string, code C.int, b, c *Tensor, alpha float64) error {
	ops := []*Tensor{t, b}
	if c != nil {
		ops = append(ops, c)
	}
	if bad := precheck(op, ops...); bad != nil {
		return bad.err
	}
	return cerror(op, C.mt_inplace(code, t.h, b.h, optHandle(c), C.double(alpha)))
}

// The in-place updates below are never recorded by autograd: they are for
// parameters and optimizer state, like PyTorch's updates under no_grad.

// AddInPlace does t += alpha * b.
func (t *Tensor) AddInPlace(b *Tensor, alpha float64) error {
	return t.inplace("add_", C.MT_ADD_, b, nil, alpha)
}

// MulInPlace does t *= b.
func (t *Tensor) MulInPlace(b *Tensor) error { return t.inplace("mul_", C.MT_MUL_, b, nil, 1) }

// CopyFrom does t[...] = src (broadcast, converting type).
func (t *Tensor) CopyFrom(src *Tensor) error { return t.inplace("copy_", C.MT_COPY_, src, nil, 1) }

// AddcmulInPlace does t += value * a * b.
func (t *Tensor) AddcmulInPlace(a, b *Tensor, value float64) error {
	return t.inplace("addcmul_", C.MT_ADDCMUL_, a, b, value)
}

// AddcdivInPlace does t += value * a / b.
func (t *Tensor) AddcdivInPlace(a, b *Tensor, value float64) error {
	return t.inplace("addcdiv_", C.MT_ADDCDIV_, a, b, value)
}

// MulScalarInPlace does t *= s.
func (t *Tensor) MulScalarInPlace(s float64) error {
	if err := t.Err(); err != nil {
		return err
	}
	return cerror("mul_", C.mt_inplace_scalar(C.MT_MUL_, t.h, C.double(s)))
}

// AddScalarInPlace does t += s.
func (t *Tensor) AddScalarInPlace(s float64) error {
	if err := t.Err(); err != nil {
		return err
	}
	return cerror("add_", C.mt_inplace_scalar(C.MT_ADD_, t.h, C.double(s)))
}

// Fill sets every element to v.
func (t *Tensor) Fill(v float64) error {
	if err := t.Err(); err != nil {
		return err
	}
	return cerror("fill_", C.mt_fill_(t.h, C.double(v)))
}

// NormalInPlace fills t with N(mean, std^2) samples.
func (t *Tensor) NormalInPlace(mean, std float64, g *Generator) error {
	if err := t.Err(); err != nil {
		return err
	}
	return cerror("normal_", C.mt_normal_(t.h, C.double(mean), C.double(std), g.handle()))
}

// UniformInPlace fills t with U[lo, hi) samples.
func (t *Tensor) UniformInPlace(lo, hi float64, g *Generator) error {
	if err := t.Err(); err != nil {
		return err
	}
	return cerror("uniform_", C.mt_uniform_(t.h, C.double(lo), C.double(hi), g.handle()))
}
