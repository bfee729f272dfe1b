// Package maddr is the MADDR framework (Zhang et al., MICCAI 2023): it splits
// a baseline's latent z into a modality part z_m, an organ part z_o and a
// continuous part z_c, trains a classifier head with a focal loss on each of
// the first two, compacts the third with the leave-one-out center loss of
// eq. 4, mixes images across datasets (mixup), and leaves the baseline's
// networks and test-time score untouched.
//
// It reaches the baseline only through baselines.Baseline; nothing here
// knows which baseline runs.
package maddr

import (
	"fmt"
	"math"
)

// Config holds every switch of the paper's Table 2 and the switches that
// reproduce the authors' code. The zero value is "baseline only"; Paper()
// is the full method.
type Config struct {
	// Organ, Modality and Center turn L_o, L_m and L_c on.
	Organ    bool `json:"organ"`
	Modality bool `json:"modality"`
	Center   bool `json:"center"`
	// Disentangle applies the constraints to slices of z (z_m, z_o, z_c);
	// off, both heads read the whole z and L_c acts on the whole z.
	Disentangle bool `json:"disentangle"`
	// ModalityDims and OrganDims size z_m = z[0:m] and z_o = z[m:m+o].
	ModalityDims int `json:"modality_dims"`
	OrganDims    int `json:"organ_dims"`
	// LambdaOrgan, LambdaModality, LambdaCenter weight the three terms
	// (paper: 1; the code's effective weight is 0.1).
	LambdaOrgan    float64 `json:"lambda_organ"`
	LambdaModality float64 `json:"lambda_modality"`
	LambdaCenter   float64 `json:"lambda_center"`
	// FocalAlpha is alpha of class 0; other classes get 1-alpha unless
	// FocalUniform (the paper's wording: alpha for every class).
	FocalAlpha   float64 `json:"focal_alpha"`
	FocalUniform bool    `json:"focal_uniform"`
	FocalGamma   float64 `json:"focal_gamma"`
	// CenterNorm is sum_dims (eq. 4) or mean_dims (DOC).
	CenterNorm CenterNorm `json:"center_norm"`
	// CodeCenterLoss uses the authors' per-sample variance term instead of eq. 4.
	CodeCenterLoss bool `json:"code_center_loss"`
	// FreezeHeads keeps the heads at their random init (the code never
	// passes them to the optimizer); they still pass gradients to z.
	FreezeHeads bool `json:"freeze_heads"`
	// ReproduceLabelBug trains the organ head on the modality labels, as
	// the code's in-place label aliasing does.
	ReproduceLabelBug bool `json:"reproduce_label_bug"`
	// Mixup configures image mixing across datasets.
	Mixup Mixup `json:"mixup"`
}

// Mixup is the schedule of METHODS section 1.7: one Beta(alpha, alpha)
// lambda and one permutation per batch on iterations Start..End (inclusive).
type Mixup struct {
	// Mode is "auto" (on iff a constraint is active), "on" or "off".
	Mode  string  `json:"mode"`
	Start int     `json:"start"`
	End   int     `json:"end"`
	Alpha float64 `json:"alpha"`
}

// The code's schedule: mixup on iterations 7001..10000 of 16000.
const (
	PaperIterations = 16000
	paperMixupStart = 7001
	paperMixupEnd   = 10000
)

// Paper returns full MADDR with the defaults METHODS.md recommends.
func Paper() Config {
	return Config{
		Organ: true, Modality: true, Center: true, Disentangle: true,
		ModalityDims: 10, OrganDims: 10,
		LambdaOrgan: 1, LambdaModality: 1, LambdaCenter: 1,
		FocalAlpha: 0.25, FocalGamma: 2,
		CenterNorm: SumDims,
		Mixup:      Mixup{Mode: "auto", Start: paperMixupStart, End: paperMixupEnd, Alpha: 1},
	}
}

// BaselineOnly returns a configuration with no constraint and no mixup.
func BaselineOnly() Config {
	c := Paper()
	c.Organ, c.Modality, c.Center, c.Disentangle = false, false, false, false
	c.Mixup.Mode = "off"
	return c
}

// ReproduceCode returns c with every switch that reproduces the authors'
// shipped code: frozen heads, effective weights 0.1, their compactness
// term, and the organ head trained on modality labels.
func (c Config) ReproduceCode() Config {
	c.FreezeHeads = true
	c.LambdaOrgan, c.LambdaModality, c.LambdaCenter = 0.1, 0.1, 0.1
	c.CodeCenterLoss = true
	c.ReproduceLabelBug = true
	c.FocalUniform = false
	return c
}

// AnyConstraint reports whether any MADDR loss is on.
func (c Config) AnyConstraint() bool { return c.Organ || c.Modality || c.Center }

// MixupActive reports whether iteration iter (from 1) mixes its batch.
func (c Config) MixupActive(iter int) bool {
	switch c.Mixup.Mode {
	case "off":
		return false
	case "auto", "":
		if !c.AnyConstraint() {
			return false
		}
	}
	return iter >= c.Mixup.Start && iter <= c.Mixup.End
}

// ScaleMixup moves the paper's mixup window (7001..10000 of 16000) to a run
// of total iterations, keeping its relative position.
func (c Config) ScaleMixup(total int) Config {
	c.Mixup.Start = int(math.Round(float64(paperMixupStart-1)/PaperIterations*float64(total))) + 1
	c.Mixup.End = int(math.Round(float64(paperMixupEnd) / PaperIterations * float64(total)))
	return c
}

// Validate checks the configuration against the latent width d.
func (c Config) Validate(latentDim int) error {
	if c.ModalityDims < 0 || c.OrganDims < 0 {
		return fmt.Errorf("maddr: negative slice size")
	}
	// The slices matter only to an active term: with every term off (--baseline-only) any latent width is fine.
	if c.Disentangle && (c.Organ || c.Modality || c.Center) && c.ModalityDims+c.OrganDims >= latentDim {
		return fmt.Errorf("maddr: z_m (%d) + z_o (%d) leave nothing of the %d-dim latent for z_c", c.ModalityDims, c.OrganDims, latentDim)
	}
	if c.Disentangle && ((c.Modality && c.ModalityDims == 0) || (c.Organ && c.OrganDims == 0)) {
		return fmt.Errorf("maddr: an active head needs a non-empty latent slice")
	}
	if c.FocalGamma < 0 || c.FocalAlpha < 0 || c.FocalAlpha > 1 {
		return fmt.Errorf("maddr: focal alpha must be in [0, 1] and gamma >= 0")
	}
	switch c.CenterNorm {
	case SumDims, MeanDims, "":
	default:
		return fmt.Errorf("maddr: unknown center norm %q (sum_dims or mean_dims)", c.CenterNorm)
	}
	switch c.Mixup.Mode {
	case "auto", "on", "off", "":
	default:
		return fmt.Errorf("maddr: unknown mixup mode %q (auto, on, off)", c.Mixup.Mode)
	}
	if c.Mixup.Mode != "off" && c.Mixup.Alpha <= 0 {
		return fmt.Errorf("maddr: mixup alpha must be positive")
	}
	return nil
}
