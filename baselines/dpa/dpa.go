// Package dpa is the Deep Perceptual Autoencoder baseline (Shvetsova et al.
// 2021, "Anomaly detection in medical imaging with deep perceptual
// autoencoders") as MADDR configures it: a residual encoder/decoder without
// normalisation, trained with the relative perceptual L1 loss on a frozen
// VGG19 plus 0.1 x pixel L1, scored by the same per-image loss.
package dpa

import (
	"encoding/json"
	"errors"
	"fmt"
	"math"

	"github.com/maddr-project/maddr/baselines"
	"github.com/maddr-project/maddr/baselines/internal/backbone"
	"github.com/maddr-project/maddr/nn"
	"github.com/maddr-project/maddr/perceptual"
	"github.com/maddr-project/maddr/torch"
)

func init() { baselines.Register("dpa", New) }

// Defaults of MADDR's DPA configuration (METHODS 2.1, 2.6).
const (
	DefaultLatentDim  = 128
	DefaultIterations = 16000
	DefaultLR         = 1e-3
	// DefaultLRStep is StepLR's step size for the full 16000-iteration run.
	DefaultLRStep = 10000
	LRGamma       = 0.8
	// L1Weight weighs the pixel L1 term against the perceptual term.
	L1Weight = 0.1
)

// Settings are DPA's own options, read from baselines.Options.Raw. The JSON
// of Config is a superset, so a stored Config rebuilds the same model.
type Settings struct {
	// VGGWeights is the VGG19 weights file (empty: $MADDR_VGG19_WEIGHTS).
	VGGWeights string `json:"vgg_weights,omitempty"`
	// VGGRandomInit runs with a randomly initialised VGG (not the paper's).
	VGGRandomInit bool `json:"vgg_random_init,omitempty"`
	// VGGInit is the random VGG's initialisation (perceptual.InitScheme;
	// empty: DefaultRandomInit). Only with VGGRandomInit.
	VGGInit string `json:"vgg_init,omitempty"`
	// VGGNorm is the feature normalisation (perceptual.Normalisation; empty:
	// ImageNet statistics with real weights, DefaultRandomNorm with a random
	// VGG). A model's Config records the one it was trained with.
	VGGNorm string `json:"vgg_norm,omitempty"`
	// VGGWidthDivisor narrows VGG for tests (0: VGG19's widths).
	VGGWidthDivisor int `json:"vgg_width_divisor,omitempty"`
	// LR overrides Adam's learning rate (0: 1e-3).
	LR float64 `json:"lr,omitempty"`
	// TargetCacheMiB bounds the cache of target VGG features reused across
	// epochs when the training images do not change (0: DefaultTargetCacheMiB,
	// negative: no cache). TargetCacheStorage is its element type: "float16"
	// (default: half the memory, the perceptual loss within ~1e-5 relative)
	// or "float32" (the exact features: losses bit-identical to no cache).
	TargetCacheMiB     int    `json:"target_cache_mib,omitempty"`
	TargetCacheStorage string `json:"target_cache_storage,omitempty"`
}

// Config is what a model file records about a DPA model. The fields tagged
// settings:"recorded" are derived when the model is built; a stored Config
// passed back as Options.Raw may carry them, but they are not settings.
type Config struct {
	Model     string `json:"model" settings:"recorded"`
	ImageSize int    `json:"image_size"`
	LatentDim int    `json:"latent_dim"`
	Seed      uint64 `json:"seed"`
	Settings
	// Iterations is the planned run length; LRStepSize is StepLR's step
	// size scaled to it (10000 for the paper's 16000).
	Iterations int `json:"iterations"`
	// ClipGradNorm > 0 clips the gradient norm before each update (off by default, as in DPA).
	ClipGradNorm float64 `json:"clip_grad_norm,omitempty"`
	LRStepSize   int     `json:"lr_step_size" settings:"recorded"`
	LRGamma      float64 `json:"lr_gamma" settings:"recorded"`
	L1Weight     float64 `json:"l1_weight" settings:"recorded"`
	// VGGRandom is true when the perceptual network has random weights;
	// VGGSource says where the weights came from (informational).
	VGGRandom  bool   `json:"vgg_random" settings:"recorded"`
	VGGSource  string `json:"vgg_source" settings:"recorded"`
	Calibrated bool   `json:"vgg_stats_calibrated" settings:"recorded"`
	// CalibrationImages is how many training images the statistics were
	// measured on (0: not calibrated).
	CalibrationImages int      `json:"vgg_calibration_images,omitempty" settings:"recorded"`
	NumParams         int64    `json:"num_params" settings:"recorded"`
	Notes             []string `json:"notes,omitempty" settings:"recorded"`
}

// DPA implements baselines.Baseline.
type DPA struct {
	cfg   Config
	store *nn.Store
	enc   *encoder
	dec   *decoder
	vgg   *perceptual.VGG
	rp    *perceptual.Loss
	// targets caches target features of unchanging training images (nil: off).
	targets *perceptual.TargetCache

	params []*nn.Param // encoder, decoder, then attached heads
	opt    *nn.Adam
	sched  *nn.StepLR
	steps  int
}

// DefaultRandomInit and DefaultRandomNorm are a random VGG's initialisation
// and feature normalisation unless vgg_init and vgg_norm say otherwise. They
// had the best mean validation AUC on the phantom set among the variants in
// docs/vgg-calibration.md, on a short schedule and by less than the AUCs'
// sampling error; with them the perceptual term is a few percent of the
// loss, so random-VGG DPA trains mostly on its pixel L1 term.
const (
	DefaultRandomInit = perceptual.InitPyTorchDefault
	DefaultRandomNorm = perceptual.NormImageNet
)

// resolveVGG checks the VGG settings and fills in the defaults, so that a
// stored Config names the initialisation and normalisation it was trained with.
func resolveVGG(set Settings) (Settings, error) {
	if !set.VGGRandomInit {
		if set.VGGInit != "" {
			return set, fmt.Errorf("dpa: vgg_init %q applies only to a random VGG (vgg_random_init)", set.VGGInit)
		}
		if set.VGGNorm != "" && set.VGGNorm != string(perceptual.NormImageNet) {
			return set, fmt.Errorf("dpa: vgg_norm %q applies only to a random VGG (vgg_random_init); real VGG19 weights use the ImageNet statistics", set.VGGNorm)
		}
		set.VGGNorm = string(perceptual.NormImageNet)
		return set, nil
	}
	if set.VGGInit == "" {
		set.VGGInit = string(DefaultRandomInit)
	}
	scheme, err := perceptual.ParseInitScheme(set.VGGInit)
	if err != nil {
		return set, fmt.Errorf("dpa: vgg_init: %w", err)
	}
	set.VGGInit = string(scheme)
	if set.VGGNorm == "" {
		set.VGGNorm = string(DefaultRandomNorm)
	}
	if _, err := perceptual.ParseNormalisation(set.VGGNorm); err != nil {
		return set, fmt.Errorf("dpa: vgg_norm: %w", err)
	}
	return set, nil
}

// vggSeedSalt separates the random VGG's seed from the autoencoder's.
const vggSeedSalt = 0x5667673139 // "Vgg19"

// New builds DPA from o; o.Raw holds Settings (or a stored Config).
func New(o baselines.Options) (baselines.Baseline, error) {
	cfg, err := resolve(o)
	if err != nil {
		return nil, err
	}
	return newFromConfig(cfg, o.FrozenFromModelFile)
}

// resolve reads o into the Config to build: o.Raw over DPA's defaults
// (unknown keys are an error), then the non-zero Options fields over that,
// with the VGG settings checked and their defaults filled in.
func resolve(o baselines.Options) (Config, error) {
	cfg := Config{LatentDim: DefaultLatentDim, Iterations: DefaultIterations}
	if err := backbone.ApplyOptions("dpa", o, &cfg, backbone.Fields{
		ImageSize: &cfg.ImageSize, Latent: &cfg.LatentDim, Seed: &cfg.Seed, Iterations: &cfg.Iterations, ClipGradNorm: &cfg.ClipGradNorm,
	}); err != nil {
		return cfg, err
	}
	if o.FrozenFromModelFile && cfg.VGGRandomInit {
		// Model files written before vgg_init and vgg_norm existed were
		// trained with what was then the only random mode.
		if cfg.VGGInit == "" {
			cfg.VGGInit = string(perceptual.InitPyTorchDefault)
		}
		if cfg.VGGNorm == "" {
			cfg.VGGNorm = string(perceptual.NormTrainMeanStd)
		}
	}
	set, err := resolveVGG(cfg.Settings)
	if err != nil {
		return cfg, err
	}
	cfg.Settings = set
	if !o.FrozenFromModelFile {
		// The statistics come from the model file with the weights; its
		// Config says how they were measured. Without them they are to be
		// measured again.
		cfg.Calibrated, cfg.CalibrationImages = false, 0
	}
	size := cfg.ImageSize
	if size < 8 || size&(size-1) != 0 {
		return cfg, fmt.Errorf("dpa: image size %d is not a power of two >= 8 (the residual network halves it down to 4x4)", size)
	}
	if cfg.LatentDim < 1 {
		return cfg, fmt.Errorf("dpa: latent dimension %d must be positive", cfg.LatentDim)
	}
	if cfg.Iterations <= 0 {
		cfg.Iterations = DefaultIterations
	}
	if cfg.LR == 0 {
		cfg.LR = DefaultLR
	}
	cfg.Model = "dpa"
	// StepLR counts only non-mixup updates; its step keeps its share of
	// the run when the run is shortened or lengthened.
	cfg.LRStepSize = max(1, int(math.Round(DefaultLRStep*float64(cfg.Iterations)/DefaultIterations)))
	cfg.LRGamma, cfg.L1Weight = LRGamma, L1Weight
	return cfg, nil
}

// newFromConfig makes the networks, the perceptual loss and the optimizer of cfg;
// fromModelFile says that the VGG weights will be copied in from a model
// file.
func newFromConfig(cfg Config, fromModelFile bool) (*DPA, error) {
	set, size, latent := cfg.Settings, cfg.ImageSize, cfg.LatentDim
	vgg, err := perceptual.NewVGG(perceptual.Options{
		Weights:       set.VGGWeights,
		RandomInit:    set.VGGRandomInit,
		Init:          perceptual.InitScheme(set.VGGInit),
		Seed:          cfg.Seed ^ vggSeedSalt,
		WidthDivisor:  set.VGGWidthDivisor,
		FromModelFile: fromModelFile,
	})
	if err != nil {
		return nil, fmt.Errorf("dpa: %w", err)
	}
	store, err := nn.NewStore(cfg.Seed)
	if err != nil {
		vgg.Free()
		return nil, err
	}
	d := &DPA{store: store, vgg: vgg}
	d.enc = newEncoder(store.Sub("enc"), size, int64(latent))
	d.dec = newDecoder(store.Sub("dec"), size, int64(latent))
	d.params = append(store.Sub("enc").Trainable(), store.Sub("dec").Trainable()...)
	d.rp, err = perceptual.NewLoss(vgg, store.Sub("perceptual"))
	if err == nil {
		err = store.Err()
	}
	if err != nil {
		d.free()
		return nil, fmt.Errorf("dpa: %w", err)
	}
	d.rp.Norm = perceptual.Normalisation(set.VGGNorm)
	d.rp.Calibrated, d.rp.CalibrationImages = cfg.Calibrated, cfg.CalibrationImages
	d.cfg = cfg
	d.cfg.VGGRandom = vgg.Random || (fromModelFile && set.VGGRandomInit)
	d.cfg.VGGSource = vgg.Source
	d.cfg.NumParams = store.NumParams()
	d.cfg.Notes = nil
	if set.TargetCacheMiB >= 0 {
		mib := set.TargetCacheMiB
		if mib == 0 {
			mib = perceptual.DefaultTargetCacheMiB
		}
		storage, err := perceptual.ParseStorage(set.TargetCacheStorage)
		if err == nil {
			d.targets, err = perceptual.NewTargetCache(vgg, int64(mib)<<20, storage)
		}
		if err != nil {
			d.free()
			return nil, fmt.Errorf("dpa: %w", err)
		}
	}
	if err := d.newOptimizer(); err != nil {
		d.free()
		return nil, err
	}
	return d, nil
}

func (d *DPA) newOptimizer() error {
	opt, err := nn.NewAdam(d.params, nn.AdamConfig{LR: d.cfg.LR, Beta1: 0.9, Beta2: 0.999, ClipNorm: d.cfg.ClipGradNorm})
	if err != nil {
		return fmt.Errorf("dpa: %w", err)
	}
	d.opt = opt
	count := 0
	if d.sched != nil {
		count = d.sched.Count
	}
	d.sched = nn.NewStepLR(d.opt, d.cfg.LRStepSize, d.cfg.LRGamma)
	d.sched.SetCount(count)
	return nil
}

func (d *DPA) free() {
	if d.targets != nil {
		d.targets.Free()
	}
	d.store.Free()
	d.vgg.Free()
}

// TargetCache is the cache of target features (nil when switched off).
func (d *DPA) TargetCache() *perceptual.TargetCache { return d.targets }

// Name implements baselines.Baseline.
func (d *DPA) Name() string { return "dpa" }

// Store holds the encoder (enc.*), the decoder (dec.*) and the perceptual
// normalisation buffers (perceptual.r32.mean, ...). The frozen VGG weights
// are not in it: they come from the weights file or the seed, and model
// files carry them through Frozen.
func (d *DPA) Store() *nn.Store { return d.store }

// LatentDim implements baselines.Baseline.
func (d *DPA) LatentDim() int { return d.cfg.LatentDim }

// DefaultIterations implements baselines.Baseline.
func (d *DPA) DefaultIterations() int { return DefaultIterations }

// VGG is the perceptual network.
func (d *DPA) VGG() *perceptual.VGG { return d.vgg }

// Frozen implements baselines.FrozenNetworks: the VGG19 weights go into
// model files so that scoring needs no weights file.
func (d *DPA) Frozen() *nn.Store { return d.vgg.Store() }

// AttachParams adds MADDR's heads to the Adam that trains the encoder.
func (d *DPA) AttachParams(params []*nn.Param) error {
	if d.steps > 0 {
		return errors.New("dpa: parameters must be attached before the first training step")
	}
	own := d.params
	d.params = append(append([]*nn.Param{}, d.params...), params...)
	if err := d.newOptimizer(); err != nil {
		d.params = own
		return err
	}
	return nil
}

func (d *DPA) checkImages(x *torch.Tensor) error {
	if err := x.Err(); err != nil {
		return err
	}
	s := x.Shape()
	size := int64(d.cfg.ImageSize)
	if len(s) != 4 || s[1] != 1 || s[2] != size || s[3] != size || s[0] < 1 {
		return fmt.Errorf("dpa: want images B x 1 x %d x %d, got %v", size, size, s)
	}
	return nil
}

// TrainStep runs one Adam update on RP + 0.1 L1 (batch means) plus the
// hook's loss on z. StepLR advances only on non-mixup steps, as in MADDR's code.
func (d *DPA) TrainStep(s *torch.Scope, step baselines.Step) (baselines.Losses, error) {
	if step.X == nil {
		return nil, errors.New("dpa: training step without images")
	}
	if err := d.checkImages(step.X); err != nil {
		return nil, err
	}
	d.vgg.SetTraining(true)
	var rp, l1, total *torch.Tensor
	losses := baselines.Losses{}
	err := backbone.Forward(s, func(fs *torch.Scope) error {
		x := fs.AliasIn(step.X)
		z := d.enc.forward(x)
		recon := d.dec.forward(z)
		if d.targets != nil && !step.Mixup && step.Samples != nil {
			t32, t42, err := d.targets.Features(fs, x, step.Samples)
			if err != nil {
				return fmt.Errorf("dpa: iteration %d: %w", step.Iter, err)
			}
			rp = d.rp.PerImageFromTarget(t32, t42, recon).Mean()
			// Not needed by the backward pass, which is the step's peak.
			t32.Free()
			t42.Free()
		} else {
			rp = d.rp.PerImage(x, recon).Mean()
		}
		l1 = recon.Sub(x).Abs().Mean()
		total = rp.Add(l1.MulScalar(L1Weight))
		var err error
		total, err = backbone.AddHook(step.Hook, z, total, losses)
		if err != nil {
			return fmt.Errorf("dpa: %w", err)
		}
		if err := total.Err(); err != nil {
			return fmt.Errorf("dpa: iteration %d: %w", step.Iter, err)
		}
		return nil
	}, &rp, &l1, &total)
	if err != nil {
		return nil, err
	}
	if err := backbone.Record(losses, map[string]*torch.Tensor{"rp": rp, "l1": l1, "total": total}); err != nil {
		return nil, fmt.Errorf("dpa: iteration %d: %w", step.Iter, err)
	}
	if math.IsNaN(losses["total"]) || math.IsInf(losses["total"], 0) {
		return losses, fmt.Errorf("dpa: iteration %d: loss is %v (rp %v, l1 %v)", step.Iter, losses["total"], losses["rp"], losses["l1"])
	}
	if err := d.opt.ZeroGrad(); err != nil {
		return nil, err
	}
	if err := total.Backward(); err != nil {
		return nil, fmt.Errorf("dpa: iteration %d: backward: %w", step.Iter, err)
	}
	if err := d.opt.Step(); err != nil {
		return nil, fmt.Errorf("dpa: iteration %d: %w", step.Iter, err)
	}
	if !step.Mixup {
		d.sched.Step()
	}
	d.steps++
	return losses, nil
}

// Latent returns z (B x latent). DPA has no normalisation layers, so train
// changes nothing.
func (d *DPA) Latent(x *torch.Tensor, train bool) *torch.Tensor {
	if err := d.checkImages(x); err != nil {
		return torch.Failed(err)
	}
	return d.enc.forward(x)
}

// Reconstruct returns G(E(x)) without gradients.
func (d *DPA) Reconstruct(x *torch.Tensor) *torch.Tensor {
	if err := d.checkImages(x); err != nil {
		return torch.Failed(err)
	}
	return backbone.Eval(x, func(_ *torch.Scope, x *torch.Tensor) *torch.Tensor {
		return d.dec.forward(d.enc.forward(x))
	})
}

// Score is the per-image RP(x, x_hat) + 0.1 mean|x - x_hat| (B), the
// training loss with reduction "none"; MADDR's terms never enter it.
func (d *DPA) Score(x *torch.Tensor) *torch.Tensor {
	if err := d.checkImages(x); err != nil {
		return torch.Failed(err)
	}
	d.vgg.SetTraining(false)
	var out *torch.Tensor
	if err := torch.NoGrad(func() error {
		return torch.Run(func(s *torch.Scope) error {
			x := s.AliasIn(x)
			// The autoencoder's activations are freed before VGG runs, so
			// the two passes' memory does not add up.
			var recon *torch.Tensor
			if err := torch.Run(func(inner *torch.Scope) error {
				recon = d.dec.forward(d.enc.forward(inner.AliasIn(x)))
				s.Adopt(inner.Keep(recon))
				return recon.Err()
			}); err != nil {
				return err
			}
			l1 := recon.Sub(x).Abs().MeanDims([]int64{1, 2, 3}, false)
			out = s.Keep(d.rp.PerImage(x, recon).Add(l1.MulScalar(L1Weight)))
			return out.Err()
		})
	}); err != nil {
		return torch.Failed(err)
	}
	return out
}

// AnomalyMap is the per-pixel reconstruction error |x - x_hat| (B x 1 x S x S).
func (d *DPA) AnomalyMap(x *torch.Tensor) *torch.Tensor {
	return d.Reconstruct(x).Sub(x).Abs()
}

// OptimizerState implements baselines.Baseline.
func (d *DPA) OptimizerState() map[string]*torch.Tensor { return d.optimizers().State() }

// optimizers names DPA's single Adam with the empty prefix, so that its
// checkpoint entries keep the unprefixed names they have always had.
func (d *DPA) optimizers() backbone.Optimizers { return backbone.Optimizers{"": d.opt} }

type trainingState struct {
	Steps   int `json:"steps"`
	LRSteps int `json:"lr_steps"`
}

// TrainingState records the number of updates and the StepLR position.
func (d *DPA) TrainingState() (json.RawMessage, error) {
	return json.Marshal(trainingState{Steps: d.steps, LRSteps: d.sched.Count})
}

// Restore loads Adam's state and the schedule position of a checkpoint.
func (d *DPA) Restore(optimizer map[string]*torch.Tensor, state json.RawMessage) error {
	var ts trainingState
	if err := backbone.Restore("dpa", d.optimizers(), optimizer, state, &ts); err != nil {
		return err
	}
	d.steps = ts.Steps
	d.sched.SetCount(ts.LRSteps)
	return nil
}

// LR is Adam's current learning rate.
func (d *DPA) LR() float64 { return d.opt.LR() }

// Config implements baselines.Baseline.
func (d *DPA) Config() any {
	c := d.cfg
	c.Calibrated, c.CalibrationImages = d.rp.Calibrated, d.rp.CalibrationImages
	c.Notes = d.Notes()
	return c
}

// Notes say when the perceptual network is random, how it was initialised
// and how its features are normalised.
func (d *DPA) Notes() []string {
	var notes []string
	if d.cfg.VGGRandom {
		notes = append(notes, perceptual.RandomNote)
		notes = append(notes, fmt.Sprintf("random VGG initialisation: %s", d.cfg.VGGInit))
		switch norm := perceptual.Normalisation(d.cfg.VGGNorm); {
		case norm == perceptual.NormImageNet:
			notes = append(notes, "VGG features normalised with the ImageNet statistics although the VGG is random (vgg_norm imagenet)")
		case d.rp.Calibrated:
			notes = append(notes, fmt.Sprintf("VGG features normalised with %s measured on %d training images instead of the ImageNet statistics (vgg_norm %s)",
				normWords(norm), d.rp.CalibrationImages, norm))
		default:
			notes = append(notes, fmt.Sprintf("VGG features are to be normalised with %s of training images (vgg_norm %s) but were not calibrated yet; until then the ImageNet statistics apply", normWords(norm), norm))
		}
	}
	if d.cfg.VGGWidthDivisor > 1 {
		notes = append(notes, fmt.Sprintf("VGG widths divided by %d (test configuration)", d.cfg.VGGWidthDivisor))
	}
	return notes
}

func normWords(n perceptual.Normalisation) string {
	if n == perceptual.NormTrainRMS {
		return "per-channel root mean square (no centring)"
	}
	return "per-channel mean/std"
}

// Calibrate measures the VGG feature statistics on training images when
// the VGG is random and vgg_norm asks for it (METHODS 7.9). With real
// weights it does nothing: the paper's loss uses the ImageNet statistics.
func (d *DPA) Calibrate(x *torch.Tensor) error {
	norm := perceptual.Normalisation(d.cfg.VGGNorm)
	if !d.vgg.Random || !norm.Calibrated() {
		return nil
	}
	if err := d.checkImages(x); err != nil {
		return err
	}
	return d.rp.CalibrateWith(norm, x)
}

var (
	_ baselines.Baseline   = (*DPA)(nil)
	_ baselines.Calibrator = (*DPA)(nil)
)
