package experiment

import (
	"bytes"
	"context"
	"encoding/csv"
	"encoding/json"
	"errors"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"

	"github.com/maddr-project/maddr/baselines"
	"github.com/maddr-project/maddr/dataset"
	"github.com/maddr-project/maddr/phantom"
	"github.com/maddr-project/maddr/torch"
	"github.com/maddr-project/maddr/train"
)

// tinySamples is the phantom at 5% of the paper's split sizes: about 11
// training images per group, enough for batches of 4.
func tinySamples(t *testing.T) []dataset.Sample {
	t.Helper()
	pc := phantom.DefaultConfig()
	pc.Scale = 0.05
	cases, err := phantom.Generate(pc)
	if err != nil {
		t.Fatal(err)
	}
	s, _, err := dataset.PhantomSamples(cases, dataset.AllSplits)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

func tinySettings(table Table) Settings {
	s := planSettings(table)
	s.Seeds = []uint64{1}
	s.Iterations = 3
	s.Threads = 2
	s.LatentPerGroup = 12
	s.HeatMaps = 2
	return s
}

func finishedIDs(t *testing.T, dir string) []string {
	t.Helper()
	rs, _, err := LoadResults(dir)
	if err != nil {
		t.Fatal(err)
	}
	var ids []string
	for _, r := range rs {
		ids = append(ids, r.ID)
	}
	slices.Sort(ids)
	return ids
}

func TestTable1RunResumeShardMerge(t *testing.T) {
	samples := tinySamples(t)
	s := tinySettings(Table1)
	ctx := context.Background()

	full := t.TempDir()
	sum, err := Run(ctx, s, full, Options{Samples: samples, Version: "test"})
	if err != nil {
		t.Fatal(err)
	}
	if sum.Planned != 5 || len(sum.Ran) != 5 || len(sum.Skipped) != 0 {
		t.Fatalf("first run: %+v", sum)
	}
	all := finishedIDs(t, full)
	checkOutputs(t, full, Table1, 5)

	// A finished cell keeps its model, drops its checkpoint and records what it was.
	r, err := readResult(filepath.Join(full, CellsDir, "t1-ae-maddr-s1", CellFile))
	if err != nil {
		t.Fatal(err)
	}
	if r.Version != "test" || r.Seed != 1 || r.Timings.TrainS <= 0 || r.Config.Model != "ae" || r.Latent == "" || len(r.HeatMaps) != 3 ||
		len(r.Results.Groups) != 3 || len(r.Scores["liver-ct"].Abnormal) == 0 {
		t.Errorf("maddr cell record incomplete: %+v", r)
	}
	if _, err := os.Stat(filepath.Join(r.Dir, "model.safetensors")); err != nil {
		t.Error(err)
	}
	// Its learning curve runs from the untrained model to the last iteration, over every group it trained on.
	if v := r.Validation; len(v) < 2 || v[0].Iter != 0 || v[len(v)-1].Iter != r.Iterations || len(v[len(v)-1].AUC) != 3 {
		t.Errorf("maddr cell learning curve: %+v", v)
	}
	if _, err := os.Stat(filepath.Join(r.Dir, train.CurveFile)); err != nil {
		t.Error(err)
	}
	if _, err := os.Stat(filepath.Join(r.Dir, "checkpoint.safetensors")); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("checkpoint of a finished cell still there: %v", err)
	}

	// Resume: only the cell whose record is gone runs again.
	if err := os.Remove(filepath.Join(full, CellsDir, "t1-ae-mixed-s1", CellFile)); err != nil {
		t.Fatal(err)
	}
	sum, err = Run(ctx, s, full, Options{Samples: samples, NoReport: true})
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(sum.Ran, []string{"t1-ae-mixed-s1"}) || len(sum.Skipped) != 4 {
		t.Errorf("resume ran %v, skipped %v; want only the deleted cell", sum.Ran, sum.Skipped)
	}

	// Changed settings never reuse a finished cell silently.
	changed := s
	changed.Iterations = 4
	if _, err := Run(ctx, changed, full, Options{Samples: samples, NoReport: true}); err == nil || !strings.Contains(err.Error(), "other settings") {
		t.Errorf("rerun with other settings: err = %v", err)
	}

	// Two shards in separate directories, the first interrupted mid-cell and
	// resumed, then merged: the same cells as the unsharded run.
	a, b := t.TempDir(), t.TempDir()
	ctxA, cancel := context.WithCancel(ctx)
	interrupted := ""
	stop := func(c Cell, it int, _ baselines.Losses) {
		if c.ID != "t1-ae-single-liver-ct-s1" && it == 2 && interrupted == "" {
			interrupted = c.ID
			cancel()
		}
	}
	_, err = Run(ctxA, s, a, Options{Samples: samples, Shard: Shard{Index: 1, Count: 2}, AfterStep: stop, NoReport: true})
	if err == nil || !errors.Is(err, context.Canceled) {
		t.Fatalf("interrupted shard: err = %v", err)
	}
	sum, err = Run(ctx, s, a, Options{Samples: samples, Shard: Shard{Index: 1, Count: 2}, NoReport: true})
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Contains(sum.Ran, interrupted) || len(sum.Skipped) == 0 {
		t.Errorf("resumed shard ran %v, skipped %v; want the interrupted %s run and the cell before it skipped", sum.Ran, sum.Skipped, interrupted)
	}
	if _, err := Run(ctx, s, b, Options{Samples: samples, Shard: Shard{Index: 2, Count: 2}, NoReport: true}); err != nil {
		t.Fatal(err)
	}
	ia, ib := finishedIDs(t, a), finishedIDs(t, b)
	for _, id := range ia {
		if slices.Contains(ib, id) {
			t.Errorf("cell %s ran in both shards", id)
		}
	}
	union := append(slices.Clone(ia), ib...)
	slices.Sort(union)
	if !slices.Equal(union, all) {
		t.Errorf("shards ran %v + %v, unsharded %v", ia, ib, all)
	}
	merged := t.TempDir()
	if _, err := Merge(merged, []string{a, b}, nil); err != nil {
		t.Fatal(err)
	}
	checkOutputs(t, merged, Table1, 5)

	// A shard alone reports itself as incomplete.
	if _, err := WriteReport(a, []string{a}, nil); err != nil {
		t.Fatal(err)
	}
	md, _ := os.ReadFile(filepath.Join(a, "table1.md"))
	if !strings.Contains(string(md), "INCOMPLETE") {
		t.Error("a single shard's table must say it is incomplete")
	}
}

// checkOutputs verifies the tables and the self-contained report.
func checkOutputs(t *testing.T, dir string, table Table, cells int) {
	t.Helper()
	name := string(table)
	var doc Doc
	b, err := os.ReadFile(filepath.Join(dir, name+".json"))
	if err != nil {
		t.Fatal(err)
	}
	if err := json.Unmarshal(b, &doc); err != nil {
		t.Fatal(err)
	}
	if doc.Finished != cells || doc.Planned != cells || !doc.Phantom {
		t.Errorf("%s: %d of %d cells finished (want %d), phantom %v", name, doc.Finished, doc.Planned, cells, doc.Phantom)
	}
	for _, r := range doc.Rows {
		for _, g := range doc.Groups {
			m := r.Groups[g]
			if table == Table2 && !slices.Contains(r.Ablation.groups(doc.Settings.Roles), g) {
				continue
			}
			if m.AUC.N != 1 || m.AUC.Mean < 0 || m.AUC.Mean > 100 || m.ACC.N != 1 {
				t.Errorf("%s row %q, %s: %+v", name, r.Label, g, m)
			}
		}
	}
	md, err := os.ReadFile(filepath.Join(dir, name+".md"))
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(string(md), "NOT comparable") || !strings.Contains(string(md), "| ") {
		t.Errorf("%s.md lacks the table or the phantom warning:\n%s", name, md)
	}
	f, err := os.Open(filepath.Join(dir, name+".csv"))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	recs, err := csv.NewReader(f).ReadAll()
	if err != nil || len(recs) < 2 {
		t.Errorf("%s.csv: %d records, %v", name, len(recs), err)
	}
	html, err := os.ReadFile(filepath.Join(dir, ReportFile))
	if err != nil {
		t.Fatal(err)
	}
	page := string(html)
	for _, want := range []string{"<table>", "ROC curves", "t-SNE of z_c", "Heat maps", "Learning curves", "NOT comparable"} {
		if !strings.Contains(page, want) {
			t.Errorf("report lacks %q", want)
		}
	}
	if n := strings.Count(page, `src="data:image/png;base64,`); n < 8 {
		t.Errorf("report embeds %d images, want ROC, histograms, heat maps, t-SNE and losses", n)
	}
	if strings.Contains(page, `src="http`) || strings.Contains(page, `src="/`) || strings.Contains(page, "<link") {
		t.Error("report refers to outside files")
	}
	pngs, _ := filepath.Glob(filepath.Join(dir, PlotsDir, "*.png"))
	for _, prefix := range []string{"roc-", "hist-", "heat-", "tsne-", "curve-"} {
		found := false
		for _, p := range pngs {
			found = found || strings.HasPrefix(filepath.Base(p), prefix)
		}
		if !found {
			t.Errorf("no %s*.png in %s", prefix, filepath.Join(dir, PlotsDir))
		}
	}
}

func TestTable2Run(t *testing.T) {
	if testing.Short() {
		t.Skip("trains 16 small models")
	}
	s := tinySettings(Table2)
	s.Iterations = 2
	s.Mixed = false
	dir := t.TempDir()
	sum, err := Run(context.Background(), s, dir, Options{Samples: tinySamples(t)})
	if err != nil {
		t.Fatal(err)
	}
	if len(sum.Ran) != 16 {
		t.Fatalf("ran %d cells, want 16", len(sum.Ran))
	}
	checkOutputs(t, dir, Table2, 16)
	md, _ := os.ReadFile(filepath.Join(dir, "table2.md"))
	for _, want := range []string{"| 1 | single (one model per data set) | - | - | - | - | 16 |", "| 12 | LiTS+CT+XR | y | y | y | y | 128 |"} {
		if !strings.Contains(string(md), want) {
			t.Errorf("table2.md lacks %q:\n%s", want, md)
		}
	}
}

// TestRunUntrainedSelectionRedo runs cells that are also scored before training, on the validation split, then
// reruns them with other settings: Redo runs them again where a plain run refuses.
func TestRunUntrainedSelectionRedo(t *testing.T) {
	samples := tinySamples(t)
	s := tinySettings(Table1)
	s.Mixed, s.Untrained, s.Split = false, true, SplitVal
	ctx := context.Background()
	dir := t.TempDir()
	if _, err := Run(ctx, s, dir, Options{Samples: samples, NoReport: true}); err != nil {
		t.Fatal(err)
	}
	valCount := map[string]map[string]int{}
	for _, smp := range samples {
		if smp.Split == dataset.Val {
			if valCount[smp.Group] == nil {
				valCount[smp.Group] = map[string]int{}
			}
			valCount[smp.Group][smp.Label.String()]++
		}
	}
	rs, _, err := LoadResults(dir)
	if err != nil {
		t.Fatal(err)
	}
	if len(rs) != 4 {
		t.Fatalf("%d cells, want 4", len(rs))
	}
	for _, r := range rs {
		if r.Untrained == nil || len(r.Untrained.Results.Groups) != len(r.EvalGroups) || len(r.Results.Groups) != len(r.EvalGroups) {
			t.Fatalf("%s: untrained %+v, groups %d", r.ID, r.Untrained, len(r.Results.Groups))
		}
		for _, ev := range []Evaluation{*r.Untrained, {Results: r.Results, Scores: r.Scores}} {
			for _, g := range r.EvalGroups {
				sc := ev.Scores[g]
				// Selection mode scores the validation images, each once, and keeps their IDs.
				if len(sc.Normal) != valCount[g]["normal"] || len(sc.Abnormal) != valCount[g]["abnormal"] ||
					len(sc.NormalIDs) != len(sc.Normal) || len(sc.AbnormalIDs) != len(sc.Abnormal) {
					t.Errorf("%s, %s: %d+%d scores, %d+%d IDs; want the %v validation images", r.ID, g, len(sc.Normal), len(sc.Abnormal),
						len(sc.NormalIDs), len(sc.AbnormalIDs), valCount[g])
				}
			}
		}
		for g, byKey := range r.Counts {
			if byKey["val/normal"] != valCount[g]["normal"] {
				t.Errorf("%s, %s: counts %v, want %d normal validation images", r.ID, g, byKey, valCount[g]["normal"])
			}
		}
	}
	untrainedRun := rs[0].Untrained.Scores

	changed := s
	changed.Iterations = 4
	if _, err := Run(ctx, changed, dir, Options{Samples: samples, NoReport: true}); err == nil || !strings.Contains(err.Error(), "other settings") {
		t.Errorf("rerun with other settings and no Redo: err = %v", err)
	}
	sum, err := Run(ctx, changed, dir, Options{Samples: samples, NoReport: true, Redo: true})
	if err != nil {
		t.Fatal(err)
	}
	if len(sum.Ran) != 4 {
		t.Errorf("Redo ran %v, want all 4 cells", sum.Ran)
	}
	again, err := readResult(filepath.Join(dir, CellsDir, rs[0].ID, CellFile))
	if err != nil {
		t.Fatal(err)
	}
	if again.Iterations != 4 {
		t.Errorf("redone cell trained %d iterations, want 4", again.Iterations)
	}
	// The untrained network does not depend on the schedule.
	for g, sc := range untrainedRun {
		if !slices.Equal(sc.Abnormal, again.Untrained.Scores[g].Abnormal) {
			t.Errorf("%s: the untrained network scored otherwise after a change of schedule", g)
		}
	}
}

func TestStartedOtherwise(t *testing.T) {
	dir := t.TempDir()
	cfg := train.Defaults("ae")
	if startedOtherwise(dir, cfg) {
		t.Error("a cell never started counts as started otherwise")
	}
	b, _ := json.Marshal(cfg)
	if err := os.WriteFile(filepath.Join(dir, train.ConfigFile), b, 0o644); err != nil {
		t.Fatal(err)
	}
	runTime := cfg
	runTime.Threads, runTime.CheckpointEvery = 3, 7
	if startedOtherwise(dir, runTime) {
		t.Error("run-time settings count as other settings")
	}
	other := cfg
	other.Iterations = 99
	if !startedOtherwise(dir, other) {
		t.Error("another schedule is not noticed")
	}
}

// Cells run side by side (Options.Jobs) compute what they compute one after
// the other at the same thread count, and an interrupted parallel run resumes.
func TestJobsSameCellsAsSequential(t *testing.T) {
	samples := tinySamples(t)
	s := tinySettings(Table1)
	s.Threads = 1
	ctx := context.Background()

	seq, par := t.TempDir(), t.TempDir()
	// Jobs > 1 also holds OpenBLAS at one thread, which splits products
	// differently: the sequential run must do the same to compare bits.
	if blas := torch.BLASThreads(); blas > 1 {
		torch.SetBLASThreads(1)
		defer torch.SetBLASThreads(blas)
	}
	if _, err := Run(ctx, s, seq, Options{Samples: samples, NoReport: true}); err != nil {
		t.Fatal(err)
	}
	ctxP, cancel := context.WithCancel(ctx)
	stop := func(c Cell, it int, _ baselines.Losses) {
		if c.ID == "t1-ae-mixed-s1" && it == 2 {
			cancel()
		}
	}
	if _, err := Run(ctxP, s, par, Options{Samples: samples, NoReport: true, Jobs: 2, AfterStep: stop}); !errors.Is(err, context.Canceled) {
		t.Fatalf("interrupted parallel run: err = %v", err)
	}
	// The cells' bars share one writer (through a progress.Board) without
	// mixing their lines.
	var bars bytes.Buffer
	sum, err := Run(ctx, s, par, Options{Samples: samples, NoReport: true, Jobs: 2, Progress: &bars})
	if err != nil {
		t.Fatal(err)
	}
	if len(sum.Ran)+len(sum.Skipped) != 5 || !slices.Contains(sum.Ran, "t1-ae-mixed-s1") {
		t.Fatalf("resumed parallel run: ran %v, skipped %v", sum.Ran, sum.Skipped)
	}
	barLine := regexp.MustCompile(`^\[\d/\d\] t1-\S+ \d+/\d+ \[[=> ]+\] `)
	finals := 0
	for _, line := range strings.Split(strings.TrimSuffix(bars.String(), "\n"), "\n") {
		if !barLine.MatchString(line) {
			t.Errorf("progress line %q is not one bar's", line)
		}
		if strings.Contains(line, " done") {
			finals++
		}
	}
	if finals != len(sum.Ran) {
		t.Errorf("%d final bar lines for %d cells run:\n%s", finals, len(sum.Ran), bars.String())
	}
	want, _, err := LoadResults(seq)
	if err != nil {
		t.Fatal(err)
	}
	got, _, err := LoadResults(par)
	if err != nil {
		t.Fatal(err)
	}
	if len(got) != len(want) {
		t.Fatalf("%d cells in parallel, %d in sequence", len(got), len(want))
	}
	byID := map[string]*Result{}
	for _, r := range got {
		byID[r.ID] = r
	}
	for _, w := range want {
		g := byID[w.ID]
		if g == nil {
			t.Errorf("cell %s missing from the parallel run", w.ID)
			continue
		}
		wj, _ := json.Marshal(w.Scores)
		gj, _ := json.Marshal(g.Scores)
		if string(wj) != string(gj) {
			t.Errorf("cell %s: test scores differ between the sequential and the parallel run", w.ID)
		}
	}
}
