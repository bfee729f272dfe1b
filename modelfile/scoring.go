package modelfile

import (
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math"
	"os"
	"slices"
	"sort"
	"strings"

	"github.com/maddr-project/maddr/dataset"
)

// GroupPair is the organ and modality an organ/modality group stands for.
type GroupPair struct {
	Organ    string `json:"organ"`
	Modality string `json:"modality"`
}

// GroupPairs lists, for every group of samples, its organ and modality.
// Training records it in Manifest.GroupPairs so that routing by the heads
// finds groups whose name is not simply organ-modality (the phantom's
// "chest-xray" is lung + xray).
func GroupPairs(samples []dataset.Sample) map[string]GroupPair {
	out := map[string]GroupPair{}
	for _, s := range samples {
		if _, ok := out[s.Group]; !ok {
			out[s.Group] = GroupPair{Organ: s.Organ, Modality: s.Modality}
		}
	}
	return out
}

// ThresholdPrecisions lists, sorted and without repeats, the precisions the
// thresholds were chosen in (see Threshold.Precision); empty without
// thresholds.
func (m Manifest) ThresholdPrecisions() []string {
	var out []string
	for _, t := range m.Thresholds {
		if p := RecordedPrecision(t.Precision); !slices.Contains(out, p) {
			out = append(out, p)
		}
	}
	slices.Sort(out)
	return out
}

// Normalise maps a raw score to 0..1 with 0.5 at the threshold (a logistic
// curve whose width is the group's normal spread). Without a usable scale
// it degenerates to a step: 0 below the threshold, 1 at or above it.
func (t Threshold) Normalise(raw float64) float64 {
	if !(t.Scale > 0) || math.IsInf(t.Scale, 0) {
		if raw >= t.Value {
			return 1
		}
		return 0
	}
	return 1 / (1 + math.Exp(-(raw-t.Value)/t.Scale))
}

// Abnormal applies the decision rule.
func (t Threshold) Abnormal(raw float64) bool { return raw >= t.Value }

// TrainedGroups are the groups the model's weights were trained on: the
// groups a run was restricted to, else every group of its vocabulary.
func (m Manifest) TrainedGroups() []string {
	var t struct {
		Groups []string `json:"groups"`
	}
	if len(m.Training) > 0 && json.Unmarshal(m.Training, &t) == nil && len(t.Groups) > 0 {
		return append([]string(nil), t.Groups...)
	}
	return append([]string(nil), m.Vocabs.Group...)
}

// PairOf returns the organ and modality of group: as recorded at training,
// else read from a name of the form organ-modality whose parts are in the
// vocabularies, else from the built-in phantom's groups.
func (m Manifest) PairOf(group string) (GroupPair, bool) {
	if p, ok := m.GroupPairs[group]; ok {
		return p, true
	}
	if organ, modality, ok := strings.Cut(group, "-"); ok {
		_, okO := dataset.Vocab(m.Vocabs.Organ).Index(organ)
		_, okM := dataset.Vocab(m.Vocabs.Modality).Index(modality)
		if okO && okM {
			return GroupPair{Organ: organ, Modality: modality}, true
		}
	}
	if organ, modality, ok := dataset.PhantomGroupPair(group); ok {
		return GroupPair{Organ: organ, Modality: modality}, true
	}
	return GroupPair{}, false
}

// GroupOf returns the trained group of an organ and modality, if the model
// has one.
func (m Manifest) GroupOf(organ, modality string) (string, bool) {
	for _, g := range m.TrainedGroups() {
		if p, ok := m.PairOf(g); ok && p.Organ == organ && p.Modality == modality {
			return g, true
		}
	}
	return "", false
}

// Validate checks that the manifest describes something scoring can use, so
// a damaged or hand-edited file fails when it is loaded, with the reason,
// rather than producing wrong scores later.
func (m Manifest) Validate() error {
	var errs []error
	if m.Model == "" {
		errs = append(errs, errors.New("no baseline named"))
	}
	if err := m.Preprocess.Validate(); err != nil {
		errs = append(errs, err)
	}
	// Bounds on what Load will build, checked before building it: a damaged or
	// hostile manifest must not make the loader allocate gigabytes.
	if m.ImageSize < 0 || m.ImageSize > 2048 {
		errs = append(errs, fmt.Errorf("image size %d outside 0..2048", m.ImageSize))
	}
	if m.LatentDim < 0 || m.LatentDim > 8192 {
		errs = append(errs, fmt.Errorf("latent width %d outside 0..8192", m.LatentDim))
	}
	if m.ImageSize != 0 && m.Preprocess.Size != 0 && m.ImageSize != m.Preprocess.Size {
		errs = append(errs, fmt.Errorf("network input %d px but preprocessing produces %d px", m.ImageSize, m.Preprocess.Size))
	}
	check := func(kind string, v []string) {
		seen := map[string]bool{}
		for _, n := range v {
			if n == "" || seen[n] {
				errs = append(errs, fmt.Errorf("%s vocabulary %v has an empty or repeated name", kind, v))
				return
			}
			seen[n] = true
		}
	}
	check("organ", m.Vocabs.Organ)
	check("modality", m.Vocabs.Modality)
	check("group", m.Vocabs.Group)
	groups := make([]string, 0, len(m.Thresholds))
	for g := range m.Thresholds {
		groups = append(groups, g)
	}
	sort.Strings(groups)
	for _, g := range groups {
		t := m.Thresholds[g]
		if math.IsNaN(t.Value) || math.IsInf(t.Value, 0) {
			errs = append(errs, fmt.Errorf("threshold of group %q is %v", g, t.Value))
		}
		if !(t.Scale > 0) || math.IsInf(t.Scale, 0) {
			errs = append(errs, fmt.Errorf("score scale of group %q is %v (must be positive)", g, t.Scale))
		}
	}
	if len(errs) > 0 {
		return fmt.Errorf("invalid model manifest: %w", errors.Join(errs...))
	}
	return nil
}

// Digest is the SHA-256 of the model file at path, in hex. Score outputs
// record it so that shards scored by different models are never merged.
func Digest(path string) (string, error) {
	f, err := os.Open(path)
	if err != nil {
		return "", fmt.Errorf("hashing model file: %w", err)
	}
	defer f.Close()
	h := sha256.New()
	if _, err := io.Copy(h, f); err != nil {
		return "", fmt.Errorf("hashing model file %s: %w", path, err)
	}
	return hex.EncodeToString(h.Sum(nil)), nil
}
