package main

import (
	"bytes"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/maddr-project/maddr/dataset"
)

// TestScoreShardsAndMerge runs the commands as a batch job would: a whole
// run, three shards, and a merge that must reproduce the whole run.
func TestScoreShardsAndMerge(t *testing.T) {
	mod := sharedModel(t)
	data := t.TempDir()
	var evalSet []dataset.Sample
	for _, s := range mod.Samples {
		if s.Split == dataset.Test {
			evalSet = append(evalSet, s)
		}
	}
	if _, err := dataset.WriteSamples(data, evalSet); err != nil {
		t.Fatal(err)
	}
	runDir := filepath.Dir(mod.Path)
	out := t.TempDir()
	run := func(args ...string) (int, string) {
		var o, e bytes.Buffer
		code := runMain(args, &o, &e)
		return code, o.String() + e.String()
	}

	whole := filepath.Join(out, "whole.csv")
	heat := filepath.Join(out, "heat")
	if code, msg := run("score", "--model", runDir, "--hu", "--quiet", "--heatmap", heat, "--out", whole, data); code != 0 {
		t.Fatalf("score: exit %d: %s", code, msg)
	}
	var shards []string
	for i := 0; i < 3; i++ {
		p := filepath.Join(out, "shard-"+string(rune('0'+i))+".csv")
		if code, msg := run("score", "--model", runDir, "--hu", "--quiet", "--shard", string(rune('1'+i))+"/3", "--out", p, data); code != 0 {
			t.Fatalf("shard %d: exit %d: %s", i, code, msg)
		}
		shards = append(shards, p)
	}
	merged := filepath.Join(out, "merged.csv")
	if code, msg := run(append([]string{"merge", "--out", merged}, shards...)...); code != 0 {
		t.Fatalf("merge: exit %d: %s", code, msg)
	}
	body := func(p string) string {
		b, err := os.ReadFile(p)
		if err != nil {
			t.Fatal(err)
		}
		s := string(b)
		return s[strings.Index(s, "\n")+1:]
	}
	// Heat map paths differ (only the whole run wrote them): compare the rest.
	noHeat := func(s string) string {
		var lines []string
		for _, l := range strings.Split(s, "\n") {
			if i := strings.Index(l, heat); i >= 0 {
				l = l[:i] + l[strings.Index(l[i:], ".heatmap.png")+i+len(".heatmap.png"):]
			}
			lines = append(lines, l)
		}
		return strings.Join(lines, "\n")
	}
	if noHeat(body(merged)) != noHeat(body(whole)) {
		t.Fatalf("merged shards differ from the whole run:\n%s\nvs\n%s", body(merged), body(whole))
	}
	if n := strings.Count(body(whole), "\n"); n != len(evalSet)+1 {
		t.Errorf("%d lines for %d images", n, len(evalSet))
	}
	var maps []string
	filepath.Walk(heat, func(p string, info os.FileInfo, err error) error {
		if err == nil && strings.HasSuffix(p, ".heatmap.png") {
			maps = append(maps, p)
		}
		return nil
	})
	if len(maps) != len(evalSet) {
		t.Errorf("%d heat maps for %d images", len(maps), len(evalSet))
	}

	// JSON output to stdout carries the same header.
	var o, e bytes.Buffer
	if code := runMain([]string{"score", "--model", runDir, "--quiet", "--format", "json", "--group", "chest-xray", data}, &o, &e); code != 0 {
		t.Fatalf("json: exit %d: %s", code, e.String())
	}
	var doc struct {
		Header  map[string]any   `json:"header"`
		Results []map[string]any `json:"results"`
	}
	if err := json.Unmarshal(o.Bytes(), &doc); err != nil {
		t.Fatalf("JSON output: %v", err)
	}
	if len(doc.Results) != len(evalSet) || doc.Header["model_sha256"] == "" || doc.Results[0]["group"] != "chest-xray" {
		t.Errorf("JSON output: %d results, header %v", len(doc.Results), doc.Header)
	}
	// A reader must see which arithmetic the scores came from.
	if settings, _ := doc.Header["settings"].(map[string]any); settings["precision"] != "fp32" {
		t.Errorf("JSON header settings %v: want precision fp32", doc.Header["settings"])
	}

	// Mistakes are explained.
	for _, c := range []struct {
		args []string
		code int
		msg  string
	}{
		{[]string{"score", data}, 2, "--model"},
		{[]string{"score", "--model", runDir, "--group", "brain-mr", data}, 1, "not one this model was trained on"},
		{[]string{"score", "--model", runDir, "--shard", "4/3", data}, 1, "1 <= i <= n"},
		{[]string{"score", "--model", runDir, filepath.Join(data, "nope.png")}, 1, "does not exist"},
		{[]string{"merge", shards[0], shards[1]}, 1, "missing"},
		{[]string{"merge", whole}, 1, "not a shard"},
	} {
		code, msg := run(c.args...)
		if code != c.code || !strings.Contains(msg, c.msg) {
			t.Errorf("%v: exit %d, want %d with %q:\n%s", c.args, code, c.code, c.msg, msg)
		}
	}
	// An unreadable image fails the run unless --skip-bad, but is listed either way.
	bad := filepath.Join(data, "bad.png")
	os.WriteFile(bad, []byte("not a png"), 0o644)
	if code, msg := run("score", "--model", runDir, "--quiet", "--out", filepath.Join(out, "bad.csv"), bad); code != 1 || !strings.Contains(msg, "could not be read") {
		t.Errorf("unreadable image: exit %d: %s", code, msg)
	}
	if code, msg := run("score", "--model", runDir, "--quiet", "--skip-bad", "--out", filepath.Join(out, "bad.csv"), bad); code != 0 {
		t.Errorf("--skip-bad: exit %d: %s", code, msg)
	}
	if !strings.Contains(body(filepath.Join(out, "bad.csv")), ",error,") {
		t.Error("the unreadable image has no error row")
	}
}
