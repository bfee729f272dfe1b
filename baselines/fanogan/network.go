package fanogan

import (
	"fmt"

	"github.com/maddr-project/maddr/baselines/internal/backbone"
	"github.com/maddr-project/maddr/nn"
	"github.com/maddr-project/maddr/torch"
)

// lnEps is the layer-norm epsilon of the critic (WGAN-GP's TF code uses 1e-5).
const lnEps = 1e-5

// geometry derives every width from the image size: the base width at full
// resolution, doubling per halving, capped at 8x base, down to 4x4. At 64x64
// and base 64 this is 64, 128, 256, 512, 512 (METHODS 3.4).
type geometry struct {
	size, width int64
}

func (g geometry) channels(res int64) int64 { return g.width * min(8, g.size/res) }

// features is the width of the flattened 4x4 critic output f(.).
func (g geometry) features() int64 { return 16 * g.channels(4) }

// norm is a per-channel normalisation: BatchNorm in the generator and the
// encoder, layer norm over (C, H, W) in the critic (batch statistics would
// make the gradient penalty couple the samples of a batch).
type norm interface {
	forward(x *torch.Tensor, train bool) *torch.Tensor
}

type batchNorm struct{ bn *nn.BatchNorm }

func (b batchNorm) forward(x *torch.Tensor, train bool) *torch.Tensor { return b.bn.Forward(x, train) }

// layerNorm normalises each sample over (C, H, W) and scales and shifts per
// channel, as the TF original does. The affine parameters are stored as
// (C, 1, 1) so they broadcast against (N, C, H, W) with no reshape (which would
// create an unscoped tensor from a parameter).
type layerNorm struct{ w, b *torch.Tensor }

func (l layerNorm) forward(x *torch.Tensor, _ bool) *torch.Tensor {
	s := x.Shape()
	if len(s) != 4 {
		return torch.Failed(fmt.Errorf("fanogan: layer norm wants N x C x H x W, got %v", s))
	}
	h := x.LayerNorm(s[1:], nil, nil, lnEps)
	h = backbone.Replace(h, h.Mul(l.w))
	return backbone.Replace(h, h.Add(l.b))
}

func newNorm(s *nn.Store, name string, c int64, layer bool) norm {
	if !layer {
		return batchNorm{nn.NewBatchNorm(s, name, c)}
	}
	sub := s.Sub(name)
	return layerNorm{
		w: sub.NewParam("weight", []int64{c, 1, 1}, nn.Constant(1)),
		b: sub.NewParam("bias", []int64{c, 1, 1}, nn.Constant(0)),
	}
}

func conv(s *nn.Store, name string, in, out, k int64, bias bool) *nn.Conv2d {
	return nn.NewConv2d(s, name, in, out, k, nn.ConvConfig{Padding: k / 2, NoBias: !bias})
}

// upBlock is the generator's pre-activation residual block that doubles the
// resolution: norm, ReLU, nearest x2, conv3x3 (in->out), norm, ReLU, conv3x3,
// plus a shortcut of nearest x2 and conv1x1. None of its convs has a bias:
// conv1 feeds a BatchNorm, and the block's output reaches a BatchNorm too
// (the next block's, or the output norm, possibly through later shortcuts,
// which are linear), so a per-channel bias has zero gradient in training.
// The TF original keeps conv2/shortcut biases; there Adam turns their
// rounding-noise gradients into a random walk of +-lr per step.
type upBlock struct {
	norm1, norm2        norm
	conv1, conv2, short *nn.Conv2d
}

func newUpBlock(s *nn.Store, in, out int64) *upBlock {
	return &upBlock{
		norm1: newNorm(s, "norm1", in, false),
		conv1: conv(s, "conv1", in, out, 3, false),
		norm2: newNorm(s, "norm2", out, false),
		conv2: conv(s, "conv2", out, out, 3, false),
		short: conv(s, "skip", in, out, 1, false),
	}
}

func upsample(x *torch.Tensor) *torch.Tensor {
	return x.UpsampleNearest2d(2*x.Size(2), 2*x.Size(3))
}

// The block forwards free each intermediate once the next exists
// (backbone.Replace), never x: scoring a batch otherwise held every
// activation of the three networks until its scope closed (3.4 GiB against
// PyTorch's 0.9 at batch 32, 64x64).
func (b *upBlock) forward(x *torch.Tensor, train bool) *torch.Tensor {
	h := b.norm1.forward(x, train)
	h = backbone.Replace(h, h.Relu())
	h = backbone.Replace(h, upsample(h))
	h = backbone.Replace(h, b.conv1.Forward(h))
	h = backbone.Replace(h, b.norm2.forward(h, train))
	h = backbone.Replace(h, h.Relu())
	h = backbone.Replace(h, b.conv2.Forward(h))
	skip := upsample(x)
	skip = backbone.Replace(skip, b.short.Forward(skip))
	out := skip.Add(h)
	skip.Free()
	h.Free()
	return out
}

// downBlock halves the resolution: norm, ReLU, conv3x3 (in->in), norm, ReLU,
// conv3x3 (in->out), 2x2 mean pool; shortcut mean pool then conv1x1.
type downBlock struct {
	norm1, norm2        norm
	conv1, conv2, short *nn.Conv2d
}

func newDownBlock(s *nn.Store, in, out int64, layer bool) *downBlock {
	return &downBlock{
		norm1: newNorm(s, "norm1", in, layer),
		conv1: conv(s, "conv1", in, in, 3, false),
		norm2: newNorm(s, "norm2", in, layer),
		conv2: conv(s, "conv2", in, out, 3, true),
		short: conv(s, "skip", in, out, 1, true),
	}
}

func (b *downBlock) forward(x *torch.Tensor, train bool) *torch.Tensor {
	h := b.norm1.forward(x, train)
	h = backbone.Replace(h, h.Relu())
	h = backbone.Replace(h, b.conv1.Forward(h))
	h = backbone.Replace(h, b.norm2.forward(h, train))
	h = backbone.Replace(h, h.Relu())
	h = backbone.Replace(h, b.conv2.Forward(h))
	h = backbone.Replace(h, h.AvgPool2d(2, 2, 0))
	skip := x.AvgPool2d(2, 2, 0)
	skip = backbone.Replace(skip, b.short.Forward(skip))
	out := skip.Add(h)
	skip.Free()
	h.Free()
	return out
}

// generator maps z (B x D) to an image in [-1, 1]: Linear to 4x4, up blocks
// to full size, BN, ReLU, conv3x3 to one channel, tanh.
type generator struct {
	geo     geometry
	fc      *nn.Linear
	blocks  []*upBlock
	outNorm norm
	outConv *nn.Conv2d
}

func newGenerator(s *nn.Store, geo geometry, latent int64) *generator {
	g := &generator{geo: geo, fc: nn.NewLinear(s, "fc", latent, geo.features(), nn.LinearConfig{})}
	for r := int64(4); r < geo.size; r *= 2 {
		g.blocks = append(g.blocks, newUpBlock(s.Sub(fmt.Sprintf("up_%d", 2*r)), geo.channels(r), geo.channels(2*r)))
	}
	g.outNorm = newNorm(s, "out_norm", geo.width, false)
	g.outConv = conv(s, "out_conv", geo.width, 1, 3, true)
	return g
}

// forward runs the generator; train selects batch statistics in its BatchNorms
// (stage 1) or the running ones (stage 2 and scoring).
func (g *generator) forward(z *torch.Tensor, train bool) *torch.Tensor {
	h := g.fc.Forward(z)
	h = backbone.Replace(h, h.Reshape(-1, g.geo.channels(4), 4, 4))
	for _, b := range g.blocks {
		h = backbone.Replace(h, b.forward(h, train))
	}
	h = backbone.Replace(h, g.outNorm.forward(h, train))
	h = backbone.Replace(h, h.Relu())
	h = backbone.Replace(h, g.outConv.Forward(h))
	return backbone.Replace(h, h.Tanh())
}

// trunk is the body shared by the critic (layer norm) and the encoder
// (BatchNorm): conv3x3 stem, down blocks to 4x4, flatten.
type trunk struct {
	stem   *nn.Conv2d
	blocks []*downBlock
}

func newTrunk(s *nn.Store, geo geometry, layer bool) *trunk {
	t := &trunk{stem: conv(s, "stem", 1, geo.width, 3, true)}
	for r := geo.size; r > 4; r /= 2 {
		t.blocks = append(t.blocks, newDownBlock(s.Sub(fmt.Sprintf("down_%d", r/2)), geo.channels(r), geo.channels(r/2), layer))
	}
	return t
}

func (t *trunk) forward(x *torch.Tensor, train bool) *torch.Tensor {
	h := t.stem.Forward(x)
	for _, b := range t.blocks {
		h = backbone.Replace(h, b.forward(h, train))
	}
	return backbone.Replace(h, h.Flatten(1, -1))
}

// critic is the WGAN-GP critic; its flattened trunk output is the feature
// f(.) that the izif loss and the score compare.
type critic struct {
	trunk *trunk
	fc    *nn.Linear
}

func newCritic(s *nn.Store, geo geometry) *critic {
	return &critic{trunk: newTrunk(s, geo, true), fc: nn.NewLinear(s, "fc", geo.features(), 1, nn.LinearConfig{})}
}

// forward returns the critic value (B) and the features (B x F). The critic
// has no train/eval difference (layer norm only).
func (c *critic) forward(x *torch.Tensor) (value, feat *torch.Tensor) {
	feat = c.trunk.forward(x, true)
	return c.fc.Forward(feat).Reshape(-1), feat
}

// encoder maps an image to z = tanh(Linear(trunk(x))), bounded like the
// region of the latent space the generator was trained on.
type encoder struct {
	trunk *trunk
	fc    *nn.Linear
}

func newEncoder(s *nn.Store, geo geometry, latent int64) *encoder {
	return &encoder{trunk: newTrunk(s, geo, false), fc: nn.NewLinear(s, "fc", geo.features(), latent, nn.LinearConfig{})}
}

func (e *encoder) forward(x *torch.Tensor, train bool) *torch.Tensor {
	h := e.trunk.forward(x, train)
	h = backbone.Replace(h, e.fc.Forward(h))
	return backbone.Replace(h, h.Tanh())
}
