package nn

import (
	"fmt"
	"math"

	"github.com/maddr-project/maddr/torch"
)

// Init fills a freshly created parameter in place.
type Init func(t *torch.Tensor, g *torch.Generator) error

// FanMode picks which fan Kaiming initialisation preserves.
type FanMode int

// Fan modes, as in torch.nn.init.
const (
	FanIn FanMode = iota
	FanOut
)

// Fans returns (fan_in, fan_out) the way torch.nn.init computes them: dim 1
// times the receptive field, and dim 0 times the receptive field. For a
// transposed convolution's (in, out, k, k) weight this deliberately gives
// PyTorch's values, not the "true" fans.
func Fans(shape []int64) (fanIn, fanOut int64, err error) {
	if len(shape) < 2 {
		return 0, 0, fmt.Errorf("fan in/out need at least 2 dimensions, shape has %d", len(shape))
	}
	rf := int64(1)
	for _, d := range shape[2:] {
		rf *= d
	}
	return shape[1] * rf, shape[0] * rf, nil
}

// Gain is torch.nn.init.calculate_gain for the nonlinearities maddr uses:
// "linear", "conv", "sigmoid" (1), "tanh" (5/3), "relu" (sqrt 2) and
// "leaky_relu" (sqrt(2/(1+slope^2))).
func Gain(nonlinearity string, slope float64) (float64, error) {
	switch nonlinearity {
	case "linear", "conv", "conv2d", "conv_transpose2d", "sigmoid":
		return 1, nil
	case "tanh":
		return 5.0 / 3, nil
	case "relu":
		return math.Sqrt2, nil
	case "leaky_relu":
		return math.Sqrt(2 / (1 + slope*slope)), nil
	}
	return 0, fmt.Errorf("unknown nonlinearity %q", nonlinearity)
}

// Uniform draws from U(lo, hi).
func Uniform(lo, hi float64) Init {
	return func(t *torch.Tensor, g *torch.Generator) error { return t.UniformInPlace(lo, hi, g) }
}

// Normal draws from N(mean, std^2).
func Normal(mean, std float64) Init {
	return func(t *torch.Tensor, g *torch.Generator) error { return t.NormalInPlace(mean, std, g) }
}

// Constant fills with v.
func Constant(v float64) Init {
	return func(t *torch.Tensor, _ *torch.Generator) error { return t.Fill(v) }
}

func fanOf(t *torch.Tensor, mode FanMode) (float64, error) {
	in, out, err := Fans(t.Shape())
	if err != nil {
		return 0, err
	}
	if mode == FanOut {
		return float64(out), nil
	}
	return float64(in), nil
}

// KaimingUniform is torch.nn.init.kaiming_uniform_: U(-b, b) with
// b = gain * sqrt(3 / fan).
func KaimingUniform(slope float64, mode FanMode, nonlinearity string) Init {
	return func(t *torch.Tensor, g *torch.Generator) error {
		fan, err := fanOf(t, mode)
		if err != nil {
			return err
		}
		gain, err := Gain(nonlinearity, slope)
		if err != nil {
			return err
		}
		b := gain * math.Sqrt(3/fan)
		return t.UniformInPlace(-b, b, g)
	}
}

// KaimingNormal is torch.nn.init.kaiming_normal_: N(0, (gain/sqrt(fan))^2).
func KaimingNormal(slope float64, mode FanMode, nonlinearity string) Init {
	return func(t *torch.Tensor, g *torch.Generator) error {
		fan, err := fanOf(t, mode)
		if err != nil {
			return err
		}
		gain, err := Gain(nonlinearity, slope)
		if err != nil {
			return err
		}
		return t.NormalInPlace(0, gain/math.Sqrt(fan), g)
	}
}

// XavierUniform is torch.nn.init.xavier_uniform_: U(-a, a) with
// a = gain * sqrt(6 / (fan_in + fan_out)).
func XavierUniform(gain float64) Init {
	return func(t *torch.Tensor, g *torch.Generator) error {
		in, out, err := Fans(t.Shape())
		if err != nil {
			return err
		}
		a := gain * math.Sqrt(6/float64(in+out))
		return t.UniformInPlace(-a, a, g)
	}
}

// DefaultWeight is PyTorch's default for Conv and Linear weights,
// kaiming_uniform_(a=sqrt(5)), which reduces to U(-1/sqrt(fan_in), 1/sqrt(fan_in)).
func DefaultWeight() Init { return KaimingUniform(math.Sqrt(5), FanIn, "leaky_relu") }

// DefaultBias is PyTorch's default bias init for a layer whose weight has
// the given fan_in: U(-1/sqrt(fan_in), 1/sqrt(fan_in)).
func DefaultBias(fanIn int64) Init {
	if fanIn <= 0 {
		return Constant(0)
	}
	b := 1 / math.Sqrt(float64(fanIn))
	return Uniform(-b, b)
}
