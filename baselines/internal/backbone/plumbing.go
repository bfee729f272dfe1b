package backbone

import (
	"bytes"
	"encoding/json"
	"fmt"
	"reflect"
	"slices"
	"strconv"
	"strings"

	"github.com/maddr-project/maddr/baselines"
	"github.com/maddr-project/maddr/nn"
	"github.com/maddr-project/maddr/torch"
)

// DecodeRaw reads a baseline's JSON settings over the defaults already in
// dst (a pointer to a struct). Unknown keys are an error that names the key
// and lists the settings dst offers, so that a misspelt switch is not
// silently ignored.
//
// A field tagged settings:"recorded" is a value the baseline derives and
// records in its Config (a parameter count, a source): it is accepted, so
// that a stored Config rebuilds its model, but not listed as a setting.
func DecodeRaw(model string, raw json.RawMessage, dst any) error {
	raw = bytes.TrimSpace(raw)
	if len(raw) == 0 || string(raw) == "null" {
		return nil
	}
	if err := checkKeys(raw, dst); err != nil {
		return fmt.Errorf("%s settings: %w", model, err)
	}
	dec := json.NewDecoder(bytes.NewReader(raw))
	dec.DisallowUnknownFields()
	if err := dec.Decode(dst); err != nil {
		return fmt.Errorf("%s settings: %w", model, err)
	}
	return nil
}

// checkKeys rejects a top-level key of the JSON object raw that no field of
// dst takes. Like encoding/json, it matches keys regardless of case. Input
// that is not an object is left for the decoder to reject.
func checkKeys(raw json.RawMessage, dst any) error {
	var keys map[string]json.RawMessage
	if json.Unmarshal(raw, &keys) != nil {
		return nil
	}
	valid := Keys(dst)
	accepted := append(slices.Clone(valid), recordedKeys(dst)...)
	var unknown []string
	for k := range keys {
		if !slices.ContainsFunc(accepted, func(v string) bool { return strings.EqualFold(k, v) }) {
			unknown = append(unknown, strconv.Quote(k))
		}
	}
	if len(unknown) == 0 {
		return nil
	}
	slices.Sort(unknown)
	what := "option"
	if len(unknown) > 1 {
		what = "options"
	}
	return fmt.Errorf("unknown %s %s (valid: %s)", what, strings.Join(unknown, ", "), strings.Join(valid, ", "))
}

// Keys lists, sorted, the settings that the struct dst points at offers:
// the JSON names of its exported fields, those of embedded structs
// included, except the fields tagged settings:"recorded".
func Keys(dst any) []string { return jsonKeys(dst, false) }

// recordedKeys lists the JSON names of dst's fields tagged settings:"recorded".
func recordedKeys(dst any) []string { return jsonKeys(dst, true) }

func jsonKeys(dst any, recorded bool) []string {
	t := reflect.TypeOf(dst)
	for t != nil && t.Kind() == reflect.Pointer {
		t = t.Elem()
	}
	if t == nil || t.Kind() != reflect.Struct {
		return nil
	}
	var out []string
	addKeys(t, recorded, &out)
	slices.Sort(out)
	return slices.Compact(out)
}

func addKeys(t reflect.Type, recorded bool, out *[]string) {
	for f := range t.Fields() {
		name, _, _ := strings.Cut(f.Tag.Get("json"), ",")
		if name == "-" {
			continue
		}
		if f.Anonymous && name == "" && f.Type.Kind() == reflect.Struct {
			addKeys(f.Type, recorded, out)
			continue
		}
		if !f.IsExported() || (f.Tag.Get("settings") == "recorded") != recorded {
			continue
		}
		if name == "" {
			name = f.Name
		}
		*out = append(*out, name)
	}
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

// Forward runs fn, the forward pass of a training step, in a child scope of
// s, moves the tensors that keep points at into s and frees the rest of fn's
// tensors when fn returns, before the caller's backward. fn aliases its
// inputs into the child scope it is given, so that every result derived from
// them lands there. Autograd holds its own reference to each tensor backward
// needs and drops it once backward has passed it, as PyTorch does; a Go
// handle still open would keep the tensor alive until the step ends, so
// without this a step's peak held every activation of the forward pass plus
// the gradients of backward (BENCHMARKS.md, "Memory with fixed malloc
// thresholds"). Results are unchanged: only the moment memory is released.
func Forward(s *torch.Scope, fn func(fs *torch.Scope) error, keep ...**torch.Tensor) error {
	fs := s.Child()
	defer fs.Close()
	if err := fn(fs); err != nil {
		return err
	}
	for _, t := range keep {
		*t = fs.Keep(*t)
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
// (e.g. "adam", or "adam_g" and "adam_d"). The empty prefix, for a baseline
// with a single optimizer, stores its state names as they are.
type Optimizers map[string]nn.Optimizer

// State gathers every optimizer's tensors as prefix + "." + state name.
func (o Optimizers) State() map[string]*torch.Tensor {
	out := map[string]*torch.Tensor{}
	for prefix, opt := range o {
		for k, t := range opt.State() {
			out[stateName(prefix, k)] = t
		}
	}
	return out
}

func stateName(prefix, name string) string {
	if prefix == "" {
		return name
	}
	return prefix + "." + name
}

// Load gives each optimizer the saved entries under its prefix.
func (o Optimizers) Load(saved map[string]*torch.Tensor) error {
	for prefix, opt := range o {
		mine := saved
		if prefix != "" {
			mine = map[string]*torch.Tensor{}
			for k, t := range saved {
				if rest, ok := strings.CutPrefix(k, prefix+"."); ok {
					mine[rest] = t
				}
			}
		}
		if err := opt.LoadState(mine); err != nil {
			if prefix == "" {
				return fmt.Errorf("restoring the optimizer: %w", err)
			}
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
