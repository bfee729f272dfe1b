package nn

import (
	"fmt"
	"math"

	"github.com/maddr-project/maddr/torch"
)

// Optimizer updates parameters from their accumulated gradients.
type Optimizer interface {
	// Step applies one update to every parameter that has a gradient.
	Step() error
	// ZeroGrad drops the gradients of the optimizer's parameters.
	ZeroGrad() error
	LR() float64
	SetLR(lr float64)
	// State returns the optimizer's tensors by name (for checkpoints); the
	// map shares storage with the optimizer.
	State() map[string]*torch.Tensor
	// LoadState copies tensors saved from State into the optimizer.
	LoadState(map[string]*torch.Tensor) error
}

// slot is per-parameter optimizer state created on the first update.
type slot struct {
	p       *Param
	tensors map[string]*torch.Tensor
	step    *torch.Tensor // int64 scalar, kept as a tensor so it checkpoints like the rest
}

type base struct {
	lr    float64
	slots []*slot
	// clipNorm > 0 rescales the gradients to this joint L2 norm before each update.
	clipNorm float64
}

// clip applies the optional gradient-norm clipping to the trainable parameters.
func (b *base) clip() error {
	if b.clipNorm <= 0 {
		return nil
	}
	var ps []*Param
	for _, s := range b.slots {
		if s.p.Trainable {
			ps = append(ps, s.p)
		}
	}
	_, err := ClipGradNorm(ps, b.clipNorm)
	return err
}

// newBase makes one slot per parameter. A parameter given twice would get
// two slots, and so two updates per step from the same gradient, and its
// checkpointed state would be ambiguous; that is always a wiring mistake, so
// it is an error naming the parameter.
func newBase(params []*Param, lr float64) (base, error) {
	b := base{lr: lr}
	byName := map[string]bool{}
	byTensor := map[*torch.Tensor]string{}
	for _, p := range params {
		if p == nil || p.T == nil {
			return base{}, fmt.Errorf("optimizer: parameter %d of %d is nil", len(b.slots)+1, len(params))
		}
		if byName[p.Name] {
			return base{}, fmt.Errorf("optimizer: parameter %s is given twice", p.Name)
		}
		if other, ok := byTensor[p.T]; ok {
			return base{}, fmt.Errorf("optimizer: parameters %s and %s are the same tensor", other, p.Name)
		}
		byName[p.Name], byTensor[p.T] = true, p.Name
		b.slots = append(b.slots, &slot{p: p, tensors: map[string]*torch.Tensor{}})
	}
	return b, nil
}

func (b *base) LR() float64      { return b.lr }
func (b *base) SetLR(lr float64) { b.lr = lr }

func (b *base) ZeroGrad() error {
	for _, s := range b.slots {
		if err := s.p.T.ZeroGrad(true); err != nil {
			return err
		}
	}
	return nil
}

func (b *base) State() map[string]*torch.Tensor {
	out := map[string]*torch.Tensor{}
	for _, s := range b.slots {
		for k, t := range s.tensors {
			out[s.p.Name+"."+k] = t
		}
		if s.step != nil {
			out[s.p.Name+".step"] = s.step
		}
	}
	return out
}

func (b *base) LoadState(state map[string]*torch.Tensor) error {
	for _, s := range b.slots {
		prefix := s.p.Name + "."
		for k, t := range state {
			name, ok := cutPrefix(k, prefix)
			if !ok || containsDot(name) {
				continue
			}
			c := t.Clone().Detach()
			if err := c.Err(); err != nil {
				return fmt.Errorf("optimizer state %s: %w", k, err)
			}
			if name == "step" {
				s.step = c
			} else {
				s.tensors[name] = c
			}
		}
	}
	return nil
}

func cutPrefix(s, p string) (string, bool) {
	if len(s) >= len(p) && s[:len(p)] == p {
		return s[len(p):], true
	}
	return s, false
}

func containsDot(s string) bool {
	for i := 0; i < len(s); i++ {
		if s[i] == '.' {
			return true
		}
	}
	return false
}

// advance increments the slot's step counter and returns the new value.
func (s *slot) advance() (int64, error) {
	if s.step == nil {
		s.step = torch.Full(nil, 0, torch.Int64, torch.CPU)
	}
	if err := s.step.AddScalarInPlace(1); err != nil {
		return 0, err
	}
	v, err := s.step.Item()
	return int64(v), err
}

// state returns the named state tensor, creating it as zeros like p.
func (s *slot) state(name string, like *torch.Tensor) *torch.Tensor {
	if t, ok := s.tensors[name]; ok {
		return t
	}
	t := torch.Full(like.Shape(), 0, torch.Float32, like.Device())
	s.tensors[name] = t
	return t
}

// forEach runs update for each parameter with a gradient, inside a scope
// that frees the temporaries of the update.
func (b *base) forEach(update func(sc *torch.Scope, s *slot, p, g *torch.Tensor) error) error {
	for _, s := range b.slots {
		if !s.p.Trainable {
			continue
		}
		err := torch.Run(func(sc *torch.Scope) error {
			g := s.p.T.Grad()
			if g == nil {
				return nil
			}
			sc.Adopt(g)
			if err := g.Err(); err != nil {
				return err
			}
			return update(sc, s, sc.AliasIn(s.p.T), g)
		})
		if err != nil {
			return fmt.Errorf("updating %s: %w", s.p.Name, err)
		}
	}
	return nil
}

// Adam is torch.optim.Adam (amsgrad off) with L2 weight decay added to the
// gradient, computing exactly the same sequence of tensor ops.
type Adam struct {
	base
	Beta1, Beta2, Eps, WeightDecay float64
}

// AdamConfig holds Adam's hyper-parameters; zero betas/eps mean PyTorch's
// defaults (0.9, 0.999, 1e-8).
type AdamConfig struct {
	LR, Beta1, Beta2, Eps, WeightDecay float64
	// ClipNorm > 0 clips the gradients' joint L2 norm before each update.
	ClipNorm float64
	// ZeroBeta1 makes a zero Beta1 mean 0 instead of the default (f-AnoGAN's betas (0, 0.9)).
	ZeroBeta1 bool
}

// NewAdam returns Adam over params, each of which must appear once.
func NewAdam(params []*Param, c AdamConfig) (*Adam, error) {
	if c.Beta1 == 0 && !c.ZeroBeta1 {
		c.Beta1 = 0.9
	}
	if c.Beta2 == 0 {
		c.Beta2 = 0.999
	}
	if c.Eps == 0 {
		c.Eps = 1e-8
	}
	b, err := newBase(params, c.LR)
	if err != nil {
		return nil, fmt.Errorf("adam: %w", err)
	}
	a := &Adam{base: b, Beta1: c.Beta1, Beta2: c.Beta2, Eps: c.Eps, WeightDecay: c.WeightDecay}
	a.clipNorm = c.ClipNorm
	return a, nil
}

// Step applies one Adam update.
func (a *Adam) Step() error {
	if err := a.clip(); err != nil {
		return err
	}
	return a.forEach(func(sc *torch.Scope, s *slot, p, g *torch.Tensor) error {
		step, err := s.advance()
		if err != nil {
			return err
		}
		if a.WeightDecay != 0 {
			g = g.Add(p.MulScalar(a.WeightDecay))
		}
		m, v := s.state("exp_avg", p), s.state("exp_avg_sq", p)
		if err := m.MulScalarInPlace(a.Beta1); err != nil {
			return err
		}
		if err := m.AddInPlace(g, 1-a.Beta1); err != nil {
			return err
		}
		if err := v.MulScalarInPlace(a.Beta2); err != nil {
			return err
		}
		if err := v.AddcmulInPlace(g, g, 1-a.Beta2); err != nil {
			return err
		}
		bc1 := 1 - math.Pow(a.Beta1, float64(step))
		bc2 := 1 - math.Pow(a.Beta2, float64(step))
		denom := sc.Adopt(v.Sqrt()).DivScalar(math.Sqrt(bc2)).AddScalar(a.Eps)
		return p.AddcdivInPlace(m, denom, -a.lr/bc1)
	})
}

// RMSprop is torch.optim.RMSprop (not centered).
type RMSprop struct {
	base
	Alpha, Eps, Momentum, WeightDecay float64
}

// RMSpropConfig holds RMSprop's hyper-parameters; zero alpha/eps mean
// PyTorch's defaults (0.99, 1e-8).
type RMSpropConfig struct {
	LR, Alpha, Eps, Momentum, WeightDecay float64
	// ClipNorm > 0 clips the gradients' joint L2 norm before each update.
	ClipNorm float64
}

// NewRMSprop returns RMSprop over params, each of which must appear once.
func NewRMSprop(params []*Param, c RMSpropConfig) (*RMSprop, error) {
	if c.Alpha == 0 {
		c.Alpha = 0.99
	}
	if c.Eps == 0 {
		c.Eps = 1e-8
	}
	b, err := newBase(params, c.LR)
	if err != nil {
		return nil, fmt.Errorf("rmsprop: %w", err)
	}
	r := &RMSprop{base: b, Alpha: c.Alpha, Eps: c.Eps, Momentum: c.Momentum, WeightDecay: c.WeightDecay}
	r.clipNorm = c.ClipNorm
	return r, nil
}

// Step applies one RMSprop update.
func (r *RMSprop) Step() error {
	if err := r.clip(); err != nil {
		return err
	}
	return r.forEach(func(sc *torch.Scope, s *slot, p, g *torch.Tensor) error {
		if _, err := s.advance(); err != nil {
			return err
		}
		if r.WeightDecay != 0 {
			g = g.Add(p.MulScalar(r.WeightDecay))
		}
		sq := s.state("square_avg", p)
		if err := sq.MulScalarInPlace(r.Alpha); err != nil {
			return err
		}
		if err := sq.AddcmulInPlace(g, g, 1-r.Alpha); err != nil {
			return err
		}
		avg := sc.Adopt(sq.Sqrt()).AddScalar(r.Eps)
		if r.Momentum > 0 {
			buf := s.state("momentum_buffer", p)
			if err := buf.MulScalarInPlace(r.Momentum); err != nil {
				return err
			}
			if err := buf.AddcdivInPlace(g, avg, 1); err != nil {
				return err
			}
			return p.AddInPlace(buf, -r.lr)
		}
		return p.AddcdivInPlace(g, avg, -r.lr)
	})
}

// SGD is torch.optim.SGD with momentum (dampening 0) and optional Nesterov.
type SGD struct {
	base
	Momentum, WeightDecay float64
	Nesterov              bool
}

// NewSGD returns SGD over params, each of which must appear once.
func NewSGD(params []*Param, lr, momentum, weightDecay float64, nesterov bool) (*SGD, error) {
	b, err := newBase(params, lr)
	if err != nil {
		return nil, fmt.Errorf("sgd: %w", err)
	}
	return &SGD{base: b, Momentum: momentum, WeightDecay: weightDecay, Nesterov: nesterov}, nil
}

// SetClipNorm turns on gradient-norm clipping before each update (0: off).
func (o *SGD) SetClipNorm(maxNorm float64) { o.clipNorm = maxNorm }

// Step applies one SGD update.
func (o *SGD) Step() error {
	if err := o.clip(); err != nil {
		return err
	}
	return o.forEach(func(sc *torch.Scope, s *slot, p, g *torch.Tensor) error {
		if _, err := s.advance(); err != nil {
			return err
		}
		if o.WeightDecay != 0 {
			g = g.Add(p.MulScalar(o.WeightDecay))
		}
		if o.Momentum != 0 {
			buf, seen := s.tensors["momentum_buffer"]
			if !seen {
				// PyTorch starts the buffer at the first gradient, not at zero.
				buf = s.state("momentum_buffer", p)
				if err := buf.CopyFrom(g); err != nil {
					return err
				}
			} else {
				if err := buf.MulScalarInPlace(o.Momentum); err != nil {
					return err
				}
				if err := buf.AddInPlace(g, 1); err != nil {
					return err
				}
			}
			if o.Nesterov {
				g = g.Add(sc.AliasIn(buf).MulScalar(o.Momentum))
			} else {
				g = sc.AliasIn(buf)
			}
		}
		return p.AddInPlace(g, -o.lr)
	})
}

// StepLR multiplies the learning rate by Gamma every StepSize calls of Step,
// like torch.optim.lr_scheduler.StepLR.
type StepLR struct {
	Opt      Optimizer
	BaseLR   float64
	StepSize int
	Gamma    float64
	Count    int
}

// NewStepLR schedules opt starting from its current learning rate.
func NewStepLR(opt Optimizer, stepSize int, gamma float64) *StepLR {
	return &StepLR{Opt: opt, BaseLR: opt.LR(), StepSize: stepSize, Gamma: gamma}
}

// Step advances the schedule by one and sets the optimizer's learning rate.
func (s *StepLR) Step() {
	s.Count++
	s.apply()
}

// SetCount restores the schedule position (after resuming a run).
func (s *StepLR) SetCount(n int) {
	s.Count = n
	s.apply()
}

func (s *StepLR) apply() {
	if s.StepSize <= 0 {
		return
	}
	s.Opt.SetLR(s.BaseLR * math.Pow(s.Gamma, float64(s.Count/s.StepSize)))
}

// ClipGradNorm scales all gradients so their joint L2 norm is at most maxNorm,
// like torch.nn.utils.clip_grad_norm_, and returns the norm before clipping.
func ClipGradNorm(params []*Param, maxNorm float64) (float64, error) {
	var total float64
	err := torch.Run(func(sc *torch.Scope) error {
		var grads []*torch.Tensor
		for _, p := range params {
			if g := p.T.Grad(); g != nil {
				grads = append(grads, sc.Adopt(g))
			}
		}
		sumSq := 0.0
		for _, g := range grads {
			n, err := g.Norm(nil, false).Item()
			if err != nil {
				return err
			}
			sumSq += n * n
		}
		total = math.Sqrt(sumSq)
		coef := maxNorm / (total + 1e-6)
		if coef >= 1 {
			return nil
		}
		for _, g := range grads {
			if err := g.MulScalarInPlace(coef); err != nil {
				return err
			}
		}
		return nil
	})
	return total, err
}

// ClipGradValue clamps every gradient element to [-limit, limit].
func ClipGradValue(params []*Param, limit float64) error {
	return torch.Run(func(sc *torch.Scope) error {
		for _, p := range params {
			g := p.T.Grad()
			if g == nil {
				continue
			}
			sc.Adopt(g)
			if err := g.CopyFrom(g.Clamp(-limit, limit)); err != nil {
				return err
			}
		}
		return nil
	})
}
