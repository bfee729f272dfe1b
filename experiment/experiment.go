// Package experiment runs the paper's protocols as grids of cells and turns
// the results into tables and reports: Table 1 (each baseline trained per
// data set alone, and once on all data sets with MADDR) and Table 2 (the 12
// ablation rows for one baseline), repeated over seeds.
//
// A cell is one (table, model, variant, data set, seed): one training run
// followed by the evaluation protocol (thresholds chosen on each group's
// validation images, applied to its test images), the latent codes for the
// t-SNE figure and the heat maps of the most and least abnormal test images.
// Each cell writes cell.json last, into its own directory, so an experiment
// can be interrupted and resumed (finished cells are skipped, an interrupted
// one continues from its training checkpoint), split over machines with a
// deterministic shard assignment, and merged afterwards.
package experiment

import (
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"path"
	"slices"
	"sort"
	"strconv"
	"strings"

	"github.com/maddr-project/maddr/baselines"
	"github.com/maddr-project/maddr/dataset"
	"github.com/maddr-project/maddr/maddr"
	"github.com/maddr-project/maddr/metrics"
	"github.com/maddr-project/maddr/preprocess"
	"github.com/maddr-project/maddr/shard"
	"github.com/maddr-project/maddr/train"
)

// Table names an experiment protocol.
type Table string

// The protocols.
const (
	Table1 Table = "table1"
	Table2 Table = "table2"
)

// Table 1 variants of a baseline.
const (
	// VariantSingle trains the baseline alone on one data set (the paper's baseline rows).
	VariantSingle = "single"
	// VariantMixed trains the baseline without MADDR on all data sets at
	// once (Table 2 row 3); it is the fair reference for the t-SNE figure.
	VariantMixed = "mixed"
	// VariantMADDR trains the baseline wrapped by MADDR on all data sets.
	VariantMADDR = "maddr"
)

// DefaultSeeds are the three seeds of a run: the authors' 8499 and two
// neighbours (the paper does not give the other two).
var DefaultSeeds = []uint64{8499, 8500, 8501}

// Settings describe a whole experiment. Everything in them is part of the
// cells' identity except the fields marked as run-time only.
type Settings struct {
	Table   Table          `json:"table"`
	Sources []dataset.Spec `json:"sources"`
	// Models are the baselines (Table 2 takes exactly one).
	Models []string `json:"models"`
	Seeds  []uint64 `json:"seeds"`
	// Iterations per training run (0: the baseline's paper schedule).
	Iterations int               `json:"iterations"`
	BatchSize  int               `json:"batch_size"`
	LatentDim  int               `json:"latent_dim,omitempty"`
	Preprocess preprocess.Config `json:"preprocess"`
	// ModelOptions are each baseline's own JSON settings, by model name.
	ModelOptions map[string]json.RawMessage `json:"model_options,omitempty"`
	// Mixed adds the baseline trained on all data without MADDR to Table 1.
	Mixed bool `json:"mixed"`
	// MADDR is the framework's configuration for Table 1's MADDR variant and
	// the base of Table 2's rows (nil: the paper's, maddr.Paper); the mixup
	// window is always scaled to the schedule.
	MADDR *maddr.Config `json:"maddr,omitempty"`
	// Roles name the groups that play the paper's three data sets in Table 2.
	Roles Roles `json:"roles"`
	// Criterion and Steps choose thresholds on validation (zero: paper).
	Criterion metrics.Criterion `json:"criterion,omitempty"`
	Steps     int               `json:"steps,omitempty"`
	// HeatMaps is the number of most-abnormal and most-normal test images
	// shown per group (0: 3).
	HeatMaps int `json:"heat_maps,omitempty"`
	// LatentPerGroup caps the test images per group whose z_c is kept for
	// the t-SNE figure (0: 100).
	LatentPerGroup int `json:"latent_per_group,omitempty"`
	// Split is the split every cell is scored on: "" or "test" (the
	// paper's protocol), or "val" to compare candidate settings without
	// looking at the test images. Thresholds always come from validation.
	Split string `json:"split,omitempty"`
	// Untrained also scores every cell's network before its first training
	// step (same seed, same calibration): the iteration-0 reference that
	// tells what training added (Result.Untrained).
	Untrained bool `json:"untrained,omitempty"`
	// SkipCells leave planned cells out of the run and the tables: cell IDs
	// or path.Match patterns (t1-dpa-mixed-*), each matching at least one
	// cell. The tables call them not planned (skipped by the user) instead
	// of incomplete. The plan's order and shard assignment stay those of
	// the whole grid, and a cell's identity does not depend on them.
	SkipCells []string `json:"skip_cells,omitempty"`

	// Run-time only.
	Threads         int   `json:"-"`
	Workers         int   `json:"-"`
	CacheBytes      int64 `json:"-"`
	CheckpointEvery int   `json:"-"`
	SkipBad         bool  `json:"-"`
}

// Roles map the paper's data sets to groups of the data at hand.
type Roles struct {
	LiTS     string `json:"lits"`      // liver CT
	LungCT   string `json:"lung_ct"`   // lung CT
	LungXray string `json:"lung_xray"` // lung X-ray
}

// DefaultRoles are the phantom's group names (the real Shenzhen source is
// called lung-xray; pass --roles to use it).
func DefaultRoles() Roles { return Roles{LiTS: "liver-ct", LungCT: "lung-ct", LungXray: "chest-xray"} }

// ParseRoles reads "LITS,LUNGCT,LUNGXRAY" group names.
func ParseRoles(s string) (Roles, error) {
	parts := strings.Split(s, ",")
	if len(parts) != 3 || slices.Contains(parts, "") {
		return Roles{}, fmt.Errorf("roles %q: want three group names LITS,LUNG-CT,LUNG-XRAY (e.g. liver-ct,lung-ct,lung-xray)", s)
	}
	return Roles{LiTS: parts[0], LungCT: parts[1], LungXray: parts[2]}, nil
}

// keyOf names the paper data set a role group plays ("lits", "lung-ct", "lung-xray").
func (r Roles) keyOf(group string) string {
	switch group {
	case r.LiTS:
		return "lits"
	case r.LungCT:
		return "lung-ct"
	case r.LungXray:
		return "lung-xray"
	}
	return ""
}

func (r Roles) list() []string { return []string{r.LiTS, r.LungCT, r.LungXray} }

// Cell is one training run of an experiment and its evaluation.
type Cell struct {
	ID    string `json:"id"`
	Table Table  `json:"table"`
	Model string `json:"model"`
	// Variant is single, mixed or maddr (Table 1) or rNN (Table 2 row NN).
	Variant string `json:"variant"`
	Row     int    `json:"row,omitempty"`
	// Group is set for one-data-set cells (variant single, Table 2 rows 1-2).
	Group string `json:"group,omitempty"`
	// EvalGroups are the groups whose test sets this cell's model is evaluated on.
	EvalGroups []string     `json:"eval_groups"`
	Seed       uint64       `json:"seed"`
	Config     train.Config `json:"config"`
	// Split and Untrained are the settings' (see Settings).
	Split     string `json:"split,omitempty"`
	Untrained bool   `json:"untrained,omitempty"`
}

// SplitVal is Settings.Split's selection mode: cells are scored on validation.
const SplitVal = "val"

// scoredSplit is the split the cell's metrics are measured on.
func (c Cell) scoredSplit() dataset.Split {
	if c.Split == SplitVal {
		return dataset.Val
	}
	return dataset.Test
}

// Hash identifies what a cell computes: its training configuration without
// run-time settings, the groups it is evaluated on and the threshold rule.
// A finished cell whose hash differs from the planned one was run with other
// settings and is never silently reused.
// The split and the iteration-0 scores count only when set, so the cells of
// experiments planned before they existed keep their hashes.
func (c Cell) Hash(sel metrics.SelectOptions) string {
	b, _ := json.Marshal(struct {
		Config    train.Config          `json:"config"`
		Eval      []string              `json:"eval"`
		Select    metrics.SelectOptions `json:"select"`
		Split     string                `json:"split,omitempty"`
		Untrained bool                  `json:"untrained,omitempty"`
	}{identity(c.Config), c.EvalGroups, sel, c.Split, c.Untrained})
	h := sha256.Sum256(b)
	return hex.EncodeToString(h[:8])
}

// identity is cfg without its run-time settings: what the run computes.
func identity(cfg train.Config) train.Config {
	cfg.Threads, cfg.Workers, cfg.CacheBytes, cfg.CheckpointEvery, cfg.SkipBad = 0, 0, 0, 0, false
	return cfg
}

// maddrConfig is the MADDR configuration of the settings.
func (s Settings) maddrConfig() maddr.Config {
	if s.MADDR != nil {
		return *s.MADDR
	}
	return maddr.Paper()
}

// selectOptions is the threshold rule of the settings.
func (s Settings) selectOptions() metrics.SelectOptions {
	return metrics.SelectOptions{Criterion: s.Criterion, Steps: s.Steps}
}

// Ablation is one row of the paper's Table 2.
type Ablation struct {
	Row int `json:"row"`
	// Datasets is "single" (one model per data set), "all", "lits+ct" or "ct+xr".
	Datasets string `json:"datasets"`
	// L_o, L_m, L_c and fd (constraints on slices of z) of the row.
	Organ, Modality, Center, Disentangle bool
	// Latent is 16 for row 1 and 0 (the settings' latent width) elsewhere.
	Latent int `json:"latent"`
}

// Ablations are the 12 rows of Table 2 (METHODS.md section 5). Row 1 uses a
// 16-dim latent (the original DPA); the others use the experiment's latent
// width (the baseline's default unless --latent, 128 for DPA).
var Ablations = []Ablation{
	{Row: 1, Datasets: "single", Latent: 16},
	{Row: 2, Datasets: "single"},
	{Row: 3, Datasets: "all"},
	{Row: 4, Datasets: "lits+ct", Organ: true},
	{Row: 5, Datasets: "lits+ct", Organ: true, Center: true},
	{Row: 6, Datasets: "lits+ct", Organ: true, Center: true, Disentangle: true},
	{Row: 7, Datasets: "ct+xr", Modality: true},
	{Row: 8, Datasets: "ct+xr", Modality: true, Center: true},
	{Row: 9, Datasets: "ct+xr", Modality: true, Center: true, Disentangle: true},
	{Row: 10, Datasets: "all", Organ: true, Modality: true},
	{Row: 11, Datasets: "all", Organ: true, Modality: true, Center: true},
	{Row: 12, Datasets: "all", Organ: true, Modality: true, Center: true, Disentangle: true},
}

// groups are the role groups a row trains on.
func (a Ablation) groups(r Roles) []string {
	switch a.Datasets {
	case "lits+ct":
		return []string{r.LiTS, r.LungCT}
	case "ct+xr":
		return []string{r.LungCT, r.LungXray}
	}
	return r.list()
}

// DatasetsLabel spells the row's data sets as the paper does.
func (a Ablation) DatasetsLabel() string {
	switch a.Datasets {
	case "single":
		return "single (one model per data set)"
	case "lits+ct":
		return "LiTS+CT"
	case "ct+xr":
		return "CT+XR"
	}
	return "LiTS+CT+XR"
}

// config is MADDR's configuration for the row, built on full (the
// settings' MADDR configuration): baseline only for rows 1-3; mixup follows
// the "auto" rule (on iff a constraint is active).
func (a Ablation) config(full maddr.Config, iterations int) maddr.Config {
	if !a.Organ && !a.Modality && !a.Center {
		return maddr.BaselineOnly()
	}
	c := full
	c.Organ, c.Modality, c.Center, c.Disentangle = a.Organ, a.Modality, a.Center, a.Disentangle
	return c.ScaleMixup(iterations)
}

// VariantLabel is the human name of a variant.
func VariantLabel(table Table, model, variant string) string {
	switch variant {
	case VariantSingle:
		return model + " (one model per data set)"
	case VariantMixed:
		return model + " on all data, no MADDR"
	case VariantMADDR:
		return "MADDR + " + model
	}
	if row, err := strconv.Atoi(strings.TrimPrefix(variant, "r")); err == nil && row >= 1 && row <= len(Ablations) {
		a := Ablations[row-1]
		var parts []string
		for _, on := range []struct {
			on   bool
			name string
		}{{a.Organ, "L_o"}, {a.Modality, "L_m"}, {a.Center, "L_c"}, {a.Disentangle, "fd"}} {
			if on.on {
				parts = append(parts, on.name)
			}
		}
		if len(parts) == 0 {
			parts = []string{"no constraint"}
		}
		return fmt.Sprintf("row %d: %s, %s", row, a.DatasetsLabel(), strings.Join(parts, "+"))
	}
	return variant
}

// OrderGroups sorts groups as the paper lists its data sets (liver CT, lung
// CT, lung X-ray), then any others alphabetically.
func OrderGroups(groups []string) []string {
	rank := func(g string) int {
		if p, err := Published(); err == nil {
			for i, d := range p.Datasets {
				if slices.Contains(d.Groups, g) {
					return i
				}
			}
		}
		return 1 << 20
	}
	out := slices.Clone(groups)
	sort.SliceStable(out, func(i, j int) bool {
		ri, rj := rank(out[i]), rank(out[j])
		if ri != rj {
			return ri < rj
		}
		return out[i] < out[j]
	})
	return out
}

// GroupsOf lists the groups that have training, validation and test images.
func GroupsOf(samples []dataset.Sample) []string {
	has := map[string]map[dataset.Split]bool{}
	for _, s := range samples {
		if has[s.Group] == nil {
			has[s.Group] = map[dataset.Split]bool{}
		}
		has[s.Group][s.Split] = true
	}
	var out []string
	for g, sp := range has {
		if sp[dataset.Train] && sp[dataset.Val] && sp[dataset.Test] {
			out = append(out, g)
		}
	}
	return OrderGroups(out)
}

// plannedIterations resolves 0 to the baseline's own schedule length (needed
// to place the mixup window).
func plannedIterations(s Settings, model string) (int, error) {
	if s.Iterations > 0 {
		return s.Iterations, nil
	}
	b, err := baselines.New(model, baselines.Options{ImageSize: s.Preprocess.Size, LatentDim: s.LatentDim, Raw: s.ModelOptions[model]})
	if err != nil {
		return 0, err
	}
	defer b.Store().Free()
	return b.DefaultIterations(), nil
}

// Plan lists the cells of an experiment on data with the given groups, in a
// fixed order: seed by seed, so an interrupted grid has whole seeds first;
// within a seed, model by model and variant by variant. Shards are assigned
// from this order.
func Plan(s Settings, groups []string) ([]Cell, error) {
	if err := checkPlan(s, groups); err != nil {
		return nil, err
	}
	iters := map[string]int{}
	for _, m := range s.Models {
		n, err := plannedIterations(s, m)
		if err != nil {
			return nil, err
		}
		iters[m] = n
	}
	var cells []Cell
	switch s.Table {
	case Table1:
		cells = planTable1(s, groups, iters)
	case Table2:
		var err error
		if cells, err = planTable2(s, groups, iters); err != nil {
			return nil, err
		}
	default:
		return nil, fmt.Errorf("unknown table %q (table1 or table2)", s.Table)
	}
	split := s.Split
	if split == string(dataset.Test) {
		split = "" // the default, spelt out: same cells
	}
	for i := range cells {
		cells[i].Split, cells[i].Untrained = split, s.Untrained
	}
	return cells, nil
}

// Skipped lists the IDs of the planned cells that s.SkipCells leave out,
// in plan order; a pattern that matches no cell is an error (a typo would
// otherwise run the cell it meant to skip).
func (s Settings) Skipped(cells []Cell) ([]string, error) {
	var out []string
	for _, pat := range s.SkipCells {
		if _, err := path.Match(pat, ""); err != nil {
			return nil, fmt.Errorf("skip cells: %q is not a cell ID or pattern: %w", pat, err)
		}
		matched := false
		for _, c := range cells {
			if ok, _ := path.Match(pat, c.ID); ok {
				matched = true
			}
		}
		if !matched {
			ids := make([]string, len(cells))
			for i, c := range cells {
				ids[i] = c.ID
			}
			return nil, fmt.Errorf("skip cells: %q matches no planned cell (the plan: %s)", pat, strings.Join(ids, ", "))
		}
	}
	for _, c := range cells {
		for _, pat := range s.SkipCells {
			if ok, _ := path.Match(pat, c.ID); ok {
				out = append(out, c.ID)
				break
			}
		}
	}
	return out, nil
}

// checkPlan refuses settings no plan can be made from.
func checkPlan(s Settings, groups []string) error {
	if len(s.Seeds) == 0 {
		return fmt.Errorf("no seeds")
	}
	if len(s.Models) == 0 {
		return fmt.Errorf("no model")
	}
	if len(groups) == 0 {
		return fmt.Errorf("the data has no group with train, validation and test images")
	}
	if s.Split != "" && s.Split != string(dataset.Test) && s.Split != SplitVal {
		return fmt.Errorf("split %q: want test or val", s.Split)
	}
	seen := map[uint64]bool{}
	for _, seed := range s.Seeds {
		if seen[seed] {
			return fmt.Errorf("seed %d is listed twice", seed)
		}
		seen[seed] = true
	}
	return nil
}

// cellConfig is the training configuration every cell of model and seed
// starts from; the cell then sets its groups and MADDR switches.
func (s Settings) cellConfig(model string, seed uint64, iters int) train.Config {
	c := train.Defaults(model)
	c.Sources, c.Iterations, c.BatchSize, c.Seed = s.Sources, iters, s.BatchSize, seed
	c.LatentDim, c.Preprocess, c.ModelOptions = s.LatentDim, s.Preprocess, s.ModelOptions[model]
	c.Threads, c.Workers, c.CacheBytes, c.SkipBad = s.Threads, s.Workers, s.CacheBytes, s.SkipBad
	c.CheckpointEvery = s.CheckpointEvery
	if c.CheckpointEvery <= 0 {
		c.CheckpointEvery = max(1, min(1000, iters/5))
	}
	return c
}

// planTable1 lists Table 1's cells: seed by seed, model by model, each group
// alone, then all groups without MADDR (if Mixed), then MADDR on all groups.
func planTable1(s Settings, groups []string, iters map[string]int) []Cell {
	var cells []Cell
	for _, seed := range s.Seeds {
		for _, m := range s.Models {
			for _, g := range groups {
				c := s.cellConfig(m, seed, iters[m])
				c.Groups, c.MADDR = []string{g}, maddr.BaselineOnly()
				cells = append(cells, Cell{ID: fmt.Sprintf("t1-%s-single-%s-s%d", m, g, seed), Table: Table1, Model: m,
					Variant: VariantSingle, Group: g, EvalGroups: []string{g}, Seed: seed, Config: c})
			}
			if s.Mixed {
				c := s.cellConfig(m, seed, iters[m])
				c.Groups, c.MADDR = slices.Clone(groups), maddr.BaselineOnly()
				cells = append(cells, Cell{ID: fmt.Sprintf("t1-%s-mixed-s%d", m, seed), Table: Table1, Model: m,
					Variant: VariantMixed, EvalGroups: slices.Clone(groups), Seed: seed, Config: c})
			}
			c := s.cellConfig(m, seed, iters[m])
			c.Groups, c.MADDR = slices.Clone(groups), s.maddrConfig().ScaleMixup(iters[m])
			cells = append(cells, Cell{ID: fmt.Sprintf("t1-%s-maddr-s%d", m, seed), Table: Table1, Model: m,
				Variant: VariantMADDR, EvalGroups: slices.Clone(groups), Seed: seed, Config: c})
		}
	}
	return cells
}

// planTable2 lists Table 2's cells for its one baseline: seed by seed, the
// ablation rows in order, single-data-set rows once per role group.
func planTable2(s Settings, groups []string, iters map[string]int) ([]Cell, error) {
	if len(s.Models) != 1 {
		return nil, fmt.Errorf("table 2 ablates one baseline, got %d (%s)", len(s.Models), strings.Join(s.Models, ", "))
	}
	for _, g := range s.Roles.list() {
		if !slices.Contains(groups, g) {
			return nil, fmt.Errorf("table 2: role group %q is not in the data (groups with train/val/test images: %s); set the roles",
				g, strings.Join(groups, ", "))
		}
	}
	if s.Roles.LiTS == s.Roles.LungCT || s.Roles.LungCT == s.Roles.LungXray || s.Roles.LiTS == s.Roles.LungXray {
		return nil, fmt.Errorf("table 2: the three roles need three different groups, got %+v", s.Roles)
	}
	m := s.Models[0]
	var cells []Cell
	for _, seed := range s.Seeds {
		for _, a := range Ablations {
			variant := fmt.Sprintf("r%02d", a.Row)
			mk := func() train.Config {
				c := s.cellConfig(m, seed, iters[m])
				if a.Latent > 0 {
					c.LatentDim = a.Latent
				}
				c.MADDR = a.config(s.maddrConfig(), iters[m])
				return c
			}
			if a.Datasets == "single" {
				for _, g := range s.Roles.list() {
					c := mk()
					c.Groups = []string{g}
					cells = append(cells, Cell{ID: fmt.Sprintf("t2-%s-%s-%s-s%d", m, variant, g, seed), Table: Table2, Model: m,
						Variant: variant, Row: a.Row, Group: g, EvalGroups: []string{g}, Seed: seed, Config: c})
				}
				continue
			}
			c := mk()
			c.Groups = a.groups(s.Roles)
			cells = append(cells, Cell{ID: fmt.Sprintf("t2-%s-%s-s%d", m, variant, seed), Table: Table2, Model: m,
				Variant: variant, Row: a.Row, EvalGroups: slices.Clone(c.Groups), Seed: seed, Config: c})
		}
	}
	return cells, nil
}

// Shard selects the cells of one machine: cell k of the plan belongs to
// shard (k mod n) + 1 (see package shard). The zero value is the whole plan.
type Shard = shard.Shard

// ParseShard reads "i/n" with 1 <= i <= n; "" is the whole plan.
func ParseShard(s string) (Shard, error) { return shard.Parse(s) }
