// Package nn holds the building blocks every maddr network is made of: a
// parameter store keyed by path names (enc.res_64.conv1.weight), the layers
// (Conv2d, ConvTranspose2d, Linear, BatchNorm), weight initialisers matching
// PyTorch's, the optimizers (Adam, RMSprop, SGD), StepLR, gradient clipping,
// and checkpoints in safetensors format.
package nn

import (
	"errors"
	"fmt"
	"sort"
	"strings"
	"sync"

	"github.com/maddr-project/maddr/torch"
)

// Param is one named tensor of a network. Buffers (BatchNorm running
// statistics) are Params with Trainable false and are never given to an optimizer.
type Param struct {
	Name      string
	T         *torch.Tensor
	Trainable bool
	Buffer    bool
}

type storeData struct {
	mu     sync.Mutex
	params map[string]*Param
	order  []string
	gen    *torch.Generator
	err    error
}

// Store owns the parameters of one or more networks by path name. A Store
// value is a view at a path prefix; Sub returns a view one level deeper that
// shares the same parameters.
type Store struct {
	d      *storeData
	prefix string
}

// NewStore returns an empty store whose initialisers draw from a generator
// seeded with seed, so the same seed gives the same initial weights.
func NewStore(seed uint64) (*Store, error) {
	g, err := torch.NewGenerator(seed)
	if err != nil {
		return nil, err
	}
	return &Store{d: &storeData{params: map[string]*Param{}, gen: g}}, nil
}

// Sub returns the view of s under name.
func (s *Store) Sub(name string) *Store { return &Store{d: s.d, prefix: s.Path(name)} }

// Path is the full name of name under s.
func (s *Store) Path(name string) string {
	if s.prefix == "" {
		return name
	}
	return s.prefix + "." + name
}

// Generator is the random stream initialisers use.
func (s *Store) Generator() *torch.Generator { return s.d.gen }

// Err is the first error met while creating parameters.
func (s *Store) Err() error {
	s.d.mu.Lock()
	defer s.d.mu.Unlock()
	return s.d.err
}

func (s *Store) fail(err error) {
	s.d.mu.Lock()
	defer s.d.mu.Unlock()
	if s.d.err == nil {
		s.d.err = err
	}
}

func (s *Store) register(p *Param) *torch.Tensor {
	s.d.mu.Lock()
	defer s.d.mu.Unlock()
	if _, dup := s.d.params[p.Name]; dup {
		if s.d.err == nil {
			s.d.err = fmt.Errorf("nn: parameter %s defined twice", p.Name)
		}
		return p.T
	}
	s.d.params[p.Name] = p
	s.d.order = append(s.d.order, p.Name)
	return p.T
}

// NewParam creates a trainable float32 parameter of the given shape,
// initialised by init.
func (s *Store) NewParam(name string, shape []int64, init Init) *torch.Tensor {
	full := s.Path(name)
	t := torch.Zeros(shape...)
	if err := t.Err(); err != nil {
		s.fail(fmt.Errorf("nn: creating %s: %w", full, err))
		return t
	}
	if init != nil {
		if err := init(t, s.d.gen); err != nil {
			s.fail(fmt.Errorf("nn: initialising %s: %w", full, err))
		}
	}
	t.SetRequiresGrad(true)
	return s.register(&Param{Name: full, T: t, Trainable: true})
}

// NewBuffer registers a non-trainable tensor that is saved with the weights.
func (s *Store) NewBuffer(name string, t *torch.Tensor) *torch.Tensor {
	full := s.Path(name)
	if err := t.Err(); err != nil {
		s.fail(fmt.Errorf("nn: creating buffer %s: %w", full, err))
	}
	return s.register(&Param{Name: full, T: t, Buffer: true})
}

// Get returns the parameter with the full name, or nil.
func (s *Store) Get(name string) *Param {
	s.d.mu.Lock()
	defer s.d.mu.Unlock()
	return s.d.params[name]
}

// All returns every parameter and buffer under s's prefix in creation order.
func (s *Store) All() []*Param {
	s.d.mu.Lock()
	defer s.d.mu.Unlock()
	var out []*Param
	for _, n := range s.d.order {
		if s.prefix == "" || n == s.prefix || strings.HasPrefix(n, s.prefix+".") {
			out = append(out, s.d.params[n])
		}
	}
	return out
}

// Trainable returns the trainable parameters under s's prefix in creation order.
func (s *Store) Trainable() []*Param {
	var out []*Param
	for _, p := range s.All() {
		if p.Trainable {
			out = append(out, p)
		}
	}
	return out
}

// Freeze stops training every parameter under s's prefix (they still pass
// gradients to whatever produced their inputs).
func (s *Store) Freeze() {
	for _, p := range s.All() {
		if !p.Buffer {
			p.Trainable = false
			p.T.SetRequiresGrad(false)
		}
	}
}

// NumParams counts the elements of the trainable parameters under s.
func (s *Store) NumParams() int64 {
	var n int64
	for _, p := range s.Trainable() {
		n += p.T.Numel()
	}
	return n
}

// ZeroGrad drops the gradients of every parameter under s.
func (s *Store) ZeroGrad() error {
	var errs []error
	for _, p := range s.All() {
		if !p.Buffer {
			errs = append(errs, p.T.ZeroGrad(true))
		}
	}
	return errors.Join(errs...)
}

// Names lists the full names under s in sorted order.
func (s *Store) Names() []string {
	var out []string
	for _, p := range s.All() {
		out = append(out, p.Name)
	}
	sort.Strings(out)
	return out
}

// Free releases every tensor in the store.
func (s *Store) Free() {
	for _, p := range s.All() {
		p.T.Free()
	}
}
