package main

import (
	"context"
	"encoding/json"
	"fmt"
	"image"
	"image/color"
	"image/png"
	"io"
	"maps"
	"math"
	"math/rand/v2"
	"os"
	"path/filepath"
	"slices"

	"github.com/maddr-project/maddr/atomicfile"
	"github.com/maddr-project/maddr/dataset"
	"github.com/maddr-project/maddr/loader"
	"github.com/maddr-project/maddr/metrics"
	"github.com/maddr-project/maddr/nn"
	"github.com/maddr-project/maddr/perceptual"
	"github.com/maddr-project/maddr/preprocess"
	"github.com/maddr-project/maddr/torch"
)

// The real-image check. No real fixture has normal and abnormal images of
// one organ/modality, so it makes its own: axial slices of one brain MRI
// volume, even slices as the calibration (training) set, odd slices as
// validation normals and the same odd slices with an inserted bright blob as
// abnormals. Nothing is trained: the "reconstruction" is a Gaussian blur of
// the image (what a short-trained autoencoder returns is little more), so
// the AUC measures how well each normalisation's perceptual distance singles
// out a local lesion against the normal detail the blur also loses.

// realResult is one variant's outcome on the real-image check.
type realResult struct {
	Variant  variant `json:"variant"`
	AUC      float64 `json:"auc"`
	RPShare  float64 `json:"rp_share_of_score"`
	Normal   int     `json:"normal"`
	Abnormal int     `json:"abnormal"`
}

func runReal(volume string, first, last, size int, seed uint64, out string) error {
	var train, val []dataset.Sample
	for z := first; z <= last; z++ {
		s := dataset.Sample{Path: volume, Slice: z, Organ: "brain", Modality: "mri", Group: "brain-mri", Split: dataset.Train,
			Label: dataset.Normal, ID: fmt.Sprintf("slice%d", z)}
		if z%2 == 1 {
			s.Split = dataset.Val
			val = append(val, s)
		} else {
			train = append(train, s)
		}
	}
	pc := preprocess.Default()
	pc.Size = size
	inputs := func(samples []dataset.Sample) ([]float32, error) {
		ld, err := loader.New(context.Background(), samples, loader.Config{Size: size, Transform: loader.Preprocess(pc), BatchSize: 2, Workers: 1})
		if err != nil {
			return nil, err
		}
		defer ld.Close()
		var all []float32
		for i := range samples {
			x, err := ld.Input(i)
			if err != nil {
				return nil, err
			}
			all = append(all, x...)
		}
		return all, nil
	}
	trainX, err := inputs(train)
	if err != nil {
		return err
	}
	normalX, err := inputs(val)
	if err != nil {
		return err
	}
	abnormalX := insertLesions(normalX, size, seed)
	if err := os.MkdirAll(out, 0o755); err != nil {
		return err
	}
	if err := writeExamples(filepath.Join(out, "real-examples.png"), normalX, abnormalX, size, 8); err != nil {
		return err
	}
	n := len(val)
	xs := append(append([]float32{}, normalX...), abnormalX...)
	labels := make([]bool, 2*n)
	for i := n; i < 2*n; i++ {
		labels[i] = true
	}
	recon := make([]float32, len(xs))
	for i := 0; i < 2*n; i++ {
		copy(recon[i*size*size:], gaussianBlur(xs[i*size*size:(i+1)*size*size], size, 2))
	}
	var results []realResult
	for _, v := range variants {
		r, err := realVariant(v, trainX, xs, recon, labels, size, seed)
		if err != nil {
			return fmt.Errorf("%s: %w", v.Name, err)
		}
		r.Normal, r.Abnormal = n, n
		fmt.Printf("%-32s real brain-mri AUC %.1f  RP share of score %.2f\n", v.Name, 100*r.AUC, r.RPShare)
		results = append(results, r)
	}
	js, _ := json.MarshalIndent(map[string]any{"volume": volume, "slices": [2]int{first, last}, "size": size, "seed": seed, "results": results}, "", "  ")
	return atomicfile.Write(filepath.Join(out, "real.json"), func(w io.Writer) error {
		_, err := w.Write(append(js, '\n'))
		return err
	})
}

func realVariant(v variant, trainX, xs, recon []float32, labels []bool, size int, seed uint64) (realResult, error) {
	res := realResult{Variant: v}
	vgg, err := perceptual.NewVGG(perceptual.Options{RandomInit: true, Init: perceptual.InitScheme(v.Init), Seed: seed})
	if err != nil {
		return res, err
	}
	defer vgg.Free()
	store, err := nn.NewStore(0)
	if err != nil {
		return res, err
	}
	defer store.Free()
	loss, err := perceptual.NewLoss(vgg, store)
	if err != nil {
		return res, err
	}
	side := int64(size)
	err = torch.NoGrad(func() error {
		return torch.Run(func(s *torch.Scope) error {
			if err := loss.CalibrateWith(perceptual.Normalisation(v.Norm), s.Adopt(torch.FromFloat32(trainX, int64(len(trainX)/(size*size)), 1, side, side))); err != nil {
				return err
			}
			count := int64(len(labels))
			x := s.Adopt(torch.FromFloat32(xs, count, 1, side, side))
			y := s.Adopt(torch.FromFloat32(recon, count, 1, side, side))
			rp, err := loss.PerImage(x, y).Float32s()
			if err != nil {
				return err
			}
			l1, err := y.Sub(x).Abs().MeanDims([]int64{1, 2, 3}, false).Float32s()
			if err != nil {
				return err
			}
			scores := make([]float64, count)
			var rpSum, total float64
			for i := range scores {
				scores[i] = float64(rp[i]) + 0.1*float64(l1[i])
				rpSum += float64(rp[i])
				total += scores[i]
			}
			res.RPShare = rpSum / total
			res.AUC, err = metrics.AUC(scores, labels)
			return err
		})
	})
	return res, err
}

// insertLesions adds one bright Gaussian blob (peak +0.5 on the [-1, 1]
// scale, sigma 1.5-3 px at 64 px) to each image, centred on a random pixel
// inside the anatomy (value above -0.5), clamped to the input range.
func insertLesions(x []float32, size int, seed uint64) []float32 {
	rng := rand.New(rand.NewPCG(seed, 0x6c6573696f6e)) // "lesion"
	out := append([]float32{}, x...)
	px := size * size
	scale := float64(size) / 64
	for i := 0; i < len(x)/px; i++ {
		img := out[i*px : (i+1)*px]
		cx, cy := size/2, size/2
		for try := 0; try < 1000; try++ {
			px, py := rng.IntN(size), rng.IntN(size)
			if img[py*size+px] > -0.5 {
				cx, cy = px, py
				break
			}
		}
		sigma := (1.5 + 1.5*rng.Float64()) * scale
		for yy := range size {
			for xx := range size {
				d2 := float64((xx-cx)*(xx-cx) + (yy-cy)*(yy-cy))
				v := float64(img[yy*size+xx]) + 0.5*math.Exp(-d2/(2*sigma*sigma))
				img[yy*size+xx] = float32(math.Min(1, v))
			}
		}
	}
	return out
}

// gaussianBlur blurs one size x size image with a separable Gaussian,
// replicating the border.
func gaussianBlur(img []float32, size int, sigma float64) []float32 {
	r := int(math.Ceil(3 * sigma))
	k := make([]float64, 2*r+1)
	var sum float64
	for i := range k {
		d := float64(i - r)
		k[i] = math.Exp(-d * d / (2 * sigma * sigma))
		sum += k[i]
	}
	for i := range k {
		k[i] /= sum
	}
	at := func(i int) int { return min(max(i, 0), size-1) }
	tmp := make([]float32, len(img))
	out := make([]float32, len(img))
	for y := range size {
		for x := range size {
			var v float64
			for i, w := range k {
				v += w * float64(img[y*size+at(x+i-r)])
			}
			tmp[y*size+x] = float32(v)
		}
	}
	for y := range size {
		for x := range size {
			var v float64
			for i, w := range k {
				v += w * float64(tmp[at(y+i-r)*size+x])
			}
			out[y*size+x] = float32(v)
		}
	}
	return out
}

// writeExamples draws the first count validation images (top row) above
// their copies with the inserted lesion (bottom row).
func writeExamples(path string, normal, abnormal []float32, size, count int) error {
	count = min(count, len(normal)/(size*size))
	img := image.NewGray(image.Rect(0, 0, count*size, 2*size))
	for row, set := range [][]float32{normal, abnormal} {
		for i := range count {
			for y := range size {
				for x := range size {
					v := (float64(set[i*size*size+y*size+x]) + 1) / 2 * 255
					img.SetGray(i*size+x, row*size+y, color.Gray{Y: uint8(math.Max(0, math.Min(255, math.Round(v))))})
				}
			}
		}
	}
	return atomicfile.Write(path, func(w io.Writer) error { return png.Encode(w, img) })
}

// runReference scores the validation split of data with a training-free
// statistic, the mean absolute difference of an image to the mean training
// image, as the level a trained model must beat.
func runReference(data string, size int, out string) error {
	spec, err := dataset.ParseSpec(data)
	if err != nil {
		return err
	}
	all, err := dataset.Open([]dataset.Spec{spec}, dataset.Options{})
	if err != nil {
		return err
	}
	var train, val []dataset.Sample
	for _, s := range all {
		switch {
		case s.Split == dataset.Train && s.Label == dataset.Normal:
			train = append(train, s)
		case s.Split == dataset.Val:
			val = append(val, s)
		}
	}
	pc := preprocess.Default()
	pc.Size = size
	load := func(samples []dataset.Sample) ([][]float32, error) {
		ld, err := loader.New(context.Background(), samples, loader.Config{Size: size, Transform: loader.Preprocess(pc), BatchSize: 2})
		if err != nil {
			return nil, err
		}
		defer ld.Close()
		out := make([][]float32, len(samples))
		for i := range samples {
			x, err := ld.Input(i)
			if err != nil {
				return nil, err
			}
			out[i] = append([]float32{}, x...)
		}
		return out, nil
	}
	trainX, err := load(train)
	if err != nil {
		return err
	}
	valX, err := load(val)
	if err != nil {
		return err
	}
	mean := make([]float64, size*size)
	for _, x := range trainX {
		for p, v := range x {
			mean[p] += float64(v) / float64(len(trainX))
		}
	}
	scores, labels := map[string][]float64{}, map[string][]bool{}
	for i, x := range valX {
		var d float64
		for p, v := range x {
			d += math.Abs(float64(v)-mean[p]) / float64(len(x))
		}
		g := val[i].Group
		scores[g] = append(scores[g], d)
		labels[g] = append(labels[g], val[i].Label == dataset.Abnormal)
	}
	aucs := map[string]float64{}
	line := "distance to the training mean (no training)"
	for _, g := range slices.Sorted(maps.Keys(scores)) {
		auc, err := metrics.AUC(scores[g], labels[g])
		if err != nil {
			return fmt.Errorf("%s: %w", g, err)
		}
		aucs[g] = auc
		line += fmt.Sprintf("  %s %.1f", g, 100*auc)
	}
	fmt.Println(line)
	js, _ := json.MarshalIndent(map[string]any{"data": spec.String(), "size": size, "val_auc": aucs}, "", "  ")
	if err := os.MkdirAll(out, 0o755); err != nil {
		return err
	}
	return atomicfile.Write(filepath.Join(out, "reference.json"), func(w io.Writer) error {
		_, err := w.Write(append(js, '\n'))
		return err
	})
}
