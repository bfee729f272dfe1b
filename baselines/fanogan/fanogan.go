// Package fanogan is the f-AnoGAN baseline (Schlegl et al., Medical Image
// Analysis 2019): a residual WGAN-GP trained on normal images, then an izif
// encoder that maps an image to the generator's latent space, scored by the
// image and critic-feature distance between x and G(E(x)).
//
// Both stages run inside one iteration budget: the first WGANIters calls of
// TrainStep train the GAN (one critic step per call, plus a generator step
// every NCritic-th call), the rest train the encoder with G and D frozen.
// MADDR's latent z is the encoder output, so its hook only acts in stage 2.
// docs/models/fanogan.md describes the model, the defaults and the choices.
package fanogan

import (
	"encoding/json"
	"fmt"
	"math"
	"math/bits"

	"github.com/maddr-project/maddr/baselines"
	"github.com/maddr-project/maddr/baselines/internal/backbone"
	"github.com/maddr-project/maddr/nn"
	"github.com/maddr-project/maddr/torch"
)

// Name is the registry name.
const Name = "fanogan"

func init() {
	baselines.Register(Name, func(o baselines.Options) (baselines.Baseline, error) { return New(o) })
}

// Defaults of the paper's setting (METHODS 3.4).
const (
	DefaultWidth      = 64
	DefaultLatent     = 128
	DefaultWGANIters  = 100000 // critic steps = 20,000 generator steps
	DefaultIzifIters  = 50000  // the paper's encoder schedule
	DefaultIterations = DefaultWGANIters + DefaultIzifIters
)

// Config is the full configuration. Options.Raw is decoded over the defaults
// with the same field names, so Config() fed back as Raw rebuilds the model.
type Config struct {
	ImageSize int `json:"image_size"`
	LatentDim int `json:"latent_dim"`
	// Width is the channel count at full resolution (64 in the paper); the
	// parity test uses 4.
	Width int `json:"width"`
	// Iterations is the budget of both stages together.
	Iterations int `json:"iterations"`
	// ClipGradNorm > 0 clips the gradient norm before each update of every optimizer (off by default).
	ClipGradNorm float64 `json:"clip_grad_norm,omitempty"`
	// WGANIters is the length of stage 1 in TrainStep calls (critic steps).
	// 0 means round(WGANFraction * Iterations).
	WGANIters    int     `json:"wgan_iters"`
	WGANFraction float64 `json:"wgan_fraction"`
	// NCritic is the number of critic steps per generator step.
	NCritic  int     `json:"n_critic"`
	GPWeight float64 `json:"gp_weight"`
	// FeatureWeight is k, weighting the critic-feature term in the izif
	// loss and in the score alike.
	FeatureWeight float64 `json:"feature_weight"`
	// GANLR is Adam's learning rate for G and D (betas 0, 0.9).
	GANLR float64 `json:"gan_lr"`
	// EncoderLR is RMSprop's learning rate for the encoder.
	EncoderLR float64 `json:"encoder_lr"`
	Seed      uint64  `json:"seed"`
}

// DefaultConfig is the paper's setting at 64x64.
func DefaultConfig() Config {
	return Config{
		ImageSize:     64,
		LatentDim:     DefaultLatent,
		Width:         DefaultWidth,
		Iterations:    DefaultIterations,
		WGANFraction:  float64(DefaultWGANIters) / DefaultIterations,
		NCritic:       5,
		GPWeight:      10,
		FeatureWeight: 1,
		GANLR:         1e-4,
		EncoderLR:     5e-5,
	}
}

// resolve merges Options and Raw into a checked Config.
func resolve(o baselines.Options) (Config, error) {
	c := DefaultConfig()
	if err := backbone.DecodeRaw(Name, o.Raw, &c); err != nil {
		return c, err
	}
	// Options win, but a stored setting that disagrees is a mistake (e.g. a
	// model file used at another image size), not something to paper over.
	for _, f := range []struct {
		name string
		raw  *int
		opt  int
	}{
		{"image_size", &c.ImageSize, o.ImageSize},
		{"latent_dim", &c.LatentDim, o.LatentDim},
		{"iterations", &c.Iterations, o.Iterations},
	} {
		if f.opt == 0 {
			continue
		}
		if rawHas(o.Raw, f.name) && *f.raw != f.opt {
			return c, fmt.Errorf("fanogan settings say %s %d but the options ask for %d", f.name, *f.raw, f.opt)
		}
		*f.raw = f.opt
	}
	c.Seed = o.Seed
	if o.ClipGradNorm > 0 {
		c.ClipGradNorm = o.ClipGradNorm
	}
	if c.ImageSize < 8 || c.ImageSize > 1024 || bits.OnesCount(uint(c.ImageSize)) != 1 {
		return c, fmt.Errorf("fanogan: image size %d must be a power of two from 8 to 1024", c.ImageSize)
	}
	switch {
	case c.LatentDim < 1:
		return c, fmt.Errorf("fanogan: latent dim %d must be positive", c.LatentDim)
	case c.Width < 1:
		return c, fmt.Errorf("fanogan: width %d must be positive", c.Width)
	case c.NCritic < 1:
		return c, fmt.Errorf("fanogan: n_critic %d must be at least 1", c.NCritic)
	case c.Iterations < 2:
		return c, fmt.Errorf("fanogan: %d iterations cannot hold both stages (at least 2)", c.Iterations)
	case c.GPWeight < 0 || c.FeatureWeight < 0 || c.GANLR <= 0 || c.EncoderLR <= 0:
		return c, fmt.Errorf("fanogan: weights must be >= 0 and learning rates > 0")
	}
	if c.WGANIters == 0 {
		if !(c.WGANFraction > 0 && c.WGANFraction < 1) {
			return c, fmt.Errorf("fanogan: wgan_fraction %v must lie strictly between 0 and 1", c.WGANFraction)
		}
		c.WGANIters = min(max(int(math.Round(c.WGANFraction*float64(c.Iterations))), 1), c.Iterations-1)
	}
	if c.WGANIters < 1 || c.WGANIters >= c.Iterations {
		return c, fmt.Errorf("fanogan: wgan_iters %d leaves no room for stage 2 in %d iterations", c.WGANIters, c.Iterations)
	}
	c.WGANFraction = float64(c.WGANIters) / float64(c.Iterations)
	return c, nil
}

// rawHas reports whether the JSON object raw sets key.
func rawHas(raw json.RawMessage, key string) bool {
	var m map[string]json.RawMessage
	if json.Unmarshal(raw, &m) != nil {
		return false
	}
	_, ok := m[key]
	return ok
}

// Model is the f-AnoGAN baseline.
type Model struct {
	cfg   Config
	store *nn.Store
	gen   *generator
	crit  *critic
	enc   *encoder

	optG, optD *nn.Adam
	optE       *nn.RMSprop
	attached   []*nn.Param

	// noise draws z for the generator and the interpolation weights of the
	// gradient penalty, apart from the store's initialisation stream.
	noise *torch.Generator
	state trainingState
}

// trainingState is what a resumed run needs besides weights and optimizers.
type trainingState struct {
	Stage          int `json:"stage"`
	CriticSteps    int `json:"critic_steps"`
	GeneratorSteps int `json:"generator_steps"`
	EncoderSteps   int `json:"encoder_steps"`
	// Noise is the state of the latent-noise generator, so a resumed run
	// draws the same z as an uninterrupted one.
	Noise []byte `json:"noise,omitempty"`
}

// New builds f-AnoGAN with freshly initialised networks.
func New(o baselines.Options) (*Model, error) {
	cfg, err := resolve(o)
	if err != nil {
		return nil, err
	}
	store, err := nn.NewStore(cfg.Seed)
	if err != nil {
		return nil, err
	}
	noise, err := torch.NewGenerator(cfg.Seed ^ 0x9e3779b97f4a7c15)
	if err != nil {
		store.Free()
		return nil, err
	}
	geo := geometry{size: int64(cfg.ImageSize), width: int64(cfg.Width)}
	m := &Model{
		cfg:   cfg,
		store: store,
		gen:   newGenerator(store.Sub("gen"), geo, int64(cfg.LatentDim)),
		crit:  newCritic(store.Sub("critic"), geo),
		enc:   newEncoder(store.Sub("enc"), geo, int64(cfg.LatentDim)),
		noise: noise,
		state: trainingState{Stage: 1},
	}
	if err := store.Err(); err != nil {
		store.Free()
		return nil, fmt.Errorf("fanogan: building networks: %w", err)
	}
	adam := nn.AdamConfig{LR: cfg.GANLR, Beta1: 0, ZeroBeta1: true, Beta2: 0.9, ClipNorm: cfg.ClipGradNorm}
	if m.optG, err = nn.NewAdam(store.Sub("gen").Trainable(), adam); err == nil {
		if m.optD, err = nn.NewAdam(store.Sub("critic").Trainable(), adam); err == nil {
			m.optE, err = m.newEncoderOptimizer(nil)
		}
	}
	if err != nil {
		store.Free()
		return nil, fmt.Errorf("fanogan: %w", err)
	}
	return m, nil
}

func (m *Model) newEncoderOptimizer(attached []*nn.Param) (*nn.RMSprop, error) {
	params := append(m.store.Sub("enc").Trainable(), attached...)
	return nn.NewRMSprop(params, nn.RMSpropConfig{LR: m.cfg.EncoderLR, ClipNorm: m.cfg.ClipGradNorm})
}

// Name implements baselines.Baseline.
func (m *Model) Name() string { return Name }

// Store holds the generator (gen.*), critic (critic.*) and encoder (enc.*).
func (m *Model) Store() *nn.Store { return m.store }

// LatentDim is the width of z = E(x).
func (m *Model) LatentDim() int { return m.cfg.LatentDim }

// DefaultIterations is both stages at the paper's lengths.
func (m *Model) DefaultIterations() int { return DefaultIterations }

// Settings returns the resolved configuration.
func (m *Model) Settings() Config { return m.cfg }

// Config implements baselines.Baseline.
func (m *Model) Config() any { return m.cfg }

// Stage is 1 while the GAN trains and 2 while the encoder trains.
func (m *Model) Stage() int { return m.state.Stage }

// LatentIterations implements baselines.LatentStage: z = E(x) exists in the
// encoder stage, iterations WGANIters+1..Iterations.
func (m *Model) LatentIterations() (first, last int) { return m.cfg.WGANIters + 1, m.cfg.Iterations }

// AttachParams adds MADDR's heads to the encoder's optimizer: z only exists
// in stage 2, so that is where they train.
func (m *Model) AttachParams(params []*nn.Param) error {
	if m.state.CriticSteps+m.state.EncoderSteps > 0 {
		return fmt.Errorf("fanogan: AttachParams after training started")
	}
	attached := append(append([]*nn.Param{}, m.attached...), params...)
	opt, err := m.newEncoderOptimizer(attached)
	if err != nil {
		return fmt.Errorf("fanogan: %w", err)
	}
	m.attached, m.optE = attached, opt
	return nil
}

// Latent returns z = E(x) (B x D), tanh-bounded.
func (m *Model) Latent(x *torch.Tensor, train bool) *torch.Tensor { return m.enc.forward(x, train) }

// Score is per image mean_pix (x - G(E(x)))^2 + k * mean_feat (f(x) - f(G(E(x))))^2
// in evaluation mode. The result is unscoped: the caller owns it.
func (m *Model) Score(x *torch.Tensor) *torch.Tensor {
	return eval(x, func(x *torch.Tensor) *torch.Tensor {
		rec := m.gen.forward(m.enc.forward(x, false), false)
		_, fx := m.crit.forward(x)
		_, fr := m.crit.forward(rec)
		pix := x.Sub(rec).Square().Flatten(1, -1).MeanDims([]int64{1}, false)
		feat := fx.Sub(fr).Square().MeanDims([]int64{1}, false)
		return pix.Add(feat.MulScalar(m.cfg.FeatureWeight))
	})
}

// AnomalyMap is the per-pixel squared residual (x - G(E(x)))^2, unscoped.
func (m *Model) AnomalyMap(x *torch.Tensor) *torch.Tensor {
	return eval(x, func(x *torch.Tensor) *torch.Tensor {
		return x.Sub(m.gen.forward(m.enc.forward(x, false), false)).Square()
	})
}

// Reconstruct returns G(E(x)) in evaluation mode, unscoped.
func (m *Model) Reconstruct(x *torch.Tensor) *torch.Tensor {
	return eval(x, func(x *torch.Tensor) *torch.Tensor {
		return m.gen.forward(m.enc.forward(x, false), false)
	})
}

// Sample returns n generator images from z ~ N(0, I) in evaluation mode,
// unscoped (for looking at what stage 1 learnt).
func (m *Model) Sample(n int) *torch.Tensor {
	z := torch.Randn(m.noise, int64(n), int64(m.cfg.LatentDim))
	defer z.Free()
	return eval(z, func(z *torch.Tensor) *torch.Tensor { return m.gen.forward(z, false) })
}

// eval runs fn without gradients in a scope of its own and hands back its
// result unscoped (the caller owns it).
func eval(x *torch.Tensor, fn func(x *torch.Tensor) *torch.Tensor) *torch.Tensor {
	out := backbone.Eval(x, func(_ *torch.Scope, x *torch.Tensor) *torch.Tensor { return fn(x) })
	if err := out.Err(); err != nil {
		return torch.Failed(fmt.Errorf("fanogan: %w", err))
	}
	return out
}

// Optimizer-state prefixes in checkpoints.
const (
	prefixG = "adam_gen"
	prefixD = "adam_critic"
	prefixE = "rmsprop_enc"
)

// OptimizerState implements baselines.Baseline.
func (m *Model) OptimizerState() map[string]*torch.Tensor { return m.optimizers().State() }

func (m *Model) optimizers() backbone.Optimizers {
	return backbone.Optimizers{prefixG: m.optG, prefixD: m.optD, prefixE: m.optE}
}

// TrainingState implements baselines.Baseline.
func (m *Model) TrainingState() (json.RawMessage, error) {
	st := m.state
	noise, err := m.noise.State()
	if err != nil {
		return nil, fmt.Errorf("fanogan: noise generator state: %w", err)
	}
	st.Noise = noise
	return json.Marshal(st)
}

// Restore implements baselines.Baseline, including the noise generator's
// state, so a resumed run continues the same random stream.
func (m *Model) Restore(optimizer map[string]*torch.Tensor, state json.RawMessage) error {
	var st trainingState
	if err := json.Unmarshal(state, &st); err != nil {
		return fmt.Errorf("fanogan: training state: %w", err)
	}
	if st.Stage != 1 && st.Stage != 2 {
		return fmt.Errorf("fanogan: training state has stage %d", st.Stage)
	}
	if err := m.optimizers().Load(optimizer); err != nil {
		return fmt.Errorf("fanogan: %w", err)
	}
	if len(st.Noise) > 0 {
		if err := m.noise.SetState(st.Noise); err != nil {
			return fmt.Errorf("fanogan: restoring the noise generator: %w", err)
		}
	}
	st.Noise = nil
	m.state = st
	if st.Stage == 2 {
		m.freezeGAN()
	}
	return nil
}

// Notes implements baselines.Baseline.
func (m *Model) Notes() []string {
	c := m.cfg
	notes := []string{
		fmt.Sprintf("f-AnoGAN trains in two stages: WGAN-GP for iterations 1..%d (%d critic steps, a generator step every %d), "+
			"then the izif encoder for iterations %d..%d; scores are meaningless before stage 2 has run",
			c.WGANIters, c.WGANIters, c.NCritic, c.WGANIters+1, c.Iterations),
		"MADDR's constraints act on z = E(x), which only exists in stage 2: the hook is not called in stage 1, " +
			"and MADDR places its mixup window inside stage 2",
	}
	if c.Width != DefaultWidth || c.LatentDim != DefaultLatent || c.ImageSize != 64 {
		notes = append(notes, fmt.Sprintf("f-AnoGAN differs from the paper's network: %dx%d images, width %d, latent %d (paper: 64x64, 64, 128)",
			c.ImageSize, c.ImageSize, c.Width, c.LatentDim))
	}
	return notes
}
