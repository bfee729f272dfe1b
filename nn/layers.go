package nn

import (
	"github.com/maddr-project/maddr/torch"
)

// ConvConfig describes a convolution layer; zero values give PyTorch's
// defaults (stride 1, no padding, bias on, default init).
type ConvConfig struct {
	Stride, Padding, Dilation, OutputPadding int64
	Groups                                   int64
	NoBias                                   bool
	WeightInit                               Init // nil: DefaultWeight
	BiasInit                                 Init // nil: DefaultBias(fan_in)
}

func (c ConvConfig) options() torch.ConvOptions {
	o := torch.ConvOptions{Groups: c.Groups}
	for i := range 2 {
		o.Stride[i], o.Padding[i], o.Dilation[i], o.OutputPadding[i] = c.Stride, c.Padding, c.Dilation, c.OutputPadding
	}
	return o
}

func (c ConvConfig) groups() int64 {
	if c.Groups <= 0 {
		return 1
	}
	return c.Groups
}

// Conv2d is a 2-D convolution with weight (out, in/groups, k, k).
type Conv2d struct {
	W, B *torch.Tensor
	Opts torch.ConvOptions
}

// NewConv2d registers name.weight and name.bias under s.
func NewConv2d(s *Store, name string, in, out, kernel int64, c ConvConfig) *Conv2d {
	sub := s.Sub(name)
	shape := []int64{out, in / c.groups(), kernel, kernel}
	wi := c.WeightInit
	if wi == nil {
		wi = DefaultWeight()
	}
	conv := &Conv2d{W: sub.NewParam("weight", shape, wi), Opts: c.options()}
	if !c.NoBias {
		fanIn, _, _ := Fans(shape)
		bi := c.BiasInit
		if bi == nil {
			bi = DefaultBias(fanIn)
		}
		conv.B = sub.NewParam("bias", []int64{out}, bi)
	}
	return conv
}

// Forward applies the convolution to an NCHW batch.
func (c *Conv2d) Forward(x *torch.Tensor) *torch.Tensor { return x.Conv2d(c.W, c.B, c.Opts) }

// ConvTranspose2d is a transposed convolution with weight (in, out/groups, k, k).
type ConvTranspose2d struct {
	W, B *torch.Tensor
	Opts torch.ConvOptions
}

// NewConvTranspose2d registers name.weight and name.bias under s.
func NewConvTranspose2d(s *Store, name string, in, out, kernel int64, c ConvConfig) *ConvTranspose2d {
	sub := s.Sub(name)
	shape := []int64{in, out / c.groups(), kernel, kernel}
	wi := c.WeightInit
	if wi == nil {
		wi = DefaultWeight()
	}
	conv := &ConvTranspose2d{W: sub.NewParam("weight", shape, wi), Opts: c.options()}
	if !c.NoBias {
		// PyTorch takes the bias bound from the weight's dim-1 fan, as Fans does.
		fanIn, _, _ := Fans(shape)
		bi := c.BiasInit
		if bi == nil {
			bi = DefaultBias(fanIn)
		}
		conv.B = sub.NewParam("bias", []int64{out}, bi)
	}
	return conv
}

// Forward applies the transposed convolution.
func (c *ConvTranspose2d) Forward(x *torch.Tensor) *torch.Tensor {
	return x.ConvTranspose2d(c.W, c.B, c.Opts)
}

// Linear is y = x W^T + b with W (out, in).
type Linear struct {
	W, B *torch.Tensor
}

// LinearConfig describes a Linear layer; zero values give PyTorch's defaults.
type LinearConfig struct {
	NoBias     bool
	WeightInit Init
	BiasInit   Init
}

// NewLinear registers name.weight and name.bias under s.
func NewLinear(s *Store, name string, in, out int64, c LinearConfig) *Linear {
	sub := s.Sub(name)
	wi := c.WeightInit
	if wi == nil {
		wi = DefaultWeight()
	}
	l := &Linear{W: sub.NewParam("weight", []int64{out, in}, wi)}
	if !c.NoBias {
		bi := c.BiasInit
		if bi == nil {
			bi = DefaultBias(in)
		}
		l.B = sub.NewParam("bias", []int64{out}, bi)
	}
	return l
}

// Forward applies the layer to (..., in) inputs.
func (l *Linear) Forward(x *torch.Tensor) *torch.Tensor { return x.Linear(l.W, l.B) }

// BatchNorm normalises per channel (dim 1); it serves as BatchNorm1d on
// (N, C) inputs and BatchNorm2d on (N, C, H, W) inputs.
type BatchNorm struct {
	W, B                    *torch.Tensor
	RunningMean, RunningVar *torch.Tensor
	NumBatchesTracked       *torch.Tensor
	Momentum, Eps           float64
}

// NewBatchNorm registers weight (ones), bias (zeros), running_mean, running_var
// and num_batches_tracked under name, with PyTorch's momentum 0.1 and eps 1e-5.
func NewBatchNorm(s *Store, name string, channels int64) *BatchNorm {
	sub := s.Sub(name)
	return &BatchNorm{
		W:                 sub.NewParam("weight", []int64{channels}, Constant(1)),
		B:                 sub.NewParam("bias", []int64{channels}, Constant(0)),
		RunningMean:       sub.NewBuffer("running_mean", torch.Zeros(channels)),
		RunningVar:        sub.NewBuffer("running_var", torch.Ones(channels)),
		NumBatchesTracked: sub.NewBuffer("num_batches_tracked", torch.Full(nil, 0, torch.Int64, torch.CPU)),
		Momentum:          0.1,
		Eps:               1e-5,
	}
}

// Forward normalises with batch statistics (and updates the running ones) in
// training, and with the running statistics otherwise.
func (b *BatchNorm) Forward(x *torch.Tensor, training bool) *torch.Tensor {
	if training {
		if err := b.NumBatchesTracked.AddScalarInPlace(1); err != nil {
			return torch.Failed(err)
		}
	}
	return x.BatchNorm(b.W, b.B, b.RunningMean, b.RunningVar, training, b.Momentum, b.Eps)
}
