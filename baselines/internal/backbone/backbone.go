// Package backbone builds the convolutional trunk that the MedIAnomaly
// benchmark shares between its AE, MemAE and GANomaly (METHODS 3.1), and holds
// the plumbing every baseline has in common: option decoding (an unknown key
// is an error), evaluation without gradients, the latent hook, loss
// recording, and checkpointing of their optimizers.
//
// The trunk halves the image with 4x4 stride-2 convolutions until it is 4x4
// and mirrors that with transposed convolutions. At 64x64 this is exactly
// MedIAnomaly's network (channels 16, 32, 64, 64, flattened to 1024).
// MedIAnomaly always uses four blocks and lets the flattened size follow the
// image; here the number of blocks follows the image instead (log2(S/4)), so
// that the bottleneck sees 4x4 maps at every size and its width stays put.
package backbone

import (
	"fmt"

	"github.com/maddr-project/maddr/nn"
	"github.com/maddr-project/maddr/torch"
)

// MapSize is the side of the feature map the trunk ends at.
const MapSize = 4

// Levels is the number of stride-2 blocks that take an image of side size
// down to MapSize; size must be a power of two of at least 8.
func Levels(size int) (int, error) {
	if size < 2*MapSize || size&(size-1) != 0 {
		return 0, fmt.Errorf("image size %d is not supported: it must be a power of two of at least %d", size, 2*MapSize)
	}
	n := 0
	for s := size; s > MapSize; s /= 2 {
		n++
	}
	return n, nil
}

// Channels lists the output channels of each down block: base, 2 base, then
// 4 base for every further block (16, 32, 64, 64 at 64x64 with base 16).
func Channels(levels, base int) []int64 {
	out := make([]int64, levels)
	for i := range out {
		out[i] = int64(base) << min(i, 2)
	}
	return out
}

// ConvBN is a bias-free (transposed) convolution, optionally followed by
// BatchNorm2d and an activation.
type ConvBN struct {
	conv     *nn.Conv2d
	deconv   *nn.ConvTranspose2d
	bn       *nn.BatchNorm
	activate func(*torch.Tensor) *torch.Tensor
}

// Forward applies the block.
func (b *ConvBN) Forward(x *torch.Tensor, train bool) *torch.Tensor {
	var h *torch.Tensor
	if b.conv != nil {
		h = b.conv.Forward(x)
	} else {
		h = b.deconv.Forward(x)
	}
	if b.bn != nil {
		h = Replace(h, b.bn.Forward(h, train))
	}
	if b.activate != nil {
		h = Replace(h, b.activate(h))
	}
	return h
}

// Replace frees old and returns next, the tensor computed from it, so that a
// forward pass holds one activation at a time instead of leaving each in the
// caller's scope until it closes (scoring a batch kept them all: see
// BENCHMARKS.md, "Memory with fixed malloc thresholds"). Under autograd this
// costs nothing: autograd keeps its own reference to what backward needs.
// The caller must not pass its input as old; next == old frees nothing.
func Replace(old, next *torch.Tensor) *torch.Tensor {
	if next != old {
		old.Free()
	}
	return next
}

// BN is the block's BatchNorm, or nil.
func (b *ConvBN) BN() *nn.BatchNorm { return b.bn }

// Weight is the block's convolution weight.
func (b *ConvBN) Weight() *torch.Tensor {
	if b.conv != nil {
		return b.conv.W
	}
	return b.deconv.W
}

// Relu and LeakyRelu02 are the activations the blocks use.
func Relu(x *torch.Tensor) *torch.Tensor        { return x.Relu() }
func LeakyRelu02(x *torch.Tensor) *torch.Tensor { return x.LeakyRelu(0.2) }

// BlockConfig describes one ConvBN block.
type BlockConfig struct {
	In, Out, Kernel, Stride, Padding int64
	Transposed                       bool
	BatchNorm                        bool
	Activate                         func(*torch.Tensor) *torch.Tensor
	WeightInit                       nn.Init // nil: PyTorch's default
}

// NewBlock registers name.conv.weight (and name.bn.* with BatchNorm) under s.
func NewBlock(s *nn.Store, name string, c BlockConfig) *ConvBN {
	sub := s.Sub(name)
	cc := nn.ConvConfig{Stride: c.Stride, Padding: c.Padding, NoBias: true, WeightInit: c.WeightInit}
	b := &ConvBN{activate: c.Activate}
	if c.Transposed {
		b.deconv = nn.NewConvTranspose2d(sub, "conv", c.In, c.Out, c.Kernel, cc)
	} else {
		b.conv = nn.NewConv2d(sub, "conv", c.In, c.Out, c.Kernel, cc)
	}
	if c.BatchNorm {
		b.bn = nn.NewBatchNorm(sub, "bn", c.Out)
	}
	return b
}

// Encoder is MedIAnomaly's down path: blocks conv4x4 s2 p1 -> BN -> ReLU,
// named down0, down1, ...
type Encoder struct {
	Blocks []*ConvBN
	// OutChannels is the channel count of the final MapSize x MapSize map.
	OutChannels int64
}

// NewEncoder builds the down path for single-channel images of side size.
func NewEncoder(s *nn.Store, size, base int) (*Encoder, error) {
	levels, err := Levels(size)
	if err != nil {
		return nil, err
	}
	ch := Channels(levels, base)
	e := &Encoder{OutChannels: ch[levels-1]}
	in := int64(1)
	for i, out := range ch {
		e.Blocks = append(e.Blocks, NewBlock(s, fmt.Sprintf("down%d", i), BlockConfig{
			In: in, Out: out, Kernel: 4, Stride: 2, Padding: 1, BatchNorm: true, Activate: Relu}))
		in = out
	}
	return e, nil
}

// FlatSize is the length of the flattened output.
func (e *Encoder) FlatSize() int64 { return e.OutChannels * MapSize * MapSize }

// Forward maps B x 1 x S x S to B x FlatSize.
func (e *Encoder) Forward(x *torch.Tensor, train bool) *torch.Tensor {
	h := x
	for _, b := range e.Blocks {
		h = b.Forward(h, train)
	}
	return h.Flatten(1, -1)
}

// Decoder is the mirrored up path: convtranspose4x4 s2 p1 -> BN -> ReLU, and
// a last block that is the transposed convolution alone (no BN, no ReLU, no
// tanh), named up0, up1, ...
type Decoder struct {
	Blocks     []*ConvBN
	InChannels int64
}

// NewDecoder builds the up path back to single-channel images of side size.
func NewDecoder(s *nn.Store, size, base int) (*Decoder, error) {
	levels, err := Levels(size)
	if err != nil {
		return nil, err
	}
	ch := Channels(levels, base)
	d := &Decoder{InChannels: ch[levels-1]}
	for i := 0; i < levels; i++ {
		in := ch[levels-1-i]
		out := int64(1)
		last := i == levels-1
		if !last {
			out = ch[levels-2-i]
		}
		c := BlockConfig{In: in, Out: out, Kernel: 4, Stride: 2, Padding: 1, Transposed: true}
		if !last {
			c.BatchNorm, c.Activate = true, Relu
		}
		d.Blocks = append(d.Blocks, NewBlock(s, fmt.Sprintf("up%d", i), c))
	}
	return d, nil
}

// FlatSize is the length of the flat input the decoder reshapes.
func (d *Decoder) FlatSize() int64 { return d.InChannels * MapSize * MapSize }

// Forward maps B x FlatSize to B x 1 x S x S.
func (d *Decoder) Forward(flat *torch.Tensor, train bool) *torch.Tensor {
	h := flat.Reshape(-1, d.InChannels, MapSize, MapSize)
	for _, b := range d.Blocks {
		h = b.Forward(h, train)
	}
	return h
}

// MLP is Linear -> [BatchNorm1d] -> ReLU -> Linear, MedIAnomaly's bottleneck
// halves (fc1, bn, fc2).
type MLP struct {
	FC1, FC2 *nn.Linear
	BN       *nn.BatchNorm
}

// NewMLP registers fc1, bn (when batchNorm) and fc2 under s.
func NewMLP(s *nn.Store, in, hidden, out int64, batchNorm bool) *MLP {
	m := &MLP{FC1: nn.NewLinear(s, "fc1", in, hidden, nn.LinearConfig{})}
	if batchNorm {
		m.BN = nn.NewBatchNorm(s, "bn", hidden)
	}
	m.FC2 = nn.NewLinear(s, "fc2", hidden, out, nn.LinearConfig{})
	return m
}

// Forward applies the MLP to B x in.
func (m *MLP) Forward(x *torch.Tensor, train bool) *torch.Tensor {
	h := m.FC1.Forward(x)
	if m.BN != nil {
		h = m.BN.Forward(h, train)
	}
	return m.FC2.Forward(h.Relu())
}

// LatentEncoder is the trunk followed by the MLP that produces the latent z.
type LatentEncoder struct {
	Trunk *Encoder
	Head  *MLP
}

// NewLatentEncoder registers down0.., fc1, [bn], fc2 under s.
func NewLatentEncoder(s *nn.Store, size, base, hidden, latent int, batchNorm bool) (*LatentEncoder, error) {
	trunk, err := NewEncoder(s, size, base)
	if err != nil {
		return nil, err
	}
	return &LatentEncoder{Trunk: trunk, Head: NewMLP(s, trunk.FlatSize(), int64(hidden), int64(latent), batchNorm)}, nil
}

// Forward maps B x 1 x S x S to z (B x latent).
func (e *LatentEncoder) Forward(x *torch.Tensor, train bool) *torch.Tensor {
	return e.Head.Forward(e.Trunk.Forward(x, train), train)
}

// LatentDecoder is the MLP that widens z back to a 4x4 map, followed by the
// up path.
type LatentDecoder struct {
	Head  *MLP
	Trunk *Decoder
}

// NewLatentDecoder registers fc1, [bn], fc2, up0.. under s.
func NewLatentDecoder(s *nn.Store, size, base, hidden, latent int, batchNorm bool) (*LatentDecoder, error) {
	levels, err := Levels(size)
	if err != nil {
		return nil, err
	}
	flat := Channels(levels, base)[levels-1] * MapSize * MapSize
	head := NewMLP(s, int64(latent), int64(hidden), flat, batchNorm)
	trunk, err := NewDecoder(s, size, base)
	if err != nil {
		return nil, err
	}
	return &LatentDecoder{Head: head, Trunk: trunk}, nil
}

// Forward maps z (B x latent) to an image B x 1 x S x S.
func (d *LatentDecoder) Forward(z *torch.Tensor, train bool) *torch.Tensor {
	return d.Trunk.Forward(d.Head.Forward(z, train), train)
}
