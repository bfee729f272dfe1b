package perceptual

import (
	_ "embed"
	"encoding/json"
	"fmt"
	"math"

	"github.com/maddr-project/maddr/nn"
	"github.com/maddr-project/maddr/torch"
)

// imagenetStatsJSON holds DPA's per-channel (mean, divisor) of VGG19's r32
// and r42 features on ImageNet, exported from DPA's
// vgg19_ILSVRC2012_object_detection_mean_var.pt.
//
//go:embed data/vgg19_r32_r42_mean_divisor.json
var imagenetStatsJSON []byte

type layerStats struct {
	Channels int       `json:"channels"`
	Mean     []float32 `json:"mean"`
	Divisor  []float32 `json:"divisor"`
}

// ImageNetStats returns the (mean, divisor) vectors of r32 and r42.
func ImageNetStats() (r32, r42 [2][]float32, err error) {
	var doc struct {
		Layers map[string]layerStats `json:"layers"`
	}
	if err := json.Unmarshal(imagenetStatsJSON, &doc); err != nil {
		return r32, r42, fmt.Errorf("perceptual: embedded VGG statistics: %w", err)
	}
	get := func(name string, want int) ([2][]float32, error) {
		l, ok := doc.Layers[name]
		if !ok || len(l.Mean) != want || len(l.Divisor) != want {
			return [2][]float32{}, fmt.Errorf("perceptual: embedded VGG statistics lack %d channels of %s", want, name)
		}
		return [2][]float32{l.Mean, l.Divisor}, nil
	}
	if r32, err = get("r32", 256); err != nil {
		return
	}
	r42, err = get("r42", 512)
	return
}

// Normalisation names the per-channel statistics the features are
// normalised with before the relative L1 is taken.
type Normalisation string

// Feature normalisations.
const (
	// NormImageNet uses DPA's ImageNet statistics (the paper's, and the only
	// choice with real weights).
	NormImageNet Normalisation = "imagenet"
	// NormTrainMeanStd subtracts the per-channel mean and divides by the
	// per-channel standard deviation, both measured on training images
	// (METHODS 7.9).
	NormTrainMeanStd Normalisation = "train-mean-std"
	// NormTrainRMS divides by the per-channel root mean square measured on
	// training images, without centring: ReLU features stay non-negative and
	// a channel that is constant on the training images still counts.
	NormTrainRMS Normalisation = "train-rms"
)

// Calibrated reports whether n is measured on training images.
func (n Normalisation) Calibrated() bool { return n == NormTrainMeanStd || n == NormTrainRMS }

// ParseNormalisation accepts the Normalisation names.
func ParseNormalisation(s string) (Normalisation, error) {
	switch n := Normalisation(s); n {
	case NormImageNet, NormTrainMeanStd, NormTrainRMS:
		return n, nil
	}
	return "", fmt.Errorf("perceptual: unknown VGG feature normalisation %q (want %s, %s or %s)", s, NormImageNet, NormTrainMeanStd, NormTrainRMS)
}

// Loss is the relative perceptual L1 loss of METHODS 2.4 on a VGG.
//
// Per layer l in {r32, r42} and per image: n = (f_l - mean_l) / divisor_l per
// channel, d_l = mean|n(recon) - n(target)| / mean|n(target)| over (C, H, W),
// with the denominator outside the gradient; the loss is (d_r32 + d_r42) / 2.
type Loss struct {
	VGG *VGG
	// mean and div are per-channel (1, C, 1, 1) buffers for r32 and r42. They
	// live in the owner's store so model files carry them (calibrated values
	// in random mode).
	mean, div [2]*torch.Tensor
	// Calibrated is true once Calibrate or CalibrateRMS replaced the
	// ImageNet statistics; Norm says which statistics are in use.
	Calibrated bool
	Norm       Normalisation
	// CalibrationImages is how many images Calibrate measured.
	CalibrationImages int
}

// NewLoss registers the normalisation buffers r32.mean, r32.divisor,
// r42.mean and r42.divisor under s, filled with DPA's ImageNet statistics
// (their first C channels when the VGG is narrowed for tests).
func NewLoss(v *VGG, s *nn.Store) (*Loss, error) {
	r32, r42, err := ImageNetStats()
	if err != nil {
		return nil, err
	}
	l := &Loss{VGG: v, Norm: NormImageNet}
	c32, c42 := v.Channels()
	for i, layer := range []struct {
		name  string
		c     int64
		stats [2][]float32
	}{{"r32", c32, r32}, {"r42", c42, r42}} {
		l.mean[i] = s.NewBuffer(layer.name+".mean", torch.FromFloat32(layer.stats[0][:layer.c], 1, layer.c, 1, 1))
		l.div[i] = s.NewBuffer(layer.name+".divisor", torch.FromFloat32(layer.stats[1][:layer.c], 1, layer.c, 1, 1))
	}
	if err := s.Err(); err != nil {
		return nil, fmt.Errorf("perceptual: %w", err)
	}
	return l, nil
}

// TargetFeatures computes the target's r32 and r42 without recording
// autograd: the target needs no gradient, which saves its backward pass.
func (l *Loss) TargetFeatures(target *torch.Tensor) (r32, r42 *torch.Tensor, err error) {
	err = torch.NoGrad(func() error {
		r32, r42 = l.VGG.Features(target)
		if err := r32.Err(); err != nil {
			return err
		}
		return r42.Err()
	})
	return r32, r42, err
}

// PerImage returns the loss of each reconstruction against its target (B).
// The gradient flows to recon only.
func (l *Loss) PerImage(target, recon *torch.Tensor) *torch.Tensor {
	t32, t42, err := l.TargetFeatures(target)
	if err != nil {
		return torch.Failed(fmt.Errorf("perceptual: target features: %w", err))
	}
	d := l.PerImageFromTarget(t32, t42, recon)
	t32.Free()
	t42.Free()
	return d
}

// PerImageFromTarget is PerImage with the target's features already computed
// (by TargetFeatures), for callers that reuse them.
func (l *Loss) PerImageFromTarget(t32, t42, recon *torch.Tensor) *torch.Tensor {
	r32, r42 := l.VGG.Features(recon)
	d32 := l.relative(0, t32, r32)
	d42 := l.relative(1, t42, r42)
	r32.Free()
	r42.Free()
	return d32.Add(d42).MulScalar(0.5)
}

// relative is d_l for one layer (B). Both feature maps are normalised before
// subtracting, as DPA does: subtracting first would be cheaper but rounds
// differently, and |.| turns those last-bit differences into gradient sign
// flips wherever the two maps nearly agree.
func (l *Loss) relative(i int, target, recon *torch.Tensor) *torch.Tensor {
	dims := []int64{1, 2, 3}
	// Each feature-sized intermediate is freed once used, so that they do
	// not wait in the caller's scope for the batch to end.
	var nt, scale *torch.Tensor
	if err := torch.NoGrad(func() error {
		centred := target.Sub(l.mean[i])
		nt = centred.Div(l.div[i])
		centred.Free()
		abs := nt.Abs()
		scale = abs.MeanDims(dims, false)
		abs.Free()
		return scale.Err()
	}); err != nil {
		return torch.Failed(err)
	}
	centred := recon.Sub(l.mean[i])
	nr := centred.Div(l.div[i])
	centred.Free()
	diff := nr.Sub(nt)
	nt.Free()
	nr.Free()
	abs := diff.Abs()
	diff.Free()
	d := abs.MeanDims(dims, false).Div(scale)
	abs.Free()
	return d
}

// Mean is the batch mean of PerImage.
func (l *Loss) Mean(target, recon *torch.Tensor) *torch.Tensor {
	return l.PerImage(target, recon).Mean()
}

// calibrationChunk bounds the batch of one calibration pass (memory).
const calibrationChunk = 32

// Calibrate replaces the normalisation statistics by the per-channel mean and
// standard deviation of r32 and r42 measured on x (N x 1 x H x W training
// images in [-1, 1]), as METHODS 7.9 prescribes for a random VGG: its features
// are ~100x smaller than ImageNet's statistics, which would leave the relative
// term near zero. A channel whose deviation is below 1% of the layer's mean
// deviation (a ReLU that never fires) gets that floor as divisor, so it
// cannot blow up. Each call measures afresh.
func (l *Loss) Calibrate(x *torch.Tensor) error { return l.calibrate(x, NormTrainMeanStd) }

// CalibrateRMS is Calibrate without centring: the mean is set to zero and
// each channel is divided by its root mean square on x, floored the same way.
func (l *Loss) CalibrateRMS(x *torch.Tensor) error { return l.calibrate(x, NormTrainRMS) }

// CalibrateWith measures the statistics norm needs on x; NormImageNet
// needs none and leaves the statistics as they are.
func (l *Loss) CalibrateWith(norm Normalisation, x *torch.Tensor) error {
	switch norm {
	case NormImageNet:
		return nil
	case NormTrainMeanStd, NormTrainRMS:
		return l.calibrate(x, norm)
	}
	return fmt.Errorf("perceptual: cannot calibrate for normalisation %q", norm)
}

func (l *Loss) calibrate(x *torch.Tensor, norm Normalisation) error {
	if err := x.Err(); err != nil {
		return fmt.Errorf("perceptual: calibration images: %w", err)
	}
	n := x.Size(0)
	if x.Dim() != 4 || n < 1 {
		return fmt.Errorf("perceptual: calibration needs a batch of images N x 1 x H x W, got %v", x.Shape())
	}
	var sum, sumSq [2][]float64
	var count [2]float64
	err := torch.NoGrad(func() error {
		for start := int64(0); start < n; start += calibrationChunk {
			err := torch.Run(func(s *torch.Scope) error {
				chunk := s.AliasIn(x).Narrow(0, start, min(calibrationChunk, n-start))
				f32, f42 := l.VGG.Features(chunk)
				for i, f := range []*torch.Tensor{f32, f42} {
					f = f.To(torch.Float64)
					s1, err := f.SumDims([]int64{0, 2, 3}, false).Float64s()
					if err != nil {
						return err
					}
					s2, err := f.Square().SumDims([]int64{0, 2, 3}, false).Float64s()
					if err != nil {
						return err
					}
					if sum[i] == nil {
						sum[i], sumSq[i] = make([]float64, len(s1)), make([]float64, len(s1))
					}
					for c := range s1 {
						sum[i][c] += s1[c]
						sumSq[i][c] += s2[c]
					}
					count[i] += float64(f.Size(0) * f.Size(2) * f.Size(3))
				}
				return nil
			})
			if err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		return fmt.Errorf("perceptual: calibrating on %d images: %w", n, err)
	}
	for i := range 2 {
		c := len(sum[i])
		mean, std := make([]float32, c), make([]float64, c)
		avgStd := 0.0
		for ch := range c {
			m := sum[i][ch] / count[i]
			if norm == NormTrainRMS {
				// mean stays 0; "std" is then the RMS about zero.
				std[ch] = math.Sqrt(sumSq[i][ch] / count[i])
			} else {
				v := max(sumSq[i][ch]/count[i]-m*m, 0)
				mean[ch], std[ch] = float32(m), math.Sqrt(v)
			}
			avgStd += std[ch] / float64(c)
		}
		floor := max(0.01*avgStd, 1e-12)
		div := make([]float32, c)
		for ch := range c {
			div[ch] = float32(max(std[ch], floor))
		}
		for _, pair := range []struct {
			dst *torch.Tensor
			src []float32
		}{{l.mean[i], mean}, {l.div[i], div}} {
			t := torch.FromFloat32(pair.src, 1, int64(c), 1, 1)
			err := pair.dst.CopyFrom(t)
			t.Free()
			if err != nil {
				return fmt.Errorf("perceptual: storing calibration: %w", err)
			}
		}
	}
	l.Calibrated, l.Norm = true, norm
	l.CalibrationImages = int(n)
	return nil
}

// Stats returns the current (mean, divisor) of r32 and r42, for reports and tests.
func (l *Loss) Stats() (r32, r42 [2][]float32, err error) {
	read := func(i int) ([2][]float32, error) {
		m, err := l.mean[i].Float32s()
		if err != nil {
			return [2][]float32{}, err
		}
		d, err := l.div[i].Float32s()
		return [2][]float32{m, d}, err
	}
	if r32, err = read(0); err != nil {
		return
	}
	r42, err = read(1)
	return
}
