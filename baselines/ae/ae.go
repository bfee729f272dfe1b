// Package ae is the plain convolutional autoencoder of the MedIAnomaly
// benchmark (METHODS 3.1): it reconstructs the image through a latent
// bottleneck and scores an image by its reconstruction error. It is the
// simplest baseline MADDR can wrap and the reference point for MemAE.
package ae

import (
	"encoding/json"
	"fmt"

	"github.com/maddr-project/maddr/baselines"
	"github.com/maddr-project/maddr/baselines/internal/backbone"
	"github.com/maddr-project/maddr/nn"
	"github.com/maddr-project/maddr/torch"
)

func init() { baselines.Register("ae", New) }

// Config is the autoencoder's configuration; Options.Raw is read into it.
type Config struct {
	ImageSize int `json:"image_size"`
	// Latent is the width of z (MedIAnomaly: 16; 128 here so MADDR can split it).
	Latent int `json:"latent"`
	// BaseWidth is the channel count of the first down block.
	BaseWidth int `json:"base_width"`
	// Hidden is the width of the bottleneck MLP.
	Hidden int `json:"hidden"`
	// Loss is "l2" (MedIAnomaly's default) or "l1"; the score and the anomaly
	// map use the same error.
	Loss        string  `json:"loss"`
	LR          float64 `json:"lr"`
	WeightDecay float64 `json:"weight_decay"`
	Seed        uint64  `json:"seed"`
	Iterations  int     `json:"iterations"`
	// ClipGradNorm > 0 clips the gradient norm before each update (off by default, as in the papers).
	ClipGradNorm float64 `json:"clip_grad_norm,omitempty"`
}

// DefaultConfig is MedIAnomaly's AE with a 128-wide latent.
func DefaultConfig() Config {
	return Config{ImageSize: 64, Latent: 128, BaseWidth: 16, Hidden: 1024, Loss: "l2", LR: 1e-3}
}

// defaultIterations is MedIAnomaly's 250 epochs at batch 64 over MADDR's
// 648 training images (10 full batches per epoch).
const defaultIterations = 2500

// Model is the autoencoder with its Adam optimizer.
type Model struct {
	cfg   Config
	store *nn.Store
	enc   *backbone.LatentEncoder
	dec   *backbone.LatentDecoder
	opt   *nn.Adam
	extra []*nn.Param
	iter  int
}

// New builds the autoencoder from o (Options fields win over Raw when set).
func New(o baselines.Options) (baselines.Baseline, error) {
	cfg := DefaultConfig()
	if err := backbone.ApplyOptions("ae", o, &cfg, backbone.Fields{
		ImageSize: &cfg.ImageSize, Latent: &cfg.Latent, Seed: &cfg.Seed, Iterations: &cfg.Iterations, ClipGradNorm: &cfg.ClipGradNorm,
	}); err != nil {
		return nil, err
	}
	return build(cfg)
}

func build(cfg Config) (*Model, error) {
	if cfg.Loss != "l1" && cfg.Loss != "l2" {
		return nil, fmt.Errorf("ae: loss %q is not l1 or l2", cfg.Loss)
	}
	if cfg.Latent <= 0 || cfg.BaseWidth <= 0 || cfg.Hidden <= 0 || cfg.LR <= 0 {
		return nil, fmt.Errorf("ae: latent, base_width, hidden and lr must be positive (got %d, %d, %d, %g)",
			cfg.Latent, cfg.BaseWidth, cfg.Hidden, cfg.LR)
	}
	s, err := nn.NewStore(cfg.Seed)
	if err != nil {
		return nil, err
	}
	m := &Model{cfg: cfg, store: s}
	m.enc, err = backbone.NewLatentEncoder(s.Sub("enc"), cfg.ImageSize, cfg.BaseWidth, cfg.Hidden, cfg.Latent, true)
	if err != nil {
		return nil, fmt.Errorf("ae: %w", err)
	}
	m.dec, err = backbone.NewLatentDecoder(s.Sub("dec"), cfg.ImageSize, cfg.BaseWidth, cfg.Hidden, cfg.Latent, true)
	if err != nil {
		return nil, fmt.Errorf("ae: %w", err)
	}
	if err := s.Err(); err != nil {
		return nil, fmt.Errorf("ae: %w", err)
	}
	if err := m.newOptimizer(); err != nil {
		return nil, err
	}
	return m, nil
}

// newOptimizer builds Adam over the model's own networks and the attached
// parameters. It lists the networks by name rather than taking the whole
// store, because MADDR's heads live in the store too (so they are saved with
// the weights) and are also handed to AttachParams.
func (m *Model) newOptimizer() error {
	var params []*nn.Param
	for _, net := range []string{"enc", "dec"} {
		params = append(params, m.store.Sub(net).Trainable()...)
	}
	opt, err := nn.NewAdam(append(params, m.extra...), nn.AdamConfig{LR: m.cfg.LR, WeightDecay: m.cfg.WeightDecay, ClipNorm: m.cfg.ClipGradNorm})
	if err != nil {
		return fmt.Errorf("ae: %w", err)
	}
	m.opt = opt
	return nil
}

func (m *Model) Name() string           { return "ae" }
func (m *Model) Store() *nn.Store       { return m.store }
func (m *Model) LatentDim() int         { return m.cfg.Latent }
func (m *Model) DefaultIterations() int { return defaultIterations }
func (m *Model) Config() any            { return m.cfg }

// AttachParams adds MADDR's head parameters to the autoencoder's Adam.
func (m *Model) AttachParams(params []*nn.Param) error {
	if m.iter > 0 {
		return fmt.Errorf("ae: parameters must be attached before the first training step")
	}
	extra := m.extra
	m.extra = append(append([]*nn.Param{}, m.extra...), params...)
	if err := m.newOptimizer(); err != nil {
		m.extra = extra
		return err
	}
	return nil
}

// outputs of one forward pass.
type outputs struct {
	z, xHat *torch.Tensor
}

func (m *Model) forward(x *torch.Tensor, train bool) outputs {
	z := m.enc.Forward(x, train)
	return outputs{z: z, xHat: m.dec.Forward(z, train)}
}

func (m *Model) errorMap(x, xHat *torch.Tensor) *torch.Tensor {
	return backbone.ReconstructionError(x, xHat, m.cfg.Loss == "l1")
}

// TrainStep runs one Adam update on the reconstruction loss plus the hook's loss.
func (m *Model) TrainStep(s *torch.Scope, step baselines.Step) (baselines.Losses, error) {
	losses, _, err := m.trainStep(s, step)
	return losses, err
}

func (m *Model) trainStep(s *torch.Scope, step baselines.Step) (baselines.Losses, outputs, error) {
	if err := m.opt.ZeroGrad(); err != nil {
		return nil, outputs{}, err
	}
	x := s.AliasIn(step.X)
	out := m.forward(x, true)
	rec := m.errorMap(x, out.xHat).Mean()
	losses := baselines.Losses{}
	total, err := backbone.AddHook(step.Hook, out.z, rec, losses)
	if err != nil {
		return nil, out, fmt.Errorf("ae: %w", err)
	}
	if err := total.Backward(); err != nil {
		return nil, out, fmt.Errorf("ae: step %d: %w", step.Iter, err)
	}
	if err := m.opt.Step(); err != nil {
		return nil, out, fmt.Errorf("ae: step %d: %w", step.Iter, err)
	}
	m.iter++
	if err := backbone.Record(losses, map[string]*torch.Tensor{"rec": rec, "loss": total}); err != nil {
		return nil, out, err
	}
	return losses, out, nil
}

// Latent returns z for x.
func (m *Model) Latent(x *torch.Tensor, train bool) *torch.Tensor { return m.enc.Forward(x, train) }

// Score is the per-image mean squared (l2) or absolute (l1) reconstruction error.
func (m *Model) Score(x *torch.Tensor) *torch.Tensor {
	return backbone.Eval(x, func(_ *torch.Scope, x *torch.Tensor) *torch.Tensor {
		return backbone.PerImageMean(m.errorMap(x, m.forward(x, false).xHat))
	})
}

// AnomalyMap is the per-pixel reconstruction error.
func (m *Model) AnomalyMap(x *torch.Tensor) *torch.Tensor {
	return backbone.Eval(x, func(_ *torch.Scope, x *torch.Tensor) *torch.Tensor {
		return m.errorMap(x, m.forward(x, false).xHat)
	})
}

// OptimizerState returns Adam's tensors under "adam.".
func (m *Model) OptimizerState() map[string]*torch.Tensor { return m.optimizers().State() }

func (m *Model) optimizers() backbone.Optimizers { return backbone.Optimizers{"adam": m.opt} }

type trainingState struct {
	Iter int `json:"iter"`
}

// TrainingState records the number of steps taken.
func (m *Model) TrainingState() (json.RawMessage, error) {
	return json.Marshal(trainingState{Iter: m.iter})
}

// Restore loads Adam's tensors and the step count; call it after AttachParams.
func (m *Model) Restore(optimizer map[string]*torch.Tensor, state json.RawMessage) error {
	var st trainingState
	if err := backbone.Restore("ae", m.optimizers(), optimizer, state, &st); err != nil {
		return err
	}
	m.iter = st.Iter
	return nil
}

// Notes are remarks for logs and reports.
func (m *Model) Notes() []string {
	n := []string{fmt.Sprintf("ae: MedIAnomaly autoencoder, latent %d (MedIAnomaly uses 16), %s loss, Adam lr %g; "+
		"default schedule %d iterations = 250 epochs of 648 images at batch 64", m.cfg.Latent, m.cfg.Loss, m.cfg.LR, defaultIterations)}
	if m.cfg.ImageSize != 64 {
		n = append(n, fmt.Sprintf("ae: %dx%d input uses %d down blocks (MedIAnomaly has 4 at every size)",
			m.cfg.ImageSize, m.cfg.ImageSize, len(m.enc.Trunk.Blocks)))
	}
	return n
}
