package main

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"path/filepath"

	"github.com/maddr-project/maddr/dataset"
	"github.com/maddr-project/maddr/experiment"
	"github.com/maddr-project/maddr/modelfile"
	"github.com/maddr-project/maddr/phantom"
	"github.com/maddr-project/maddr/report"
	"github.com/maddr-project/maddr/train"
	"github.com/maddr-project/maddr/version"
)

// The demo's trained rows are the cells of an experiment: Table 1 for one baseline (each group alone, the mixed
// variant, MADDR), each cell also scored before training, run by the same runner as `maddr experiment`. This file
// builds that experiment from the demo's settings and turns its cells back into the demo's rows.

// demoData is the generated phantom data of one demo run.
type demoData struct {
	phantom phantom.Config
	samples []dataset.Sample
	// groups are in the order the phantom generates them, the order of the demo's tables.
	groups  []string
	lesions map[string]caseLesion
}

func generateDemoData(st demoSettings) (*demoData, error) {
	pc := phantom.DefaultConfig()
	pc.Seed, pc.Scale, pc.Difficulty = st.DataSeed, st.Scale, st.Difficulty
	cases, err := phantom.Generate(pc)
	if err != nil {
		return nil, err
	}
	samples, _, err := dataset.PhantomSamples(cases, dataset.AllSplits)
	if err != nil {
		return nil, err
	}
	return &demoData{phantom: pc, samples: samples, groups: groupsOf(samples), lesions: lesionsByID(cases, st.Preprocess, pc.Size)}, nil
}

// reported is the split the demo reports; thresholds always come from validation.
func (d *demoData) reported(st demoSettings) dataset.Split {
	if st.Split == experiment.SplitVal {
		return dataset.Val
	}
	return dataset.Test
}

// demoExperiment is the experiment behind the demo's trained and iteration-0 rows.
func demoExperiment(st demoSettings) experiment.Settings {
	seed, difficulty := st.DataSeed, st.Difficulty
	mc := demoMADDR()
	return experiment.Settings{
		Table: experiment.Table1,
		// The demo generates the same phantom itself (it needs the lesions); the source records it in every cell,
		// so a rerun on other data never reuses a cell.
		Sources:      []dataset.Spec{{Kind: "phantom", Seed: &seed, Scale: st.Scale, Difficulty: &difficulty}},
		Models:       []string{st.Model},
		Seeds:        st.Seeds,
		Iterations:   st.Iterations,
		BatchSize:    st.Batch,
		Preprocess:   st.Preprocess,
		ModelOptions: map[string]json.RawMessage{st.Model: st.ModelOptions},
		Mixed:        true,
		MADDR:        &mc,
		Split:        st.Split,
		Untrained:    true,
		Threads:      st.Threads,
	}
}

// runDemoCells runs (or resumes) the demo's experiment in out and returns its cells in plan order and its
// training-free statistic.
func runDemoCells(ctx context.Context, st demoSettings, data *demoData, out string, stderr io.Writer) ([]*experiment.Result, *experiment.Statistic, error) {
	s := demoExperiment(st)
	o := experiment.Options{Samples: data.samples, Progress: stderr, Logf: logTo(stderr), Version: version.String(), NoReport: true, Redo: true, Jobs: st.Jobs}
	if _, err := experiment.Run(ctx, s, out, o); err != nil {
		return nil, nil, err
	}
	groups := experiment.GroupsOf(data.samples)
	plan, err := experiment.Plan(s, groups)
	if err != nil {
		return nil, nil, err
	}
	stat, err := experiment.LoadStatistic(s, groups, out)
	if err != nil {
		return nil, nil, err
	}
	// The directory may also hold cells of earlier runs with other seeds: only the planned ones count.
	results, _, err := experiment.LoadResults(out)
	if err != nil {
		return nil, nil, err
	}
	byID := map[string]*experiment.Result{}
	for _, r := range results {
		byID[r.ID] = r
	}
	cells := make([]*experiment.Result, 0, len(plan))
	for _, c := range plan {
		r, ok := byID[c.ID]
		if !ok {
			return nil, nil, fmt.Errorf("cell %s: not finished in %s", c.ID, out)
		}
		cells = append(cells, r)
	}
	return cells, stat, nil
}

// statisticRuns are the demo's statistic rows, one per group in the demo's order (its per-image scores grouped by
// label: neither the bootstrap, which resamples within each class, nor the sensitivity tables depend on that order).
func statisticRuns(stat *experiment.Statistic, groups []string) ([]demoRun, error) {
	if stat == nil {
		return nil, fmt.Errorf("the experiment runner computed no training-free statistic")
	}
	all, err := runsOfEvaluation(stat.Evaluation, rowStatistic, 0, 0)
	if err != nil {
		return nil, fmt.Errorf("mean-image statistic, %w", err)
	}
	var runs []demoRun
	for _, g := range groups {
		for _, r := range all {
			if r.Group == g {
				runs = append(runs, r)
			}
		}
	}
	return runs, nil
}

// demoRowOf names the demo's row of each Table 1 variant; "-iter0" is appended for the network before training.
var demoRowOf = map[string]string{experiment.VariantSingle: rowBase, experiment.VariantMixed: rowBaseAll, experiment.VariantMADDR: rowMADDR}

// runsOfCells are the demo's per-group rows of the cells: each trained model and, before it, its iteration-0 network.
func runsOfCells(cells []*experiment.Result) ([]demoRun, error) {
	var runs []demoRun
	for _, c := range cells {
		row, ok := demoRowOf[c.Variant]
		if !ok {
			return nil, fmt.Errorf("cell %s: variant %q is not one of the demo's rows", c.ID, c.Variant)
		}
		if c.Untrained != nil {
			rs, err := runsOfEvaluation(*c.Untrained, row+iter0Suffix, c.Seed, 0)
			if err != nil {
				return nil, fmt.Errorf("cell %s before training: %w", c.ID, err)
			}
			runs = append(runs, rs...)
		}
		rs, err := runsOfEvaluation(experiment.Evaluation{Results: c.Results, Scores: c.Scores}, row, c.Seed, c.Timings.TrainS)
		if err != nil {
			return nil, fmt.Errorf("cell %s: %w", c.ID, err)
		}
		runs = append(runs, rs...)
	}
	return runs, nil
}

// runsOfEvaluation turns one model's evaluation into a run per group; the per-image scores keep their IDs for the
// sensitivity tables (normal images first: the tables do not depend on the order).
func runsOfEvaluation(ev experiment.Evaluation, method string, seed uint64, seconds float64) ([]demoRun, error) {
	var runs []demoRun
	for _, gr := range ev.Results.Groups {
		if gr.Test.AUC == nil {
			return nil, fmt.Errorf("group %s: no AUC: %s", gr.Group, gr.Test.Note)
		}
		sc := ev.Scores[gr.Group]
		r := demoRun{Method: method, Group: gr.Group, Seed: seed, AUC: *gr.Test.AUC, Accuracy: gr.Test.Accuracy, MacroF1: gr.Test.MacroF1,
			Threshold: gr.Threshold.Value, Seconds: seconds}
		if len(sc.NormalIDs) != len(sc.Normal) || len(sc.AbnormalIDs) != len(sc.Abnormal) {
			return nil, fmt.Errorf("group %s: the cell's scores carry no image IDs (written by an older maddr?)", gr.Group)
		}
		r.IDs = append(append(r.IDs, sc.NormalIDs...), sc.AbnormalIDs...)
		r.Scores = append(append(r.Scores, sc.Normal...), sc.Abnormal...)
		for i := range r.IDs {
			r.Abnormal = append(r.Abnormal, i >= len(sc.Normal))
		}
		runs = append(runs, r)
	}
	return runs, nil
}

// demoMontage draws one heat-map row per group from the first seed's model trained on that group alone.
func demoMontage(ctx context.Context, st demoSettings, data *demoData, cells []*experiment.Result) ([][]report.Tile, []string, error) {
	var rows [][]report.Tile
	var titles []string
	for _, g := range data.groups {
		for _, c := range cells {
			if c.Variant != experiment.VariantSingle || c.Cell.Group != g || c.Seed != st.Seeds[0] {
				continue
			}
			m, err := modelfile.Load(filepath.Join(c.Dir, train.ModelFile))
			if err != nil {
				return nil, nil, err
			}
			row, err := heatmapRow(ctx, m, experiment.SplitOf(data.samples, g, data.reported(st)), data.lesions)
			m.Framework.Base.Store().Free()
			if err != nil {
				return nil, nil, fmt.Errorf("cell %s: heat maps: %w", c.ID, err)
			}
			rows = append(rows, row)
			titles = append(titles, fmt.Sprintf("%s, %s seed %d: image | error map (3 abnormal: largest, median, smallest lesion; 2 normal)", g, st.Model, c.Seed))
		}
	}
	return rows, titles, nil
}
