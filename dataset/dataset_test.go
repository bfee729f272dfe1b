package dataset

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"path/filepath"
	"reflect"
	"sort"
	"strings"
	"testing"

	"github.com/maddr-project/maddr/phantom"
	"github.com/maddr-project/maddr/preprocess"
)

// tally counts samples per "split/label".
func tally(samples []Sample) map[string]int {
	m := map[string]int{}
	for _, s := range samples {
		m[string(s.Split)+"/"+s.Label.String()]++
	}
	return m
}

func samplesOf(t *testing.T, src Source, splits ...Split) ([]Sample, []Problem) {
	t.Helper()
	if len(splits) == 0 {
		splits = AllSplits
	}
	s, p, err := src.Samples(splits)
	if err != nil {
		t.Fatalf("%s: %v", src.Name(), err)
	}
	return s, p
}

func problemText(probs []Problem) string {
	var b strings.Builder
	for _, p := range probs {
		b.WriteString(p.String() + "\n")
	}
	return b.String()
}

func TestParseSpec(t *testing.T) {
	seven := uint64(7)
	tests := []struct {
		in   string
		want Spec
	}{
		{"folder:/d/x,organ=liver,modality=ct", Spec{Kind: "folder", Root: "/d/x", Organ: "liver", Modality: "ct"}},
		{"kind=lits,root=/data/LiTS,seed=7,all=true", Spec{Kind: "lits", Root: "/data/LiTS", Seed: &seven, All: true}},
		{"lits:/l,counts=1/2/3/4/5", Spec{Kind: "lits", Root: "/l", Counts: &SplitCounts{1, 2, 3, 4, 5}}},
		{"phantom,scale=0.1,groups=liver-ct+lung-ct", Spec{Kind: "phantom", Scale: 0.1, Groups: []string{"liver-ct", "lung-ct"}}},
		{`{"kind":"shenzhen","root":"/a,b"}`, Spec{Kind: "shenzhen", Root: "/a,b"}},
	}
	for _, tc := range tests {
		got, err := ParseSpec(tc.in)
		if err != nil {
			t.Errorf("ParseSpec(%q): %v", tc.in, err)
			continue
		}
		if !reflect.DeepEqual(got, tc.want) {
			t.Errorf("ParseSpec(%q) = %+v, want %+v", tc.in, got, tc.want)
		}
		if !strings.HasPrefix(tc.in, "{") {
			again, err := ParseSpec(got.String())
			if err != nil || !reflect.DeepEqual(again, got) {
				t.Errorf("String round trip of %q: %q -> %+v, %v", tc.in, got.String(), again, err)
			}
		}
		js, _ := json.Marshal(got)
		var back Spec
		if err := json.Unmarshal(js, &back); err != nil || !reflect.DeepEqual(back, got) {
			t.Errorf("JSON round trip of %q: %s -> %+v, %v", tc.in, js, back, err)
		}
	}
	for _, bad := range []string{"", "nosuch:/x", "folder:/x", "folder:/x,organ=liver", "lits", "lits:/x,scale=2",
		"phantom,root=/x", "lits:/x,seed=-1", "lits:/x,counts=1/2", "lits:/x,colour=red", "lits:/x,seed"} {
		if _, err := ParseSpec(bad); err == nil {
			t.Errorf("ParseSpec(%q) accepted", bad)
		}
	}
}

func TestFolder(t *testing.T) {
	src := &Folder{Root: "testdata/folder", Organ: "Liver", Modality: "CT"}
	s, probs := samplesOf(t, src)
	if len(probs) > 0 {
		t.Fatalf("problems: %s", problemText(probs))
	}
	want := map[string]int{"train/normal": 3, "val/normal": 1, "val/abnormal": 2, "test/normal": 1, "test/abnormal": 1}
	if got := tally(s); !reflect.DeepEqual(got, want) {
		t.Errorf("counts %v, want %v", got, want)
	}
	for _, x := range s {
		if x.Group != "liver-ct" || x.Organ != "liver" || x.Modality != "ct" {
			t.Errorf("sample %s: group %q organ %q modality %q", x.ID, x.Group, x.Organ, x.Modality)
		}
	}
	// A missing split directory matters only when that split is wanted.
	part := &Folder{Root: "testdata/folder-partial", Organ: "lung", Modality: "xray"}
	if s, probs := samplesOf(t, part, Train); len(s) != 2 || len(probs) != 0 {
		t.Errorf("partial folder, train only: %d samples, problems %v", len(s), probs)
	}
	if _, _, err := part.Samples(AllSplits); err == nil || !strings.Contains(err.Error(), "val") {
		t.Errorf("partial folder, all splits: err = %v, want one naming the val directory", err)
	}
}

func TestManifest(t *testing.T) {
	s, probs := samplesOf(t, &Manifest{Path: "testdata/manifest/manifest.csv"})
	if len(probs) > 0 {
		t.Fatalf("problems: %s", problemText(probs))
	}
	want := map[string]int{"train/normal": 1, "val/normal": 1, "val/abnormal": 1, "test/normal": 1, "test/abnormal": 1}
	if got := tally(s); !reflect.DeepEqual(got, want) {
		t.Errorf("counts %v, want %v", got, want)
	}
	for _, x := range s {
		if x.Modality != "xray" || x.Organ != "lung" || x.Group != "lung-xray" {
			t.Errorf("%s: organ %q modality %q group %q", x.Path, x.Organ, x.Modality, x.Group)
		}
		if !strings.HasPrefix(x.Path, filepath.Join("testdata", "manifest", "images")) {
			t.Errorf("path %q not resolved against the CSV's directory", x.Path)
		}
	}

	// Every bad row is reported with its line and field.
	_, probs = samplesOf(t, &Manifest{Path: "testdata/manifest/bad.csv"})
	text := problemText(probs)
	for _, want := range []string{
		"bad.csv line 3: field split", "bad.csv line 4: field label", "bad.csv line 5: field path is empty",
		"bad.csv line 6: field label: abnormal image in the train split", "missing.png: file does not exist",
		"bad.csv line 8: 3 fields", "bad.csv: split val has no images",
	} {
		if !strings.Contains(text, want) {
			t.Errorf("problems lack %q:\n%s", want, text)
		}
	}
	if len(probs) != 7 {
		t.Errorf("%d problems, want 7:\n%s", len(probs), text)
	}

	// Write and read back.
	var buf bytes.Buffer
	dir := filepath.Join("testdata", "manifest")
	s[0].HU, s[0].Slice, s[0].Lo, s[0].Hi = true, 3, -5, 7.5
	if err := WriteManifest(&buf, dir, s); err != nil {
		t.Fatal(err)
	}
	back, probs, err := ReadManifest(&buf, filepath.Join(dir, "copy.csv"))
	if err != nil || len(probs) > 0 {
		t.Fatalf("reading back: %v %v", err, probs)
	}
	if !reflect.DeepEqual(back, s) {
		t.Errorf("round trip:\n got %+v\nwant %+v", back, s)
	}

	for _, header := range []string{"", "path,organ,modality,split\n", "path,organ,modality,split,label,colour\n"} {
		if _, _, err := ReadManifest(strings.NewReader(header), "h.csv"); err == nil {
			t.Errorf("header %q accepted", header)
		}
	}
}

func TestLiTS(t *testing.T) {
	src := &LiTS{Root: "testdata/lits", Seed: 1, All: true}
	s, probs := samplesOf(t, src)
	if len(probs) > 0 {
		t.Fatalf("problems: %s", problemText(probs))
	}
	// Six volumes of ten slices, liver on 2..7; tumour on {4,5}, none, {6}
	// for ids 0,1,2 mod 3; 131-scaled split: 4 train, 1 val, 1 test volumes.
	normalOf := map[int]int{0: 4, 1: 6, 2: 5, 3: 4, 4: 6, 5: 5}
	abnormalOf := map[int]int{0: 2, 1: 0, 2: 1, 3: 2, 4: 0, 5: 1}
	volSplit := map[string]Split{}
	perVol := map[string][2]int{}
	for _, x := range s {
		if !x.HU || x.Organ != "liver" || x.Modality != "ct" || x.Group != "liver-ct" {
			t.Fatalf("sample %+v lacks HU or liver-ct", x)
		}
		if sp, ok := volSplit[x.Path]; ok && sp != x.Split {
			t.Fatalf("volume %s in splits %s and %s", x.Path, sp, x.Split)
		}
		volSplit[x.Path] = x.Split
		c := perVol[x.Path]
		c[x.Label]++
		perVol[x.Path] = c
		if x.Split == Train && x.Label == Abnormal {
			t.Errorf("abnormal training slice %s", x.ID)
		}
	}
	nSplit := map[Split]int{}
	for path, sp := range volSplit {
		nSplit[sp]++
		var id int
		fmt.Sscanf(filepath.Base(path), "volume-%d.nii", &id)
		c := perVol[path]
		wantAb := abnormalOf[id]
		if sp == Train {
			wantAb = 0
		}
		if c[Normal] != normalOf[id] || c[Abnormal] != wantAb {
			t.Errorf("volume %d (%s): %d normal %d abnormal, want %d %d", id, sp, c[Normal], c[Abnormal], normalOf[id], wantAb)
		}
	}
	if nSplit[Train] != 4 || nSplit[Val] != 1 || nSplit[Test] != 1 {
		t.Errorf("volumes per split %v, want 4/1/1", nSplit)
	}

	// Same seed, same samples; the assignment changes with the seed.
	again, _ := samplesOf(t, &LiTS{Root: "testdata/lits", Seed: 1, All: true})
	if !reflect.DeepEqual(again, s) {
		t.Error("same seed gave different samples")
	}
	differs := false
	for seed := uint64(2); seed < 6 && !differs; seed++ {
		other, _ := samplesOf(t, &LiTS{Root: "testdata/lits", Seed: seed, All: true})
		differs = !reflect.DeepEqual(other, s)
	}
	if !differs {
		t.Error("seeds 2..5 all gave the split of seed 1")
	}

	// Sampling to counts, capped by what the volumes hold.
	counts := &SplitCounts{TrainNormal: 7, ValNormal: 2, ValAbnormal: 1, TestNormal: 100, TestAbnormal: 100}
	sub, _ := samplesOf(t, &LiTS{Root: "testdata/lits", Seed: 1, Counts: counts})
	got := tally(sub)
	full := tally(s)
	want := map[string]int{"train/normal": 7, "val/normal": 2, "test/normal": full["test/normal"]}
	if full["val/abnormal"] > 0 {
		want["val/abnormal"] = 1
	}
	if full["test/abnormal"] > 0 {
		want["test/abnormal"] = full["test/abnormal"]
	}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("sampled counts %v, want %v", got, want)
	}
	sub2, _ := samplesOf(t, &LiTS{Root: "testdata/lits", Seed: 1, Counts: counts})
	if !reflect.DeepEqual(sub, sub2) {
		t.Error("sampling is not deterministic")
	}
}

func TestMSD(t *testing.T) {
	s, probs := samplesOf(t, &LiTS{Root: "testdata/msd", Seed: 3, All: true})
	if len(probs) > 0 {
		t.Fatalf("problems: %s", problemText(probs))
	}
	vols := map[Split]map[string]bool{Train: {}, Val: {}, Test: {}}
	for _, x := range s {
		vols[x.Split][x.Path] = true
	}
	for _, sp := range AllSplits {
		if len(vols[sp]) != 1 {
			t.Errorf("split %s has %d volumes, want 1", sp, len(vols[sp]))
		}
	}
}

func TestLiTSBadInput(t *testing.T) {
	_, probs := samplesOf(t, &LiTS{Root: "testdata/bad/lits", All: true})
	text := problemText(probs)
	for _, want := range []string{
		"segmentation testdata/bad/lits/segmentation-4.nii is 8x4x10 but volume testdata/bad/lits/volume-4.nii is 8x8x10",
		"volume-5.nii: missing segmentation",
		"volume-7.nii: zero-byte file",
	} {
		if !strings.Contains(text, want) {
			t.Errorf("problems lack %q:\n%s", want, text)
		}
	}
	if len(probs) != 3 {
		t.Errorf("%d problems, want 3:\n%s", len(probs), text)
	}
	// NaN voxels surface when the slice is decoded.
	var r Reader
	defer r.Close()
	_, err := r.Load(Sample{Path: "testdata/bad/lits/volume-6.nii", Slice: 3, HU: true})
	if err == nil || !strings.Contains(err.Error(), "volume-6.nii") || !strings.Contains(strings.ToLower(err.Error()), "nan") {
		t.Errorf("NaN slice: err = %v", err)
	}
	if _, err := r.Load(Sample{Path: "testdata/bad/lits/volume-6.nii", Slice: 2}); err != nil {
		t.Errorf("clean slice of the NaN volume: %v", err)
	}
}

func TestCOVIDCT(t *testing.T) {
	s, probs := samplesOf(t, &COVIDCT{Root: "testdata/covidct"})
	if len(probs) > 0 {
		t.Fatalf("problems: %s", problemText(probs))
	}
	want := map[string]int{"train/normal": 3, "val/normal": 2, "val/abnormal": 1, "test/normal": 1, "test/abnormal": 2}
	if got := tally(s); !reflect.DeepEqual(got, want) {
		t.Errorf("counts %v, want %v", got, want)
	}
	var r Reader
	for _, x := range s {
		if x.Group != "lung-ct" {
			t.Errorf("%s: group %s", x.Path, x.Group)
		}
		if _, err := r.Load(x); err != nil {
			t.Errorf("decoding %s: %v", x.Path, err)
		}
	}
	_, probs = samplesOf(t, &COVIDCT{Root: "testdata/bad/covidct"})
	text := problemText(probs)
	if len(probs) != 1 || !strings.Contains(text, "not-there.png: file does not exist (listed in testdata/bad/covidct/Data-split/COVID/testCT_COVID.txt)") {
		t.Errorf("problems:\n%s", text)
	}
}

func TestShenzhen(t *testing.T) {
	s, probs := samplesOf(t, &Shenzhen{Root: "testdata/shenzhen"})
	if len(probs) > 0 {
		t.Fatalf("problems: %s", problemText(probs))
	}
	// ids 1,2,228 | 229,261 | 262,326 normal; 327,561 unused; 562,595 | 596,662 TB.
	want := map[string]int{"train/normal": 3, "val/normal": 2, "val/abnormal": 2, "test/normal": 2, "test/abnormal": 2}
	if got := tally(s); !reflect.DeepEqual(got, want) {
		t.Errorf("counts %v, want %v", got, want)
	}
	for _, x := range s {
		if x.Group != "lung-xray" {
			t.Errorf("%s: group %s", x.Path, x.Group)
		}
	}
	k, probs := samplesOf(t, &Shenzhen{Root: "testdata/shenzhen-kaggle"})
	want = map[string]int{"train/normal": 1, "val/normal": 1, "val/abnormal": 1, "test/normal": 1, "test/abnormal": 1}
	if got := tally(k); !reflect.DeepEqual(got, want) || len(probs) > 0 {
		t.Errorf("kaggle layout: counts %v, want %v; problems %v", got, want, probs)
	}
	_, probs = samplesOf(t, &Shenzhen{Root: "testdata/bad/shenzhen"})
	text := problemText(probs)
	if len(probs) != 2 || !strings.Contains(text, "CHNCXR_0400_0.png: suffix _0 (normal) but ids 0327-0662") ||
		!strings.Contains(text, "CHNCXR_0100_1.png: suffix _1 (tuberculosis)") {
		t.Errorf("mislabelled files: %s", text)
	}
}

func TestMontgomery(t *testing.T) {
	s, probs := samplesOf(t, &Montgomery{Root: "testdata/montgomery", Seed: 5})
	if len(probs) > 0 {
		t.Fatalf("problems: %s", problemText(probs))
	}
	// 12 normals 228:33:65 -> 9/1/2; 6 abnormals 34:67 -> 2/4.
	want := map[string]int{"train/normal": 9, "val/normal": 1, "val/abnormal": 2, "test/normal": 2, "test/abnormal": 4}
	if got := tally(s); !reflect.DeepEqual(got, want) {
		t.Errorf("counts %v, want %v", got, want)
	}
	again, _ := samplesOf(t, &Montgomery{Root: "testdata/montgomery", Seed: 5})
	if !reflect.DeepEqual(again, s) {
		t.Error("same seed, different split")
	}
	other, _ := samplesOf(t, &Montgomery{Root: "testdata/montgomery", Seed: 6})
	if reflect.DeepEqual(other, s) {
		t.Error("seed 6 gave the split of seed 5")
	}
	var r Reader
	img, err := r.Load(s[0])
	if err != nil || img.Hi != 4095 {
		t.Errorf("16-bit PNG of 12-bit data: hi %g, err %v", img.Hi, err)
	}
}

func TestApportion(t *testing.T) {
	tests := []struct {
		n    int
		f    []float64
		want []int
	}{
		{326, []float64{228, 33, 65}, []int{228, 33, 65}},
		{336 - 235, []float64{34, 67}, []int{34, 67}},
		{3, []float64{228, 33, 65}, []int{1, 1, 1}},
		{1, []float64{34, 67}, []int{0, 1}},
		{0, []float64{34, 67}, []int{0, 0}},
	}
	for _, tc := range tests {
		if got := apportion(tc.n, tc.f); !reflect.DeepEqual(got, tc.want) {
			t.Errorf("apportion(%d, %v) = %v, want %v", tc.n, tc.f, got, tc.want)
		}
	}
	split, err := splitVolumes(131, 0)
	if err != nil {
		t.Fatal(err)
	}
	n := map[Split]int{}
	for _, sp := range split {
		n[sp]++
	}
	if n[Train] != 77 || n[Val] != 27 || n[Test] != 27 {
		t.Errorf("131 volumes split %v, want 77/27/27", n)
	}
}

func TestBadFilesListed(t *testing.T) {
	src := &Folder{Root: "testdata/bad/folder", Organ: "lung", Modality: "ct"}
	_, err := Collect([]Source{src}, Options{})
	var bad *BadFilesError
	if !errors.As(err, &bad) {
		t.Fatalf("err = %v, want a BadFilesError", err)
	}
	// test/normal is empty but test/abnormal is not, so no split is empty.
	if len(bad.Problems) != 1 || !strings.Contains(err.Error(), "empty.png: zero-byte file") {
		t.Errorf("error:\n%v", err)
	}

	var logged []string
	s, err := Collect([]Source{src}, Options{SkipBad: true, Logf: func(f string, a ...any) { logged = append(logged, fmt.Sprintf(f, a...)) }})
	if err != nil {
		t.Fatal(err)
	}
	if len(logged) != len(bad.Problems) || len(s) != 6 {
		t.Errorf("SkipBad: %d samples, logged %q", len(s), logged)
	}

	// Undecodable files are found by decoding; all of them are listed.
	stats, probs := ImageSizes(s, &Reader{}, 2)
	text := problemText(probs)
	if len(probs) != 2 || !strings.Contains(text, "truncated.png") || !strings.Contains(text, "garbage.png") {
		t.Errorf("decoding problems:\n%s", text)
	}
	if stats.Images != 4 || stats.MinWidth != 5 || stats.MaxHeight != 5 {
		t.Errorf("size stats %+v", stats)
	}
}

func TestEmptySplitIsAProblem(t *testing.T) {
	src := &Folder{Root: "testdata/folder-partial", Organ: "lung", Modality: "xray"}
	s := []Sample{}
	probs := checkSplits(src.Name(), s, []Split{Val})
	if len(probs) != 1 || !strings.Contains(probs[0].String(), "split val has no images") {
		t.Errorf("problems %v", probs)
	}
}

func TestVocabs(t *testing.T) {
	tests := []struct {
		names     []string
		preferred Vocab
		want      Vocab
	}{
		{[]string{"lung", "liver", "lung"}, PaperOrgans, Vocab{"liver", "lung"}},
		{[]string{"xray", "ct"}, PaperModalities, Vocab{"ct", "xray"}},
		{[]string{"mr", "xray", "ct", "us"}, PaperModalities, Vocab{"ct", "xray", "mr", "us"}},
		{[]string{"lung", "brain", "kidney"}, PaperOrgans, Vocab{"lung", "brain", "kidney"}},
	}
	for _, tc := range tests {
		if got := BuildVocab(tc.names, tc.preferred); !reflect.DeepEqual(got, tc.want) {
			t.Errorf("BuildVocab(%v) = %v, want %v", tc.names, got, tc.want)
		}
	}
	samples := []Sample{{Organ: "lung", Modality: "xray", Group: "b"}, {Organ: "liver", Modality: "ct", Group: "a"}}
	v, err := BuildVocabs(samples, Vocabs{Modality: Vocab{"xray", "ct"}})
	if err != nil {
		t.Fatal(err)
	}
	want := Vocabs{Organ: Vocab{"liver", "lung"}, Modality: Vocab{"xray", "ct"}, Group: Vocab{"a", "b"}}
	if !reflect.DeepEqual(v, want) {
		t.Errorf("BuildVocabs = %+v, want %+v", v, want)
	}
	js, _ := json.Marshal(v)
	if string(js) != `{"organ":["liver","lung"],"modality":["xray","ct"],"group":["a","b"]}` {
		t.Errorf("JSON %s", js)
	}
	if _, err := BuildVocabs(samples, Vocabs{Organ: Vocab{"liver"}}); err == nil {
		t.Error("explicit organ order without lung accepted")
	}
}

func smallPhantom() phantom.Config {
	cfg := phantom.DefaultConfig()
	cfg.Scale = 0.02
	cfg.Size = 48
	cfg.Seed = 11
	return cfg
}

func TestPhantomSource(t *testing.T) {
	s, probs := samplesOf(t, &Phantom{Config: smallPhantom()})
	if len(probs) > 0 {
		t.Fatalf("problems: %s", problemText(probs))
	}
	groups := map[string]bool{}
	for _, x := range s {
		groups[x.Group] = true
		if x.Image == nil {
			t.Fatalf("%s has no image", x.ID)
		}
	}
	if len(groups) != 3 {
		t.Errorf("groups %v, want 3", groups)
	}
	c := Counts(s)
	if len(c) != 9 {
		t.Errorf("counts %+v, want 3 groups x 3 splits", c)
	}
	var buf bytes.Buffer
	if err := WriteCounts(&buf, c); err != nil || !strings.Contains(buf.String(), "liver-ct") {
		t.Errorf("table %q, %v", buf.String(), err)
	}
}

// TestWriteSamplesRoundTrip checks that the exported phantom reads back
// through the manifest source as the same images and the same network input.
func TestWriteSamplesRoundTrip(t *testing.T) {
	s, _ := samplesOf(t, &Phantom{Config: smallPhantom()})
	dir := t.TempDir()
	if _, err := WriteSamples(dir, s); err != nil {
		t.Fatal(err)
	}
	back, probs := samplesOf(t, &Manifest{Path: filepath.Join(dir, ManifestName)})
	if len(probs) > 0 {
		t.Fatalf("problems: %s", problemText(probs))
	}
	if len(back) != len(s) {
		t.Fatalf("%d samples back, wrote %d", len(back), len(s))
	}
	byID := map[string]Sample{}
	for _, x := range back {
		byID[x.ID] = x
	}
	pre := preprocess.Default()
	var r Reader
	exts := map[string]int{}
	for _, orig := range s {
		got, ok := byID[orig.ID]
		if !ok {
			t.Fatalf("%s missing from the manifest", orig.ID)
		}
		exts[filepath.Ext(got.Path)]++
		if got.Organ != orig.Organ || got.Modality != orig.Modality || got.Group != orig.Group ||
			got.Split != orig.Split || got.Label != orig.Label {
			t.Fatalf("%s: labels differ: %+v vs %+v", orig.ID, got, orig)
		}
		img, err := r.Load(got)
		if err != nil {
			t.Fatal(err)
		}
		o := *orig.Image
		if img.Width != o.Width || img.Height != o.Height || img.Kind != o.Kind || img.Lo != o.Lo || img.Hi != o.Hi ||
			!reflect.DeepEqual(img.Pix, o.Pix) {
			t.Fatalf("%s: image differs after export (kind %v/%v, range [%g,%g]/[%g,%g])", orig.ID,
				img.Kind, o.Kind, img.Lo, img.Hi, o.Lo, o.Hi)
		}
		a, err := pre.Apply(o, orig.Organ)
		if err != nil {
			t.Fatal(err)
		}
		b, err := pre.Apply(img, got.Organ)
		if err != nil {
			t.Fatal(err)
		}
		if !reflect.DeepEqual(a, b) {
			t.Fatalf("%s: preprocessed input differs", orig.ID)
		}
	}
	t.Logf("file types: %v", exts)
}

func TestMontage(t *testing.T) {
	s, _ := samplesOf(t, &Phantom{Config: smallPhantom()})
	pre := preprocess.Config{Size: 16}
	input := func(i int) ([]float32, error) { return pre.Apply(*s[i].Image, s[i].Organ) }
	m, err := Montage(s, input, 16, 3)
	if err != nil {
		t.Fatal(err)
	}
	// 3 groups x 2 labels rows.
	if h := m.Bounds().Dy(); h != 6*(16+4)+4 {
		t.Errorf("montage height %d", h)
	}
	var names []string
	for r := range glyphs {
		names = append(names, string(r))
	}
	sort.Strings(names)
	for _, c := range "abcdefghijklmnopqrstuvwxyz0123456789-_/.: " {
		if _, ok := glyphs[c-'a'+'A']; c >= 'a' && c <= 'z' && !ok {
			t.Errorf("no glyph for %q (have %v)", c, names)
		}
	}
}
