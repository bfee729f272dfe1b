package fanogan

import (
	"fmt"

	"github.com/maddr-project/maddr/baselines"
	"github.com/maddr-project/maddr/baselines/internal/backbone"
	"github.com/maddr-project/maddr/nn"
	"github.com/maddr-project/maddr/torch"
)

// TrainStep runs one iteration: a critic step (plus a generator step every
// NCritic-th call) while step.Iter <= WGANIters, an izif encoder step after.
// step.Hook is only called in the encoder stage, on z = E(x).
func (m *Model) TrainStep(s *torch.Scope, step baselines.Step) (baselines.Losses, error) {
	if err := m.checkBatch(step.X); err != nil {
		return nil, err
	}
	x := s.AliasIn(step.X)
	if step.Iter <= m.cfg.WGANIters {
		if m.state.Stage == 2 {
			return nil, fmt.Errorf("fanogan: iteration %d belongs to the GAN stage, but the encoder stage has begun", step.Iter)
		}
		return m.ganStep(s, x)
	}
	if m.state.Stage == 1 {
		if err := m.enterStage2(); err != nil {
			return nil, fmt.Errorf("fanogan: entering the encoder stage: %w", err)
		}
	}
	return m.encoderStep(s, x, step.Hook)
}

func (m *Model) checkBatch(x *torch.Tensor) error {
	if x == nil {
		return fmt.Errorf("fanogan: no batch")
	}
	if err := x.Err(); err != nil {
		return fmt.Errorf("fanogan: batch: %w", err)
	}
	sh := x.Shape()
	n := int64(m.cfg.ImageSize)
	if len(sh) != 4 || sh[0] < 1 || sh[1] != 1 || sh[2] != n || sh[3] != n {
		return fmt.Errorf("fanogan: batch has shape %v, want B x 1 x %d x %d", sh, n, n)
	}
	return nil
}

// ganStep is one WGAN-GP critic update and, every NCritic-th call, one
// generator update, each with a fresh z ~ N(0, I).
func (m *Model) ganStep(s *torch.Scope, x *torch.Tensor) (baselines.Losses, error) {
	b, d := x.Size(0), int64(m.cfg.LatentDim)
	z := s.Adopt(torch.Randn(m.noise, b, d))
	eps := s.Adopt(torch.Rand(m.noise, b, 1, 1, 1))
	fake, err := m.fakes(z)
	if err != nil {
		return nil, err
	}
	var zGen *torch.Tensor
	if (m.state.CriticSteps+1)%m.cfg.NCritic == 0 {
		zGen = s.Adopt(torch.Randn(m.noise, b, d))
	}
	return m.ganUpdate(s, x, fake, eps, zGen)
}

// fakes are the critic's negative examples G(z), without a graph.
func (m *Model) fakes(z *torch.Tensor) (*torch.Tensor, error) {
	var fake *torch.Tensor
	err := torch.NoGrad(func() error {
		// Training mode, as in the G step, so the BatchNorm statistics
		// follow the batches the generator is trained on.
		fake = m.gen.forward(z, true)
		return fake.Err()
	})
	if err != nil {
		return nil, fmt.Errorf("fanogan: generating fakes: %w", err)
	}
	return fake, nil
}

// ganUpdate updates the critic on real x against fake with interpolation
// weights eps (B x 1 x 1 x 1), then, when zGen is set, the generator.
func (m *Model) ganUpdate(s *torch.Scope, x, fake, eps, zGen *torch.Tensor) (baselines.Losses, error) {
	if err := m.optD.ZeroGrad(); err != nil {
		return nil, err
	}
	// Each forward pass runs in a scope of its own that only the loss terms
	// outlive, so backward frees the activations as it goes
	// (backbone.Forward).
	var c criticTerms
	err := backbone.Forward(s, func(fs *torch.Scope) error {
		var err error
		c, err = m.criticLoss(fs.AliasIn(x), fs.AliasIn(fake), fs.AliasIn(eps))
		return err
	}, &c.wgan, &c.gp, &c.total)
	if err != nil {
		return nil, err
	}
	if err := c.total.Backward(); err != nil {
		return nil, fmt.Errorf("fanogan: critic backward: %w", err)
	}
	if err := m.optD.Step(); err != nil {
		return nil, fmt.Errorf("fanogan: critic update: %w", err)
	}
	m.state.CriticSteps++
	losses := baselines.Losses{}
	if err := record(losses, map[string]*torch.Tensor{"d_wgan": c.wgan, "gp": c.gp}); err != nil {
		return nil, err
	}
	if zGen == nil {
		return losses, nil
	}
	if err := m.optG.ZeroGrad(); err != nil {
		return nil, err
	}
	// The critic only passes gradients through in the G step; not computing
	// its weight gradients saves a third of its backward pass.
	critParams := m.store.Sub("critic").All()
	setRequiresGrad(critParams, false)
	var g *torch.Tensor
	err = backbone.Forward(s, func(fs *torch.Scope) error {
		g = m.generatorLoss(fs.AliasIn(zGen))
		return nil
	}, &g)
	if err == nil {
		err = g.Backward()
	}
	setRequiresGrad(critParams, true)
	if err != nil {
		return nil, fmt.Errorf("fanogan: generator backward: %w", err)
	}
	if err := m.optG.Step(); err != nil {
		return nil, fmt.Errorf("fanogan: generator update: %w", err)
	}
	m.state.GeneratorSteps++
	if err := record(losses, map[string]*torch.Tensor{"g": g}); err != nil {
		return nil, err
	}
	return losses, nil
}

// criticTerms are the parts of the critic objective.
type criticTerms struct {
	// wgan is mean D(fake) - mean D(real), the negated Wasserstein estimate.
	wgan *torch.Tensor
	// gp is mean_i (||grad_x D(x_hat_i)||_2 - 1)^2 on the interpolates
	// x_hat = eps x + (1 - eps) fake, unweighted.
	gp    *torch.Tensor
	total *torch.Tensor
}

// criticLoss builds the critic objective wgan + GPWeight * gp. The penalty's
// gradient is taken with a graph (double backward), so that the critic's
// weights are trained on it.
func (m *Model) criticLoss(x, fake, eps *torch.Tensor) (criticTerms, error) {
	dReal, _ := m.crit.forward(x)
	dFake, _ := m.crit.forward(fake)
	wgan := dFake.Mean().Sub(dReal.Mean())
	mixed := eps.Mul(x).Add(eps.RSubScalar(1).Mul(fake)).Detach().SetRequiresGrad(true)
	dMixed, _ := m.crit.forward(mixed)
	if err := dMixed.Err(); err != nil {
		return criticTerms{}, fmt.Errorf("fanogan: critic: %w", err)
	}
	grads, err := torch.Grad([]*torch.Tensor{dMixed.Sum()}, []*torch.Tensor{mixed},
		torch.GradOptions{CreateGraph: true, RetainGraph: true})
	if err != nil {
		return criticTerms{}, fmt.Errorf("fanogan: gradient penalty: %w", err)
	}
	gp := grads[0].Flatten(1, -1).Norm([]int64{1}, false).SubScalar(1).Square().Mean()
	total := wgan.Add(gp.MulScalar(m.cfg.GPWeight))
	if err := total.Err(); err != nil {
		return criticTerms{}, fmt.Errorf("fanogan: critic loss: %w", err)
	}
	return criticTerms{wgan: wgan, gp: gp, total: total}, nil
}

// generatorLoss is -mean D(G(z)) with the generator in training mode.
func (m *Model) generatorLoss(z *torch.Tensor) *torch.Tensor {
	v, _ := m.crit.forward(m.gen.forward(z, true))
	return v.Mean().Neg()
}

// izifTerms are the two parts of the encoder objective.
type izifTerms struct {
	img, feat, total *torch.Tensor
}

// izifLoss is MSE(x, G(z)) + k MSE(f(x), f(G(z))) with the generator in
// inference mode; z is the encoder's output for x.
func (m *Model) izifLoss(x, z *torch.Tensor) izifTerms {
	rec := m.gen.forward(z, false)
	_, fx := m.crit.forward(x)
	_, fr := m.crit.forward(rec)
	img := x.Sub(rec).Square().Mean()
	feat := fx.Sub(fr).Square().Mean()
	return izifTerms{img: img, feat: feat, total: img.Add(feat.MulScalar(m.cfg.FeatureWeight))}
}

// encoderStep is one izif update of the encoder (and MADDR's heads).
func (m *Model) encoderStep(s *torch.Scope, x *torch.Tensor, hook baselines.LatentHook) (baselines.Losses, error) {
	if err := m.optE.ZeroGrad(); err != nil {
		return nil, err
	}
	var t izifTerms
	var total *torch.Tensor
	losses := baselines.Losses{}
	err := backbone.Forward(s, func(fs *torch.Scope) error {
		x := fs.AliasIn(x)
		z := m.enc.forward(x, true)
		t = m.izifLoss(x, z)
		total = t.total
		if hook != nil {
			extra, logs, err := hook(z)
			if err != nil {
				return fmt.Errorf("fanogan: latent hook: %w", err)
			}
			if extra == nil {
				return fmt.Errorf("fanogan: latent hook returned no loss")
			}
			for k, v := range logs {
				losses[k] = v
			}
			total = total.Add(extra)
		}
		return nil
	}, &t.img, &t.feat, &total)
	if err != nil {
		return nil, err
	}
	if err := total.Backward(); err != nil {
		return nil, fmt.Errorf("fanogan: encoder backward: %w", err)
	}
	if err := m.optE.Step(); err != nil {
		return nil, fmt.Errorf("fanogan: encoder update: %w", err)
	}
	m.state.EncoderSteps++
	if err := record(losses, map[string]*torch.Tensor{"izif_img": t.img, "izif_feat": t.feat}); err != nil {
		return nil, err
	}
	return losses, nil
}

// enterStage2 freezes the GAN: its weights stop recording gradients (the
// encoder's gradient still flows through them) and the generator is only
// ever run in inference mode from here on.
func (m *Model) enterStage2() error {
	m.state.Stage = 2
	m.freezeGAN()
	// The last GAN step's gradients are dead weight from here on.
	if err := m.optG.ZeroGrad(); err != nil {
		return err
	}
	return m.optD.ZeroGrad()
}

func (m *Model) freezeGAN() {
	setRequiresGrad(m.store.Sub("gen").All(), false)
	setRequiresGrad(m.store.Sub("critic").All(), false)
}

func setRequiresGrad(params []*nn.Param, on bool) {
	for _, p := range params {
		if !p.Buffer {
			p.T.SetRequiresGrad(on)
		}
	}
}

func record(losses baselines.Losses, named map[string]*torch.Tensor) error {
	for k, t := range named {
		v, err := t.Item()
		if err != nil {
			return fmt.Errorf("fanogan: reading %s: %w", k, err)
		}
		losses[k] = v
	}
	return nil
}
