package nn

import (
	"strings"
	"testing"

	"github.com/maddr-project/maddr/torch"
)

// TestOptimizersRejectDuplicateParameters checks that a parameter given twice
// (the way a head attached to an optimizer that already holds its store would
// be) is an error naming it, for every optimizer, and that the same list
// without the duplicate is accepted.
func TestOptimizersRejectDuplicateParameters(t *testing.T) {
	s, _ := NewStore(0)
	NewLinear(s.Sub("enc"), "fc", 3, 2, LinearConfig{})
	head := NewLinear(s.Sub("maddr"), "organ_head", 2, 2, LinearConfig{})
	if err := s.Err(); err != nil {
		t.Fatal(err)
	}
	once := s.Trainable()
	twice := append(s.Trainable(), s.Sub("maddr").Trainable()...)
	// A second Param wrapper around a tensor that is already listed.
	alias := append(s.Trainable(), &Param{Name: "copy_of_head", T: head.W, Trainable: true})
	builders := map[string]func([]*Param) error{
		"adam": func(ps []*Param) error { _, err := NewAdam(ps, AdamConfig{LR: 1e-3}); return err },
		"rmsprop": func(ps []*Param) error {
			_, err := NewRMSprop(ps, RMSpropConfig{LR: 1e-3})
			return err
		},
		"sgd": func(ps []*Param) error { _, err := NewSGD(ps, 1e-3, 0.9, 0, false); return err },
	}
	for name, build := range builders {
		if err := build(once); err != nil {
			t.Errorf("%s rejects distinct parameters: %v", name, err)
		}
		err := build(twice)
		if err == nil || !strings.Contains(err.Error(), "maddr.organ_head.weight") {
			t.Errorf("%s with a parameter given twice: error %v, want one naming maddr.organ_head.weight", name, err)
		}
		err = build(alias)
		if err == nil || !strings.Contains(err.Error(), "copy_of_head") {
			t.Errorf("%s with one tensor under two names: error %v, want one naming copy_of_head", name, err)
		}
	}
}

// TestAdamStepsEachParameterOnce checks the consequence the rejection
// prevents: after one Adam step from a unit gradient, every element has moved
// by exactly lr (PyTorch's first step is lr * g / (|g| + eps)).
func TestAdamStepsEachParameterOnce(t *testing.T) {
	s, _ := NewStore(0)
	p := s.NewParam("p", []int64{4}, Constant(0))
	opt, err := NewAdam(s.Trainable(), AdamConfig{LR: 0.01})
	if err != nil {
		t.Fatal(err)
	}
	if err := torch.Run(func(sc *torch.Scope) error { return sc.AliasIn(p).Sum().Backward() }); err != nil {
		t.Fatal(err)
	}
	if err := opt.Step(); err != nil {
		t.Fatal(err)
	}
	v, err := p.Float32s()
	if err != nil {
		t.Fatal(err)
	}
	want := -0.01 / (1 + 1e-8)
	for i, x := range v {
		if d := float64(x) - want; !(d < 1e-9 && d > -1e-9) {
			t.Fatalf("element %d moved to %v, want %v", i, x, want)
		}
	}
}
