package nn

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/maddr-project/maddr/torch"
)

func TestCheckpointRoundTripAndCorruption(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "ckpt.safetensors")
	a, _ := NewStore(1)
	newSmallNet(a)
	opt, err := NewAdam(a.Trainable(), AdamConfig{LR: 1e-3})
	if err != nil {
		t.Fatal(err)
	}
	err = torch.Run(func(sc *torch.Scope) error {
		return sc.AliasIn(a.Get("fc2.bias").T).Sum().Backward()
	})
	if err != nil {
		t.Fatal(err)
	}
	if err := opt.Step(); err != nil {
		t.Fatal(err)
	}
	extra := map[string]*torch.Tensor{}
	for k, v := range opt.State() {
		extra["optim."+k] = v
	}
	cfg := map[string]any{"model": "small", "latent": 16}
	if err := SaveCheckpoint(path, a, extra, cfg); err != nil {
		t.Fatal(err)
	}
	if side, err := os.ReadFile(path + ".json"); err != nil || !strings.Contains(string(side), `"latent": 16`) {
		t.Fatalf("sidecar: %q %v", side, err)
	}
	entries, _ := os.ReadDir(dir)
	for _, e := range entries {
		if strings.Contains(e.Name(), ".tmp-") {
			t.Fatalf("temporary file left behind: %s", e.Name())
		}
	}

	b, _ := NewStore(2) // different init
	newSmallNet(b)
	ck, err := ReadCheckpoint(path)
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(string(ck.Config), `"model": "small"`) {
		t.Fatalf("config not embedded: %s", ck.Config)
	}
	if err := ck.LoadInto(b); err == nil || !strings.Contains(err.Error(), "unexpected optim.") {
		t.Fatalf("optimizer entries should be unexpected unless ignored: %v", err)
	}
	if err := ck.LoadInto(b, "optim."); err != nil {
		t.Fatal(err)
	}
	for _, p := range a.All() {
		va, _ := p.T.Float32s()
		vb, _ := b.Get(p.Name).T.Float32s()
		for i := range va {
			if va[i] != vb[i] {
				t.Fatalf("%s differs after load", p.Name)
			}
		}
	}
	opt2, err := NewAdam(b.Trainable(), AdamConfig{LR: 1e-3})
	if err != nil {
		t.Fatal(err)
	}
	if err := opt2.LoadState(ck.Extra("optim.")); err != nil {
		t.Fatal(err)
	}
	if len(opt2.State()) != len(opt.State()) {
		t.Fatalf("optimizer state: %d entries restored, want %d", len(opt2.State()), len(opt.State()))
	}

	// A store with another architecture is refused with the names.
	c, _ := NewStore(3)
	NewLinear(c, "fc2", 16, 64, LinearConfig{})
	if err := ck.LoadInto(c, "optim.", "conv", "bn", "fc1", "deconv", "head"); err == nil || !strings.Contains(err.Error(), "fc2.weight (file [128 16], model [64 16])") {
		t.Fatalf("shape mismatch error: %v", err)
	}

	// Truncated and garbage files give errors that name the file.
	data, _ := os.ReadFile(path)
	for name, content := range map[string][]byte{
		"truncated.safetensors": data[:len(data)/2],
		"empty.safetensors":     {},
		"garbage.safetensors":   []byte("this is not a checkpoint at all"),
	} {
		p := filepath.Join(dir, name)
		os.WriteFile(p, content, 0o644)
		if _, err := ReadCheckpoint(p); err == nil || !strings.Contains(err.Error(), p) {
			t.Errorf("%s: error %v does not name the file", name, err)
		}
	}
	if _, err := ReadCheckpoint(filepath.Join(dir, "missing.safetensors")); err == nil {
		t.Error("missing checkpoint accepted")
	}
}
