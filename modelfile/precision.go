package modelfile

import (
	"fmt"

	"github.com/maddr-project/maddr/torch"
)

// ParsePrecision maps a --precision value to the arithmetic of scoring:
// "fp32" (the default, exact) or "bf16" (libtorch's bfloat16 autocast).
func ParsePrecision(s string) (torch.DType, error) {
	switch s {
	case "", "fp32", "float32":
		return torch.Float32, nil
	case "bf16", "bfloat16":
		return torch.BFloat16, nil
	}
	return 0, fmt.Errorf("unknown precision %q (fp32 or bf16)", s)
}

// PrecisionName is the --precision spelling of d.
func PrecisionName(d torch.DType) string {
	if d == torch.BFloat16 {
		return "bf16"
	}
	return "fp32"
}

// Score is the baseline's per-image anomaly score (B, float32) computed in
// m.Precision: under bf16 the convolutions and matrix products of the
// networks (the VGG of DPA included) run in bfloat16 through libtorch's
// autocast, while reductions and the score itself stay float32. The caller
// owns the result, as with Baseline.Score.
func (m *Model) Score(x *torch.Tensor) *torch.Tensor {
	if m.Precision != torch.BFloat16 {
		return m.Framework.Base.Score(x)
	}
	var out *torch.Tensor
	if err := torch.Autocast(torch.BFloat16, func() error {
		scores := m.Framework.Base.Score(x)
		out = scores.To(torch.Float32)
		scores.Free()
		return out.Err()
	}); err != nil {
		return torch.Failed(fmt.Errorf("bf16 scoring: %w", err))
	}
	return out
}
