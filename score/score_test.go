package score_test

import (
	"bytes"
	"context"
	"encoding/binary"
	"image/png"
	"math"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"sync"
	"testing"

	"github.com/maddr-project/maddr/dataset"
	"github.com/maddr-project/maddr/evaluate"
	"github.com/maddr-project/maddr/medimg"
	"github.com/maddr-project/maddr/modelfile"
	"github.com/maddr-project/maddr/score"
	"github.com/maddr-project/maddr/score/scoretest"
)

var (
	once      sync.Once
	shared    scoretest.Model
	sharedDir string
)

func TestMain(m *testing.M) {
	code := m.Run()
	if sharedDir != "" {
		os.RemoveAll(sharedDir)
	}
	os.Exit(code)
}

// model trains the shared MADDR model once for the package.
func model(t *testing.T) scoretest.Model {
	t.Helper()
	once.Do(func() {
		var err error
		if sharedDir, err = os.MkdirTemp("", "score-test-"); err != nil {
			t.Fatal(err)
		}
		shared = scoretest.Train(t, sharedDir, false, "")
	})
	if shared.Path == "" {
		t.Fatal("training the shared model failed in an earlier test")
	}
	return shared
}

// exported writes the model's val and test images to dir as files (PNG for
// X-rays, float NIfTI in HU for CT) and returns them as file samples.
func exported(t *testing.T, dir string) []dataset.Sample {
	t.Helper()
	var evalSet []dataset.Sample
	for _, s := range model(t).Samples {
		if s.Split != dataset.Train {
			evalSet = append(evalSet, s)
		}
	}
	files, err := dataset.WriteSamples(dir, evalSet)
	if err != nil {
		t.Fatal(err)
	}
	return files
}

func run(t *testing.T, sc *score.Scorer, units []score.Unit, o score.RunOptions, sh *score.Shard) (string, []score.Result) {
	t.Helper()
	var b bytes.Buffer
	w, err := score.NewWriter(&b, "csv", score.Header{Format: score.OutputFormat, ModelSHA256: "x", Shard: sh})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := sc.Run(context.Background(), units, w, o); err != nil {
		t.Fatal(err)
	}
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(t.TempDir(), "out.csv")
	os.WriteFile(path, b.Bytes(), 0o644)
	_, rs, err := score.ReadOutput(path)
	if err != nil {
		t.Fatal(err)
	}
	return b.String(), rs
}

// TestScoreEqualsEval is the preprocessing parity check: the same image
// files give the same raw score through 'score' (routing by the heads) as
// through evaluate.ScoreSamples, which 'maddr eval' uses.
func TestScoreEqualsEval(t *testing.T) {
	mod := model(t)
	dir := t.TempDir()
	files := exported(t, dir)
	m := scoretest.Load(t, mod.Path)
	want, err := evaluate.ScoreSamples(context.Background(), m, files, 32, false)
	if err != nil {
		t.Fatal(err)
	}
	sc, err := score.New(m, score.DefaultOptions())
	if err != nil {
		t.Fatal(err)
	}
	ex, err := score.Expand([]string{dir})
	if err != nil {
		t.Fatal(err)
	}
	if len(ex.Units) != len(files) || len(ex.Skipped) != 1 { // manifest.csv is passed over
		t.Fatalf("expanded %d units (skipped %v) for %d files", len(ex.Units), ex.Skipped, len(files))
	}
	_, results := run(t, sc, ex.Units, score.RunOptions{Read: score.ReadOptions{HU: true}}, nil)
	byPath := map[string]score.Result{}
	for _, r := range results {
		byPath[r.Path] = r
	}
	exact, routed := 0, 0
	for i, f := range files {
		r, ok := byPath[f.Path]
		if !ok || r.Raw == nil {
			t.Fatalf("%s: no score (%+v)", f.Path, r)
		}
		if r.Group == f.Group {
			routed++
		} else {
			t.Errorf("%s: routed to %q, is %q (%s)", f.Path, r.Group, f.Group, strings.Join(r.Notes, "; "))
			continue
		}
		// Both paths compute in float32; eval places an image in its batch
		// by its index, scoring by its pixels, which can move the last bit.
		if d := math.Abs(*r.Raw - want[i]); !(d <= 1e-6*math.Max(1, math.Abs(want[i]))) {
			t.Errorf("%s: score %v, eval %v", f.Path, *r.Raw, want[i])
		} else if d == 0 {
			exact++
		}
	}
	t.Logf("%d files: %d routed to their own group, %d bit-identical to eval", len(files), routed, exact)

	// Decisions follow the stored thresholds and the normalised score puts
	// 0.5 at the threshold.
	for _, r := range results {
		if r.Decision != score.Normal && r.Decision != score.Abnormal {
			continue
		}
		th := m.Manifest.Thresholds[r.Group]
		if (r.Decision == score.Abnormal) != (*r.Raw >= th.Value) || (*r.Normalised >= 0.5) != (*r.Raw >= th.Value) {
			t.Errorf("%s: raw %v normalised %v decision %s against threshold %v", r.Path, *r.Raw, *r.Normalised, r.Decision, th.Value)
		}
	}
}

// writeNIfTI writes a float32 volume of nz slices of n x n (the orientation
// does not matter here).
func writeNIfTI(t *testing.T, path string, n, nz int, value func(x, y, z int) float32) {
	t.Helper()
	hdr := make([]byte, 352)
	le := binary.LittleEndian
	le.PutUint32(hdr[0:], 348)
	for i, d := range []int{3, n, n, nz, 1, 1, 1, 1} {
		le.PutUint16(hdr[40+2*i:], uint16(d))
	}
	le.PutUint16(hdr[70:], 16)
	le.PutUint16(hdr[72:], 32)
	for i := 0; i < 8; i++ {
		le.PutUint32(hdr[76+4*i:], math.Float32bits(1))
	}
	le.PutUint32(hdr[108:], math.Float32bits(352))
	copy(hdr[344:], "n+1\x00")
	data := make([]byte, 4*n*n*nz)
	for z := 0; z < nz; z++ {
		for y := 0; y < n; y++ {
			for x := 0; x < n; x++ {
				le.PutUint32(data[4*((z*n+y)*n+x):], math.Float32bits(value(x, y, z)))
			}
		}
	}
	if err := os.WriteFile(path, append(hdr, data...), 0o644); err != nil {
		t.Fatal(err)
	}
}

// TestShardsMergeToTheSingleRun scores a folder in 3 shards and checks that
// merging their outputs gives exactly the single run's output.
func TestShardsMergeToTheSingleRun(t *testing.T) {
	mod := model(t)
	dir := t.TempDir()
	exported(t, dir)
	// A multi-slice volume gets a summary row after its slices.
	writeNIfTI(t, filepath.Join(dir, "volume.nii"), 48, 5, func(x, y, z int) float32 {
		return float32(-1000 + 1100*math.Exp(-float64((x-24)*(x-24)+(y-24)*(y-24))/float64(100+40*z)))
	})
	// A folder of DICOM files is one series (real fixtures, when fetched).
	if src, err := os.ReadFile("../testdata/real/pydicom/CT_small.dcm"); err == nil {
		series := filepath.Join(dir, "series")
		os.MkdirAll(series, 0o755)
		os.WriteFile(filepath.Join(series, "IM0001"), src, 0o644)
		os.WriteFile(filepath.Join(series, "IM0002.dcm"), src, 0o644)
		os.WriteFile(filepath.Join(series, "README"), []byte("not an image"), 0o644)
	}
	// An unreadable file is a row saying error, in whichever shard owns it.
	os.WriteFile(filepath.Join(dir, "broken.png"), []byte("\x89PNG\r\n\x1a\nbroken"), 0o644)

	m := scoretest.Load(t, mod.Path)
	sc, err := score.New(m, score.DefaultOptions())
	if err != nil {
		t.Fatal(err)
	}
	ex, err := score.Expand([]string{dir})
	if err != nil {
		t.Fatal(err)
	}
	ro := score.RunOptions{Read: score.ReadOptions{HU: true}}
	single, singleRows := run(t, sc, ex.Units, ro, nil)

	outDir := t.TempDir()
	var paths []string
	covered := 0
	for i := 0; i < 3; i++ {
		sh := score.Shard{Index: i + 1, Count: 3}
		units := score.Select(ex.Units, sh)
		covered += len(units)
		if len(units) == 0 || len(units) == len(ex.Units) {
			t.Fatalf("shard %s got %d of %d inputs", sh, len(units), len(ex.Units))
		}
		out, _ := run(t, sc, units, ro, &sh)
		p := filepath.Join(outDir, sh.String()[:1]+".csv")
		os.WriteFile(p, []byte(out), 0o644)
		paths = append(paths, p)
	}
	if covered != len(ex.Units) {
		t.Fatalf("shards cover %d of %d inputs", covered, len(ex.Units))
	}
	// Shards given in any order merge to the same result.
	h, merged, err := score.Merge([]string{paths[2], paths[0], paths[1]}, score.MergeOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if h.Merged != 3 || h.Shard != nil {
		t.Errorf("merged header %+v", h)
	}
	if !reflect.DeepEqual(merged, singleRows) {
		t.Fatalf("merged results differ from the single run's (%d vs %d rows)", len(merged), len(singleRows))
	}
	var b bytes.Buffer
	w, _ := score.NewWriter(&b, "csv", score.Header{Format: score.OutputFormat, ModelSHA256: "x"})
	for _, r := range merged {
		w.Write(r)
	}
	w.Close()
	body := func(s string) string { return s[strings.Index(s, "\n")+1:] }
	if body(b.String()) != body(single) {
		t.Fatal("merged CSV differs from the single run's CSV")
	}
	var volumes, series, failed int
	for _, r := range singleRows {
		if r.Level == score.LevelVolume {
			volumes++
			if strings.HasSuffix(r.Path, "series") {
				series++
				if r.Slices != 2 {
					t.Errorf("series summary counts %d slices, want 2 (README passed over)", r.Slices)
				}
			}
		}
		if r.Decision == score.Failed {
			failed++
		}
	}
	if volumes < 1 || failed != 1 {
		t.Errorf("%d volume summaries and %d error rows, want >= 1 and 1", volumes, failed)
	}

	// Merging refuses overlapping, duplicated, missing and foreign shards.
	if _, _, err := score.Merge(paths[:2], score.MergeOptions{}); err == nil || !strings.Contains(err.Error(), "missing") {
		t.Errorf("missing shard: %v", err)
	}
	if _, _, err := score.Merge(paths[:2], score.MergeOptions{Partial: true}); err != nil {
		t.Errorf("partial merge: %v", err)
	}
	if _, _, err := score.Merge([]string{paths[0], paths[0], paths[1]}, score.MergeOptions{}); err == nil || !strings.Contains(err.Error(), "twice") {
		t.Errorf("duplicate shard: %v", err)
	}
	other := filepath.Join(outDir, "other.csv")
	os.WriteFile(other, []byte(strings.Replace(readFile(t, paths[2]), `"model_sha256":"x"`, `"model_sha256":"y"`, 1)), 0o644)
	if _, _, err := score.Merge([]string{paths[0], paths[1], other}, score.MergeOptions{}); err == nil || !strings.Contains(err.Error(), "another model") {
		t.Errorf("foreign shard: %v", err)
	}
	overlap := filepath.Join(outDir, "overlap.csv")
	os.WriteFile(overlap, []byte(strings.Replace(single, `"model_sha256":"x"`, `"model_sha256":"x","shard":{"index":3,"count":3}`, 1)), 0o644)
	if _, _, err := score.Merge([]string{paths[0], paths[1], overlap}, score.MergeOptions{}); err == nil || !strings.Contains(err.Error(), "appears in both") {
		t.Errorf("overlapping shards: %v", err)
	}
}

func readFile(t *testing.T, p string) string {
	b, err := os.ReadFile(p)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

// TestOutOfScope sends images a liver/lung CT + chest X-ray model has never
// seen and checks they are flagged rather than silently scored.
func TestOutOfScope(t *testing.T) {
	mod := model(t)
	m := scoretest.Load(t, mod.Path)
	sc, err := score.New(m, score.DefaultOptions())
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	// A DICOM MR image: its own header rules it out.
	if imgs, err := medimg.ReadFile("../testdata/real/pydicom/MR_small.dcm"); err == nil {
		rs, err := sc.Score(ctx, []score.Input{{Image: imgs[0], Path: "MR_small.dcm"}}, score.Request{})
		if err != nil {
			t.Fatal(err)
		}
		if rs[0].Decision != score.OutOfScope || !strings.Contains(strings.Join(rs[0].Notes, " "), "DICOM modality is MR") {
			t.Errorf("MR DICOM: %s %v", rs[0].Decision, rs[0].Notes)
		}
	} else {
		t.Logf("MR DICOM check skipped: %v (run tools/fetch-fixtures.sh)", err)
	}

	// A brain MRI volume without any metadata: the heads and the score must
	// tell. Slices near the middle of the head are judged.
	const brain = "../testdata/real/mricron/ch2.nii.gz"
	if _, err := os.Stat(brain); err != nil {
		t.Skipf("brain MRI fixture absent (%v): run tools/fetch-fixtures.sh", err)
	}
	var inputs []score.Input
	err = score.ReadUnit(score.Unit{Key: brain, Files: []string{brain}}, score.ReadOptions{}, func(in score.Input) error {
		if in.Slice%10 == 0 && in.Slice >= 40 && in.Slice <= 140 {
			inputs = append(inputs, in)
		}
		return in.Err
	})
	if err != nil {
		t.Fatal(err)
	}
	rs, err := sc.Score(ctx, inputs, score.Request{})
	if err != nil {
		t.Fatal(err)
	}
	out := 0
	for _, r := range rs {
		if r.Decision == score.OutOfScope {
			out++
		}
		t.Logf("brain slice %d: %s raw %.4g organ %s %.2f modality %s %.2f: %s", r.Slice, r.Decision, *r.Raw,
			r.Organ, deref(r.OrganProb), r.Modality, deref(r.ModalityProb), strings.Join(r.Notes, "; "))
	}
	if out != len(rs) {
		t.Errorf("%d of %d brain MRI slices flagged out of scope, want all", out, len(rs))
	}
	sum := score.Summarise(brain, rs)
	if sum.Decision != score.OutOfScope || sum.OutOfScope != len(rs) {
		t.Errorf("volume summary %s with %d out of scope", sum.Decision, sum.OutOfScope)
	}
}

func deref(p *float64) float64 {
	if p == nil {
		return math.NaN()
	}
	return *p
}

// TestGroupsWithoutHeads: a baseline-only model routes nothing; with one
// trained group it uses that group, and a named group must be a trained one.
func TestGroupsWithoutHeads(t *testing.T) {
	mod := scoretest.Train(t, t.TempDir(), true, "chest-xray")
	m := scoretest.Load(t, mod.Path)
	sc, err := score.New(m, score.DefaultOptions())
	if err != nil {
		t.Fatal(err)
	}
	var in []score.Input
	for _, s := range mod.Samples {
		if s.Group == "chest-xray" && s.Split == dataset.Test && len(in) < 3 {
			in = append(in, score.Input{Image: *s.Image, Path: s.ID})
		}
	}
	rs, err := sc.Score(context.Background(), in, score.Request{})
	if err != nil {
		t.Fatal(err)
	}
	for _, r := range rs {
		if r.Group != "chest-xray" || r.GroupFrom != score.FromOnlyGroup || r.OrganProb != nil || r.Organ != "lung" {
			t.Errorf("%s: group %q from %q, organ %q", r.Path, r.Group, r.GroupFrom, r.Organ)
		}
		if r.Decision != score.Normal && r.Decision != score.Abnormal && r.Decision != score.OutOfScope {
			t.Errorf("%s: decision %s", r.Path, r.Decision)
		}
	}
	if err := sc.CheckRequest(score.Request{Group: "liver-ct"}); err == nil || !strings.Contains(err.Error(), "not one this model was trained on") {
		t.Errorf("untrained group: %v", err)
	}

	// Without thresholds the decision is unknown, with a note saying why.
	if err := modelfile.UpdateManifest(mod.Path, func(mf *modelfile.Manifest) error { mf.Thresholds = nil; return nil }); err != nil {
		t.Fatal(err)
	}
	sc2, err := score.New(scoretest.Load(t, mod.Path), score.DefaultOptions())
	if err != nil {
		t.Fatal(err)
	}
	rs, err = sc2.Score(context.Background(), in[:1], score.Request{})
	if err != nil {
		t.Fatal(err)
	}
	if rs[0].Decision != score.Unknown || rs[0].Normalised != nil || !strings.Contains(strings.Join(rs[0].Notes, " "), "maddr eval") {
		t.Errorf("no thresholds: %s %v", rs[0].Decision, rs[0].Notes)
	}

	// A model without heads trained on several groups needs --group.
	m.Manifest.Training = nil
	sc3, err := score.New(m, score.DefaultOptions())
	if err != nil {
		t.Fatal(err)
	}
	if err := sc3.CheckRequest(score.Request{}); err == nil || !strings.Contains(err.Error(), "--group") {
		t.Errorf("baseline-only, several groups: %v", err)
	}
}

// TestHeatmap checks the overlay: same geometry as the view, hot where the
// map is high, grey where it is low.
func TestHeatmap(t *testing.T) {
	mod := model(t)
	m := scoretest.Load(t, mod.Path)
	sc, _ := score.New(m, score.DefaultOptions())
	var in score.Input
	for _, s := range mod.Samples {
		if s.Group == "liver-ct" && s.Split == dataset.Test && s.Label == dataset.Abnormal {
			in = score.Input{Image: *s.Image, Path: s.ID}
			break
		}
	}
	rs, err := sc.Score(context.Background(), []score.Input{in}, score.Request{Maps: true})
	if err != nil {
		t.Fatal(err)
	}
	side := m.Manifest.Preprocess.Size
	if len(rs[0].Map) != side*side {
		t.Fatalf("map of %d values", len(rs[0].Map))
	}
	var b bytes.Buffer
	if err := sc.HeatmapPNG(&b, in, rs[0]); err != nil {
		t.Fatal(err)
	}
	img, err := png.Decode(&b)
	if err != nil {
		t.Fatal(err)
	}
	if img.Bounds().Dx() != in.Image.Width || img.Bounds().Dy() != in.Image.Height {
		t.Errorf("heat map %v for a %dx%d image", img.Bounds(), in.Image.Width, in.Image.Height)
	}

	// A synthetic map: one hot corner on a flat grey picture.
	const n = 8
	amap := make([]float32, n*n)
	amap[0] = 10
	pix := make([]float32, 64*64)
	for i := range pix {
		pix[i] = 0.5
	}
	ov, err := score.Overlay(pix, 64, 64, amap, n)
	if err != nil {
		t.Fatal(err)
	}
	hot := ov.RGBAAt(0, 0)
	cold := ov.RGBAAt(63, 63)
	// The top of the ramp (package heatmap) is a bright warm yellow; where
	// the map is at its median the picture stays its own grey.
	if !(hot.R > 180 && hot.R > hot.B+40) || cold.R != cold.G || cold.G != cold.B {
		t.Errorf("hot corner %v, cold corner %v", hot, cold)
	}
	if _, err := score.Overlay(pix, 64, 64, amap[:5], n); err == nil {
		t.Error("a map of the wrong size was accepted")
	}
}
