package ganomaly

import (
	"fmt"

	"github.com/maddr-project/maddr/baselines/internal/backbone"
	"github.com/maddr-project/maddr/nn"
	"github.com/maddr-project/maddr/torch"
)

// networks are GANomaly's three generator parts and its discriminator,
// whichever variant built them.
type networks struct {
	// enc1 and enc2 map an image to a latent (B x D).
	enc1, enc2 func(x *torch.Tensor, train bool) *torch.Tensor
	// dec maps a latent (B x D) to an image.
	dec func(z *torch.Tensor, train bool) *torch.Tensor
	// disc returns D's probability that x is real (B) and the features the
	// adversarial loss matches.
	disc func(x *torch.Tensor, train bool) (prob, feat *torch.Tensor)
	// dConvs and dNorms are what re-initialising D resets.
	dConvs []*torch.Tensor
	dNorms []*nn.BatchNorm
}

// dcgan init (original GANomaly): conv weights N(0, 0.02); BatchNorm weight
// N(1, 0.02), bias 0.
var convInit = nn.Normal(0, 0.02)

func initNorms(s *nn.Store, norms []*nn.BatchNorm) error {
	return torch.NoGrad(func() error {
		for _, bn := range norms {
			if err := bn.W.NormalInPlace(1, 0.02, s.Generator()); err != nil {
				return err
			}
			if err := bn.B.Fill(0); err != nil {
				return err
			}
		}
		return nil
	})
}

// dcganEncoder is GANomaly's DCGAN encoder: conv4x4 s2 (1 -> w) + LReLU,
// then conv4x4 s2 + BN + LReLU doubling the channels until the map is 4x4,
// then a 4x4 valid conv to out channels (no biases anywhere). It returns the
// trunk's blocks and the final conv.
type dcganEncoder struct {
	blocks []*backbone.ConvBN
	final  *backbone.ConvBN
	norms  []*nn.BatchNorm
}

func newDCGANEncoder(s *nn.Store, size, width, out int, finalInit nn.Init) *dcganEncoder {
	e := &dcganEncoder{}
	e.blocks = append(e.blocks, backbone.NewBlock(s, "initial", backbone.BlockConfig{
		In: 1, Out: int64(width), Kernel: 4, Stride: 2, Padding: 1, Activate: backbone.LeakyRelu02, WeightInit: convInit}))
	ch := int64(width)
	for i, side := 0, size/2; side > backbone.MapSize; i, side = i+1, side/2 {
		b := backbone.NewBlock(s, fmt.Sprintf("pyramid%d", i), backbone.BlockConfig{
			In: ch, Out: 2 * ch, Kernel: 4, Stride: 2, Padding: 1, BatchNorm: true, Activate: backbone.LeakyRelu02, WeightInit: convInit})
		e.blocks = append(e.blocks, b)
		e.norms = append(e.norms, b.BN())
		ch *= 2
	}
	e.final = backbone.NewBlock(s, "final", backbone.BlockConfig{In: ch, Out: int64(out), Kernel: 4, WeightInit: finalInit})
	return e
}

// features frees each block's output once the next block has run (the
// caller's x is left alone).
func (e *dcganEncoder) features(x *torch.Tensor, train bool) *torch.Tensor {
	h := e.blocks[0].Forward(x, train)
	for _, b := range e.blocks[1:] {
		h = backbone.Replace(h, b.Forward(h, train))
	}
	return h
}

func (e *dcganEncoder) convs() []*torch.Tensor {
	var out []*torch.Tensor
	for _, b := range e.blocks {
		out = append(out, b.Weight())
	}
	return append(out, e.final.Weight())
}

// dcganDecoder mirrors it: convT4x4 (D -> c) + BN + ReLU to 4x4, convT s2 +
// BN + ReLU halving the channels, and a last convT s2 to one channel + tanh.
type dcganDecoder struct {
	blocks []*backbone.ConvBN
	norms  []*nn.BatchNorm
	latent int64
}

func newDCGANDecoder(s *nn.Store, size, width, latent int) *dcganDecoder {
	ch := int64(width / 2)
	for side := backbone.MapSize; side < size; side *= 2 {
		ch *= 2
	}
	d := &dcganDecoder{latent: int64(latent)}
	add := func(name string, c backbone.BlockConfig) {
		c.WeightInit, c.Transposed = convInit, true
		b := backbone.NewBlock(s, name, c)
		d.blocks = append(d.blocks, b)
		if b.BN() != nil {
			d.norms = append(d.norms, b.BN())
		}
	}
	add("initial", backbone.BlockConfig{In: int64(latent), Out: ch, Kernel: 4, BatchNorm: true, Activate: backbone.Relu})
	for i, side := 0, backbone.MapSize; side < size/2; i, side = i+1, side*2 {
		add(fmt.Sprintf("pyramid%d", i), backbone.BlockConfig{
			In: ch, Out: ch / 2, Kernel: 4, Stride: 2, Padding: 1, BatchNorm: true, Activate: backbone.Relu})
		ch /= 2
	}
	add("final", backbone.BlockConfig{In: ch, Out: 1, Kernel: 4, Stride: 2, Padding: 1,
		Activate: func(x *torch.Tensor) *torch.Tensor { return x.Tanh() }})
	return d
}

func (d *dcganDecoder) forward(z *torch.Tensor, train bool) *torch.Tensor {
	h := z.Reshape(-1, d.latent, 1, 1)
	for _, b := range d.blocks {
		h = backbone.Replace(h, b.Forward(h, train))
	}
	return h
}

// newOriginal builds samet-akcay/ganomaly's DCGAN networks (METHODS 3.3).
func newOriginal(s *nn.Store, c Config) (*networks, error) {
	if c.Width < 2 || c.Width%2 != 0 {
		return nil, fmt.Errorf("width %d must be even and at least 2", c.Width)
	}
	if _, err := backbone.Levels(c.ImageSize); err != nil {
		return nil, err
	}
	g := s.Sub("g")
	e1 := newDCGANEncoder(g.Sub("enc1"), c.ImageSize, c.Width, c.Latent, convInit)
	dec := newDCGANDecoder(g.Sub("dec"), c.ImageSize, c.Width, c.Latent)
	e2 := newDCGANEncoder(g.Sub("enc2"), c.ImageSize, c.Width, c.Latent, convInit)
	d := newDCGANEncoder(s.Sub("d"), c.ImageSize, c.Width, 1, convInit)
	norms := append(append(append(append([]*nn.BatchNorm{}, e1.norms...), dec.norms...), e2.norms...), d.norms...)
	if err := initNorms(s, norms); err != nil {
		return nil, err
	}
	encode := func(e *dcganEncoder) func(*torch.Tensor, bool) *torch.Tensor {
		return func(x *torch.Tensor, train bool) *torch.Tensor {
			f := e.features(x, train)
			return backbone.Replace(f, e.final.Forward(f, train)).Flatten(1, -1)
		}
	}
	return &networks{
		enc1: encode(e1),
		enc2: encode(e2),
		dec:  dec.forward,
		disc: func(x *torch.Tensor, train bool) (*torch.Tensor, *torch.Tensor) {
			feat := d.features(x, train)
			return d.final.Forward(feat, train).Sigmoid().Reshape(-1), feat
		},
		dConvs: d.convs(),
		dNorms: d.norms,
	}, nil
}

// newMedIAnomaly builds the MedIAnomaly variant (METHODS 3.3): the shared
// backbone with MLP heads without BatchNorm, PyTorch's default init, no
// tanh; D is the down path -> Linear + ReLU (the features) -> Linear +
// sigmoid.
func newMedIAnomaly(s *nn.Store, c Config) (*networks, error) {
	g := s.Sub("g")
	e1, err := backbone.NewLatentEncoder(g.Sub("enc1"), c.ImageSize, c.Width, c.Hidden, c.Latent, false)
	if err != nil {
		return nil, err
	}
	dec, err := backbone.NewLatentDecoder(g.Sub("dec"), c.ImageSize, c.Width, c.Hidden, c.Latent, false)
	if err != nil {
		return nil, err
	}
	e2, err := backbone.NewLatentEncoder(g.Sub("enc2"), c.ImageSize, c.Width, c.Hidden, c.Latent, false)
	if err != nil {
		return nil, err
	}
	ds := s.Sub("d")
	trunk, err := backbone.NewEncoder(ds, c.ImageSize, c.Width)
	if err != nil {
		return nil, err
	}
	feat := nn.NewLinear(ds, "feat", trunk.FlatSize(), int64(c.Hidden), nn.LinearConfig{})
	cls := nn.NewLinear(ds, "cls", int64(c.Hidden), 1, nn.LinearConfig{})
	n := &networks{
		enc1: e1.Forward,
		enc2: e2.Forward,
		dec:  dec.Forward,
		disc: func(x *torch.Tensor, train bool) (*torch.Tensor, *torch.Tensor) {
			f := feat.Forward(trunk.Forward(x, train)).Relu()
			return cls.Forward(f).Sigmoid().Reshape(-1), f
		},
	}
	for _, b := range trunk.Blocks {
		n.dConvs = append(n.dConvs, b.Weight())
		n.dNorms = append(n.dNorms, b.BN())
	}
	return n, nil
}

// reinitD redraws D's conv weights and BatchNorm affine parameters as the
// DCGAN init does (the Linear layers of the MedIAnomaly variant keep their
// values, as there).
func (n *networks) reinitD(s *nn.Store) error {
	err := torch.NoGrad(func() error {
		for _, w := range n.dConvs {
			if err := w.NormalInPlace(0, 0.02, s.Generator()); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		return err
	}
	return initNorms(s, n.dNorms)
}
