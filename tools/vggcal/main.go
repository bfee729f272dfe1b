// Command vggcal measures DPA's random-VGG calibration variants
// (docs/vgg-calibration.md): it trains DPA alone once per variant and seed on
// the same data and schedule, scores the validation split only (choices are
// never made on test) and writes each group's validation AUC.
//
//	go run ./tools/vggcal --data phantom,difficulty=0.1,scale=0.5 --out /tmp/vggcal
//	go run ./tools/vggcal --real testdata/real/mricron/ch2.nii.gz --size 64 --out /tmp/vggcal
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
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/maddr-project/maddr/atomicfile"
	_ "github.com/maddr-project/maddr/baselines/all"
	"github.com/maddr-project/maddr/dataset"
	"github.com/maddr-project/maddr/evaluate"
	"github.com/maddr-project/maddr/metrics"
	"github.com/maddr-project/maddr/modelfile"
	"github.com/maddr-project/maddr/torch"
	"github.com/maddr-project/maddr/train"
)

// variant is one random-VGG calibration: an initialisation and a feature normalisation.
type variant struct {
	Name string `json:"name"`
	Init string `json:"vgg_init"`
	Norm string `json:"vgg_norm"`
}

var variants = []variant{
	{"imagenet-pytorch-init", "pytorch-default", "imagenet"},
	{"imagenet-torchvision-init", "torchvision", "imagenet"},
	{"train-mean-std", "pytorch-default", "train-mean-std"},
	{"train-rms", "pytorch-default", "train-rms"},
	{"train-mean-std-torchvision-init", "torchvision", "train-mean-std"},
	{"train-rms-torchvision-init", "torchvision", "train-rms"},
}

// result is one trained variant's validation AUC per group.
type result struct {
	Variant    variant            `json:"variant"`
	Seed       uint64             `json:"seed"`
	Iterations int                `json:"iterations"`
	BatchSize  int                `json:"batch_size"`
	Size       int                `json:"size"`
	Data       string             `json:"data"`
	TrainS     float64            `json:"train_seconds"`
	ScoreS     float64            `json:"score_seconds"`
	ValAUC     map[string]float64 `json:"val_auc"`
	MeanAUC    float64            `json:"mean_val_auc"`
	FinalLoss  map[string]float64 `json:"final_losses"`
	Notes      []string           `json:"notes"`
	ValNormal  map[string]int     `json:"val_normal"`
	ValAbnorml map[string]int     `json:"val_abnormal"`
}

func main() {
	data := flag.String("data", "phantom,difficulty=0.1,scale=0.5", "data source (dataset spec)")
	names := flag.String("variants", "", "comma-separated variant names (default: all)")
	seeds := flag.String("seeds", "8499", "comma-separated seeds")
	iterations := flag.Int("iterations", 300, "training iterations per run")
	batch := flag.Int("batch", 32, "batch size")
	size := flag.Int("size", 64, "network input side")
	threads := flag.Int("threads", 0, "libtorch threads (0: all cores)")
	out := flag.String("out", "", "output directory (required)")
	volume := flag.String("real", "", "instead of training: the training-free real-image check on this brain MRI volume (see real.go)")
	slices := flag.String("slices", "40-140", "axial slice range of --real")
	reference := flag.Bool("reference", false, "instead of training: score --data's validation split by the distance to the mean training image")
	flag.Parse()
	if *out == "" {
		fmt.Fprintln(os.Stderr, "vggcal: --out is required")
		os.Exit(2)
	}
	if *reference {
		if err := runReference(*data, *size, *out); err != nil {
			fmt.Fprintln(os.Stderr, "vggcal:", err)
			os.Exit(1)
		}
		return
	}
	if *volume != "" {
		var first, last int
		if _, err := fmt.Sscanf(*slices, "%d-%d", &first, &last); err != nil || first < 0 || last < first {
			fmt.Fprintf(os.Stderr, "vggcal: --slices %q is not FIRST-LAST\n", *slices)
			os.Exit(2)
		}
		seed, err := strconv.ParseUint(strings.Split(*seeds, ",")[0], 10, 64)
		if err == nil {
			torch.SetNumThreads(*threads)
			err = runReal(*volume, first, last, *size, seed, *out)
		}
		if err != nil {
			fmt.Fprintln(os.Stderr, "vggcal:", err)
			os.Exit(1)
		}
		return
	}
	if err := run(*data, *names, *seeds, *iterations, *batch, *size, *threads, *out); err != nil {
		fmt.Fprintln(os.Stderr, "vggcal:", err)
		os.Exit(1)
	}
}

func run(data, names, seedList string, iterations, batch, size, threads int, out string) error {
	spec, err := dataset.ParseSpec(data)
	if err != nil {
		return err
	}
	var chosen []variant
	for _, v := range variants {
		if names == "" || contains(strings.Split(names, ","), v.Name) {
			chosen = append(chosen, v)
		}
	}
	if len(chosen) == 0 {
		return fmt.Errorf("no variant matches %q", names)
	}
	var seeds []uint64
	for _, s := range strings.Split(seedList, ",") {
		v, err := strconv.ParseUint(strings.TrimSpace(s), 10, 64)
		if err != nil {
			return fmt.Errorf("--seeds: %w", err)
		}
		seeds = append(seeds, v)
	}
	ctx, cancel := signal.NotifyContext(context.Background(), os.Interrupt)
	defer cancel()
	all, err := dataset.Open([]dataset.Spec{spec}, dataset.Options{})
	if err != nil {
		return err
	}
	val := dataset.Filter(all, dataset.Val)
	logf := func(format string, args ...any) { fmt.Fprintf(os.Stderr, format+"\n", args...) }
	for _, seed := range seeds {
		for _, v := range chosen {
			dir := filepath.Join(out, fmt.Sprintf("%s-seed%d", v.Name, seed))
			if _, err := os.Stat(filepath.Join(dir, "valauc.json")); err == nil {
				logf("%s: done before, skipped", dir)
				continue
			}
			cfg := train.Defaults("dpa")
			cfg.Sources = []dataset.Spec{spec}
			cfg.Preprocess.Size = size
			cfg.Iterations, cfg.BatchSize, cfg.Seed, cfg.Threads = iterations, batch, seed, threads
			cfg.CheckpointEvery = iterations + 1
			cfg.MADDR.Organ, cfg.MADDR.Modality, cfg.MADDR.Center = false, false, false
			cfg.MADDR = cfg.MADDR.ScaleMixup(iterations)
			cfg.ModelOptions, _ = json.Marshal(map[string]any{"vgg_random_init": true, "vgg_init": v.Init, "vgg_norm": v.Norm})
			t0 := time.Now()
			res, err := train.Run(ctx, cfg, dir, train.Options{Samples: all, Logf: logf, Progress: os.Stderr, Label: v.Name})
			if err != nil {
				return fmt.Errorf("%s seed %d: %w", v.Name, seed, err)
			}
			trainS := time.Since(t0).Seconds()
			m, err := modelfile.Load(res.ModelPath)
			if err != nil {
				return err
			}
			t1 := time.Now()
			scores, err := evaluate.ScoreSamples(ctx, m, val, 32, false)
			if err != nil {
				return err
			}
			r := result{Variant: v, Seed: seed, Iterations: iterations, BatchSize: batch, Size: size, Data: spec.String(),
				TrainS: trainS, ScoreS: time.Since(t1).Seconds(), ValAUC: map[string]float64{}, FinalLoss: res.Final,
				Notes: m.Manifest.Notes, ValNormal: map[string]int{}, ValAbnorml: map[string]int{}}
			byGroup := map[string]struct {
				s []float64
				l []bool
			}{}
			for i, s := range val {
				g := byGroup[s.Group]
				g.s = append(g.s, scores[i])
				g.l = append(g.l, s.Label == dataset.Abnormal)
				byGroup[s.Group] = g
				if s.Label == dataset.Abnormal {
					r.ValAbnorml[s.Group]++
				} else {
					r.ValNormal[s.Group]++
				}
			}
			groups := make([]string, 0, len(byGroup))
			for g := range byGroup {
				groups = append(groups, g)
			}
			sort.Strings(groups)
			line := fmt.Sprintf("%-32s seed %d", v.Name, seed)
			for _, g := range groups {
				auc, err := metrics.AUC(byGroup[g].s, byGroup[g].l)
				if err != nil {
					return fmt.Errorf("%s: %w", g, err)
				}
				r.ValAUC[g] = auc
				r.MeanAUC += auc / float64(len(groups))
				line += fmt.Sprintf("  %s %.1f", g, 100*auc)
			}
			line += fmt.Sprintf("  mean %.1f  train %.0fs", 100*r.MeanAUC, trainS)
			fmt.Println(line)
			js, _ := json.MarshalIndent(r, "", "  ")
			if err := atomicfile.Write(filepath.Join(dir, "valauc.json"), func(w io.Writer) error {
				_, err := w.Write(append(js, '\n'))
				return err
			}); err != nil {
				return err
			}
		}
	}
	return nil
}

func contains(list []string, s string) bool {
	for _, x := range list {
		if strings.TrimSpace(x) == s {
			return true
		}
	}
	return false
}
