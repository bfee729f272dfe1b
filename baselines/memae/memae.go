// Package memae is the memory-augmented autoencoder (MemAE, Gong et al.,
// ICCV 2019) as the MedIAnomaly benchmark builds it (METHODS 3.1, 3.2): the
// encoder's latent z addresses a learned memory of normal patterns and the
// decoder reconstructs from the memory read-out, so anomalies reconstruct
// badly. The score is the per-image pixel MSE.
package memae

import (
	"encoding/json"
	"fmt"
	"math"

	"github.com/maddr-project/maddr/baselines"
	"github.com/maddr-project/maddr/baselines/internal/backbone"
	"github.com/maddr-project/maddr/nn"
	"github.com/maddr-project/maddr/torch"
)

func init() { baselines.Register("memae", New) }

// Config is MemAE's configuration; Options.Raw is read into it.
type Config struct {
	ImageSize int `json:"image_size"`
	// Latent is the width of z (MedIAnomaly: 16; 128 here so MADDR can split it).
	Latent    int `json:"latent"`
	BaseWidth int `json:"base_width"`
	Hidden    int `json:"hidden"`
	// MemSize is the number of memory slots N.
	MemSize int `json:"mem_size"`
	// ShrinkThreshold is the hard-shrinkage threshold lambda (0 disables
	// shrinkage and the L1 renormalisation).
	ShrinkThreshold float64 `json:"shrink_threshold"`
	// EntropyWeight weights the entropy of the addressing weights.
	EntropyWeight float64 `json:"entropy_weight"`
	// Addressing is "dot" (the code of MemAE and MedIAnomaly) or "cosine"
	// (the similarity the MemAE paper describes).
	Addressing  string  `json:"addressing"`
	LR          float64 `json:"lr"`
	WeightDecay float64 `json:"weight_decay"`
	Seed        uint64  `json:"seed"`
	Iterations  int     `json:"iterations"`
	// ClipGradNorm > 0 clips the gradient norm before each update (off by default, as in the papers).
	ClipGradNorm float64 `json:"clip_grad_norm,omitempty"`
}

// DefaultConfig is MedIAnomaly's MemAE with a 128-wide latent.
func DefaultConfig() Config {
	return Config{ImageSize: 64, Latent: 128, BaseWidth: 16, Hidden: 1024, MemSize: 25, ShrinkThreshold: 0.0025,
		EntropyWeight: 0.0002, Addressing: "dot", LR: 1e-3}
}

// defaultIterations is MedIAnomaly's 250 epochs at batch 64 over MADDR's
// 648 training images (10 full batches per epoch).
const defaultIterations = 2500

// Model is MemAE with its Adam optimizer.
type Model struct {
	cfg    Config
	store  *nn.Store
	enc    *backbone.LatentEncoder
	memory *torch.Tensor // N x latent
	dec    *backbone.LatentDecoder
	opt    *nn.Adam
	extra  []*nn.Param
	iter   int
}

// New builds MemAE from o (Options fields win over Raw when set).
func New(o baselines.Options) (baselines.Baseline, error) {
	cfg := DefaultConfig()
	if err := backbone.ApplyOptions("memae", o, &cfg, backbone.Fields{
		ImageSize: &cfg.ImageSize, Latent: &cfg.Latent, Seed: &cfg.Seed, Iterations: &cfg.Iterations, ClipGradNorm: &cfg.ClipGradNorm,
	}); err != nil {
		return nil, err
	}
	return build(cfg)
}

func build(cfg Config) (*Model, error) {
	if cfg.Addressing != "dot" && cfg.Addressing != "cosine" {
		return nil, fmt.Errorf("memae: addressing %q is not dot or cosine", cfg.Addressing)
	}
	if cfg.Latent <= 0 || cfg.BaseWidth <= 0 || cfg.Hidden <= 0 || cfg.MemSize <= 0 || cfg.LR <= 0 {
		return nil, fmt.Errorf("memae: latent, base_width, hidden, mem_size and lr must be positive")
	}
	if cfg.ShrinkThreshold < 0 || cfg.ShrinkThreshold >= 1 || cfg.EntropyWeight < 0 {
		return nil, fmt.Errorf("memae: shrink_threshold must be in [0, 1) and entropy_weight >= 0")
	}
	s, err := nn.NewStore(cfg.Seed)
	if err != nil {
		return nil, err
	}
	m := &Model{cfg: cfg, store: s}
	m.enc, err = backbone.NewLatentEncoder(s.Sub("enc"), cfg.ImageSize, cfg.BaseWidth, cfg.Hidden, cfg.Latent, true)
	if err != nil {
		return nil, fmt.Errorf("memae: %w", err)
	}
	// MemAE's init: U(-1/sqrt(d), 1/sqrt(d)) with d the slot width.
	bound := 1 / math.Sqrt(float64(cfg.Latent))
	m.memory = s.Sub("mem").NewParam("weight", []int64{int64(cfg.MemSize), int64(cfg.Latent)}, nn.Uniform(-bound, bound))
	m.dec, err = backbone.NewLatentDecoder(s.Sub("dec"), cfg.ImageSize, cfg.BaseWidth, cfg.Hidden, cfg.Latent, true)
	if err != nil {
		return nil, fmt.Errorf("memae: %w", err)
	}
	if err := s.Err(); err != nil {
		return nil, fmt.Errorf("memae: %w", err)
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
	for _, net := range []string{"enc", "mem", "dec"} {
		params = append(params, m.store.Sub(net).Trainable()...)
	}
	opt, err := nn.NewAdam(append(params, m.extra...), nn.AdamConfig{LR: m.cfg.LR, WeightDecay: m.cfg.WeightDecay, ClipNorm: m.cfg.ClipGradNorm})
	if err != nil {
		return fmt.Errorf("memae: %w", err)
	}
	m.opt = opt
	return nil
}

func (m *Model) Name() string           { return "memae" }
func (m *Model) Store() *nn.Store       { return m.store }
func (m *Model) LatentDim() int         { return m.cfg.Latent }
func (m *Model) DefaultIterations() int { return defaultIterations }
func (m *Model) Config() any            { return m.cfg }

// AttachParams adds MADDR's head parameters to MemAE's Adam.
func (m *Model) AttachParams(params []*nn.Param) error {
	if m.iter > 0 {
		return fmt.Errorf("memae: parameters must be attached before the first training step")
	}
	extra := m.extra
	m.extra = append(append([]*nn.Param{}, m.extra...), params...)
	if err := m.newOptimizer(); err != nil {
		m.extra = extra
		return err
	}
	return nil
}

type outputs struct {
	z, weights, zHat, xHat *torch.Tensor
}

// address reads the memory with z: softmax similarities, hard-shrunk and
// renormalised to sum 1, returning the weights (B x N) and the read-out.
// The memory is a parameter (unscoped), so it is aliased into sc first.
func (m *Model) address(sc *torch.Scope, z *torch.Tensor) (w, zHat *torch.Tensor) {
	mem := sc.AliasIn(m.memory)
	if m.cfg.Addressing == "cosine" {
		unit := func(t *torch.Tensor) *torch.Tensor {
			return t.Div(t.Norm([]int64{1}, true).ClampMin(1e-12))
		}
		w = unit(z).Linear(unit(mem), nil)
	} else {
		w = z.Linear(mem, nil)
	}
	w = w.Softmax(1)
	if lam := m.cfg.ShrinkThreshold; lam > 0 {
		// relu(w - lam) * w / |w - lam| is w where w > lam and 0 elsewhere,
		// written this way (as MemAE does) so its gradient is defined.
		shifted := w.SubScalar(lam)
		w = shifted.Relu().Mul(w).Div(shifted.Abs().AddScalar(1e-12))
		w = w.Div(w.Abs().SumDims([]int64{1}, true).ClampMin(1e-12))
	}
	return w, w.Matmul(mem)
}

func (m *Model) forward(sc *torch.Scope, x *torch.Tensor, train bool) outputs {
	z := m.enc.Forward(x, train)
	w, zHat := m.address(sc, z)
	return outputs{z: z, weights: w, zHat: zHat, xHat: m.dec.Forward(zHat, train)}
}

// entropy is the batch mean of -sum_k w_k log(w_k + 1e-12).
func entropy(w *torch.Tensor) *torch.Tensor {
	return w.Mul(w.AddScalar(1e-12).Log()).SumDims([]int64{1}, false).Mean().Neg()
}

// TrainStep runs one Adam update on MSE + entropy_weight * entropy + the hook's loss.
func (m *Model) TrainStep(s *torch.Scope, step baselines.Step) (baselines.Losses, error) {
	losses, _, err := m.trainStep(s, step)
	return losses, err
}

func (m *Model) trainStep(s *torch.Scope, step baselines.Step) (baselines.Losses, outputs, error) {
	if err := m.opt.ZeroGrad(); err != nil {
		return nil, outputs{}, err
	}
	x := s.AliasIn(step.X)
	out := m.forward(s, x, true)
	rec := x.Sub(out.xHat).Square().Mean()
	ent := entropy(out.weights)
	total := rec.Add(ent.MulScalar(m.cfg.EntropyWeight))
	losses := baselines.Losses{}
	total, err := backbone.AddHook(step.Hook, out.z, total, losses)
	if err != nil {
		return nil, out, fmt.Errorf("memae: %w", err)
	}
	if err := total.Backward(); err != nil {
		return nil, out, fmt.Errorf("memae: step %d: %w", step.Iter, err)
	}
	if err := m.opt.Step(); err != nil {
		return nil, out, fmt.Errorf("memae: step %d: %w", step.Iter, err)
	}
	m.iter++
	if err := backbone.Record(losses, map[string]*torch.Tensor{"rec": rec, "entropy": ent, "loss": total}); err != nil {
		return nil, out, err
	}
	return losses, out, nil
}

// Latent returns z, the encoder output before memory addressing.
func (m *Model) Latent(x *torch.Tensor, train bool) *torch.Tensor { return m.enc.Forward(x, train) }

// Score is the per-image mean squared reconstruction error.
func (m *Model) Score(x *torch.Tensor) *torch.Tensor {
	return backbone.Eval(x, func(sc *torch.Scope, x *torch.Tensor) *torch.Tensor {
		return backbone.PerImageMean(backbone.ReconstructionError(x, m.forward(sc, x, false).xHat, false))
	})
}

// AnomalyMap is the per-pixel squared reconstruction error.
func (m *Model) AnomalyMap(x *torch.Tensor) *torch.Tensor {
	return backbone.Eval(x, func(sc *torch.Scope, x *torch.Tensor) *torch.Tensor {
		return backbone.ReconstructionError(x, m.forward(sc, x, false).xHat, false)
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
	if err := backbone.Restore("memae", m.optimizers(), optimizer, state, &st); err != nil {
		return err
	}
	m.iter = st.Iter
	return nil
}

// Notes are remarks for logs and reports.
func (m *Model) Notes() []string {
	n := []string{fmt.Sprintf("memae: MedIAnomaly MemAE, latent %d (MedIAnomaly uses 16), %d slots, shrink %g, "+
		"entropy weight %g, %s addressing, Adam lr %g; default schedule %d iterations = 250 epochs of 648 images at batch 64",
		m.cfg.Latent, m.cfg.MemSize, m.cfg.ShrinkThreshold, m.cfg.EntropyWeight, m.cfg.Addressing, m.cfg.LR, defaultIterations)}
	if m.cfg.ImageSize != 64 {
		n = append(n, fmt.Sprintf("memae: %dx%d input uses %d down blocks (MedIAnomaly has 4 at every size)",
			m.cfg.ImageSize, m.cfg.ImageSize, len(m.enc.Trunk.Blocks)))
	}
	if float64(m.cfg.MemSize)*m.cfg.ShrinkThreshold >= 1 {
		n = append(n, "memae: shrink_threshold >= 1/mem_size can zero every addressing weight of a sample")
	}
	return n
}
