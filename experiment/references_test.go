package experiment

import (
	"context"
	"encoding/json"
	"math"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/maddr-project/maddr/dataset"
	"github.com/maddr-project/maddr/metrics"
)

// TestReferencesAndSkippedCells runs a tiny Table 1 with one cell skipped by the user: the report has the
// statistic (equal to MeanImageStatistic on the same data) and each trained row's iteration-0 row, calls the
// skipped cell not planned instead of INCOMPLETE, and a rerun without the skip runs just that cell.
func TestReferencesAndSkippedCells(t *testing.T) {
	samples := tinySamples(t)
	s := tinySettings(Table1)
	s.Mixed, s.Untrained = false, true
	s.SkipCells = []string{"t1-ae-maddr-*"}
	ctx := context.Background()
	dir := t.TempDir()

	bad := s
	bad.SkipCells = []string{"t1-ae-madr-*"}
	if _, err := Run(ctx, bad, dir, Options{Samples: samples}); err == nil || !strings.Contains(err.Error(), "matches no planned cell") {
		t.Errorf("a pattern matching no cell: err = %v", err)
	}

	sum, err := Run(ctx, s, dir, Options{Samples: samples})
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(sum.NotPlanned, []string{"t1-ae-maddr-s1"}) || len(sum.Ran) != 3 || sum.Planned != 3 {
		t.Fatalf("summary %+v: want 3 cells run and t1-ae-maddr-s1 not planned", sum)
	}
	md, err := os.ReadFile(filepath.Join(dir, "table1.md"))
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"Not planned (skipped by the user with --skip-cells): t1-ae-maddr-s1.", "| " + StatisticLabel + " | none |",
		"| reference: ae (one model per data set), before training (iteration 0) | 1 |"} {
		if !strings.Contains(string(md), want) {
			t.Errorf("table1.md lacks %q:\n%s", want, md)
		}
	}
	if strings.Contains(string(md), "INCOMPLETE") || strings.Contains(string(md), "MADDR + ae, before training") {
		t.Errorf("table1.md calls the table incomplete or shows the skipped cell's reference:\n%s", md)
	}

	var doc Doc
	b, err := os.ReadFile(filepath.Join(dir, "table1.json"))
	if err != nil {
		t.Fatal(err)
	}
	if err := json.Unmarshal(b, &doc); err != nil {
		t.Fatal(err)
	}
	if len(doc.References) != 2 || doc.References[0].Variant != VariantStatistic || doc.References[1].Variant != VariantSingle+Iter0Suffix {
		t.Fatalf("references %+v", doc.References)
	}
	direct, err := MeanImageStatistic(ctx, s.Preprocess, samples, doc.Groups, dataset.Test, s.selectOptions())
	if err != nil {
		t.Fatal(err)
	}
	results, _, err := LoadResults(dir)
	if err != nil {
		t.Fatal(err)
	}
	for _, g := range doc.Groups {
		want, _ := groupOf(direct.Results, g)
		got := doc.References[0].Groups[g]
		if got.AUC.Mean != 100**want.Test.AUC || got.ACC.Mean != 100*want.Test.Accuracy || got.F1.Mean != 100*want.Test.MacroF1 ||
			got.AUC95 == nil || !(got.AUC95[0] <= got.AUC.Mean && got.AUC.Mean <= got.AUC95[1]) {
			t.Errorf("%s: statistic %+v, want AUC %g inside its interval", g, got, 100**want.Test.AUC)
		}
		for _, r := range results {
			if r.Cell.Group == g {
				before, _ := groupOf(r.Untrained.Results, g)
				if got := doc.References[1].Groups[g].AUC; got.N != 1 || math.Abs(got.Mean-100**before.Test.AUC) > 1e-9 {
					t.Errorf("%s: iteration-0 AUC %+v, want the cell's %g", g, got, 100**before.Test.AUC)
				}
			}
		}
	}

	// Dropping the skip runs just the skipped cell; the finished ones are reused.
	s.SkipCells = nil
	sum, err = Run(ctx, s, dir, Options{Samples: samples})
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(sum.Ran, []string{"t1-ae-maddr-s1"}) || len(sum.Skipped) != 3 {
		t.Errorf("rerun without the skip: ran %v, reused %v", sum.Ran, sum.Skipped)
	}
	if md, err = os.ReadFile(filepath.Join(dir, "table1.md")); err != nil || strings.Contains(string(md), "Not planned") ||
		!strings.Contains(string(md), "| reference: MADDR + ae, before training (iteration 0) | 1 |") {
		t.Errorf("table1.md after the rerun (%v):\n%s", err, md)
	}
}

// TestUntrainedAddedToFinishedCells: cells finished without iteration-0 scores are reused by a run that asks for
// them, which adds them without training, equal to those of a run that scored them before training.
func TestUntrainedAddedToFinishedCells(t *testing.T) {
	samples := tinySamples(t)
	s := tinySettings(Table1)
	s.Mixed = false
	s.SkipCells = []string{"t1-ae-maddr-*"}
	ctx := context.Background()
	without, with := t.TempDir(), t.TempDir()
	if _, err := Run(ctx, s, without, Options{Samples: samples, NoReport: true}); err != nil {
		t.Fatal(err)
	}
	s.Untrained = true
	sum, err := Run(ctx, s, without, Options{Samples: samples, NoReport: true})
	if err != nil {
		t.Fatal(err)
	}
	if len(sum.Ran) != 0 || len(sum.Skipped) != 3 {
		t.Fatalf("ran %v, reused %v: want the 3 finished cells reused", sum.Ran, sum.Skipped)
	}
	if _, err := Run(ctx, s, with, Options{Samples: samples, NoReport: true}); err != nil {
		t.Fatal(err)
	}
	added, _, err := LoadResults(without)
	if err != nil {
		t.Fatal(err)
	}
	fresh, _, err := LoadResults(with)
	if err != nil {
		t.Fatal(err)
	}
	for i, r := range added {
		if r.Untrained == nil || r.Hash != fresh[i].Hash {
			t.Fatalf("%s: untrained %v, hash %s (a fresh run's %s)", r.ID, r.Untrained != nil, r.Hash, fresh[i].Hash)
		}
		for g, sc := range fresh[i].Untrained.Scores {
			if !slices.Equal(sc.Normal, r.Untrained.Scores[g].Normal) || !slices.Equal(sc.Abnormal, r.Untrained.Scores[g].Abnormal) {
				t.Errorf("%s, %s: iteration-0 scores added afterwards differ from those scored before training", r.ID, g)
			}
		}
	}
	// A run that no longer asks for them reuses the cells as they are.
	s.Untrained = false
	if sum, err := Run(ctx, s, with, Options{Samples: samples, NoReport: true}); err != nil || len(sum.Ran) != 0 {
		t.Errorf("rerun without iteration-0 scores: ran %v, %v", sum, err)
	}
}

// TestReferenceTableTable2: an ablation row's iteration-0 reference fills only the groups the row trains on, the
// statistic every role group with its interval, and a table without iteration-0 scores says how to get them.
func TestReferenceTableTable2(t *testing.T) {
	s := planSettings(Table2)
	s.Seeds = []uint64{1}
	groups := s.Roles.list()
	report := func(auc float64, gs ...string) metrics.GroupedReport {
		var rep metrics.GroupedReport
		for _, g := range gs {
			a := auc
			rep.Groups = append(rep.Groups, metrics.GroupResult{Group: g, Test: metrics.Report{AUC: &a, Accuracy: 0.5, MacroF1: 0.4}})
		}
		return rep
	}
	cell := &Result{Cell: Cell{ID: "t2-ae-r04-s1", Table: Table2, Model: "ae", Variant: "r04", Seed: 1}, Results: report(0.8, groups[0], groups[1])}
	cell.Untrained = &Evaluation{Results: report(0.55, groups[0], groups[1])}
	d, err := Build(s, groups, []string{cell.ID}, []*Result{cell})
	if err != nil {
		t.Fatal(err)
	}
	d.SetStatistic(&Statistic{Evaluation: Evaluation{Results: report(0.6, groups...)}, AUC95: map[string][2]float64{groups[2]: {0.5, 0.7}}})
	head, rows := d.ReferenceHeader()
	if len(head) != 2+3*len(groups) || len(rows) != 2 {
		t.Fatalf("head %v, rows %v", head, rows)
	}
	if want := []string{StatisticLabel, "none", "50.00", "40.00", "60.00", "50.00", "40.00", "60.00", "50.00", "40.00", "60.00 [50.00, 70.00]"}; !slices.Equal(rows[0], want) {
		t.Errorf("statistic row %q, want %q", rows[0], want)
	}
	if want := []string{"reference: row 4: LiTS+CT, L_o, before training (iteration 0)", "1", "50.00 ± 0.00", "40.00 ± 0.00", "55.00 ± 0.00",
		"50.00 ± 0.00", "40.00 ± 0.00", "55.00 ± 0.00", "-", "-", "-"}; !slices.Equal(rows[1], want) {
		t.Errorf("iteration-0 row %q, want %q", rows[1], want)
	}
	cell.Untrained = nil
	if d, err = Build(s, groups, []string{cell.ID}, []*Result{cell}); err != nil {
		t.Fatal(err)
	}
	notes := strings.Join(d.ReferenceNotes(), "\n")
	if len(d.References) != 0 || !strings.Contains(notes, "No iteration-0 reference") || !strings.Contains(notes, "No training-free statistic") {
		t.Errorf("references %+v, notes %q", d.References, notes)
	}
}
