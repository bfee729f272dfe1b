package experiment

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"sort"
	"time"

	"github.com/maddr-project/maddr/atomicfile"
	"github.com/maddr-project/maddr/metrics"
	"github.com/maddr-project/maddr/shard"
	"github.com/maddr-project/maddr/train"
)

// File and directory names inside an experiment directory.
const (
	CellsDir       = "cells"
	CellFile       = "cell.json"
	ExperimentFile = "experiment.json"
	LatentFile     = "latent.safetensors"
	ReportFile     = "report.html"
	PlotsDir       = "plots"
)

// Result is what a finished cell records in cell.json.
type Result struct {
	Cell
	Hash    string `json:"hash"`
	Version string `json:"version"`
	Host    string `json:"host"`
	Shard   string `json:"shard"`

	Started  time.Time `json:"started"`
	Finished time.Time `json:"finished"`
	Timings  Timings   `json:"timings"`

	Iterations int `json:"iterations"`
	// LatentDim is the width of the trained model's z.
	LatentDim int      `json:"latent_dim"`
	Notes     []string `json:"notes,omitempty"`
	// Results holds the per-group test metrics at the validation-chosen thresholds.
	Results metrics.GroupedReport     `json:"results"`
	Counts  map[string]map[string]int `json:"counts"`
	// Scores are the test scores per group, for ROC curves and histograms.
	Scores map[string]GroupScores `json:"scores"`
	// HeatMaps lists, per group, the heat-map montage and the images on it.
	HeatMaps map[string]HeatMap `json:"heat_maps,omitempty"`
	// Latent is the file holding z_c of some test images ("" when not kept).
	Latent string `json:"latent,omitempty"`
	// Validation is the learning curve's validation AUC per group, measured
	// during training on the validation split of the training groups.
	Validation []train.Validation `json:"validation,omitempty"`
	// RunConfig is the configuration of the command that ran the cell
	// (YAML that --config reads).
	RunConfig string `json:"run_config,omitempty"`
	// Untrained is the network before training scored the same way, when
	// the settings ask for it (Settings.Untrained).
	Untrained *Evaluation `json:"untrained,omitempty"`

	// Dir is where the cell was read from (not stored).
	Dir string `json:"-"`
}

// Timings are wall-clock seconds of a cell's parts.
type Timings struct {
	TrainS  float64 `json:"train_s"`
	EvalS   float64 `json:"eval_s"`
	ExtrasS float64 `json:"extras_s"`
	// UntrainedS is the scoring of the network before training.
	UntrainedS float64 `json:"untrained_s,omitempty"`
	TotalS     float64 `json:"total_s"`
	ImagesPerS float64 `json:"train_images_per_s"`
}

// GroupScores are the raw test scores of one group, split by true label.
type GroupScores struct {
	Normal    []float64 `json:"normal"`
	Abnormal  []float64 `json:"abnormal"`
	Threshold float64   `json:"threshold"`
	// NormalIDs and AbnormalIDs are the sample IDs of the scores, in the
	// same order, so per-image facts the data knows (a phantom's lesion
	// sizes, say) can be joined with the scores afterwards.
	NormalIDs   []string `json:"normal_ids,omitempty"`
	AbnormalIDs []string `json:"abnormal_ids,omitempty"`
}

// Evaluation is one model's metrics and scores on a cell's groups.
type Evaluation struct {
	Results metrics.GroupedReport  `json:"results"`
	Scores  map[string]GroupScores `json:"scores"`
}

// HeatMap describes one montage: the most abnormal test images on top, the
// most normal below.
type HeatMap struct {
	File     string `json:"file"`
	Abnormal []Pick `json:"most_abnormal"`
	Normal   []Pick `json:"most_normal"`
}

// Pick is one image on a heat-map montage.
type Pick struct {
	ID    string  `json:"id"`
	Where string  `json:"where"`
	Score float64 `json:"score"`
	// Abnormal is the true label.
	Abnormal bool `json:"abnormal"`
}

// Group returns the test report of a group.
func (r *Result) Group(g string) (metrics.GroupResult, bool) { return groupOf(r.Results, g) }

// readResult reads a cell.json.
func readResult(path string) (*Result, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	var r Result
	if err := json.Unmarshal(b, &r); err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	r.Dir = filepath.Dir(path)
	return &r, nil
}

func writeJSON(path string, v any) error {
	b, err := json.MarshalIndent(v, "", "  ")
	if err != nil {
		return fmt.Errorf("%s: %w", path, err)
	}
	return atomicfile.Write(path, func(w io.Writer) error {
		_, err := w.Write(append(b, '\n'))
		return err
	})
}

// Record is experiment.json: the settings and the planned cells, so merge
// and later runs know what the grid is.
type Record struct {
	Settings Settings `json:"settings"`
	Groups   []string `json:"groups"`
	Cells    []string `json:"cells"`
	// Skipped are the cells of the grid left out of the plan by
	// Settings.SkipCells.
	Skipped []string  `json:"skipped_cells,omitempty"`
	Version string    `json:"version"`
	Updated time.Time `json:"updated"`
	// RunConfig is the configuration of the command that last ran the
	// experiment (YAML that --config reads).
	RunConfig string `json:"run_config,omitempty"`
}

func readRecord(dir string) (*Record, error) {
	b, err := os.ReadFile(filepath.Join(dir, ExperimentFile))
	if err != nil {
		if errors.Is(err, os.ErrNotExist) {
			return nil, fmt.Errorf("%s is not an experiment directory (no %s)", dir, ExperimentFile)
		}
		return nil, err
	}
	var r Record
	if err := json.Unmarshal(b, &r); err != nil {
		return nil, fmt.Errorf("%s: %w", filepath.Join(dir, ExperimentFile), err)
	}
	return &r, nil
}

// LoadResults reads every finished cell under the experiment directories.
// A cell found in several directories (a shard run twice) is taken once,
// from the first directory; conflicting copies are reported in notes.
func LoadResults(dirs ...string) (results []*Result, notes []string, err error) {
	var outputs [][]*Result
	for _, dir := range dirs {
		paths, err := filepath.Glob(filepath.Join(dir, CellsDir, "*", CellFile))
		if err != nil {
			return nil, nil, err
		}
		sort.Strings(paths)
		var cells []*Result
		for _, p := range paths {
			r, err := readResult(p)
			if err != nil {
				return nil, nil, err
			}
			cells = append(cells, r)
		}
		outputs = append(outputs, cells)
	}
	results, err = shard.Union(outputs, func(r *Result) string { return r.ID }, func(first, later *Result) error {
		if first.Hash != later.Hash {
			notes = append(notes, fmt.Sprintf("cell %s exists in %s and %s with different settings (hash %s vs %s); kept the first",
				later.ID, first.Dir, later.Dir, first.Hash, later.Hash))
		}
		return nil
	})
	return results, notes, err
}
