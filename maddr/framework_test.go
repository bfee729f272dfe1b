package maddr

import (
	"encoding/json"
	"math"
	"strings"
	"testing"

	"github.com/maddr-project/maddr/baselines"
	"github.com/maddr-project/maddr/nn"
	"github.com/maddr-project/maddr/torch"
)

// linearAE is the smallest baseline that honours the seam: a linear encoder
// to z and a linear decoder, trained with MSE by Adam.
type linearAE struct {
	store    *nn.Store
	enc, dec *nn.Linear
	opt      *nn.Adam
	d        int
	lastZ    []float32 // z seen by the last hook call
	mixups   int
}

func newLinearAE(t *testing.T, pixels, d int) *linearAE {
	s, err := nn.NewStore(5)
	if err != nil {
		t.Fatal(err)
	}
	b := &linearAE{store: s, d: d}
	b.enc = nn.NewLinear(s, "enc", int64(pixels), int64(d), nn.LinearConfig{})
	b.dec = nn.NewLinear(s, "dec", int64(d), int64(pixels), nn.LinearConfig{})
	if b.opt, err = nn.NewAdam(s.Trainable(), nn.AdamConfig{LR: 1e-2}); err != nil {
		t.Fatal(err)
	}
	return b
}

func (b *linearAE) Name() string           { return "linear-ae" }
func (b *linearAE) Store() *nn.Store       { return b.store }
func (b *linearAE) LatentDim() int         { return b.d }
func (b *linearAE) DefaultIterations() int { return 10 }
func (b *linearAE) AttachParams(ps []*nn.Param) error {
	opt, err := nn.NewAdam(append(b.store.Sub("enc").Trainable(), append(b.store.Sub("dec").Trainable(), ps...)...), nn.AdamConfig{LR: 1e-2})
	if err != nil {
		return err
	}
	b.opt = opt
	return nil
}
func (b *linearAE) Latent(x *torch.Tensor, train bool) *torch.Tensor {
	return b.enc.Forward(x.Flatten(1, -1))
}
func (b *linearAE) TrainStep(s *torch.Scope, st baselines.Step) (baselines.Losses, error) {
	if st.Mixup {
		b.mixups++
	}
	if err := b.opt.ZeroGrad(); err != nil {
		return nil, err
	}
	x := st.X.Flatten(1, -1)
	z := b.enc.Forward(x)
	loss := b.dec.Forward(z).Sub(x).Square().Mean()
	losses := baselines.Losses{}
	if st.Hook != nil {
		extra, logs, err := st.Hook(z)
		if err != nil {
			return nil, err
		}
		b.lastZ, _ = z.Float32s()
		for k, v := range logs {
			losses[k] = v
		}
		loss = loss.Add(extra)
	}
	v, err := loss.Item()
	if err != nil {
		return nil, err
	}
	losses["total"] = v
	if err := loss.Backward(); err != nil {
		return nil, err
	}
	return losses, b.opt.Step()
}
func (b *linearAE) Score(x *torch.Tensor) *torch.Tensor {
	return x.Flatten(1, -1).Square().MeanDims([]int64{1}, false)
}
func (b *linearAE) AnomalyMap(x *torch.Tensor) *torch.Tensor                { return x.Square() }
func (b *linearAE) OptimizerState() map[string]*torch.Tensor                { return b.opt.State() }
func (b *linearAE) TrainingState() (json.RawMessage, error)                 { return json.RawMessage(`{}`), nil }
func (b *linearAE) Restore(map[string]*torch.Tensor, json.RawMessage) error { return nil }
func (b *linearAE) Config() any                                             { return nil }
func (b *linearAE) Notes() []string                                         { return nil }

var threeGroups = Classes{Organs: []string{"liver", "lung"}, Modalities: []string{"ct", "xray"}}

func batchOf(s *torch.Scope, n, side int) Batch {
	data := make([]float32, n*side*side)
	for i := range data {
		data[i] = float32(math.Sin(float64(i) * 0.37))
	}
	b := Batch{X: s.Adopt(torch.FromFloat32(data, int64(n), 1, int64(side), int64(side)))}
	for i := 0; i < n; i++ {
		b.Organ = append(b.Organ, int64(i%2))
		b.Modality = append(b.Modality, int64((i/2)%2))
	}
	return b
}

func TestHeadsAreTrainedAndConstraintsLower(t *testing.T) {
	base := newLinearAE(t, 16, 32)
	f, err := New(base, Paper(), threeGroups, 1)
	if err != nil {
		t.Fatal(err)
	}
	if !f.HasOrganHead() || !f.HasModalityHead() {
		t.Fatal("heads missing")
	}
	head := base.store.Get("maddr.organ_head.weight")
	if head == nil || head.T.Size(1) != 10 {
		t.Fatalf("organ head should read the 10-dim z_o, got %v", head)
	}
	before, _ := head.T.Float32s()
	var first, last baselines.Losses
	for it := 1; it <= 60; it++ {
		err := torch.Run(func(s *torch.Scope) error {
			l, err := f.Step(s, it, batchOf(s, 8, 4))
			if it == 1 {
				first = l
			}
			last = l
			return err
		})
		if err != nil {
			t.Fatal(err)
		}
	}
	after, _ := head.T.Float32s()
	if before[0] == after[0] {
		t.Fatal("organ head did not train (it must share the encoder's optimizer)")
	}
	for _, k := range []string{"focal_organ", "focal_modality", "center"} {
		if !(last[k] < first[k]) {
			t.Errorf("%s did not decrease: %v -> %v", k, first[k], last[k])
		}
	}
}

func TestFrozenHeadsAndSkippedHeads(t *testing.T) {
	base := newLinearAE(t, 16, 32)
	cfg := Paper().ReproduceCode()
	f, err := New(base, cfg, Classes{Organs: []string{"lung"}, Modalities: []string{"ct", "xray"}}, 1)
	if err != nil {
		t.Fatal(err)
	}
	// Label bug: the organ head is built over modality classes and exists
	// even though the data has one organ.
	if !f.HasOrganHead() {
		t.Fatal("label-bug mode should build the organ head over modality labels")
	}
	head := base.store.Get("maddr.modality_head.weight")
	before, _ := head.T.Float32s()
	for it := 1; it <= 5; it++ {
		if err := torch.Run(func(s *torch.Scope) error { _, err := f.Step(s, it, batchOf(s, 8, 4)); return err }); err != nil {
			t.Fatal(err)
		}
	}
	after, _ := head.T.Float32s()
	for i := range before {
		if before[i] != after[i] {
			t.Fatal("frozen head changed")
		}
	}
	notes := strings.Join(f.Notes(), "; ")
	if !strings.Contains(notes, "frozen") || !strings.Contains(notes, "label bug") {
		t.Fatalf("notes %q", notes)
	}

	g, err := New(newLinearAE(t, 16, 32), Paper(), Classes{Organs: []string{"lung"}, Modalities: []string{"ct", "xray"}}, 1)
	if err != nil {
		t.Fatal(err)
	}
	if g.HasOrganHead() || !strings.Contains(strings.Join(g.Notes(), ";"), "organ head skipped") {
		t.Fatalf("one organ class: head should be skipped with a note, notes %v", g.Notes())
	}
}

func TestMixupScheduleAndFocalMix(t *testing.T) {
	cfg := Paper().ScaleMixup(160)
	if cfg.Mixup.Start != 71 || cfg.Mixup.End != 100 {
		t.Fatalf("scaled window %d..%d, want 71..100", cfg.Mixup.Start, cfg.Mixup.End)
	}
	if !Paper().MixupActive(7001) || Paper().MixupActive(7000) || !Paper().MixupActive(10000) || Paper().MixupActive(10001) {
		t.Fatal("paper window is 7001..10000 inclusive")
	}
	if BaselineOnly().MixupActive(8000) {
		t.Fatal("auto mixup must be off without constraints")
	}
	base := newLinearAE(t, 16, 32)
	cfg.Mixup.Start, cfg.Mixup.End = 2, 3
	f, err := New(base, cfg, threeGroups, 1)
	if err != nil {
		t.Fatal(err)
	}
	for it := 1; it <= 4; it++ {
		if err := torch.Run(func(s *torch.Scope) error { _, err := f.Step(s, it, batchOf(s, 4, 4)); return err }); err != nil {
			t.Fatal(err)
		}
	}
	if base.mixups != 2 {
		t.Fatalf("%d mixup steps, want 2", base.mixups)
	}

	// The mixed focal term against the reference: an identity organ head
	// reading z_o = z[1:3] makes the logits the fixture's.
	fx := readLossFixture(t)
	c := Paper()
	c.Modality, c.Center = false, false
	c.ModalityDims, c.OrganDims = 1, 2
	b2 := newLinearAE(t, 16, 4)
	g, err := New(b2, c, threeGroups, 1)
	if err != nil {
		t.Fatal(err)
	}
	w := b2.store.Get("maddr.organ_head.weight").T
	if err := w.CopyFrom(torch.FromFloat32([]float32{1, 0, 0, 1}, 2, 2)); err != nil {
		t.Fatal(err)
	}
	if err := b2.store.Get("maddr.organ_head.bias").T.Fill(0); err != nil {
		t.Fatal(err)
	}
	err = torch.Run(func(s *torch.Scope) error {
		logits := tensorOf(s, fx.Tensors["mix.logits"])
		z := torch.Cat([]*torch.Tensor{s.Adopt(torch.Zeros(8, 1)), logits, s.Adopt(torch.Zeros(8, 1))}, 1)
		var perm []int
		for _, p := range fx.Tensors["mix.perm"].I64 {
			perm = append(perm, int(p))
		}
		loss, _, err := g.constraintLoss(s, z, Batch{Organ: fx.Tensors["mix.targets"].I64, Modality: make([]int64, 8)}, 0.3, perm)
		if err != nil {
			return err
		}
		assertClose(t, "mixed focal", loss.Reshape(1), fx.Tensors["mix.loss"], 1e-5)
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
}

func TestNoLeakPerStep(t *testing.T) {
	f, err := New(newLinearAE(t, 16, 32), Paper(), threeGroups, 1)
	if err != nil {
		t.Fatal(err)
	}
	step := func(it int) {
		if err := torch.Run(func(s *torch.Scope) error { _, err := f.Step(s, it, batchOf(s, 8, 4)); return err }); err != nil {
			t.Fatal(err)
		}
	}
	step(1)
	live := torch.LiveTensors()
	for it := 2; it < 12; it++ {
		step(it)
	}
	if d := torch.LiveTensors() - live; d > 0 {
		t.Fatalf("%d tensors leaked over 10 steps", d)
	}
}

func TestValidate(t *testing.T) {
	c := Paper()
	if err := c.Validate(20); err == nil {
		t.Fatal("10+10 dims leave no z_c in a 20-dim latent")
	}
	off := c
	off.Organ, off.Modality, off.Center = false, false, false
	if err := off.Validate(16); err != nil {
		t.Fatalf("with every term off (baseline only) a 16-dim latent is refused: %v", err)
	}
	c.Mixup.Mode = "sometimes"
	if err := c.Validate(128); err == nil {
		t.Fatal("bad mixup mode accepted")
	}
}

// stagedAE is linearAE with a latent that exists only in iterations
// first..last, like f-AnoGAN's encoder stage.
type stagedAE struct {
	*linearAE
	first, last int
}

func (s stagedAE) LatentIterations() (int, int) { return s.first, s.last }

// TestMixupWindowIsPlacedInTheLatentStage checks where each kind of baseline
// mixes: a one-stage baseline (DPA, AE, ...) keeps the configured window; a
// staged one gets it at the same relative position inside its latent stage,
// clipped to it, with a note; a window that misses the run or the stage warns.
func TestMixupWindowIsPlacedInTheLatentStage(t *testing.T) {
	window := func(base baselines.Baseline, cfg Config) (int, int, *Framework) {
		t.Helper()
		f, err := New(base, cfg, threeGroups, 1)
		if err != nil {
			t.Fatal(err)
		}
		a, b := f.MixupWindow()
		return a, b, f
	}
	// One stage: unchanged, as before (DPA's behaviour).
	if a, b, f := window(newLinearAE(t, 16, 32), Paper()); a != 7001 || b != 10000 || f.MixupWarning(16000) != "" {
		t.Errorf("one-stage window %d..%d (warning %q), want the configured 7001..10000", a, b, f.MixupWarning(16000))
	}
	// f-AnoGAN's default split of 16000 iterations: the encoder stage is
	// 10668..16000 (5333 iterations); 7000/16000 and 10000/16000 of it are
	// 2333 and 3333 iterations in.
	staged := func() stagedAE { return stagedAE{newLinearAE(t, 16, 32), 10668, 16000} }
	a, b, f := window(staged(), Paper())
	if a != 13001 || b != 14000 {
		t.Errorf("staged window %d..%d, want 13001..14000", a, b)
	}
	if !strings.Contains(strings.Join(f.Notes(), ";"), "13001..14000") || f.MixupWarning(16000) != "" {
		t.Errorf("notes %v, warning %q: want a note on the placement and no warning", f.Notes(), f.MixupWarning(16000))
	}
	for _, it := range []int{1, 7001, 10000, 13000, 14001} {
		if f.MixupActive(it) {
			t.Errorf("iteration %d mixes, outside the placed window", it)
		}
	}
	if !f.MixupActive(13001) || !f.MixupActive(14000) {
		t.Error("the placed window's ends must mix")
	}
	// A window reaching past the run is clipped to the stage's end.
	cfg := Paper()
	cfg.Mixup.Start, cfg.Mixup.End = 8001, 40000
	if a, b, _ := window(staged(), cfg); a != 13335 || b != 16000 {
		t.Errorf("clipped window %d..%d, want 13335..16000", a, b)
	}
	// Windows that miss warn, for both kinds.
	cfg.Mixup.Start, cfg.Mixup.End = 17000, 18000
	for _, base := range []baselines.Baseline{newLinearAE(t, 16, 32), staged()} {
		_, _, f := window(base, cfg)
		if w := f.MixupWarning(16000); !strings.Contains(w, "no batch is mixed") {
			t.Errorf("%T: window %d..%d gives warning %q", base, cfg.Mixup.Start, cfg.Mixup.End, w)
		}
	}
	// No warning when mixup is off or nothing asks for it.
	cfg.Mixup.Mode = "off"
	if _, _, f := window(staged(), cfg); f.MixupWarning(16000) != "" || f.MixupActive(17000) {
		t.Error("mixup off must neither mix nor warn")
	}
}
