// Package ganomaly is GANomaly (Akcay et al., ACCV 2018; METHODS 3.3): an
// encoder E1, decoder G and second encoder E2 (x -> z -> x_hat -> z_hat)
// trained adversarially against a discriminator D. Normal images are
// reconstructed so that E2 recovers E1's code; the anomaly score is the
// latent mismatch mean (z - z_hat)^2. The default is the original DCGAN
// network; the MedIAnomaly re-implementation is a switch.
package ganomaly

import (
	"encoding/json"
	"fmt"

	"github.com/maddr-project/maddr/baselines"
	"github.com/maddr-project/maddr/baselines/internal/backbone"
	"github.com/maddr-project/maddr/nn"
	"github.com/maddr-project/maddr/torch"
)

func init() { baselines.Register("ganomaly", New) }

// The variants.
const (
	Original    = "original"
	MedIAnomaly = "medianomaly"
)

// Config is GANomaly's configuration; Options.Raw is read into it. Unset
// fields take the chosen variant's defaults.
type Config struct {
	ImageSize int    `json:"image_size"`
	Variant   string `json:"variant"`
	// Latent is nz, the width of z (original 100; MedIAnomaly variant 128
	// here, 16 in MedIAnomaly).
	Latent int `json:"latent"`
	// Width is ngf = ndf (original, 64) or the backbone's base width
	// (MedIAnomaly, 16).
	Width int `json:"width"`
	// Hidden is the MLP width of the MedIAnomaly variant.
	Hidden int `json:"hidden,omitempty"`
	// Loss weights: adversarial feature matching, reconstruction, latent.
	WAdv float64 `json:"w_adv"`
	WRec float64 `json:"w_rec"`
	WEnc float64 `json:"w_enc"`
	// Rec is the reconstruction error, "l1" (original) or "l2" (MedIAnomaly).
	Rec   string  `json:"rec"`
	LR    float64 `json:"lr"`
	Beta1 float64 `json:"beta1"`
	Beta2 float64 `json:"beta2"`
	// DReinitBelow re-initialises D when its loss falls below it.
	DReinitBelow float64 `json:"d_reinit_below"`
	Seed         uint64  `json:"seed"`
	Iterations   int     `json:"iterations"`
	// ClipGradNorm > 0 clips the gradient norm before each update (off by default, as in the papers).
	ClipGradNorm float64 `json:"clip_grad_norm,omitempty"`
}

// DefaultConfig returns the defaults of a variant.
func DefaultConfig(variant string) (Config, error) {
	c := Config{ImageSize: 64, Variant: variant, WAdv: 1, WRec: 50, WEnc: 1, Beta2: 0.999, DReinitBelow: 1e-5}
	switch variant {
	case Original:
		c.Latent, c.Width, c.Rec, c.LR, c.Beta1 = 100, 64, "l1", 2e-4, 0.5
	case MedIAnomaly:
		c.Latent, c.Width, c.Hidden, c.Rec, c.LR, c.Beta1 = 128, 16, 1024, "l2", 1e-3, 0.9
	default:
		return c, fmt.Errorf("ganomaly: variant %q is not %q or %q", variant, Original, MedIAnomaly)
	}
	return c, nil
}

// defaultIterations is 250 epochs (MedIAnomaly's GANomaly schedule) at batch
// 64 over MADDR's 648 training images. The original's 15 epochs were meant
// for ~45k-image sets (~10k iterations); at 648 images they would be 150.
const defaultIterations = 2500

// Model is GANomaly with its two Adam optimizers.
type Model struct {
	cfg      Config
	store    *nn.Store
	nets     *networks
	optG     *nn.Adam
	optD     *nn.Adam
	extra    []*nn.Param
	iter     int
	dReinits int
}

// New builds GANomaly from o (Options fields win over Raw when set).
func New(o baselines.Options) (baselines.Baseline, error) {
	var pick struct {
		Variant string `json:"variant"`
	}
	if len(o.Raw) > 0 {
		if err := json.Unmarshal(o.Raw, &pick); err != nil {
			return nil, fmt.Errorf("ganomaly settings: %w", err)
		}
	}
	if pick.Variant == "" {
		pick.Variant = Original
	}
	cfg, err := DefaultConfig(pick.Variant)
	if err != nil {
		return nil, err
	}
	if err := backbone.ApplyOptions("ganomaly", o, &cfg, backbone.Fields{
		ImageSize: &cfg.ImageSize, Latent: &cfg.Latent, Seed: &cfg.Seed, Iterations: &cfg.Iterations, ClipGradNorm: &cfg.ClipGradNorm,
	}); err != nil {
		return nil, err
	}
	return build(cfg)
}

func build(cfg Config) (*Model, error) {
	if cfg.Rec != "l1" && cfg.Rec != "l2" {
		return nil, fmt.Errorf("ganomaly: rec %q is not l1 or l2", cfg.Rec)
	}
	if cfg.Latent <= 0 || cfg.Width <= 0 || cfg.LR <= 0 || (cfg.Variant == MedIAnomaly && cfg.Hidden <= 0) {
		return nil, fmt.Errorf("ganomaly: latent, width, hidden and lr must be positive")
	}
	if cfg.WAdv < 0 || cfg.WRec < 0 || cfg.WEnc < 0 {
		return nil, fmt.Errorf("ganomaly: loss weights must not be negative")
	}
	s, err := nn.NewStore(cfg.Seed)
	if err != nil {
		return nil, err
	}
	m := &Model{cfg: cfg, store: s}
	switch cfg.Variant {
	case Original:
		m.nets, err = newOriginal(s, cfg)
	case MedIAnomaly:
		m.nets, err = newMedIAnomaly(s, cfg)
	default:
		err = fmt.Errorf("variant %q is not %q or %q", cfg.Variant, Original, MedIAnomaly)
	}
	if err != nil {
		return nil, fmt.Errorf("ganomaly: %w", err)
	}
	if err := s.Err(); err != nil {
		return nil, fmt.Errorf("ganomaly: %w", err)
	}
	if err := m.newOptimizers(); err != nil {
		return nil, err
	}
	return m, nil
}

func (m *Model) adam(params []*nn.Param) (*nn.Adam, error) {
	opt, err := nn.NewAdam(params, nn.AdamConfig{LR: m.cfg.LR, Beta1: m.cfg.Beta1, Beta2: m.cfg.Beta2, ClipNorm: m.cfg.ClipGradNorm})
	if err != nil {
		return nil, fmt.Errorf("ganomaly: %w", err)
	}
	return opt, nil
}

func (m *Model) newOptimizers() error {
	optG, err := m.adam(append(m.store.Sub("g").Trainable(), m.extra...))
	if err != nil {
		return err
	}
	optD, err := m.adam(m.store.Sub("d").Trainable())
	if err != nil {
		return err
	}
	m.optG, m.optD = optG, optD
	return nil
}

func (m *Model) Name() string           { return "ganomaly" }
func (m *Model) Store() *nn.Store       { return m.store }
func (m *Model) LatentDim() int         { return m.cfg.Latent }
func (m *Model) DefaultIterations() int { return defaultIterations }
func (m *Model) Config() any            { return m.cfg }

// AttachParams adds MADDR's head parameters to the generator's Adam (E1 is
// part of the generator).
func (m *Model) AttachParams(params []*nn.Param) error {
	if m.iter > 0 {
		return fmt.Errorf("ganomaly: parameters must be attached before the first training step")
	}
	extra := m.extra
	m.extra = append(append([]*nn.Param{}, m.extra...), params...)
	if err := m.newOptimizers(); err != nil {
		m.extra = extra
		return err
	}
	return nil
}

// outputs of the generator and discriminator in one step.
type outputs struct {
	z, xHat, zHat                *torch.Tensor
	predReal, featReal, featFake *torch.Tensor
	predFake                     *torch.Tensor
}

func (m *Model) generate(x *torch.Tensor, train bool) (z, xHat, zHat *torch.Tensor) {
	z = m.nets.enc1(x, train)
	xHat = m.nets.dec(z, train)
	return z, xHat, m.nets.enc2(xHat, train)
}

func (m *Model) recError(x, xHat *torch.Tensor) *torch.Tensor {
	return backbone.ReconstructionError(x, xHat, m.cfg.Rec == "l1")
}

// TrainStep updates G (E1, G, E2) and then D on the same batch.
func (m *Model) TrainStep(s *torch.Scope, step baselines.Step) (baselines.Losses, error) {
	losses, _, err := m.trainStep(s, step)
	return losses, err
}

func (m *Model) trainStep(s *torch.Scope, step baselines.Step) (baselines.Losses, outputs, error) {
	var out outputs
	fail := func(err error) (baselines.Losses, outputs, error) {
		return nil, out, fmt.Errorf("ganomaly: step %d: %w", step.Iter, err)
	}
	losses := baselines.Losses{}

	// Generator step. D's features of the real batch do not depend on G, so
	// they are detached; D's parameters still collect gradients through
	// D(x_hat), which the D step discards. Only the outputs and the loss
	// terms outlive the forward pass, so backward frees the rest as it goes.
	if err := m.optG.ZeroGrad(); err != nil {
		return fail(err)
	}
	var adv, rec, enc, g *torch.Tensor
	err := backbone.Forward(s, func(fs *torch.Scope) error {
		x := fs.AliasIn(step.X)
		out.z, out.xHat, out.zHat = m.generate(x, true)
		out.predReal, out.featReal = m.nets.disc(x, true)
		// The D step zeroes D's gradients before its own backward, so the
		// generator's backward through D(x_hat) needs only the input gradient:
		// with D's weights frozen for this pass, autograd skips computing their
		// gradients (a third of D's backward work) and G's gradients are unchanged.
		dParams := m.store.Sub("d").Trainable()
		for _, p := range dParams {
			p.T.SetRequiresGrad(false)
		}
		_, out.featFake = m.nets.disc(out.xHat, true)
		for _, p := range dParams {
			if err := p.T.SetRequiresGrad(true).Err(); err != nil {
				return err
			}
		}
		adv = out.featReal.Detach().Sub(out.featFake).Square().Mean()
		rec = m.recError(x, out.xHat).Mean()
		enc = out.z.Sub(out.zHat).Square().Mean()
		g = adv.MulScalar(m.cfg.WAdv).Add(rec.MulScalar(m.cfg.WRec)).Add(enc.MulScalar(m.cfg.WEnc))
		var err error
		g, err = backbone.AddHook(step.Hook, out.z, g, losses)
		return err
	}, &out.z, &out.xHat, &out.zHat, &out.predReal, &out.featReal, &out.featFake, &adv, &rec, &enc, &g)
	if err != nil {
		return fail(err)
	}
	if err := g.Backward(); err != nil {
		return fail(err)
	}
	if err := m.optG.Step(); err != nil {
		return fail(err)
	}

	// Discriminator step on the real batch and the (pre-update) reconstruction.
	if err := m.optD.ZeroGrad(); err != nil {
		return fail(err)
	}
	var dReal, dFake, d *torch.Tensor
	err = backbone.Forward(s, func(fs *torch.Scope) error {
		out.predFake, _ = m.nets.disc(fs.AliasIn(out.xHat).Detach(), true)
		n := out.predReal.Size(0)
		ones := fs.Adopt(torch.Ones(n))
		zeros := fs.Adopt(torch.Zeros(n))
		dReal = out.predReal.BinaryCrossEntropy(ones, torch.ReduceMean)
		dFake = out.predFake.BinaryCrossEntropy(zeros, torch.ReduceMean)
		d = dReal.Add(dFake).MulScalar(0.5)
		return d.Err()
	}, &out.predFake, &dReal, &dFake, &d)
	if err != nil {
		return fail(err)
	}
	if err := d.Backward(); err != nil {
		return fail(err)
	}
	if err := m.optD.Step(); err != nil {
		return fail(err)
	}
	m.iter++

	err = backbone.Record(losses, map[string]*torch.Tensor{
		"g_adv": adv, "g_rec": rec, "g_enc": enc, "g": g, "d_real": dReal, "d_fake": dFake, "d": d})
	if err != nil {
		return fail(err)
	}
	// A D that has won outright gives G no signal; GANomaly restarts it.
	losses["d_reinit"] = 0
	if losses["d"] < m.cfg.DReinitBelow {
		if err := m.nets.reinitD(m.store); err != nil {
			return fail(fmt.Errorf("re-initialising D: %w", err))
		}
		m.dReinits++
		losses["d_reinit"] = 1
	}
	return losses, out, nil
}

// Latent returns z = E1(x) (B x D).
func (m *Model) Latent(x *torch.Tensor, train bool) *torch.Tensor { return m.nets.enc1(x, train) }

// Score is mean_dims (z - z_hat)^2 per image, with BatchNorm in eval mode.
func (m *Model) Score(x *torch.Tensor) *torch.Tensor {
	return backbone.Eval(x, func(_ *torch.Scope, x *torch.Tensor) *torch.Tensor {
		z, _, zHat := m.generate(x, false)
		return z.Sub(zHat).Square().MeanDims([]int64{1}, false)
	})
}

// AnomalyMap is the per-pixel reconstruction error (absolute for l1,
// squared for l2); the score itself lives in latent space and has no map.
func (m *Model) AnomalyMap(x *torch.Tensor) *torch.Tensor {
	return backbone.Eval(x, func(_ *torch.Scope, x *torch.Tensor) *torch.Tensor {
		_, xHat, _ := m.generate(x, false)
		return m.recError(x, xHat)
	})
}

// OptimizerState returns the generator's Adam under "adam_g." and the
// discriminator's under "adam_d.".
func (m *Model) OptimizerState() map[string]*torch.Tensor { return m.optimizers().State() }

func (m *Model) optimizers() backbone.Optimizers {
	return backbone.Optimizers{"adam_g": m.optG, "adam_d": m.optD}
}

type trainingState struct {
	Iter     int `json:"iter"`
	DReinits int `json:"d_reinits"`
}

// TrainingState records the step count and how often D was re-initialised.
func (m *Model) TrainingState() (json.RawMessage, error) {
	return json.Marshal(trainingState{Iter: m.iter, DReinits: m.dReinits})
}

// Restore loads both optimizers and the counters; call it after AttachParams.
func (m *Model) Restore(optimizer map[string]*torch.Tensor, state json.RawMessage) error {
	var st trainingState
	if err := backbone.Restore("ganomaly", m.optimizers(), optimizer, state, &st); err != nil {
		return err
	}
	m.iter, m.dReinits = st.Iter, st.DReinits
	return nil
}

// Notes are remarks for logs and reports.
func (m *Model) Notes() []string {
	c := m.cfg
	n := []string{fmt.Sprintf("ganomaly: %s variant, nz %d, width %d, loss %g*adv + %g*%s + %g*enc, Adam lr %g betas (%g, %g); "+
		"default schedule %d iterations = 250 epochs of 648 images at batch 64 (the original trains 15 epochs of far larger sets)",
		c.Variant, c.Latent, c.Width, c.WAdv, c.WRec, c.Rec, c.WEnc, c.LR, c.Beta1, c.Beta2, defaultIterations),
		"ganomaly: scores with BatchNorm in eval mode (running statistics); the original and MedIAnomaly score in train mode, " +
			"which makes a score depend on the other images of its batch",
		"ganomaly: the model of the last iteration is kept (the original keeps the epoch with the best test AUC)"}
	if m.dReinits > 0 {
		n = append(n, fmt.Sprintf("ganomaly: D was re-initialised %d times", m.dReinits))
	}
	return n
}
