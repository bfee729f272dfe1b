package main

import (
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"path/filepath"
	"reflect"
	"sort"
	"strings"

	"github.com/maddr-project/maddr/augment"
	"github.com/maddr-project/maddr/baselines"
	_ "github.com/maddr-project/maddr/baselines/all"
	"github.com/maddr-project/maddr/baselines/dpa"
	"github.com/maddr-project/maddr/dataset"
	"github.com/maddr-project/maddr/maddr"
	"github.com/maddr-project/maddr/perceptual"
	"github.com/maddr-project/maddr/torch"
	"github.com/maddr-project/maddr/train"
)

func init() {
	register("train", "train a baseline, alone or wrapped by MADDR", runTrain)
}

// specList is a repeatable --data flag.
type specList []dataset.Spec

func (l *specList) String() string {
	var parts []string
	for _, s := range *l {
		parts = append(parts, s.String())
	}
	return strings.Join(parts, " ")
}

// Values gives each source in a form Set reads back, for --print-config.
func (l *specList) Values() []string {
	out := make([]string, len(*l))
	for i, s := range *l {
		out[i] = specText(s)
	}
	return out
}

// specText is a source's one-line form, or its JSON form when the one-line
// form would not read back the same (a comma in a path).
func specText(s dataset.Spec) string {
	line := s.String()
	if back, err := dataset.ParseSpec(line); err == nil && reflect.DeepEqual(back, s) {
		return line
	}
	b, _ := json.Marshal(s)
	return string(b)
}

func (l *specList) Set(v string) error {
	s, err := dataset.ParseSpec(v)
	if err != nil {
		return err
	}
	*l = append(*l, s)
	return nil
}

// maddrFlags registers the MADDR switches of Table 2 and the code-reproduction switches.
type maddrFlags struct {
	baselineOnly, organ, modality, center, disentangle *bool
	modalityDims, organDims                            *int
	lambdaOrgan, lambdaModality, lambdaCenter          *float64
	focalAlpha, focalGamma                             *float64
	focalUniform, codeCenter, freezeHeads, labelBug    *bool
	reproduceCode                                      *bool
	centerNorm, mixup                                  *string
	mixupStart, mixupEnd                               *int
	mixupAlpha                                         *float64
}

func addMADDRFlags(fs *flag.FlagSet) *maddrFlags {
	p := maddr.Paper()
	return &maddrFlags{
		baselineOnly:   fs.Bool("baseline-only", false, "train the baseline without any MADDR constraint or mixup"),
		organ:          fs.Bool("organ-loss", true, "L_o: focal loss of the organ head"),
		modality:       fs.Bool("modality-loss", true, "L_m: focal loss of the modality head"),
		center:         fs.Bool("center-loss", true, "L_c: leave-one-out center loss (eq. 4)"),
		disentangle:    fs.Bool("disentangle", true, "apply the constraints to z_m, z_o, z_c slices (off: to the whole z)"),
		modalityDims:   fs.Int("modality-dims", p.ModalityDims, "size of z_m = z[0:m]"),
		organDims:      fs.Int("organ-dims", p.OrganDims, "size of z_o = z[m:m+o]"),
		lambdaOrgan:    fs.Float64("lambda-organ", p.LambdaOrgan, "weight of L_o (paper 1; the authors' code effectively 0.1)"),
		lambdaModality: fs.Float64("lambda-modality", p.LambdaModality, "weight of L_m"),
		lambdaCenter:   fs.Float64("lambda-center", p.LambdaCenter, "weight of L_c"),
		focalAlpha:     fs.Float64("focal-alpha", p.FocalAlpha, "focal alpha of class 0 (other classes 1-alpha)"),
		focalGamma:     fs.Float64("focal-gamma", p.FocalGamma, "focal gamma"),
		focalUniform:   fs.Bool("focal-uniform", false, "use focal-alpha for every class (the paper's wording)"),
		centerNorm:     fs.String("center-norm", string(p.CenterNorm), "sum_dims (eq. 4) or mean_dims (DOC)"),
		codeCenter:     fs.Bool("code-center-loss", false, "use the authors' per-sample variance term instead of eq. 4"),
		freezeHeads:    fs.Bool("freeze-heads", false, "keep the heads at random init, as the authors' code does"),
		labelBug:       fs.Bool("reproduce-label-bug", false, "train the organ head on modality labels, as the authors' code does"),
		reproduceCode:  fs.Bool("reproduce-code", false, "all of the authors' code behaviours: frozen heads, weights 0.1, their center term, label bug"),
		mixup:          fs.String("mixup", "auto", "auto (on when a constraint is active), on, off"),
		mixupStart:     fs.Int("mixup-start", 0, "first mixup iteration (default: 7001/16000 of the run; f-AnoGAN: placed at the same fraction of its encoder stage)"),
		mixupEnd:       fs.Int("mixup-end", 0, "last mixup iteration (default: 10000/16000 of the run; f-AnoGAN: likewise)"),
		mixupAlpha:     fs.Float64("mixup-alpha", 1, "mixup Beta(alpha, alpha)"),
	}
}

func (f *maddrFlags) config(iterations int) maddr.Config {
	c := maddr.Paper()
	c.Organ, c.Modality, c.Center, c.Disentangle = *f.organ, *f.modality, *f.center, *f.disentangle
	c.ModalityDims, c.OrganDims = *f.modalityDims, *f.organDims
	c.LambdaOrgan, c.LambdaModality, c.LambdaCenter = *f.lambdaOrgan, *f.lambdaModality, *f.lambdaCenter
	c.FocalAlpha, c.FocalGamma, c.FocalUniform = *f.focalAlpha, *f.focalGamma, *f.focalUniform
	c.CenterNorm = maddr.CenterNorm(*f.centerNorm)
	c.CodeCenterLoss, c.FreezeHeads, c.ReproduceLabelBug = *f.codeCenter, *f.freezeHeads, *f.labelBug
	if *f.reproduceCode {
		c = c.ReproduceCode()
	}
	if *f.baselineOnly {
		c.Organ, c.Modality, c.Center = false, false, false
	}
	c = c.ScaleMixup(iterations)
	c.Mixup.Mode, c.Mixup.Alpha = *f.mixup, *f.mixupAlpha
	if *f.mixupStart > 0 {
		c.Mixup.Start = *f.mixupStart
	}
	if *f.mixupEnd > 0 {
		c.Mixup.End = *f.mixupEnd
	}
	return c
}

// modelOptionFlags collects the settings that go into a baseline's own options.
type modelOptionFlags struct {
	raw           *string
	vggWeights    *string
	vggRandomInit *bool
	vggInit       *string
	vggNorm       *string
}

func addModelOptionFlags(fs *flag.FlagSet) *modelOptionFlags {
	return &modelOptionFlags{
		raw:           fs.String("model-options", "", "baseline-specific settings as a JSON object (see docs/models)"),
		vggWeights:    fs.String("vgg-weights", "", "VGG19 weights for DPA's perceptual loss (default $"+vggWeightsEnv+")"),
		vggRandomInit: fs.Bool("vgg-random-init", false, "let DPA run with a randomly initialised VGG19 (results are then not the paper's)"),
		vggInit: fs.String("vgg-init", "", "random VGG19 initialisation: "+string(perceptual.InitPyTorchDefault)+" or "+
			string(perceptual.InitTorchvision)+" (kaiming normal fan_out, zero biases); default "+string(dpa.DefaultRandomInit)+
			"; needs --vgg-random-init"),
		vggNorm: fs.String("vgg-norm", "", "random VGG19's feature normalisation: "+string(perceptual.NormImageNet)+", "+string(perceptual.NormTrainMeanStd)+
			" or "+string(perceptual.NormTrainRMS)+"; default "+string(dpa.DefaultRandomNorm)+
			"; needs --vgg-random-init (real weights use imagenet; see docs/vgg-calibration.md)"),
	}
}

// options merges the flags into the baseline's JSON options.
func (f *modelOptionFlags) options() (json.RawMessage, error) {
	opts := map[string]any{}
	if *f.raw != "" {
		if err := json.Unmarshal([]byte(*f.raw), &opts); err != nil {
			return nil, fmt.Errorf("--model-options: %w", err)
		}
	}
	path := *f.vggWeights
	if path == "" {
		path = os.Getenv(vggWeightsEnv)
	}
	if path != "" {
		opts["vgg_weights"] = path
	}
	if *f.vggRandomInit {
		opts["vgg_random_init"] = true
	}
	if *f.vggInit != "" {
		opts["vgg_init"] = *f.vggInit
	}
	if *f.vggNorm != "" {
		opts["vgg_norm"] = *f.vggNorm
	}
	if len(opts) == 0 {
		return nil, nil
	}
	return json.Marshal(opts)
}

func runTrain(args []string, stdout, stderr io.Writer) error {
	fs := newFlagSet("train", stderr)
	def := train.Defaults("dpa")
	var data specList
	fs.Var(&data, "data", "data source KIND[:ROOT][,key=value...] (repeatable; default phantom). Kinds: folder, manifest, lits, covidct, shenzhen, montgomery, phantom")
	groups := fs.String("groups", "", "comma-separated organ/modality groups to train on (default: all)")
	model := fs.String("model", def.Model, "baseline: "+strings.Join(baselines.Names(), ", "))
	mo := addModelOptionFlags(fs)
	latent := fs.Int("latent", 0, "latent width (0: the baseline's default)")
	size := fs.Int("size", def.Preprocess.Size, "network input side in pixels")
	resize := fs.Int("resize", def.Preprocess.Resize, "resize before the centre crop (0: skip)")
	crop := fs.Int("crop", def.Preprocess.Crop, "centre crop before the final resize (0: skip)")
	windowList := fs.String("hu-windows", "", huWindowsUsage)
	augmentOn := fs.Bool("augment", false, "paper augmentations (random crop, rotation, flip except X-rays); off in the authors' code")
	mf := addMADDRFlags(fs)
	iterations := fs.Int("iterations", 0, "optimizer steps (0: the baseline's paper schedule, 16000 for DPA)")
	batch := fs.Int("batch", def.BatchSize, "batch size")
	seed := fs.Uint64("seed", def.Seed, "random seed")
	threads := fs.Int("threads", 0, "libtorch threads (0: all cores)")
	device := fs.String("device", "cpu", "cpu or cuda[:N]")
	every := fs.Int("checkpoint-every", def.CheckpointEvery, "checkpoint interval in iterations")
	clip := fs.Float64("clip-grad-norm", 0, "clip the gradients' joint L2 norm to this value before each update (0: off, as in the papers)")
	workers := fs.Int("workers", 0, "data loading workers (0: all cores)")
	cacheMB := fs.Int64("cache-mb", 1024, "memory for cached preprocessed images (MiB)")
	skipBad := fs.Bool("skip-bad", false, "log and skip unreadable images instead of stopping with their list")
	out := fs.String("out", "", "run directory (required)")
	resume := fs.Bool("resume", false, "continue from the run directory's last checkpoint")
	valEvery := fs.Int("val-every", 0, "evaluate validation AUC per group every N iterations, plus before the first and after the last (0: 5 times evenly spaced plus both ends; -1: never); it does not change the trained weights")
	if err := parseConfigured(fs, args, stdout); err != nil {
		return err
	}
	if *out == "" || fs.NArg() > 0 {
		fmt.Fprintln(stderr, "maddr train: --out DIR is required (and positional arguments are not accepted)")
		return errUsage
	}
	if err := checkDevice(*device); err != nil {
		return err
	}
	var err error
	cfg := def
	cfg.Model, cfg.LatentDim, cfg.Iterations, cfg.BatchSize, cfg.Seed = *model, *latent, *iterations, *batch, *seed
	cfg.Threads, cfg.CheckpointEvery, cfg.Workers, cfg.CacheBytes, cfg.SkipBad = *threads, *every, *workers, *cacheMB<<20, *skipBad
	cfg.Preprocess.Size, cfg.Preprocess.Resize, cfg.Preprocess.Crop = *size, *resize, *crop
	if cfg.Preprocess.HUWindows, err = parseWindows(*windowList); err != nil {
		return err
	}
	cfg.ClipGradNorm = *clip
	if *augmentOn {
		cfg.Augment = augment.Paper()
	}
	if len(data) > 0 {
		cfg.Sources = data
	}
	if *groups != "" {
		cfg.Groups = strings.Split(*groups, ",")
	}
	if cfg.ModelOptions, err = mo.options(); err != nil {
		return err
	}
	planned := cfg.Iterations
	if planned == 0 {
		b, err := baselines.New(cfg.Model, baselines.Options{ImageSize: *size, LatentDim: *latent, Raw: cfg.ModelOptions})
		if err != nil {
			return err
		}
		planned = b.DefaultIterations()
		b.Store().Free()
	}
	cfg.MADDR = mf.config(planned)

	ctx, cancel := signal.NotifyContext(context.Background(), os.Interrupt)
	defer cancel()
	recorded, err := recordedConfig(fs)
	if err != nil {
		return err
	}
	res, err := train.Run(ctx, cfg, *out, train.Options{Resume: *resume, Progress: stderr, Logf: logTo(stderr), ValEvery: *valEvery, RunConfig: recorded})
	if err != nil {
		return err
	}
	fmt.Fprintf(stdout, "trained %s for %d iterations in %.1f s (%.1f images/s)\nmodel: %s\n", cfg.Model, res.Iterations, res.Seconds, res.ImagesPerS, res.ModelPath)
	printCurve(stdout, res)
	for _, n := range res.Notes {
		fmt.Fprintf(stdout, "note: %s\n", n)
	}
	return nil
}

// checkDevice accepts cpu and refuses cuda with a clear reason.
func checkDevice(name string) error {
	dev, err := torch.ParseDevice(name)
	if err != nil {
		return err
	}
	if dev.Kind != torch.KindCPU {
		return fmt.Errorf("--device %s: this build trains on the CPU only; CUDA placement of the networks is not implemented yet", name)
	}
	return nil
}

func logTo(w io.Writer) func(string, ...any) {
	return func(format string, args ...any) { fmt.Fprintf(w, format+"\n", args...) }
}

// printCurve shows the validation AUC measured during training, every
// point when there are few, else the first and the last few.
func printCurve(w io.Writer, res *train.Result) {
	if len(res.Validation) > 0 {
		fmt.Fprintln(w, "validation AUC % during training:")
	}
	const shown = 12
	for i, p := range res.Validation {
		if n := len(res.Validation); n > shown && i >= 2 && i < n-(shown-3) {
			if i == 2 {
				fmt.Fprintf(w, "  ... %d more points in %s\n", n-(shown-1), filepath.Join(res.Dir, train.LogFile))
			}
			continue
		}
		groups := make([]string, 0, len(p.AUC))
		for g := range p.AUC {
			groups = append(groups, g)
		}
		sort.Strings(groups)
		parts := make([]string, len(groups))
		for k, g := range groups {
			parts[k] = fmt.Sprintf("%s %.2f", g, 100*p.AUC[g])
		}
		fmt.Fprintf(w, "  iteration %d: %s\n", p.Iter, strings.Join(parts, ", "))
	}
	if res.CurvePath != "" {
		fmt.Fprintf(w, "learning curve: %s\n", res.CurvePath)
	}
}
