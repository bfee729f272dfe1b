package train

import (
	"context"
	"fmt"

	"github.com/maddr-project/maddr/baselines"
	"github.com/maddr-project/maddr/dataset"
	"github.com/maddr-project/maddr/loader"
	"github.com/maddr-project/maddr/maddr"
	"github.com/maddr-project/maddr/modelfile"
)

// newFramework builds the network cfg describes, with the initial weights its
// seed gives, for data with the given vocabularies. A zero cfg.Iterations is
// set to the baseline's own schedule length, which the mixup window needs.
func newFramework(cfg *Config, vocabs dataset.Vocabs) (*maddr.Framework, error) {
	base, err := baselines.New(cfg.Model, baselines.Options{
		ImageSize: cfg.Preprocess.Size, LatentDim: cfg.LatentDim, Seed: cfg.Seed, Iterations: cfg.Iterations, Raw: cfg.ModelOptions,
		ClipGradNorm: cfg.ClipGradNorm,
	})
	if err != nil {
		return nil, err
	}
	if cfg.Iterations <= 0 {
		cfg.Iterations = base.DefaultIterations()
	}
	classes := maddr.Classes{Organs: vocabs.Organ, Modalities: vocabs.Modality}
	fw, err := maddr.New(base, cfg.MADDR, classes, cfg.Seed)
	if err != nil {
		base.Store().Free()
		return nil, err
	}
	return fw, nil
}

// Initial returns the model Run would start training from with cfg on
// samples: the same initial weights (same seed) and, for baselines that
// calibrate on training images, the same calibration. Scored, it is the
// iteration-0 reference that tells what training added. The caller frees
// its weights (m.Framework.Base.Store().Free()).
func Initial(ctx context.Context, cfg Config, samples []dataset.Sample) (*modelfile.Model, error) {
	if err := cfg.Preprocess.Validate(); err != nil {
		return nil, err
	}
	vocabs, err := dataset.BuildVocabs(samples, dataset.Vocabs{})
	if err != nil {
		return nil, err
	}
	fw, err := newFramework(&cfg, vocabs)
	if err != nil {
		return nil, err
	}
	if cal, ok := fw.Base.(baselines.Calibrator); ok {
		if err := calibrateOn(ctx, cal, cfg, selectTrain(samples, cfg.Groups)); err != nil {
			fw.Base.Store().Free()
			return nil, fmt.Errorf("calibrating the untrained %s: %w", cfg.Model, err)
		}
	}
	return &modelfile.Model{
		Manifest:  modelfile.Manifest{Model: cfg.Model, ImageSize: cfg.Preprocess.Size, Seed: cfg.Seed, Preprocess: cfg.Preprocess, Vocabs: vocabs},
		Framework: fw, Path: "(untrained " + cfg.Model + ")",
	}, nil
}

// calibrateOn calibrates through a loader over the training set, as Run does
// with its training loader (Input applies no augmentation).
func calibrateOn(ctx context.Context, cal baselines.Calibrator, cfg Config, trainSet []dataset.Sample) error {
	if len(trainSet) == 0 {
		return fmt.Errorf("no normal training images (groups %v)", cfg.Groups)
	}
	ld, err := loader.New(ctx, trainSet, loader.Config{Size: cfg.Preprocess.Size, Transform: loader.Preprocess(cfg.Preprocess),
		BatchSize: cfg.BatchSize, CacheBytes: -1, SkipBad: cfg.SkipBad})
	if err != nil {
		return err
	}
	defer ld.Close()
	return calibrate(cal, ld, cfg.Preprocess.Size, cfg.Seed)
}
