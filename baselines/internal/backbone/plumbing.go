package backbone

import (
	"bytes"
	"encoding/json"
	"fmt"
	"strings"

	"github.com/maddr-project/maddr/baselines"
	"github.com/maddr-project/maddr/nn"
	"github.com/maddr-project/maddr/torch"
)

// DecodeRaw reads a baseline's JSON settings over the defaults already in
// dst. Unknown keys are an error, so that a misspelt switch is not silently
// ignored.
func DecodeRaw(model string, raw json.RawMessage, dst any) error {
	if len(bytes.TrimSpace(raw)) == 0 || string(bytes.TrimSpace(raw)) == "null" {
		return nil
	}
	dec := json.NewDecoder(bytes.NewReader(raw))
	dec.DisallowUnknownFields()
	if err := dec.Decode(dst); err != nil {
		return fmt.Errorf("%s settings: %w", model, err)
	}
	return nil
}

// Fields point at the settings of a baseline's config that baselines.Options
// can override.
type Fields struct {
	ImageSize, Latent *int
	Seed              *uint64
	Iterations        *int
	ClipGradNorm      *float64
}

// ApplyOptions reads a baseline's settings: the JSON in o.Raw is decoded
// over cfg's defaults, the stored image size must agree with the one asked
// for (64 when o leaves it zero), and the non-zero Options fields (latent
// width, seed, schedule length, gradient clipping) win over the stored ones.
func ApplyOptions(model string, o baselines.Options, cfg any, f Fields) error {
	*f.ImageSize = 0
	if err := DecodeRaw(model, o.Raw, cfg); err != nil {
		return err
	}
	asked := o.ImageSize
	if asked == 0 {
		asked = 64
	}
	if err := CheckImageSize(model, *f.ImageSize, asked); err != nil {
		return err
	}
	*f.ImageSize = asked
	if o.LatentDim > 0 {
		*f.Latent = o.LatentDim
	}
	if o.Seed != 0 {
		*f.Seed = o.Seed
	}
	if o.Iterations > 0 {
		*f.Iterations = o.Iterations
	}
	if o.ClipGradNorm > 0 {
		*f.ClipGradNorm = o.ClipGradNorm
	}
	return nil
}

// CheckImageSize rejects a stored image size that disagrees with the one the
// caller asks for (a model file must be used at the size it was trained at).
func CheckImageSize(model string, stored, asked int) error {
	if stored != 0 && stored != asked {
		return fmt.Errorf("%s settings are for %dx%d images, but %dx%d was asked for", model, stored, stored, asked, asked)
	}
	return nil
}

// Eval runs fn without gradients in a scope of its own, so the intermediates
// are freed at once, and returns fn's result unscoped: the caller owns it
// (adopt it into a scope or Free it).
func Eval(x *torch.Tensor, fn func(sc *torch.Scope, x *torch.Tensor) *torch.Tensor) *torch.Tensor {
	var out *torch.Tensor
	err := torch.NoGrad(func() error {
		sc := torch.NewScope()
		defer sc.Close()
		out = sc.Keep(fn(sc, sc.AliasIn(x)))
		return out.Err()
	})
	if err != nil {
		return torch.Failed(err)
	}
	return out
}

// Optimizers names a baseline's optimizers by their prefix in checkpoints
// (e.g. "adam", or "adam_g" and "adam_d").
type Optimizers map[string]nn.Optimizer

// State gathers every optimizer's tensors as prefix + "." + state name.
func (o Optimizers) State() map[string]*torch.Tensor {
	out := map[string]*torch.Tensor{}
	for prefix, opt := range o {
		for k, t := range opt.State() {
			out[prefix+"."+k] = t
		}
	}
	return out
}

// Load gives each optimizer the saved entries under its prefix.
func (o Optimizers) Load(saved map[string]*torch.Tensor) error {
	for prefix, opt := range o {
		mine := map[string]*torch.Tensor{}
		for k, t := range saved {
			if rest, ok := strings.CutPrefix(k, prefix+"."); ok {
				mine[rest] = t
			}
		}
		if err := opt.LoadState(mine); err != nil {
			return fmt.Errorf("restoring optimizer %s: %w", prefix, err)
		}
	}
	return nil
}

// Restore decodes a baseline's JSON training state into st (empty state
// leaves st as it is) and loads the optimizers' saved tensors.
func Restore(model string, o Optimizers, saved map[string]*torch.Tensor, state json.RawMessage, st any) error {
	if len(state) > 0 {
		if err := json.Unmarshal(state, st); err != nil {
			return fmt.Errorf("%s: training state: %w", model, err)
		}
	}
	if err := o.Load(saved); err != nil {
		return fmt.Errorf("%s: %w", model, err)
	}
	return nil
}

// ReconstructionError is the per-pixel error map: squared, or absolute when
// abs is set (B x 1 x S x S).
func ReconstructionError(x, xHat *torch.Tensor, abs bool) *torch.Tensor {
	d := x.Sub(xHat)
	if abs {
		return d.Abs()
	}
	return d.Square()
}

// PerImageMean averages everything but the batch dimension (B).
func PerImageMean(t *torch.Tensor) *torch.Tensor { return t.Flatten(1, -1).MeanDims([]int64{1}, false) }

// AddHook runs the MADDR hook on z, adds its loss to total and its logs to
// losses; with no hook it returns total unchanged.
func AddHook(hook baselines.LatentHook, z, total *torch.Tensor, losses map[string]float64) (*torch.Tensor, error) {
	if hook == nil {
		return total, nil
	}
	extra, logs, err := hook(z)
	if err != nil {
		return nil, fmt.Errorf("latent hook: %w", err)
	}
	if extra == nil {
		return nil, fmt.Errorf("latent hook returned no loss")
	}
	for k, v := range logs {
		losses[k] = v
	}
	return total.Add(extra), nil
}

// Record reads each named scalar into losses.
func Record(losses map[string]float64, named map[string]*torch.Tensor) error {
	for k, t := range named {
		v, err := t.Item()
		if err != nil {
			return fmt.Errorf("reading loss %s: %w", k, err)
		}
		losses[k] = v
	}
	return nil
}
