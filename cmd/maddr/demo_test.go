package main

import (
	"bytes"
	"io"
	"maps"
	"math"
	"slices"
	"strings"
	"testing"

	"github.com/maddr-project/maddr/experiment"
	"github.com/maddr-project/maddr/metrics"
	"github.com/maddr-project/maddr/preprocess"
)

func TestDemoFlagErrors(t *testing.T) {
	var out, errb bytes.Buffer
	for _, c := range []struct {
		args []string
		want string
	}{
		{[]string{"demo", "--seeds", "1,x"}, "not a seed"},
		{[]string{"demo", "--seeds", "2,2"}, "twice"},
		{[]string{"demo", "--seeds", ","}, "no seed"},
		{[]string{"demo", "--split", "train"}, "want test or val"},
	} {
		errb.Reset()
		if code := runMain(c.args, &out, &errb); code != 1 || !strings.Contains(errb.String(), c.want) {
			t.Errorf("%v: exit %d, stderr %q; want exit 1 mentioning %q", c.args, code, errb.String(), c.want)
		}
	}
}

func TestNetworkPixelsPerNative(t *testing.T) {
	// 128 native -> 256 -> crop 224 -> 64: one native pixel is 2 * 64/224 input pixels.
	if got, want := networkPixelsPerNative(preprocess.Default(), 128), 2*64.0/224; math.Abs(got-want) > 1e-12 {
		t.Errorf("default pipeline: %g, want %g", got, want)
	}
	if got := networkPixelsPerNative(preprocess.Config{Size: 32}, 128); got != 0.25 {
		t.Errorf("resize only: %g, want 0.25", got)
	}
	if got := networkPixelsPerNative(preprocess.Config{Resize: 256, Size: 32}, 128); got != 0.25 {
		t.Errorf("resize 256 then 32 without crop: %g, want 0.25", got)
	}
}

// TestSensitivityBins builds runs whose scores detect exactly the lesions larger than 5 px and checks the bins
// report that: the small bin undetected with AUC 0.5 (tied with the normals), the large bins fully detected.
func TestSensitivityBins(t *testing.T) {
	lesions := map[string]caseLesion{}
	var r demoRun
	r.Method, r.Group, r.Threshold = rowBase, "g", 1
	for i := range 9 {
		id := "a" + string(rune('0'+i))
		radius := float64(2 + i) // 2..10 px
		lesions[id] = caseLesion{Count: 1, RadiusPx: radius, Contrast: 100 - 10*float64(i)}
		score := 0.0
		if radius > 5 {
			score = 2
		}
		r.IDs, r.Scores, r.Abnormal = append(r.IDs, id), append(r.Scores, score), append(r.Abnormal, true)
	}
	for i := range 6 {
		r.IDs, r.Scores, r.Abnormal = append(r.IDs, "n"+string(rune('0'+i))), append(r.Scores, 0), append(r.Abnormal, false)
	}
	bins := sensitivity([]demoRun{r, r}, lesions, []string{"g"})
	var radius []sensBin
	for _, b := range bins {
		if b.Property == "radius" {
			radius = append(radius, b)
		}
	}
	if len(radius) != 3 {
		t.Fatalf("%d radius bins, want 3: %+v", len(radius), bins)
	}
	want := []struct{ lo, hi, det, auc float64 }{{2, 4, 0, 0.5}, {5, 7, 2.0 / 3, 5.0 / 6}, {8, 10, 1, 1}}
	for i, w := range want {
		b := radius[i]
		if b.Lo != w.lo || b.Hi != w.hi || b.Cases != 3 || len(b.Detected) != 2 {
			t.Errorf("bin %d: %+v", i, b)
			continue
		}
		if math.Abs(b.Detected[0]-w.det) > 1e-12 || math.Abs(b.AUC[0]-w.auc) > 1e-12 {
			t.Errorf("bin %d: detected %v auc %v, want %v and %v", i, b.Detected, b.AUC, w.det, w.auc)
		}
	}
	var md strings.Builder
	writeSensitivity(&md, bins, demoSettings{Model: "ae", Size: 32, Split: "test"})
	if !strings.Contains(md.String(), "| g | radius | 8.00-10 px | 3 | ae | 100.00 ± 0.00 |") {
		t.Errorf("table row missing:\n%s", md.String())
	}
	plots, err := sensitivityPlots(bins, demoSettings{Model: "ae", Size: 32})
	if err != nil || len(plots) != 2 {
		t.Fatalf("plots: %v, %d", err, len(plots))
	}
}

func TestParseWindows(t *testing.T) {
	w, err := parseWindows("liver=60:160, lung=-600:800")
	if err != nil || len(w) != 2 || w["liver"].Center != 60 || w["liver"].Width != 160 || w["lung"].Center != -600 || w["lung"].Width != 800 {
		t.Fatalf("got %v, %v", w, err)
	}
	if w, err := parseWindows(""); err != nil || w != nil {
		t.Errorf("empty list: %v, %v", w, err)
	}
	for _, bad := range []string{"liver", "liver=60", "liver=a:160", "liver=60:0", "=60:160", "liver=60:-5"} {
		if _, err := parseWindows(bad); err == nil {
			t.Errorf("%q accepted", bad)
		}
	}
}

// TestDemoExperiment checks that the demo's flags become a Table 1 experiment with the demo's reference rows:
// every cell scored before training, the mixed baseline, the demo's split and pipeline.
func TestDemoExperiment(t *testing.T) {
	st, out, err := parseDemoFlags([]string{"--iterations", "20", "--seeds", "1,2", "--size", "32", "--split", "val", "--out", "x"}, io.Discard)
	if err != nil {
		t.Fatal(err)
	}
	if out != "x" || st.Preprocess.Size != 32 || st.Preprocess.HUWindows["liver"].Width != 160 || st.Crop != st.Preprocess.Crop {
		t.Fatalf("settings %+v, out %q", st, out)
	}
	s := demoExperiment(st)
	cells, err := experiment.Plan(s, []string{"liver-ct", "lung-ct", "chest-xray"})
	if err != nil {
		t.Fatal(err)
	}
	rows := map[string]int{}
	for _, c := range cells {
		rows[demoRowOf[c.Variant]]++
		if !c.Untrained || c.Split != experiment.SplitVal || c.Config.Iterations != 20 || c.Config.Preprocess.Size != 32 {
			t.Errorf("%s: untrained %v, split %q, %d iterations, size %d", c.ID, c.Untrained, c.Split, c.Config.Iterations, c.Config.Preprocess.Size)
		}
		if c.Variant == experiment.VariantMADDR && c.Config.MADDR != demoMADDR().ScaleMixup(20) {
			t.Errorf("%s: MADDR %+v, want the demo's", c.ID, c.Config.MADDR)
		}
		if len(c.Config.Sources) != 1 || *c.Config.Sources[0].Seed != st.DataSeed || *c.Config.Sources[0].Difficulty != st.Difficulty {
			t.Errorf("%s: sources %+v do not name the demo's phantom", c.ID, c.Config.Sources)
		}
	}
	if want := map[string]int{rowBase: 6, rowBaseAll: 2, rowMADDR: 2}; !maps.Equal(rows, want) {
		t.Errorf("rows %v, want %v", rows, want)
	}
}

func TestRunsOfCells(t *testing.T) {
	auc, untrainedAUC := 0.75, 0.5
	cell := &experiment.Result{Cell: experiment.Cell{ID: "c", Variant: experiment.VariantMADDR, Seed: 7}, Timings: experiment.Timings{TrainS: 3}}
	cell.Results.Groups = []metrics.GroupResult{{Group: "g", Threshold: metrics.Threshold{Value: 0.4}, Test: metrics.Report{AUC: &auc, Accuracy: 0.6, MacroF1: 0.55}}}
	cell.Scores = map[string]experiment.GroupScores{"g": {Normal: []float64{0.1, 0.2}, NormalIDs: []string{"n1", "n2"}, Abnormal: []float64{0.9}, AbnormalIDs: []string{"a1"}}}
	cell.Untrained = &experiment.Evaluation{Results: cell.Results, Scores: cell.Scores}
	cell.Untrained.Results.Groups = slices.Clone(cell.Results.Groups)
	cell.Untrained.Results.Groups[0].Test.AUC = &untrainedAUC
	runs, err := runsOfCells([]*experiment.Result{cell})
	if err != nil {
		t.Fatal(err)
	}
	if len(runs) != 2 || runs[0].Method != rowMADDR0 || runs[0].AUC != 0.5 || runs[0].Seconds != 0 || runs[1].Method != rowMADDR || runs[1].AUC != 0.75 || runs[1].Seconds != 3 {
		t.Fatalf("runs %+v", runs)
	}
	r := runs[1]
	if r.Group != "g" || r.Seed != 7 || r.Threshold != 0.4 || r.Accuracy != 0.6 || r.MacroF1 != 0.55 ||
		!slices.Equal(r.IDs, []string{"n1", "n2", "a1"}) || !slices.Equal(r.Scores, []float64{0.1, 0.2, 0.9}) || !slices.Equal(r.Abnormal, []bool{false, false, true}) {
		t.Errorf("run %+v", r)
	}
	cell.Scores = map[string]experiment.GroupScores{"g": {Normal: []float64{0.1}}}
	if _, err := runsOfCells([]*experiment.Result{cell}); err == nil || !strings.Contains(err.Error(), "IDs") {
		t.Errorf("scores without IDs: %v", err)
	}
}
