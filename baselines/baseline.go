// Package baselines defines the seam between an anomaly-detection baseline
// (DPA, MemAE, GANomaly, f-AnoGAN, a plain autoencoder) and the MADDR
// framework, and a registry of the baselines by name.
//
// A baseline owns its networks, its optimizers, its training step and its
// test-time score. MADDR sees a baseline only through the Baseline interface:
// it hands the baseline a LatentHook that turns the encoder's latent z into
// extra loss terms, and extra parameters (the classifier heads) to train with
// the encoder's optimizer. Nothing in package maddr knows which baseline runs,
// and adding a baseline never touches maddr.
package baselines

import (
	"encoding/json"
	"fmt"
	"sort"
	"sync"

	"github.com/maddr-project/maddr/nn"
	"github.com/maddr-project/maddr/torch"
)

// LatentHook receives the latent z (B x D, still in the autograd graph) of the
// encoder a training step updates, and returns a scalar loss that the step adds
// to that encoder's objective before backward, plus named values to log.
// It is called at most once per training step.
type LatentHook func(z *torch.Tensor) (loss *torch.Tensor, logs map[string]float64, err error)

// Step describes one training iteration.
type Step struct {
	// Iter counts from 1.
	Iter int
	// X is the batch (B x 1 x S x S, values in [-1, 1]); under mixup it holds
	// the mixed images, which are also the reconstruction target.
	X *torch.Tensor
	// Mixup is true on iterations where the batch was mixed. DPA as
	// configured by MADDR does not advance its LR schedule on those.
	Mixup bool
	// Samples, when set, identifies image j of X as the same training
	// sample every time it is passed (the loader's index), and promises that
	// X holds exactly that sample's input: no augmentation, no mixup. A
	// baseline may then reuse what it computed from that image before (DPA
	// keeps the target's VGG features). Nil when the images vary.
	Samples []int
	// Hook is nil when no MADDR constraint is active.
	Hook LatentHook
}

// Losses are the named loss terms of one step, for progress output and logs.
type Losses map[string]float64

// Baseline is everything MADDR needs from a baseline.
type Baseline interface {
	// Name is the registry name, e.g. "dpa".
	Name() string
	// Store holds every parameter and buffer of the baseline's networks.
	Store() *nn.Store
	// LatentDim is D, the width of the latent z that MADDR splits.
	LatentDim() int
	// AttachParams adds parameters (MADDR's classifier heads) to the
	// optimizer that updates the encoder producing z, so they are trained
	// with the same optimizer. It must be called before the first TrainStep.
	AttachParams(params []*nn.Param) error
	// TrainStep runs one iteration of the baseline's own training, calling
	// step.Hook on z when it is set.
	TrainStep(s *torch.Scope, step Step) (Losses, error)
	// Latent returns z (B x D) for a batch; train selects training-mode
	// normalisation. It is recorded by autograd unless called under NoGrad.
	Latent(x *torch.Tensor, train bool) *torch.Tensor
	// Score returns the baseline's per-image anomaly score (B), higher =
	// more abnormal, computed in evaluation mode without gradients. The
	// caller owns the result: adopt it into a scope or Free it.
	Score(x *torch.Tensor) *torch.Tensor
	// AnomalyMap returns a per-pixel anomaly map (B x 1 x S x S) for heat
	// maps: the model's own map, or the reconstruction error. The caller
	// owns the result, as with Score.
	AnomalyMap(x *torch.Tensor) *torch.Tensor
	// DefaultIterations is the paper's schedule length for this baseline.
	DefaultIterations() int
	// OptimizerState returns the optimizers' tensors by name for checkpoints.
	OptimizerState() map[string]*torch.Tensor
	// TrainingState returns what else a resumed run needs (schedule
	// counters, stage), as JSON.
	TrainingState() (json.RawMessage, error)
	// Restore loads optimizer tensors and the TrainingState saved by a
	// checkpoint (the weights are loaded through Store).
	Restore(optimizer map[string]*torch.Tensor, state json.RawMessage) error
	// Config returns the baseline's configuration, stored in model files so
	// the baseline can be rebuilt by New.
	Config() any
	// Notes are honest remarks that must appear in logs and reports
	// (for example that the perceptual network has random weights).
	Notes() []string
}

// LatentStage is implemented by baselines whose latent z exists only in part
// of the run (f-AnoGAN: the encoder stage after the GAN stage). MADDR's
// constraints can only act there, so MADDR places its mixup window there too.
type LatentStage interface {
	// LatentIterations returns the first and last iteration (from 1) in
	// which TrainStep calls the hook; last is the run's last iteration.
	LatentIterations() (first, last int)
}

// Calibrator is implemented by baselines that must look at training images
// before training (e.g. DPA measuring feature statistics of a random VGG).
type Calibrator interface {
	Calibrate(x *torch.Tensor) error
}

// Options are the settings every baseline understands; each baseline reads
// its own settings from Raw.
type Options struct {
	// ImageSize is the side of the square input (64 by default).
	ImageSize int
	// LatentDim overrides the baseline's default latent width (0: default).
	LatentDim int
	// Seed fixes initial weights and any randomness inside the baseline.
	Seed uint64
	// Iterations is the planned schedule length (0: DefaultIterations);
	// baselines scale iteration-based schedules to it.
	Iterations int
	// Raw holds baseline-specific JSON settings (may be empty).
	Raw json.RawMessage
	// ClipGradNorm > 0 makes every optimizer of the baseline clip the
	// gradients' joint L2 norm to this value before each update.
	ClipGradNorm float64
	// FrozenFromModelFile tells a baseline with FrozenNetworks that their
	// weights will be copied in from a model file, so it must not look for
	// them elsewhere (e.g. a VGG19 weights file).
	FrozenFromModelFile bool
}

// FrozenNetworks is implemented by baselines whose score needs a fixed,
// untrained network (DPA's VGG19). Model files store those weights too, so
// scoring needs nothing but the model file.
type FrozenNetworks interface {
	Frozen() *nn.Store
}

// Factory builds a baseline.
type Factory func(o Options) (Baseline, error)

var (
	mu       sync.Mutex
	registry = map[string]Factory{}
)

// Register makes a baseline available by name; baseline packages call it from init.
func Register(name string, f Factory) {
	mu.Lock()
	defer mu.Unlock()
	if _, dup := registry[name]; dup {
		panic("baselines: " + name + " registered twice")
	}
	registry[name] = f
}

// New builds the named baseline.
func New(name string, o Options) (Baseline, error) {
	mu.Lock()
	f, ok := registry[name]
	mu.Unlock()
	if !ok {
		return nil, fmt.Errorf("unknown model %q (available: %v)", name, Names())
	}
	if o.ImageSize == 0 {
		o.ImageSize = 64
	}
	return f(o)
}

// Names lists the registered baselines.
func Names() []string {
	mu.Lock()
	defer mu.Unlock()
	var out []string
	for n := range registry {
		out = append(out, n)
	}
	sort.Strings(out)
	return out
}
