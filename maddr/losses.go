package maddr

import (
	"fmt"

	"github.com/maddr-project/maddr/torch"
)

// FocalLoss is the batch mean of alpha[y] * (1 - p_y)^gamma * (-log p_y)
// (paper eqs. 2-3 with the code's batch mean). log p comes from log-softmax
// so a confident head cannot underflow to log(0), as log(softmax) can.
// logits is B x K, targets holds B int64 class indices, alpha has K entries.
func FocalLoss(logits, targets *torch.Tensor, alpha []float64, gamma float64) *torch.Tensor {
	if err := logits.Err(); err != nil {
		return logits
	}
	if k := logits.Size(1); int64(len(alpha)) != k {
		return torch.Failed(fmt.Errorf("focal loss: %d alpha weights for %d classes", len(alpha), k))
	}
	a := make([]float32, len(alpha))
	for i, v := range alpha {
		a[i] = float32(v)
	}
	alphaT := torch.FromFloat32(a, int64(len(a)))
	defer alphaT.Free()
	logp := logits.LogSoftmax(1).Gather(1, targets.Unsqueeze(1)).Squeeze(1)
	modulator := logp.Exp().RSubScalar(1).PowScalar(gamma)
	// alphaT is unscoped, but the result joins the scope of the scoped targets.
	weights := alphaT.IndexSelect(0, targets)
	return weights.Mul(modulator).Mul(logp.Neg()).Mean()
}

// AlphaVector returns the focal alpha per class: the code's convention
// [0.25, 0.75, 0.75, ...] (class 0 gets alpha, every other class 1 - alpha),
// or alpha for every class when uniform is set (the paper's wording).
func AlphaVector(classes int, alpha float64, uniform bool) []float64 {
	out := make([]float64, classes)
	for i := range out {
		switch {
		case uniform || i == 0:
			out[i] = alpha
		default:
			out[i] = 1 - alpha
		}
	}
	return out
}

// CenterNorm chooses how the center loss adds up the latent dimensions.
type CenterNorm string

const (
	// SumDims is paper eq. 4: squared Euclidean distance over all dims of z_c.
	SumDims CenterNorm = "sum_dims"
	// MeanDims divides by the number of dims, as DOC's compactness loss does.
	MeanDims CenterNorm = "mean_dims"
)

// CenterLoss is paper eq. 4 for one batch: the mean over samples of the
// squared distance between z_c^i and the mean of the other B-1 samples.
// Because z_i - m_i = B/(B-1) (z_i - mean), it is computed from the batch mean.
func CenterLoss(zc *torch.Tensor, norm CenterNorm) *torch.Tensor {
	if err := zc.Err(); err != nil {
		return zc
	}
	b := float64(zc.Size(0))
	if b < 2 {
		return torch.Failed(fmt.Errorf("center loss needs at least 2 samples in a batch, got %v", b))
	}
	diff := zc.Sub(zc.MeanDims([]int64{0}, true))
	scale := (b / (b - 1)) * (b / (b - 1))
	perSample := diff.Square().SumDims([]int64{1}, false)
	if norm == MeanDims {
		scale /= float64(zc.Size(1))
	}
	return perSample.Mean().MulScalar(scale)
}

// CodeCenterLoss reproduces the authors' compactness term: (1/(3B)) sum_i
// (B/(B-1))^2 var_unbiased(z_c^i over its features). It pulls each sample's
// features towards that sample's own mean, not towards the batch centre
// (METHODS section 1.5); it exists only to reproduce the code.
func CodeCenterLoss(zc *torch.Tensor) *torch.Tensor {
	if err := zc.Err(); err != nil {
		return zc
	}
	b := float64(zc.Size(0))
	if b < 2 {
		return torch.Failed(fmt.Errorf("center loss needs at least 2 samples in a batch, got %v", b))
	}
	v := zc.Var([]int64{1}, true, false)
	return v.Sum().MulScalar((b / (b - 1)) * (b / (b - 1)) / (3 * b))
}
