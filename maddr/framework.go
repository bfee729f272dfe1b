package maddr

import (
	"fmt"
	"math"
	"math/rand/v2"

	"github.com/maddr-project/maddr/augment"
	"github.com/maddr-project/maddr/baselines"
	"github.com/maddr-project/maddr/nn"
	"github.com/maddr-project/maddr/torch"
)

// Classes are the label vocabularies the heads predict, in class-index order
// (the focal alpha is per index, so the order matters and is stored).
type Classes struct {
	Organs     []string `json:"organs"`
	Modalities []string `json:"modalities"`
}

// Framework is a baseline wrapped by MADDR.
type Framework struct {
	Base    baselines.Baseline
	Config  Config
	Classes Classes

	// DrawMixup, when set, replaces the seeded draw of a batch's mixup
	// lambda and permutation (parity tests fix them; nil is the normal case).
	DrawMixup func(n int) (lam float64, perm []int)

	organHead, modalityHead *nn.Linear
	// mixupStart..mixupEnd are the iterations that mix their batch: the
	// configured window, moved into the baseline's latent stage when it has
	// one (first > last: none).
	mixupStart, mixupEnd int
	pcg                  *rand.PCG
	rng                  *rand.Rand
	notes                []string
}

// headsPrefix is where the heads live in the baseline's store, so they are
// saved and loaded with the baseline's weights.
const headsPrefix = "maddr"

// New wraps base. Heads are created for each active constraint whose label
// has at least two classes (a head over one class would learn nothing), and
// attached to the encoder's optimizer unless FreezeHeads.
func New(base baselines.Baseline, cfg Config, classes Classes, seed uint64) (*Framework, error) {
	d := base.LatentDim()
	if err := cfg.Validate(d); err != nil {
		return nil, err
	}
	pcg := rand.NewPCG(seed, 0x6d61646472)
	f := &Framework{Base: base, Config: cfg, Classes: classes, pcg: pcg, rng: rand.New(pcg)}
	f.placeMixupWindow()
	store := base.Store().Sub(headsPrefix)
	makeHead := func(name string, active bool, classes []string, inDims int) *nn.Linear {
		if !active {
			return nil
		}
		if len(classes) < 2 {
			f.notes = append(f.notes, fmt.Sprintf("%s head skipped: the data has %d %s class(es)", name, len(classes), name))
			return nil
		}
		if !cfg.Disentangle {
			inDims = d
		}
		return nn.NewLinear(store, name+"_head", int64(inDims), int64(len(classes)), nn.LinearConfig{})
	}
	f.modalityHead = makeHead("modality", cfg.Modality, classes.Modalities, cfg.ModalityDims)
	organClasses := classes.Organs
	if cfg.ReproduceLabelBug {
		organClasses = classes.Modalities
		f.notes = append(f.notes, "reproducing the authors' label bug: the organ head is trained on modality labels")
	}
	f.organHead = makeHead("organ", cfg.Organ, organClasses, cfg.OrganDims)
	if err := store.Err(); err != nil {
		return nil, err
	}
	heads := append([]*nn.Param(nil), store.All()...)
	if cfg.FreezeHeads {
		store.Freeze()
		if len(heads) > 0 {
			f.notes = append(f.notes, "classifier heads frozen at random init (reproducing the authors' code)")
		}
	} else if len(heads) > 0 {
		if err := base.AttachParams(heads); err != nil {
			return nil, err
		}
	}
	return f, nil
}

// placeMixupWindow sets the iterations that mix. The configured window is
// given for the whole run (Config.ScaleMixup scales the paper's 7001..10000
// of 16000 to it). MADDR's losses, the reason for mixing, only act where the
// baseline has a latent: for a baseline with a LatentStage the window keeps
// its relative position but is taken as a fraction of that stage, and is
// clipped into it (METHODS 3.4: f-AnoGAN mixes in the encoder stage only).
func (f *Framework) placeMixupWindow() {
	start, end := f.Config.Mixup.Start, f.Config.Mixup.End
	staged, ok := f.Base.(baselines.LatentStage)
	if !ok {
		f.mixupStart, f.mixupEnd = start, end
		return
	}
	first, last := staged.LatentIterations()
	if first < 1 || last < first {
		f.mixupStart, f.mixupEnd = 1, 0
		return
	}
	stage := float64(last - first + 1)
	scale := stage / float64(last)
	f.mixupStart = max(first+int(math.Round(float64(start-1)*scale)), first)
	f.mixupEnd = min(first-1+int(math.Round(float64(end)*scale)), last)
	if f.mixupActiveAtAll() {
		f.notes = append(f.notes, fmt.Sprintf("%s trains its latent only in iterations %d..%d: the mixup window %d..%d of the %d-iteration run "+
			"is placed at the same relative position in that stage, iterations %d..%d", f.Base.Name(), first, last, start, end, last, f.mixupStart, f.mixupEnd))
	}
}

// mixupActiveAtAll reports whether the configuration mixes on some iteration
// of some window (mode and constraints permitting).
func (f *Framework) mixupActiveAtAll() bool {
	c := f.Config
	c.Mixup.Start, c.Mixup.End = 1, math.MaxInt
	return c.MixupActive(1)
}

// MixupActive reports whether iteration iter (from 1) mixes its batch.
func (f *Framework) MixupActive(iter int) bool {
	c := f.Config
	c.Mixup.Start, c.Mixup.End = f.mixupStart, f.mixupEnd
	return c.MixupActive(iter)
}

// MixupWindow returns the first and last iteration that mix (first > last
// when none does, or when the configuration never mixes).
func (f *Framework) MixupWindow() (first, last int) {
	if !f.mixupActiveAtAll() {
		return 1, 0
	}
	return f.mixupStart, f.mixupEnd
}

// MixupWarning returns a warning when MADDR's constraints are on and mixup
// is wanted but no iteration of a run of the given length mixes (the window
// misses the run, or the baseline's latent stage); "" otherwise.
func (f *Framework) MixupWarning(iterations int) string {
	if !f.Config.AnyConstraint() || !f.mixupActiveAtAll() {
		return ""
	}
	first, last := f.MixupWindow()
	if first <= last && first <= iterations && last >= 1 {
		return ""
	}
	where := fmt.Sprintf("this run's %d iterations", iterations)
	if staged, ok := f.Base.(baselines.LatentStage); ok {
		a, b := staged.LatentIterations()
		where = fmt.Sprintf("%s's latent stage (iterations %d..%d)", f.Base.Name(), a, b)
	}
	return fmt.Sprintf("the mixup window %d..%d lies outside %s, so no batch is mixed", f.Config.Mixup.Start, f.Config.Mixup.End, where)
}

// Notes are remarks for logs and reports (skipped heads, code-reproduction switches).
func (f *Framework) Notes() []string {
	return append(append([]string{}, f.notes...), f.Base.Notes()...)
}

// RNGState returns the state of the mixup random stream, for checkpoints.
func (f *Framework) RNGState() ([]byte, error) { return f.pcg.MarshalBinary() }

// SetRNGState restores a state returned by RNGState (when resuming).
func (f *Framework) SetRNGState(b []byte) error { return f.pcg.UnmarshalBinary(b) }

// HasOrganHead and HasModalityHead tell which heads exist.
func (f *Framework) HasOrganHead() bool    { return f.organHead != nil }
func (f *Framework) HasModalityHead() bool { return f.modalityHead != nil }

// Batch is one training batch with its labels.
type Batch struct {
	X        *torch.Tensor // B x 1 x S x S, scoped to the step
	Organ    []int64
	Modality []int64
	// Samples identifies the images across iterations when they are the
	// samples' unaltered inputs (see baselines.Step.Samples); nil otherwise.
	Samples []int
}

// slices returns z_m, z_o, z_c views of z (B x D).
func (f *Framework) slices(z *torch.Tensor) (zm, zo, zc *torch.Tensor) {
	if !f.Config.Disentangle {
		return z, z, z
	}
	m, o := int64(f.Config.ModalityDims), int64(f.Config.OrganDims)
	d := z.Size(1)
	return z.Narrow(1, 0, m), z.Narrow(1, m, o), z.Narrow(1, m+o, d-m-o)
}

// Step runs one training iteration (from 1) of the wrapped baseline.
func (f *Framework) Step(s *torch.Scope, iter int, b Batch) (baselines.Losses, error) {
	n := int(b.X.Size(0))
	if len(b.Organ) != n || len(b.Modality) != n {
		return nil, fmt.Errorf("maddr: batch of %d images has %d organ and %d modality labels", n, len(b.Organ), len(b.Modality))
	}
	x := b.X
	mixed := f.MixupActive(iter) && n > 1
	var lam float64
	var perm []int
	if mixed {
		if f.DrawMixup != nil {
			lam, perm = f.DrawMixup(n)
		} else {
			lam = augment.Beta(f.rng, f.Config.Mixup.Alpha, f.Config.Mixup.Alpha)
			perm = f.rng.Perm(n)
		}
		permIdx := make([]int64, n)
		for i, p := range perm {
			permIdx[i] = int64(p)
		}
		idx := s.Adopt(torch.FromInt64(permIdx, int64(n)))
		x = x.MulScalar(lam).Add(x.IndexSelect(0, idx).MulScalar(1 - lam))
	}
	var hook baselines.LatentHook
	if f.Config.AnyConstraint() {
		hook = func(z *torch.Tensor) (*torch.Tensor, map[string]float64, error) {
			return f.constraintLoss(s, z, b, lam, perm)
		}
	}
	step := baselines.Step{Iter: iter, X: x, Mixup: mixed, Hook: hook}
	if !mixed {
		// A mixed image is no sample's own, so it has no identity.
		step.Samples = b.Samples
	}
	return f.Base.TrainStep(s, step)
}

// constraintLoss is lambda_o L_o + lambda_m L_m + lambda_c L_c on z. Under
// mixup each focal term is lam*FL(y) + (1-lam)*FL(y[perm]) (labels are not
// softened); the center term does not depend on labels.
func (f *Framework) constraintLoss(s *torch.Scope, z *torch.Tensor, b Batch, lam float64, perm []int) (*torch.Tensor, map[string]float64, error) {
	logs := map[string]float64{}
	zm, zo, zc := f.slices(z.Reshape(z.Size(0), -1))
	var total *torch.Tensor
	add := func(term *torch.Tensor, weight float64, name string) error {
		if err := term.Err(); err != nil {
			return fmt.Errorf("%s: %w", name, err)
		}
		v, err := term.Item()
		if err != nil {
			return err
		}
		logs[name] = v
		term = term.MulScalar(weight)
		if total == nil {
			total = term
		} else {
			total = total.Add(term)
		}
		return nil
	}
	focal := func(head *nn.Linear, input *torch.Tensor, labels []int64) *torch.Tensor {
		logits := head.Forward(input)
		k := int(logits.Size(1))
		alpha := AlphaVector(k, f.Config.FocalAlpha, f.Config.FocalUniform)
		y := s.Adopt(torch.FromInt64(labels, int64(len(labels))))
		loss := FocalLoss(logits, y, alpha, f.Config.FocalGamma)
		if perm == nil {
			return loss
		}
		permuted := make([]int64, len(labels))
		for i, p := range perm {
			permuted[i] = labels[p]
		}
		yp := s.Adopt(torch.FromInt64(permuted, int64(len(permuted))))
		return loss.MulScalar(lam).Add(FocalLoss(logits, yp, alpha, f.Config.FocalGamma).MulScalar(1 - lam))
	}
	if f.modalityHead != nil {
		if err := add(focal(f.modalityHead, zm, b.Modality), f.Config.LambdaModality, "focal_modality"); err != nil {
			return nil, nil, err
		}
	}
	if f.organHead != nil {
		labels := b.Organ
		if f.Config.ReproduceLabelBug {
			labels = b.Modality
		}
		if err := add(focal(f.organHead, zo, labels), f.Config.LambdaOrgan, "focal_organ"); err != nil {
			return nil, nil, err
		}
	}
	if f.Config.Center {
		var c *torch.Tensor
		if f.Config.CodeCenterLoss {
			c = CodeCenterLoss(zc)
		} else {
			c = CenterLoss(zc, f.Config.CenterNorm)
		}
		if err := add(c, f.Config.LambdaCenter, "center"); err != nil {
			return nil, nil, err
		}
	}
	if total == nil {
		return s.Adopt(torch.Zeros()), logs, nil
	}
	return total, logs, nil
}

// Prediction holds class probabilities from the heads (nil where a head is absent).
type Prediction struct {
	Organ    [][]float32
	Modality [][]float32
}

// Classify runs the encoder and the heads on x in evaluation mode.
func (f *Framework) Classify(x *torch.Tensor) (Prediction, error) {
	var p Prediction
	if f.organHead == nil && f.modalityHead == nil {
		return p, nil
	}
	err := torch.NoGrad(func() error {
		return torch.Run(func(s *torch.Scope) error {
			z := f.Base.Latent(s.AliasIn(x), false)
			zm, zo, _ := f.slices(z.Reshape(z.Size(0), -1))
			probs := func(h *nn.Linear, in *torch.Tensor) ([][]float32, error) {
				if h == nil || f.Config.ReproduceLabelBug && h == f.organHead {
					return nil, nil
				}
				pr := h.Forward(in).Softmax(1)
				v, err := pr.Float32s()
				if err != nil {
					return nil, err
				}
				k := int(pr.Size(1))
				rows := make([][]float32, len(v)/k)
				for i := range rows {
					rows[i] = v[i*k : (i+1)*k]
				}
				return rows, nil
			}
			var err error
			if p.Organ, err = probs(f.organHead, zo); err != nil {
				return err
			}
			p.Modality, err = probs(f.modalityHead, zm)
			return err
		})
	})
	return p, err
}
