package main

import (
	"bytes"
	"encoding/json"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/maddr-project/maddr/experiment"
)

func TestExperimentUsage(t *testing.T) {
	var out, errb bytes.Buffer
	for _, args := range [][]string{
		{"experiment"},
		{"experiment", "table3"},
		{"experiment", "merge"},
		{"experiment", "table1", "extra"},
	} {
		errb.Reset()
		if code := runMain(args, &out, &errb); code != 2 {
			t.Errorf("%v: exit %d, want 2 (usage); stderr %q", args, code, errb.String())
		}
	}
	for _, c := range []struct {
		args []string
		want string
	}{
		{[]string{"experiment", "table1", "--shard", "3/2"}, "shard"},
		{[]string{"experiment", "table1", "--seeds", "1,x"}, "not a seed"},
		{[]string{"experiment", "table2", "--roles", "a,b"}, "three group names"},
		{[]string{"experiment", "merge", "--out", t.TempDir(), t.TempDir()}, "not an experiment directory"},
	} {
		errb.Reset()
		if code := runMain(c.args, &out, &errb); code != 1 || !strings.Contains(errb.String(), c.want) {
			t.Errorf("%v: exit %d, stderr %q; want exit 1 mentioning %q", c.args, code, errb.String(), c.want)
		}
	}
}

// TestExperimentTable1Tiny runs the command end to end on a tiny grid and
// merges its two shards.
func TestExperimentTable1Tiny(t *testing.T) {
	dir := t.TempDir()
	common := []string{"experiment", "table1", "--model", "ae", "--data", "phantom,scale=0.05", "--size", "32", "--resize", "0", "--crop", "0",
		"--iterations", "2", "--batch", "4", "--seeds", "7", "--mixed=false", "--threads", "2"}
	var out, errb bytes.Buffer
	for i, shard := range []string{"1/2", "2/2"} {
		args := append(append([]string{}, common...), "--shard", shard, "--no-report", "--out", filepath.Join(dir, "shard"+shard[:1]))
		if code := runMain(args, &out, &errb); code != 0 {
			t.Fatalf("shard %d: exit %d: %s", i+1, code, errb.String())
		}
	}
	out.Reset()
	merged := filepath.Join(dir, "merged")
	if code := runMain([]string{"experiment", "merge", "--out", merged, filepath.Join(dir, "shard1"), filepath.Join(dir, "shard2")}, &out, &errb); code != 0 {
		t.Fatalf("merge: exit %d: %s", code, errb.String())
	}
	for _, want := range []string{"# Table 1: ae alone vs with MADDR", "| MADDR + ae | 1 |", "NOT comparable", "report.html",
		"| reference: distance to the group's mean training image (no training) | none |", "| reference: MADDR + ae, before training (iteration 0) | 1 |"} {
		if !strings.Contains(out.String(), want) {
			t.Errorf("merge output lacks %q:\n%s", want, out.String())
		}
	}
	for _, f := range []string{"table1.md", "table1.csv", "table1.json", "report.html"} {
		if _, err := os.Stat(filepath.Join(merged, f)); err != nil {
			t.Error(err)
		}
	}
}

// TestExperimentReportReferencesEqualDemo runs a tiny demo and reports its directory with `experiment merge`: the
// experiment report's reference rows (the training-free statistic and each row's network at iteration 0) carry the
// numbers the demo computed for the same data.
func TestExperimentReportReferencesEqualDemo(t *testing.T) {
	dir := t.TempDir()
	demoDir, merged := filepath.Join(dir, "demo"), filepath.Join(dir, "merged")
	var out, errb bytes.Buffer
	if code := runMain([]string{"demo", "--seeds", "1", "--iterations", "2", "--batch", "4", "--scale", "0.05", "--threads", "2", "--out", demoDir}, &out, &errb); code != 0 {
		t.Fatalf("demo: exit %d: %s", code, errb.String())
	}
	if code := runMain([]string{"experiment", "merge", "--out", merged, demoDir}, &out, &errb); code != 0 {
		t.Fatalf("merge: exit %d: %s", code, errb.String())
	}
	var demo struct {
		Runs []demoRun `json:"runs"`
	}
	var doc experiment.Doc
	for path, v := range map[string]any{filepath.Join(demoDir, "demo.json"): &demo, filepath.Join(merged, "table1.json"): &doc} {
		b, err := os.ReadFile(path)
		if err != nil {
			t.Fatal(err)
		}
		if err := json.Unmarshal(b, v); err != nil {
			t.Fatal(err)
		}
	}
	refs := map[string]experiment.Row{}
	for _, r := range doc.References {
		refs[r.Variant] = r
	}
	compared := 0
	for _, c := range []struct{ demoRow, variant string }{
		{rowStatistic, experiment.VariantStatistic},
		{rowBase0, experiment.VariantSingle + experiment.Iter0Suffix},
		{rowMADDR0, experiment.VariantMADDR + experiment.Iter0Suffix},
	} {
		ref, ok := refs[c.variant]
		if !ok {
			t.Errorf("the experiment report has no %s reference row: %+v", c.variant, doc.References)
			continue
		}
		for _, g := range doc.Groups {
			rs := runsOf(demo.Runs, c.demoRow, g)
			m := ref.Groups[g]
			if len(rs) != 1 || m.AUC.N != 1 || m.AUC.Mean != 100*rs[0].AUC || m.ACC.Mean != 100*rs[0].Accuracy || m.F1.Mean != 100*rs[0].MacroF1 {
				t.Errorf("%s, %s: experiment %+v, demo %+v", c.variant, g, m, rs)
			}
			compared++
		}
	}
	if compared != 9 {
		t.Errorf("compared %d reference numbers, want 3 rows x 3 groups", compared)
	}
	md, err := os.ReadFile(filepath.Join(merged, "table1.md"))
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(string(md), experiment.StatisticLabel) || strings.Contains(string(md), "INCOMPLETE") {
		t.Errorf("table1.md:\n%s", md)
	}
}

// TestExperimentSkipCells: cells the user skips are reported as not planned, the rest of the table is complete,
// and a pattern that matches no cell is refused.
func TestExperimentSkipCells(t *testing.T) {
	dir := t.TempDir()
	args := []string{"experiment", "table1", "--model", "ae", "--data", "phantom,scale=0.05", "--size", "32", "--resize", "0", "--crop", "0",
		"--iterations", "2", "--batch", "4", "--seeds", "7", "--mixed=false", "--threads", "2", "--out", dir}
	var out, errb bytes.Buffer
	if code := runMain(append(slices.Clone(args), "--skip-cells", "t1-ae-mixed-*"), &out, &errb); code != 1 || !strings.Contains(errb.String(), "matches no planned cell") {
		t.Errorf("a pattern matching no cell: exit %d, stderr %q", code, errb.String())
	}
	out.Reset()
	if code := runMain(append(slices.Clone(args), "--skip-cells", "t1-ae-maddr-*, t1-ae-single-lung-ct-s7"), &out, &errb); code != 0 {
		t.Fatalf("exit %d: %s", code, errb.String())
	}
	for _, want := range []string{"2 cells planned", "2 not planned (skipped by the user)",
		"Not planned (skipped by the user with --skip-cells): t1-ae-single-lung-ct-s7, t1-ae-maddr-s7."} {
		if !strings.Contains(out.String(), want) {
			t.Errorf("output lacks %q:\n%s", want, out.String())
		}
	}
	if strings.Contains(out.String(), "INCOMPLETE") {
		t.Errorf("a table without its skipped cells is called incomplete:\n%s", out.String())
	}
}
