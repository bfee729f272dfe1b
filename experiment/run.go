package experiment

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math"
	"os"
	"path/filepath"
	"runtime"
	"slices"
	"sort"
	"strings"
	"sync"
	"time"

	"github.com/maddr-project/maddr/baselines"
	"github.com/maddr-project/maddr/dataset"
	"github.com/maddr-project/maddr/evaluate"
	"github.com/maddr-project/maddr/metrics"
	"github.com/maddr-project/maddr/modelfile"
	"github.com/maddr-project/maddr/progress"
	"github.com/maddr-project/maddr/torch"
	"github.com/maddr-project/maddr/train"
)

// Options are the parts of a run that do not change what it computes.
type Options struct {
	// Shard restricts the run to one machine's share of the cells.
	Shard Shard
	// Samples, when set, replaces loading Settings.Sources.
	Samples []dataset.Sample
	// Progress receives progress bars (nil: none). Cells run side by side
	// share it through a progress.Board; pass a Board that Logf writes to as
	// well, so that log lines never land inside a bar.
	Progress io.Writer
	// Logf receives notes and one line per cell (nil: discarded).
	Logf func(format string, args ...any)
	// Version is the maddr build recorded in every cell.
	Version string
	// AfterStep is called after every training iteration of every cell
	// (tests use it to interrupt a run).
	AfterStep func(c Cell, iter int, losses baselines.Losses)
	// NoReport skips writing the tables and the report at the end.
	NoReport bool
	// ValEvery is train.Options.ValEvery for every cell: how often the
	// learning curve measures validation AUC. It does not change results.
	ValEvery int
	// RunConfig is the experiment command's configuration (YAML, see
	// package flagconfig), recorded in experiment.json, every cell's
	// cell.json and run directory, and every cell's model file.
	RunConfig string
	// Redo deletes and runs again a cell that was finished, or started,
	// with other settings, instead of refusing the run (the demo, which its
	// users rerun with other flags into the same directory).
	Redo bool
	// Jobs is how many cells train at once in this process (0 or 1: one
	// after another). With more than one, a cell whose Settings.Threads is 0
	// gets the cores divided by Jobs, and OpenBLAS's own pool is held at one
	// thread while the run lasts: a small network's step does not keep two
	// threads busy (an AE step at 32x32 took 0.043 CPU-s on 2 threads and
	// 0.024 on one), so two cells side by side finish sooner than one after
	// the other on both cores. A cell's numbers depend on its thread count
	// at rounding level, as with --threads, not on which cells ran beside it.
	Jobs int
}

// Summary tells what a run did.
type Summary struct {
	Planned int      `json:"planned"`
	Owned   int      `json:"owned"`
	Ran     []string `json:"ran"`
	Skipped []string `json:"skipped"`
	// NotPlanned are the shard's cells left out by Settings.SkipCells.
	NotPlanned []string `json:"not_planned,omitempty"`
	// Outputs are the tables and the report written at the end.
	Outputs []string `json:"outputs"`
}

func (o Options) logf(format string, args ...any) {
	if o.Logf != nil {
		o.Logf(format, args...)
	}
}

// LoadSamples opens every split of the settings' sources.
func LoadSamples(s Settings, logf func(string, ...any)) ([]dataset.Sample, error) {
	return dataset.Open(s.Sources, dataset.Options{SkipBad: s.SkipBad, Logf: logf})
}

// Run plans the experiment on the data, runs every cell of the shard that
// has no finished cell.json in dir (an interrupted one continues from its
// training checkpoint), and then writes the tables and the report of every
// cell finished in dir so far.
func Run(ctx context.Context, s Settings, dir string, o Options) (*Summary, error) {
	samples := o.Samples
	if samples == nil {
		var err error
		if samples, err = LoadSamples(s, o.Logf); err != nil {
			return nil, err
		}
	}
	groups := GroupsOf(samples)
	cells, err := Plan(s, groups)
	if err != nil {
		return nil, err
	}
	skipped, err := s.Skipped(cells)
	if err != nil {
		return nil, err
	}
	if err := os.MkdirAll(filepath.Join(dir, CellsDir), 0o755); err != nil {
		return nil, err
	}
	var ids []string
	for _, c := range cells {
		if !slices.Contains(skipped, c.ID) {
			ids = append(ids, c.ID)
		}
	}
	sum, todo, withoutIter0, err := pendingCells(dir, cells, skipped, s.selectOptions(), o)
	if err != nil {
		return nil, err
	}
	// Written only once the finished cells agree with the settings, so a
	// refused rerun leaves the directory's record as it was.
	if err := writeJSON(filepath.Join(dir, ExperimentFile), Record{Settings: s, Groups: groups, Cells: ids, Skipped: skipped, Version: o.Version,
		Updated: time.Now().UTC(), RunConfig: o.RunConfig}); err != nil {
		return nil, err
	}
	notPlanned := ""
	if len(sum.NotPlanned) > 0 {
		notPlanned = fmt.Sprintf(" (%d more skipped by the user)", len(sum.NotPlanned))
	}
	o.logf("%s: %d cells planned%s, %d in shard %s, %d already finished, %d to run; groups %v",
		s.Table, sum.Planned, notPlanned, sum.Owned, o.Shard, len(sum.Skipped), len(todo), groups)
	if err := ensureStatistic(ctx, s, dir, samples, groups, o); err != nil {
		return sum, err
	}
	for _, r := range withoutIter0 {
		if err := addUntrained(ctx, s, r, samples); err != nil {
			return sum, fmt.Errorf("cell %s: iteration-0 scores: %w", r.ID, err)
		}
		o.logf("cell %s: added its network's scores before training (iteration 0; no training)", r.ID)
	}
	// The baselines repeat the same notes for every cell: show each once.
	var logMu sync.Mutex
	seenNotes := map[string]bool{}
	inner := o.Logf
	o.Logf = func(format string, args ...any) {
		msg := fmt.Sprintf(format, args...)
		logMu.Lock()
		defer logMu.Unlock()
		if strings.HasPrefix(msg, "note: ") {
			if seenNotes[msg] {
				return
			}
			seenNotes[msg] = true
		}
		if inner != nil {
			inner("%s", msg)
		}
	}
	finished := func(label string, c Cell, r *Result) {
		var aucs []string
		for _, g := range r.Results.Groups {
			if g.Test.AUC != nil {
				aucs = append(aucs, fmt.Sprintf("%s AUC %.2f", g.Group, 100**g.Test.AUC))
			}
		}
		o.logf("%s done in %.1f s: %v", label, r.Timings.TotalS, aucs)
	}
	if err := runCells(ctx, s, todo, samples, dir, o, sum, finished); err != nil {
		return sum, err
	}
	if o.NoReport {
		return sum, nil
	}
	sum.Outputs, err = WriteReport(dir, []string{dir}, o.Logf)
	return sum, err
}

// runCells runs the cells, o.Jobs at a time, and records each finished one
// in sum.Ran (in the order they finish). The first failure stops the cells
// not yet started, lets the running ones stop at their next step, and is
// returned.
func runCells(ctx context.Context, s Settings, todo []Cell, samples []dataset.Sample, dir string, o Options, sum *Summary,
	finished func(label string, c Cell, r *Result)) error {
	jobs := min(max(o.Jobs, 1), len(todo))
	if jobs <= 1 {
		for k, c := range todo {
			label := fmt.Sprintf("[%d/%d] %s", k+1, len(todo), c.ID)
			r, err := runCell(ctx, s, c, samples, dir, label, o)
			if err != nil {
				return fmt.Errorf("cell %s: %w", c.ID, err)
			}
			sum.Ran = append(sum.Ran, c.ID)
			finished(label, c, r)
		}
		return nil
	}
	if s.Threads == 0 {
		s.Threads = max(1, runtime.NumCPU()/jobs)
		for k := range todo {
			todo[k].Config.Threads = s.Threads
		}
	}
	if blas := torch.BLASThreads(); blas > 1 {
		torch.SetBLASThreads(1)
		defer torch.SetBLASThreads(blas)
	}
	if o.Progress != nil {
		// The cells' bars share the stream: each gets a line of its own on a
		// terminal, and on a log their lines do not interleave.
		o.Progress = progress.NewBoard(o.Progress)
	}
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	var (
		mu       sync.Mutex
		firstErr error
		wg       sync.WaitGroup
		next     = make(chan int)
	)
	for range jobs {
		wg.Add(1)
		go func() {
			defer wg.Done()
			// Every cell of this worker, its scoring included, runs on one OS
			// thread with the cell's thread count (OpenMP keeps it per thread).
			runtime.LockOSThread()
			defer runtime.UnlockOSThread()
			torch.SetNumThreads(s.Threads)
			for k := range next {
				c := todo[k]
				label := fmt.Sprintf("[%d/%d] %s", k+1, len(todo), c.ID)
				r, err := runCell(ctx, s, c, samples, dir, label, o)
				mu.Lock()
				if err != nil {
					if firstErr == nil {
						firstErr = fmt.Errorf("cell %s: %w", c.ID, err)
						cancel()
					}
				} else {
					sum.Ran = append(sum.Ran, c.ID)
				}
				mu.Unlock()
				if err == nil {
					finished(label, c, r)
				}
			}
		}()
	}
feed:
	for k := range todo {
		select {
		case next <- k:
		case <-ctx.Done():
			break feed
		}
	}
	close(next)
	wg.Wait()
	if firstErr == nil && ctx.Err() != nil {
		// Cancelled from outside: report it as a sequential run would.
		return context.Cause(ctx)
	}
	return firstErr
}

// pendingCells sorts the shard's cells into those finished in dir with the
// same settings (skipped), those finished without the iteration-0 scores the
// settings now ask for (skipped too, and returned to have the scores added)
// and those to run; a cell finished or started with other settings is an
// error, or is deleted to run again with o.Redo. The cells in notPlanned are
// left alone.
func pendingCells(dir string, cells []Cell, notPlanned []string, sel metrics.SelectOptions, o Options) (*Summary, []Cell, []*Result, error) {
	sum := &Summary{Planned: len(cells) - len(notPlanned)}
	var todo []Cell
	var withoutIter0 []*Result
	for i, c := range cells {
		if !o.Shard.OwnsPosition(i) {
			continue
		}
		if slices.Contains(notPlanned, c.ID) {
			sum.NotPlanned = append(sum.NotPlanned, c.ID)
			continue
		}
		sum.Owned++
		cellDir := filepath.Join(dir, CellsDir, c.ID)
		prev, err := readResult(filepath.Join(cellDir, CellFile))
		other := c
		other.Untrained = !c.Untrained
		switch {
		case err == nil && prev.Hash == c.Hash(sel):
			sum.Skipped = append(sum.Skipped, c.ID)
			continue
		case err == nil && prev.Hash == other.Hash(sel):
			// The same training with or without the iteration-0 scores: those
			// cost no training, so they are added when missing and kept when
			// not asked for.
			sum.Skipped = append(sum.Skipped, c.ID)
			if c.Untrained && prev.Untrained == nil {
				withoutIter0 = append(withoutIter0, prev)
			}
			continue
		case o.Redo && (err == nil || startedOtherwise(cellDir, c.Config)):
			o.logf("cell %s was run with other settings: running it again", c.ID)
			if err := os.RemoveAll(cellDir); err != nil {
				return nil, nil, nil, err
			}
		case err == nil:
			return nil, nil, nil, fmt.Errorf("cell %s in %s was finished with other settings (hash %s, now %s): use another output directory, or delete that cell to redo it",
				c.ID, dir, prev.Hash, c.Hash(sel))
		case !errors.Is(err, os.ErrNotExist):
			return nil, nil, nil, err
		}
		todo = append(todo, c)
	}
	return sum, todo, withoutIter0, nil
}

// addUntrained scores the network a finished cell's training started from
// (train.Initial rebuilds it from the cell's seed) and records it in the
// cell, as if the cell had been run with Settings.Untrained.
func addUntrained(ctx context.Context, s Settings, r *Result, samples []dataset.Sample) error {
	start := time.Now()
	c := r.Cell
	c.Untrained = true
	val, scored, err := evaluationSamples(c, samples)
	if err != nil {
		return err
	}
	ev, err := scoreUntrained(ctx, s, c, samples, val, scored)
	if err != nil {
		return err
	}
	r.Cell, r.Untrained, r.Hash = c, ev, c.Hash(s.selectOptions())
	r.Timings.UntrainedS = time.Since(start).Seconds()
	return writeJSON(filepath.Join(r.Dir, CellFile), r)
}

// startedOtherwise reports whether an unfinished cell's training was
// started with another configuration than cfg (its checkpoint cannot be
// resumed).
func startedOtherwise(cellDir string, cfg train.Config) bool {
	b, err := os.ReadFile(filepath.Join(cellDir, train.ConfigFile))
	if err != nil {
		return false
	}
	var started train.Config
	if json.Unmarshal(b, &started) != nil {
		return true
	}
	was, _ := json.Marshal(identity(started))
	now, _ := json.Marshal(identity(cfg))
	return !bytes.Equal(was, now)
}

// runCell trains, evaluates and records one cell.
func runCell(ctx context.Context, s Settings, c Cell, samples []dataset.Sample, dir, label string, o Options) (*Result, error) {
	cellDir := filepath.Join(dir, CellsDir, c.ID)
	started := time.Now()
	val, scored, err := evaluationSamples(c, samples)
	if err != nil {
		return nil, err
	}
	var untrained *Evaluation
	if c.Untrained {
		// Before training, as the network is still in the state it starts from.
		if untrained, err = scoreUntrained(ctx, s, c, samples, val, scored); err != nil {
			return nil, fmt.Errorf("untrained network: %w", err)
		}
	}
	untrainedS := time.Since(started).Seconds()

	trainStart := time.Now()
	topts := train.Options{Resume: true, Samples: samples, Progress: o.Progress, Logf: o.Logf, Label: label, ValEvery: o.ValEvery, RunConfig: o.RunConfig, Version: o.Version}
	if o.AfterStep != nil {
		topts.AfterStep = func(it int, l baselines.Losses) { o.AfterStep(c, it, l) }
	}
	tr, err := train.Run(ctx, c.Config, cellDir, topts)
	if err != nil {
		return nil, err
	}
	trainS := time.Since(trainStart).Seconds()

	evalStart := time.Now()
	m, err := modelfile.Load(tr.ModelPath)
	if err != nil {
		return nil, err
	}
	defer m.Framework.Base.Store().Free()
	rep, ev, ts, err := scoreModel(ctx, s, c, m, val, scored)
	if err != nil {
		return nil, err
	}
	th := rep.Thresholds()
	if err := modelfile.UpdateManifest(tr.ModelPath, func(mf *modelfile.Manifest) error { mf.Thresholds = th; return nil }); err != nil {
		return nil, err
	}
	evalS := time.Since(evalStart).Seconds()

	extrasStart := time.Now()
	heat, err := writeHeatMaps(ctx, m, scored, ts, cellDir, heatCount(s))
	if err != nil {
		return nil, fmt.Errorf("heat maps: %w", err)
	}
	latent := ""
	if len(c.EvalGroups) > 1 {
		if err := writeLatents(ctx, m, scored, filepath.Join(cellDir, LatentFile), latentCount(s)); err != nil {
			return nil, fmt.Errorf("latent codes: %w", err)
		}
		latent = LatentFile
	}
	extrasS := time.Since(extrasStart).Seconds()

	host, _ := os.Hostname()
	r := &Result{
		Cell: c, Hash: c.Hash(s.selectOptions()), Version: o.Version, Host: host, Shard: o.Shard.String(),
		Started: started.UTC(), Finished: time.Now().UTC(),
		Timings: Timings{TrainS: trainS, EvalS: evalS, ExtrasS: extrasS, UntrainedS: untrainedS, TotalS: time.Since(started).Seconds(),
			ImagesPerS: tr.ImagesPerS},
		Iterations: tr.Iterations, LatentDim: m.Framework.Base.LatentDim(), Notes: tr.Notes, Results: ev.Results, Counts: rep.Counts, Scores: ev.Scores,
		HeatMaps: heat, Latent: latent, Dir: cellDir, Validation: tr.Validation, Untrained: untrained,
		RunConfig: o.RunConfig,
	}
	if err := writeJSON(filepath.Join(cellDir, CellFile), r); err != nil {
		return nil, err
	}
	// A finished cell is never resumed, and its checkpoint (weights plus
	// optimizer state) is several times the size of the model file kept.
	for _, f := range []string{train.CheckpointFile, train.CheckpointFile + ".json"} {
		if err := os.Remove(filepath.Join(cellDir, f)); err != nil && !errors.Is(err, os.ErrNotExist) {
			o.logf("warning: %v", err)
		}
	}
	return r, nil
}

// evaluationSamples are the validation images of the cell's groups, which
// choose the thresholds, and the images its metrics are measured on: their
// test images, or the validation images again in selection mode.
func evaluationSamples(c Cell, samples []dataset.Sample) (val, scored []dataset.Sample, err error) {
	split := c.scoredSplit()
	for _, smp := range samples {
		if !slices.Contains(c.EvalGroups, smp.Group) {
			continue
		}
		if smp.Split == dataset.Val {
			val = append(val, smp)
		}
		if smp.Split == split && split != dataset.Val {
			scored = append(scored, smp)
		}
	}
	if split == dataset.Val {
		scored = val
	}
	if len(val) == 0 || len(scored) == 0 {
		return nil, nil, fmt.Errorf("groups %v have %d validation and %d %s images; both are needed", c.EvalGroups, len(val), len(scored), split)
	}
	return val, scored, nil
}

// scoreModel scores the validation images and the scored ones (the same
// images in selection mode, scored once), chooses each group's threshold on
// validation and measures the scored images with it.
func scoreModel(ctx context.Context, s Settings, c Cell, m *modelfile.Model, val, scored []dataset.Sample) (*evaluate.Report, *Evaluation, []float64, error) {
	vs, err := evaluate.ScoreSamples(ctx, m, val, 32, s.SkipBad)
	if err != nil {
		return nil, nil, nil, err
	}
	ts := vs
	if c.scoredSplit() != dataset.Val {
		if ts, err = evaluate.ScoreSamples(ctx, m, scored, 32, s.SkipBad); err != nil {
			return nil, nil, nil, err
		}
	}
	rep, err := evaluate.FromScores(m, val, scored, vs, ts, s.selectOptions())
	if err != nil {
		return nil, nil, nil, err
	}
	if c.scoredSplit() == dataset.Val {
		// FromScores counted the validation images twice, as validation and as scored images.
		for _, byKey := range rep.Counts {
			for k := range byKey {
				byKey[k] /= 2
			}
		}
	}
	return rep, evaluationOf(rep.Results, scored, ts), ts, nil
}

// evaluationOf keeps the metrics of the scored images and their scores (NaN: not scored) by group and label, with
// their IDs.
func evaluationOf(results metrics.GroupedReport, scored []dataset.Sample, ts []float64) *Evaluation {
	ev := &Evaluation{Results: results, Scores: map[string]GroupScores{}}
	for _, gr := range results.Groups {
		ev.Scores[gr.Group] = GroupScores{Threshold: gr.Threshold.Value}
	}
	for i, smp := range scored {
		if math.IsNaN(ts[i]) {
			continue
		}
		gs := ev.Scores[smp.Group]
		if smp.Label == dataset.Abnormal {
			gs.Abnormal, gs.AbnormalIDs = append(gs.Abnormal, ts[i]), append(gs.AbnormalIDs, smp.ID)
		} else {
			gs.Normal, gs.NormalIDs = append(gs.Normal, ts[i]), append(gs.NormalIDs, smp.ID)
		}
		ev.Scores[smp.Group] = gs
	}
	return ev
}

// scoreUntrained scores the network the cell's training starts from.
func scoreUntrained(ctx context.Context, s Settings, c Cell, samples, val, scored []dataset.Sample) (*Evaluation, error) {
	m, err := train.Initial(ctx, c.Config, samples)
	if err != nil {
		return nil, err
	}
	defer m.Framework.Base.Store().Free()
	_, ev, _, err := scoreModel(ctx, s, c, m, val, scored)
	return ev, err
}

func heatCount(s Settings) int {
	if s.HeatMaps > 0 {
		return s.HeatMaps
	}
	return 3
}

func latentCount(s Settings) int {
	if s.LatentPerGroup > 0 {
		return s.LatentPerGroup
	}
	return 100
}

// extremes returns the indices (into test) of a group's k highest and k
// lowest scores, highest first and lowest first.
func extremes(test []dataset.Sample, scores []float64, group string, k int) (top, bottom []int) {
	var idx []int
	for i, s := range test {
		if s.Group == group && !math.IsNaN(scores[i]) {
			idx = append(idx, i)
		}
	}
	sort.SliceStable(idx, func(a, b int) bool { return scores[idx[a]] > scores[idx[b]] })
	k = min(k, len(idx)/2)
	top = slices.Clone(idx[:k])
	for j := 0; j < k; j++ {
		bottom = append(bottom, idx[len(idx)-1-j])
	}
	return top, bottom
}
