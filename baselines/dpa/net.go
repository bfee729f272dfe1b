package dpa

import (
	"fmt"

	"github.com/maddr-project/maddr/baselines/internal/backbone"
	"github.com/maddr-project/maddr/nn"
	"github.com/maddr-project/maddr/torch"
)

// slope is the LeakyReLU slope of every activation in DPA's residual networks.
const slope = 0.2

// widthAt is the channel count at a resolution: DPA's inner_dims as MADDR
// configures them, [16,16,16,32,32,32,64] for the encoder (mirrored for the
// decoder), read from 256x256 down to 4x4. Sizes above 256 keep 16.
func widthAt(res int) int64 {
	switch {
	case res <= 4:
		return 64
	case res <= 32:
		return 32
	}
	return 16
}

// conv is a 3x3-style convolution with DPA's initialisation: every weight
// ends Kaiming-normal (fan_out, leaky_relu a=0.2) because each resolution
// stage re-initialises all its convolutions; biases keep PyTorch's default.
func conv(s *nn.Store, name string, in, out, kernel, padding int64) *nn.Conv2d {
	return nn.NewConv2d(s, name, in, out, kernel, nn.ConvConfig{
		Padding:    padding,
		WeightInit: nn.KaimingNormal(slope, nn.FanOut, "leaky_relu"),
	})
}

// resBlock is one of DPA's three pre-activation residual blocks:
//
//	branch: LReLU -> [resample] -> conv3x3(in->out) -> LReLU -> conv3x3(out->out)
//	skip:   [resample] -> [conv1x1(in->out) when in != out]
//
// where resample is nothing (PreAct), a 2x2 average pool (Down) or a
// nearest-neighbour x2 upsample (Up).
type resBlock struct {
	conv1, conv2, skip *nn.Conv2d
	resample           func(*torch.Tensor) *torch.Tensor
}

type resampling int

const (
	keepSize resampling = iota
	halve
	double
)

func newResBlock(s *nn.Store, name string, in, out int64, r resampling) *resBlock {
	sub := s.Sub(name)
	b := &resBlock{
		conv1: conv(sub, "conv1", in, out, 3, 1),
		conv2: conv(sub, "conv2", out, out, 3, 1),
	}
	if in != out {
		b.skip = conv(sub, "skip", in, out, 1, 0)
	}
	switch r {
	case halve:
		b.resample = func(x *torch.Tensor) *torch.Tensor { return x.AvgPool2d(2, 2, 0) }
	case double:
		b.resample = func(x *torch.Tensor) *torch.Tensor { return x.UpsampleNearest2d(2*x.Size(2), 2*x.Size(3)) }
	}
	return b
}

// forward frees each intermediate as soon as the next one exists, as Python
// drops a temporary (backbone.Replace); the networks' passes below do the
// same, so a scoring batch no longer holds ~300 MiB of activations at once.
// The caller's x is never freed.
func (b *resBlock) forward(x *torch.Tensor) *torch.Tensor {
	h := x.LeakyRelu(slope)
	skip := x
	if b.resample != nil {
		h = backbone.Replace(h, b.resample(h))
		skip = b.resample(x)
	}
	h = backbone.Replace(h, b.conv1.Forward(h))
	h = backbone.Replace(h, h.LeakyRelu(slope))
	h = backbone.Replace(h, b.conv2.Forward(h))
	if b.skip != nil {
		next := b.skip.Forward(skip)
		if skip != x {
			skip.Free()
		}
		skip = next
	}
	out := skip.Add(h)
	h.Free()
	if skip != x {
		skip.Free()
	}
	return out
}

// stage is one resolution step: a resampling block followed by a PreAct block.
type stage struct {
	change, pre *resBlock
}

// encoder is DPA's "residual18" encoder for a size x size grey image:
//
//	from_image: conv3x3(1->w(S)), PreAct, PreAct           at S
//	res_R for R = S, S/2, ..., 8: Down(w(R)->w(R/2)), PreAct(w(R/2))
//	res_4: LReLU, conv4x4 valid (w(4)->latent)             -> latent x 1 x 1
type encoder struct {
	stem       *nn.Conv2d
	stemBlocks [2]*resBlock
	stages     []stage
	latent     *nn.Conv2d
}

func newEncoder(s *nn.Store, size int, latent int64) *encoder {
	e := &encoder{}
	w := widthAt(size)
	from := s.Sub("from_image")
	e.stem = conv(from, "conv", 1, w, 3, 1)
	e.stemBlocks[0] = newResBlock(from, "pre1", w, w, keepSize)
	e.stemBlocks[1] = newResBlock(from, "pre2", w, w, keepSize)
	for res := size; res > 4; res /= 2 {
		st := s.Sub(fmt.Sprintf("res_%d", res))
		in, out := widthAt(res), widthAt(res/2)
		e.stages = append(e.stages, stage{
			change: newResBlock(st, "down", in, out, halve),
			pre:    newResBlock(st, "pre", out, out, keepSize),
		})
	}
	e.latent = conv(s.Sub("res_4"), "conv", widthAt(4), latent, 4, 0)
	return e
}

// forward maps images (B x 1 x S x S) to z (B x latent).
func (e *encoder) forward(x *torch.Tensor) *torch.Tensor {
	h := e.stem.Forward(x)
	h = backbone.Replace(h, e.stemBlocks[0].forward(h))
	h = backbone.Replace(h, e.stemBlocks[1].forward(h))
	for _, st := range e.stages {
		h = backbone.Replace(h, st.change.forward(h))
		h = backbone.Replace(h, st.pre.forward(h))
	}
	h = backbone.Replace(h, h.LeakyRelu(slope))
	h = backbone.Replace(h, e.latent.Forward(h))
	return h.Flatten(1, -1)
}

// decoder mirrors the encoder:
//
//	res_4: LReLU(z), conv4x4 padding 3 (latent->w(4))       -> 4 x 4
//	res_R for R = 8, 16, ..., S: Up(w(R/2)->w(R)), PreAct(w(R))
//	to_image: LReLU, conv3x3(w(S)->1), no output activation
type decoder struct {
	first  *nn.Conv2d
	stages []stage
	toImg  *nn.Conv2d
}

func newDecoder(s *nn.Store, size int, latent int64) *decoder {
	d := &decoder{first: conv(s.Sub("res_4"), "conv", latent, widthAt(4), 4, 3)}
	for res := 8; res <= size; res *= 2 {
		st := s.Sub(fmt.Sprintf("res_%d", res))
		in, out := widthAt(res/2), widthAt(res)
		d.stages = append(d.stages, stage{
			change: newResBlock(st, "up", in, out, double),
			pre:    newResBlock(st, "pre", out, out, keepSize),
		})
	}
	d.toImg = conv(s.Sub("to_image"), "conv", widthAt(size), 1, 3, 1)
	return d
}

// forward maps z (B x latent) to images (B x 1 x S x S), unbounded.
func (d *decoder) forward(z *torch.Tensor) *torch.Tensor {
	h := z.Reshape(z.Size(0), z.Size(1), 1, 1)
	h = backbone.Replace(h, h.LeakyRelu(slope))
	h = backbone.Replace(h, d.first.Forward(h))
	for _, st := range d.stages {
		h = backbone.Replace(h, st.change.forward(h))
		h = backbone.Replace(h, st.pre.forward(h))
	}
	h = backbone.Replace(h, h.LeakyRelu(slope))
	return backbone.Replace(h, d.toImg.Forward(h))
}
