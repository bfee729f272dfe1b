package main

import (
	"bytes"
	"os"
	"path/filepath"
	"strings"
	"testing"
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
	for _, want := range []string{"# Table 1: ae alone vs with MADDR", "| MADDR + ae | 1 |", "NOT comparable", "report.html"} {
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
