package modelfile

import (
	"fmt"
	"slices"
	"strings"
	"sync"

	"github.com/maddr-project/maddr/torch"
)

// AutoPrecision is the default --precision: each model family scores in the
// arithmetic measured to be right for it on the CPU at hand (ChoosePrecision).
const AutoPrecision = "auto"

// autoBF16Families are the baselines that auto scores in bfloat16 on a CPU
// with native bfloat16. A family belongs here when both halves of issue
// #14's rule were measured (docs/precision.md): on trained models the test
// AUC moved by at most 0.5 points on every phantom group and not at all on
// the real fixtures, and bf16 scoring is much faster than fp32. DPA: AUC
// within 0.39 points on every group of ten trained models, scoring
// 1.5-1.8x faster. The AE passes the AUC half, but its fp32 scoring already
// outruns the data loader (3786 against 2773 images/s), so bf16's gain
// (1.07x, 1.36x since its transposed convolutions run in oneDNN) would not
// reach a user scoring files while every score lost its last digits; MemAE,
// GANomaly and f-AnoGAN gain 0-54 % by run but no trained model of theirs
// was compared (BENCHMARKS.md, docs/precision.md).
var autoBF16Families = []string{"dpa"}

// nativeBF16 reports whether the CPU multiplies bfloat16 in hardware
// (avx512_bf16 or AMX). Elsewhere oneDNN emulates bfloat16 and it is slower
// than fp32, so auto never picks it there. A variable so tests can pin it.
var nativeBF16 = sync.OnceValue(func() bool {
	return slices.ContainsFunc(torch.CPUFlags(), func(f string) bool {
		return f == "avx512_bf16" || strings.HasPrefix(f, "amx_bf16")
	})
})

// ParsePrecision maps an explicit --precision value to the arithmetic of
// scoring: "fp32" (exact) or "bf16" (libtorch's bfloat16 autocast). "auto"
// depends on the model; use ChoosePrecision for it.
func ParsePrecision(s string) (torch.DType, error) {
	switch s {
	case "", "fp32", "float32":
		return torch.Float32, nil
	case "bf16", "bfloat16":
		return torch.BFloat16, nil
	}
	return 0, fmt.Errorf("unknown precision %q (auto, fp32 or bf16)", s)
}

// ChoosePrecision resolves a --precision value for a model of the given
// baseline family (Manifest.Model). "auto" gives bf16 for the families in
// autoBF16Families on CPUs with native bfloat16 and fp32 otherwise; why
// says which of those decided, for the command's log.
func ChoosePrecision(value, family string) (d torch.DType, why string, err error) {
	if value != AutoPrecision {
		d, err = ParsePrecision(value)
		return d, "chosen with --precision", err
	}
	switch {
	case !slices.Contains(autoBF16Families, family):
		return torch.Float32, fmt.Sprintf("auto: %s scores in fp32, bf16 is not measured to be worth it for it; docs/precision.md", family), nil
	case !nativeBF16():
		return torch.Float32, "auto: this CPU has no native bfloat16 (avx512_bf16 or AMX); bf16 would be slower than fp32", nil
	}
	return torch.BFloat16, fmt.Sprintf("auto: %s on a CPU with native bfloat16; AUC unchanged within 0.5 points, "+
		"about 1.5-1.8x faster; --precision fp32 for exact scores; docs/precision.md", family), nil
}

// RecordedPrecision is the precision a file records as name: files written
// before precisions were recorded leave it empty, and scored in fp32, the
// only arithmetic there was.
func RecordedPrecision(name string) string {
	if name == "" {
		return "fp32"
	}
	return name
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
