// Package modelfile reads and writes maddr's portable model file: one
// safetensors file whose tensors are the trained weights (baseline networks,
// MADDR heads, and any frozen network the score needs) and whose metadata is
// a versioned JSON manifest with everything else scoring needs: the baseline
// and its options, the MADDR configuration, the preprocessing, the organ and
// modality vocabularies, and the per-group thresholds and score scales.
//
// Keeping preprocessing and thresholds inside the file is what makes a score
// computed at deployment equal the score computed at evaluation.
package modelfile

import (
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"strings"
	"time"

	"github.com/maddr-project/maddr/baselines"
	"github.com/maddr-project/maddr/dataset"
	"github.com/maddr-project/maddr/maddr"
	"github.com/maddr-project/maddr/nn"
	"github.com/maddr-project/maddr/preprocess"
	"github.com/maddr-project/maddr/safetensors"
	"github.com/maddr-project/maddr/torch"
)

// FormatVersion is the manifest layout this build writes and the newest it reads.
const FormatVersion = 1

// Kind marks a maddr model file among other safetensors files.
const Kind = "maddr-model"

// metadataKey holds the manifest JSON in the safetensors metadata.
const metadataKey = "maddr.model"

// frozenPrefix names the tensors of a baseline's frozen networks in the file.
const frozenPrefix = "frozen."

// Threshold is the decision rule of one organ/modality group.
type Threshold struct {
	// Value: an image is abnormal iff its raw score >= Value.
	Value float64 `json:"value"`
	// Method says how Value was chosen ("grid" on validation F1, or
	// "normal_percentile" when validation had no abnormal images).
	Method string `json:"method"`
	Reason string `json:"reason,omitempty"`
	// Scale maps raw scores to 0..1 with 0.5 at the threshold:
	// normalised = 1 / (1 + exp(-(raw - Value) / Scale)).
	Scale float64 `json:"scale"`
	// Precision is the arithmetic of the validation scores Value was chosen
	// on ("fp32" or "bf16"); files written before it was recorded chose
	// theirs in fp32, the only default eval had then.
	Precision string `json:"precision,omitempty"`
}

// Manifest is the JSON stored inside a model file.
type Manifest struct {
	Format  int       `json:"format"`
	Kind    string    `json:"kind"`
	Created time.Time `json:"created"`
	// Version is the maddr build that wrote the file.
	Version string `json:"version"`

	Model          string          `json:"model"`
	ImageSize      int             `json:"image_size"`
	LatentDim      int             `json:"latent_dim"`
	Seed           uint64          `json:"seed"`
	Iterations     int             `json:"iterations"`
	ModelOptions   json.RawMessage `json:"model_options,omitempty"`
	BaselineConfig json.RawMessage `json:"baseline_config,omitempty"`

	MADDR      maddr.Config      `json:"maddr"`
	Classes    maddr.Classes     `json:"classes"`
	Vocabs     dataset.Vocabs    `json:"vocabs"`
	Preprocess preprocess.Config `json:"preprocess"`

	// Thresholds by group name (e.g. "liver-ct"); empty until evaluated.
	Thresholds map[string]Threshold `json:"thresholds,omitempty"`
	// GroupPairs gives each group's organ and modality (see PairOf); older
	// files lack it.
	GroupPairs map[string]GroupPair `json:"group_pairs,omitempty"`
	// Notes are remarks every report must repeat (e.g. random VGG weights).
	Notes []string `json:"notes,omitempty"`
	// Training records where the weights came from.
	Training json.RawMessage `json:"training,omitempty"`
	// RunConfig is the configuration of the command that trained the model
	// (every flag's value, as YAML that --config reads); older files and
	// models trained through the library lack it.
	RunConfig string `json:"run_config,omitempty"`
}

// Options rebuilds the baseline options recorded in m.
func (m Manifest) Options() baselines.Options {
	return baselines.Options{ImageSize: m.ImageSize, LatentDim: m.LatentDim, Seed: m.Seed, Iterations: m.Iterations, Raw: m.ModelOptions}
}

// Model is a loaded model: the baseline wrapped by MADDR, with its manifest.
type Model struct {
	Manifest  Manifest
	Framework *maddr.Framework
	Path      string
	// Precision is the arithmetic Score uses (zero value: Float32); it is
	// a choice of the process scoring, never stored in the file.
	Precision torch.DType
}

// Save writes the framework's weights and the manifest to path atomically.
func Save(path string, fw *maddr.Framework, m Manifest) error {
	m.Format, m.Kind = FormatVersion, Kind
	if m.Created.IsZero() {
		m.Created = time.Now().UTC()
	}
	m.Model = fw.Base.Name()
	m.LatentDim = fw.Base.LatentDim()
	m.MADDR, m.Classes = fw.Config, fw.Classes
	cfg, err := json.Marshal(fw.Base.Config())
	if err != nil {
		return fmt.Errorf("saving %s: %w", path, err)
	}
	m.BaselineConfig = cfg
	m.Notes = fw.Notes()
	named := map[string]*torch.Tensor{}
	for _, p := range fw.Base.Store().All() {
		named[p.Name] = p.T
	}
	if fz, ok := fw.Base.(baselines.FrozenNetworks); ok {
		for _, p := range fz.Frozen().All() {
			named[frozenPrefix+p.Name] = p.T
		}
	}
	f, err := nn.TensorsToFile(named)
	if err != nil {
		return fmt.Errorf("saving %s: %w", path, err)
	}
	js, err := json.MarshalIndent(m, "", "  ")
	if err != nil {
		return fmt.Errorf("saving %s: %w", path, err)
	}
	f.Metadata[metadataKey] = string(js)
	return safetensors.WriteFile(path, f)
}

// ReadManifest reads only what a model file says about itself.
func ReadManifest(path string) (Manifest, safetensors.File, error) {
	f, err := safetensors.ReadFile(path)
	if err != nil {
		if errors.Is(err, os.ErrNotExist) {
			return Manifest{}, f, fmt.Errorf("model file %s does not exist", path)
		}
		return Manifest{}, f, fmt.Errorf("reading model file: %w", err)
	}
	raw, ok := f.Metadata[metadataKey]
	if !ok {
		return Manifest{}, f, fmt.Errorf("%s is a safetensors file but not a maddr model (no %q metadata); "+
			"checkpoints are turned into models by 'maddr train', which writes model.safetensors", path, metadataKey)
	}
	var m Manifest
	if err := json.Unmarshal([]byte(raw), &m); err != nil {
		return m, f, fmt.Errorf("%s: corrupt model manifest: %w", path, err)
	}
	if m.Kind != Kind {
		return m, f, fmt.Errorf("%s: not a maddr model (kind %q)", path, m.Kind)
	}
	if m.Format > FormatVersion {
		return m, f, fmt.Errorf("%s was written by a newer maddr (model format %d; this build reads up to %d): upgrade maddr", path, m.Format, FormatVersion)
	}
	if m.Format < 1 {
		return m, f, fmt.Errorf("%s: invalid model format %d", path, m.Format)
	}
	if err := m.Validate(); err != nil {
		return m, f, fmt.Errorf("%s: %w", path, err)
	}
	return m, f, nil
}

// Load reads a model file and rebuilds the network it describes. The
// baseline's package must be linked in (import baselines/all).
func Load(path string) (*Model, error) {
	m, f, err := ReadManifest(path)
	if err != nil {
		return nil, err
	}
	opts := m.Options()
	opts.FrozenFromModelFile = hasPrefix(f, frozenPrefix)
	base, err := baselines.New(m.Model, opts)
	if err != nil {
		return nil, fmt.Errorf("%s: rebuilding %s: %w", path, m.Model, err)
	}
	loaded := false
	defer func() {
		// A file that fails half-way must not leave its network allocated
		// (a long-running server sees many bad uploads of model files).
		if !loaded {
			base.Store().Free()
			if fz, ok := base.(baselines.FrozenNetworks); ok {
				fz.Frozen().Free()
			}
		}
	}()
	fw, err := maddr.New(base, m.MADDR, m.Classes, m.Seed)
	if err != nil {
		return nil, fmt.Errorf("%s: rebuilding MADDR: %w", path, err)
	}
	ck := &nn.Checkpoint{Path: path, File: f}
	if err := ck.LoadInto(base.Store(), frozenPrefix); err != nil {
		return nil, err
	}
	if fz, ok := base.(baselines.FrozenNetworks); ok && opts.FrozenFromModelFile {
		frozen := &nn.Checkpoint{Path: path, File: safetensors.File{Tensors: map[string]safetensors.Tensor{}}}
		for name, t := range f.Tensors {
			if rest, ok := strings.CutPrefix(name, frozenPrefix); ok {
				frozen.File.Tensors[rest] = t
			}
		}
		if err := frozen.LoadInto(fz.Frozen()); err != nil {
			return nil, fmt.Errorf("frozen network: %w", err)
		}
	}
	loaded = true
	return &Model{Manifest: m, Framework: fw, Path: path}, nil
}

func hasPrefix(f safetensors.File, prefix string) bool {
	for name := range f.Tensors {
		if strings.HasPrefix(name, prefix) {
			return true
		}
	}
	return false
}

// UpdateManifest rewrites the manifest of the model at path (for example
// to add thresholds after evaluation), keeping its weights, atomically.
func UpdateManifest(path string, update func(*Manifest) error) error {
	m, f, err := ReadManifest(path)
	if err != nil {
		return err
	}
	if err := update(&m); err != nil {
		return err
	}
	js, err := json.MarshalIndent(m, "", "  ")
	if err != nil {
		return err
	}
	f.Metadata[metadataKey] = string(js)
	return safetensors.WriteFile(path, f)
}
