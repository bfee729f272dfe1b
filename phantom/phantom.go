// Package phantom generates maddr's built-in dataset: synthetic liver CT slices, lung CT slices and chest
// X-rays with and without anomalies, split like the paper's three datasets. Nothing is downloaded; a seed
// reproduces every image bit for bit. See README.md in this directory for the anatomy, the anomalies, the
// Difficulty scale and the split counts.
package phantom

import (
	"fmt"
	"hash/fnv"
	"math"
	"math/rand/v2"
	"runtime"
	"slices"
	"sync"

	"github.com/maddr-project/maddr/medimg"
)

// Config selects what to generate. Zero Size, Scale and Groups mean the defaults (128, 1, all groups);
// Difficulty 0 is a valid value (the most obvious anomalies), so start from DefaultConfig.
type Config struct {
	Seed       uint64   `json:"seed"`
	Scale      float64  `json:"scale"`      // multiplies every split count (rounded, at least 1 per non-empty split)
	Difficulty float64  `json:"difficulty"` // 0 = obvious anomalies .. 1 = barely visible
	Size       int      `json:"size"`       // native image side in pixels
	Groups     []string `json:"groups,omitempty"`
}

// DefaultConfig is the paper-sized dataset at moderate difficulty.
func DefaultConfig() Config {
	return Config{Seed: 8499, Scale: 1, Difficulty: 0.5, Size: DefaultSize}
}

// DefaultSize is the native side length: large enough for the resize-256 / crop-224 / resize-64 pipeline to
// exercise real resampling, small enough to keep the default set (1878 images) at about 120 MB.
const DefaultSize = 128

// Case is one generated image with its labels.
type Case struct {
	Image    medimg.Image
	Organ    string // "liver" or "lung"
	Modality string // "ct" or "xray"
	Split    string // "train", "val" or "test"
	Abnormal bool
	ID       string // unique and stable: group/split/normal|abnormal/index
	Group    string
	// Lesions lists the anomalies drawn into an abnormal case, in drawing order (empty for a normal one), so
	// reports can say which sizes and strengths a detector finds.
	Lesions []Lesion
}

// Lesion is the size and strength one anomaly was drawn with.
type Lesion struct {
	// RadiusPx is the longer semi-axis of the lesion's outline (before its irregularity) in pixels of the
	// native image; multiply by (network side) / (native side seen after cropping) for the network input.
	RadiusPx float64 `json:"radius_px"`
	// Contrast is the intended intensity change at the lesion's core, in ContrastUnit(group): HU for the CT
	// groups (liver: |tumour - liver|; lung: the ground-glass rise, which the drawing caps at soft-tissue
	// density), added attenuation for the chest X-ray (ribs add about 0.14-0.22).
	Contrast float64 `json:"contrast"`
}

// Largest returns the lesion with the largest radius (the zero Lesion when there is none).
func Largest(lesions []Lesion) Lesion {
	var best Lesion
	for _, l := range lesions {
		if l.RadiusPx > best.RadiusPx {
			best = l
		}
	}
	return best
}

// ContrastUnit names the unit of Lesion.Contrast for a group.
func ContrastUnit(group string) string {
	if g, ok := lookup(group); ok && g.Modality == "ct" {
		return "HU"
	}
	return "attenuation"
}

// GroupInfo describes one organ/modality group and its paper split sizes.
type GroupInfo struct {
	Name     string
	Organ    string
	Modality string
	Paper    string // the paper dataset it stands in for
	// Counts per split and label at Scale 1 (the paper's).
	TrainNormal, ValNormal, ValAbnormal, TestNormal, TestAbnormal int
}

var groups = []GroupInfo{
	{"liver-ct", "liver", "ct", "LiTS", 186, 192, 105, 164, 249},
	{"lung-ct", "lung", "ct", "COVID-CT", 234, 58, 60, 105, 98},
	{"chest-xray", "lung", "xray", "Shenzhen", 228, 33, 34, 65, 67},
}

// Groups lists the available groups in their canonical order.
func Groups() []GroupInfo { return slices.Clone(groups) }

// Spec identifies one case; rendering depends only on it and the Config's Seed, Difficulty and Size.
type Spec struct {
	Group    string
	Split    string
	Abnormal bool
	Index    int // position among the cases of the same group, split and label
}

// ID is the stable name of the case.
func (s Spec) ID() string {
	label := "normal"
	if s.Abnormal {
		label = "abnormal"
	}
	return fmt.Sprintf("%s/%s/%s/%04d", s.Group, s.Split, label, s.Index)
}

func (cfg Config) normalised() (Config, error) {
	if cfg.Size == 0 {
		cfg.Size = DefaultSize
	}
	if cfg.Scale == 0 {
		cfg.Scale = 1
	}
	if cfg.Size < 32 || cfg.Size > 2048 {
		return cfg, fmt.Errorf("phantom: size %d outside 32..2048", cfg.Size)
	}
	if !(cfg.Scale > 0) || math.IsInf(cfg.Scale, 0) {
		return cfg, fmt.Errorf("phantom: scale %g must be positive", cfg.Scale)
	}
	if !(cfg.Difficulty >= 0 && cfg.Difficulty <= 1) {
		return cfg, fmt.Errorf("phantom: difficulty %g outside [0, 1]", cfg.Difficulty)
	}
	if len(cfg.Groups) == 0 {
		for _, g := range groups {
			cfg.Groups = append(cfg.Groups, g.Name)
		}
	}
	for _, name := range cfg.Groups {
		if _, ok := lookup(name); !ok {
			return cfg, fmt.Errorf("phantom: unknown group %q (have liver-ct, lung-ct, chest-xray)", name)
		}
	}
	return cfg, nil
}

func lookup(name string) (GroupInfo, bool) {
	for _, g := range groups {
		if g.Name == name {
			return g, true
		}
	}
	return GroupInfo{}, false
}

func scaled(n int, s float64) int {
	if n == 0 {
		return 0
	}
	return max(1, int(math.Round(float64(n)*s)))
}

// Plan lists the cases cfg describes, group by group in the order of cfg.Groups, then train, val, test,
// normal before abnormal. A smaller Scale gives a prefix of each split and label of a larger one.
func Plan(cfg Config) ([]Spec, error) {
	cfg, err := cfg.normalised()
	if err != nil {
		return nil, err
	}
	var specs []Spec
	for _, name := range cfg.Groups {
		g, _ := lookup(name)
		for _, part := range []struct {
			split    string
			abnormal bool
			n        int
		}{
			{"train", false, g.TrainNormal},
			{"val", false, g.ValNormal}, {"val", true, g.ValAbnormal},
			{"test", false, g.TestNormal}, {"test", true, g.TestAbnormal},
		} {
			for i := range scaled(part.n, cfg.Scale) {
				specs = append(specs, Spec{Group: name, Split: part.split, Abnormal: part.abnormal, Index: i})
			}
		}
	}
	return specs, nil
}

// Render draws one case. The random stream is seeded from (Seed, group, split, label, index) only.
func Render(cfg Config, s Spec) (Case, error) { return render(cfg, s, false) }

// render can hide the anomalies of an abnormal case, leaving everything else identical; tests use it to
// measure exactly what an anomaly changes.
func render(cfg Config, s Spec, hideAnomaly bool) (Case, error) {
	cfg, err := cfg.normalised()
	if err != nil {
		return Case{}, err
	}
	g, ok := lookup(s.Group)
	if !ok {
		return Case{}, fmt.Errorf("phantom: unknown group %q", s.Group)
	}
	h := fnv.New64a()
	fmt.Fprintf(h, "%s\x00%s\x00%t\x00%d", s.Group, s.Split, s.Abnormal, s.Index)
	rng := rand.New(rand.NewPCG(cfg.Seed, h.Sum64()))
	var img medimg.Image
	var lesions []Lesion
	switch s.Group {
	case "liver-ct":
		img, lesions = liverCT(rng, cfg.Size, s.Abnormal, hideAnomaly, cfg.Difficulty)
	case "lung-ct":
		img, lesions = lungCT(rng, cfg.Size, s.Abnormal, hideAnomaly, cfg.Difficulty)
	case "chest-xray":
		img, lesions = chestXray(rng, cfg.Size, s.Abnormal, hideAnomaly, cfg.Difficulty)
	}
	img.Source = "phantom:" + s.ID()
	return Case{Image: img, Organ: g.Organ, Modality: g.Modality, Split: s.Split, Abnormal: s.Abnormal, ID: s.ID(), Group: g.Name, Lesions: lesions}, nil
}

// Generate renders every case of cfg in memory, in Plan order, with one worker per CPU.
func Generate(cfg Config) ([]Case, error) {
	return generate(cfg, runtime.NumCPU())
}

func generate(cfg Config, workers int) ([]Case, error) {
	specs, err := Plan(cfg)
	if err != nil {
		return nil, err
	}
	cases := make([]Case, len(specs))
	errs := make([]error, len(specs))
	next := make(chan int)
	var wg sync.WaitGroup
	for range max(1, workers) {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range next {
				cases[i], errs[i] = Render(cfg, specs[i])
			}
		}()
	}
	for i := range specs {
		next <- i
	}
	close(next)
	wg.Wait()
	for _, err := range errs {
		if err != nil {
			return nil, err
		}
	}
	return cases, nil
}

// ctImage wraps a HU canvas as a CT image: whole HU as CT stores them (int16), clipped to the scanner range.
func ctImage(pix []float64, n int) medimg.Image {
	out := make([]float32, len(pix))
	for i, v := range pix {
		out[i] = float32(math.Round(math.Min(3071, math.Max(-1024, v))))
	}
	return medimg.Image{Width: n, Height: n, Pix: out, Kind: medimg.KindHU, Lo: -1024, Hi: 3071, Modality: "CT"}
}
