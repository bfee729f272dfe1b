package phantom

import (
	"crypto/sha256"
	"encoding/binary"
	"fmt"
	"image"
	"image/color"
	"image/png"
	"math"
	"os"
	"slices"
	"testing"

	"github.com/maddr-project/maddr/preprocess"
)

func hashCases(cases []Case) string {
	h := sha256.New()
	for _, c := range cases {
		fmt.Fprintf(h, "%s|%s|%s|%s|%t|%d|%d|", c.ID, c.Group, c.Organ, c.Modality, c.Abnormal, c.Image.Width, c.Image.Height)
		binary.Write(h, binary.LittleEndian, c.Image.Pix)
	}
	return fmt.Sprintf("%x", h.Sum(nil))
}

func TestPlanCounts(t *testing.T) {
	specs, err := Plan(DefaultConfig())
	if err != nil {
		t.Fatal(err)
	}
	count := map[string]int{}
	for _, s := range specs {
		count[s.ID()[:len(s.ID())-5]]++
	}
	for _, tc := range []struct {
		key  string
		want int
	}{
		{"liver-ct/train/normal", 186}, {"liver-ct/val/normal", 192}, {"liver-ct/val/abnormal", 105},
		{"liver-ct/test/normal", 164}, {"liver-ct/test/abnormal", 249},
		{"lung-ct/train/normal", 234}, {"lung-ct/val/abnormal", 60}, {"lung-ct/test/abnormal", 98},
		{"chest-xray/train/normal", 228}, {"chest-xray/val/normal", 33}, {"chest-xray/test/abnormal", 67},
		{"liver-ct/train/abnormal", 0},
	} {
		if count[tc.key] != tc.want {
			t.Errorf("%s: %d cases, want %d", tc.key, count[tc.key], tc.want)
		}
	}
	if len(specs) != 896+555+427 {
		t.Errorf("%d cases in total, want 1878", len(specs))
	}
	small, _ := Plan(Config{Scale: 0.001})
	if len(small) != 15 { // every non-empty split keeps at least one case: 3 groups x 5
		t.Errorf("scale 0.001 gives %d cases, want 15", len(small))
	}
}

func TestConfigErrors(t *testing.T) {
	for _, cfg := range []Config{
		{Scale: -1}, {Size: 8}, {Difficulty: 1.5}, {Difficulty: math.NaN()}, {Groups: []string{"brain-mr"}}, {Scale: math.Inf(1)},
	} {
		if _, err := Generate(cfg); err == nil {
			t.Errorf("config %+v accepted", cfg)
		}
	}
}

func TestDeterminism(t *testing.T) {
	cfg := Config{Seed: 42, Scale: 0.03, Difficulty: 0.5, Size: 64}
	serial, err := generate(cfg, 1)
	if err != nil {
		t.Fatal(err)
	}
	parallel, err := generate(cfg, 4)
	if err != nil {
		t.Fatal(err)
	}
	again, _ := Generate(cfg)
	if hashCases(serial) != hashCases(parallel) || hashCases(serial) != hashCases(again) {
		t.Fatal("same seed gave different data (serial vs parallel vs again)")
	}
	cfg.Seed = 43
	other, _ := Generate(cfg)
	if hashCases(other) == hashCases(serial) {
		t.Fatal("different seeds gave identical data")
	}
	// A case depends only on its own spec: it is the same inside a larger set.
	cfg.Seed = 42
	cfg.Scale = 0.06
	larger, _ := Generate(cfg)
	byID := map[string]Case{}
	for _, c := range larger {
		byID[c.ID] = c
	}
	for _, c := range serial {
		l, ok := byID[c.ID]
		if !ok || !slices.Equal(l.Image.Pix, c.Image.Pix) {
			t.Fatalf("case %s differs when more cases are generated", c.ID)
		}
	}
	for _, c := range serial {
		if len(c.Image.Pix) != 64*64 || c.Image.Source == "" || c.Group == "" {
			t.Fatalf("malformed case %+v", c.ID)
		}
		for _, v := range c.Image.Pix {
			if v != float32(math.Round(float64(v))) || v < c.Image.Lo || v > c.Image.Hi {
				t.Fatalf("%s: value %v is not a whole number in [%v, %v]", c.ID, v, c.Image.Lo, c.Image.Hi)
			}
		}
	}
}

// auc is the probability that a random abnormal score exceeds a random normal one (ties count half).
func auc(normal, abnormal []float64) float64 {
	var s float64
	for _, a := range abnormal {
		for _, n := range normal {
			switch {
			case a > n:
				s++
			case a == n:
				s += 0.5
			}
		}
	}
	return s / float64(len(normal)*len(abnormal))
}

func TestAUCHelper(t *testing.T) {
	if got := auc([]float64{1, 2}, []float64{3, 4}); got != 1 {
		t.Fatalf("auc separable = %v", got)
	}
	if got := auc([]float64{1, 3}, []float64{2, 2}); got != 0.5 {
		t.Fatalf("auc mixed = %v", got)
	}
}

func meanStd(v []float32) (float64, float64) {
	var s, q float64
	for _, x := range v {
		s += float64(x)
		q += float64(x) * float64(x)
	}
	m := s / float64(len(v))
	return m, math.Sqrt(math.Max(0, q/float64(len(v))-m*m))
}

// TestNotTriviallySeparable checks that image mean and standard deviation, raw and after the real
// preprocessing, do not separate normal from abnormal test cases at the default difficulty, while the
// easiest difficulty does make anomalies visible to a local statistic (so the anomalies are really there).
func TestNotTriviallySeparable(t *testing.T) {
	cfg := DefaultConfig()
	cfg.Scale = 0.25
	cfg.Size = 96
	specs, err := Plan(cfg)
	if err != nil {
		t.Fatal(err)
	}
	var test []Spec
	for _, s := range specs {
		if s.Split == "test" {
			test = append(test, s)
		}
	}
	pre := preprocess.Default()
	for _, g := range Groups() {
		stats := map[bool][4][]float64{}
		for _, s := range test {
			if s.Group != g.Name {
				continue
			}
			c, err := Render(cfg, s)
			if err != nil {
				t.Fatal(err)
			}
			x, err := pre.Apply(c.Image, c.Organ)
			if err != nil {
				t.Fatal(err)
			}
			rm, rs := meanStd(c.Image.Pix)
			pm, ps := meanStd(x)
			st := stats[s.Abnormal]
			for k, v := range []float64{rm, rs, pm, ps} {
				st[k] = append(st[k], v)
			}
			stats[s.Abnormal] = st
		}
		for k, name := range []string{"raw mean", "raw std", "preprocessed mean", "preprocessed std"} {
			a := auc(stats[false][k], stats[true][k])
			t.Logf("%s %s: AUC %.3f (%d normal, %d abnormal)", g.Name, name, a, len(stats[false][k]), len(stats[true][k]))
			if math.Max(a, 1-a) > 0.75 {
				t.Errorf("%s: %s separates normal from abnormal, AUC %.3f", g.Name, name, a)
			}
		}
	}
}

// TestAnomalyEffect renders abnormal cases with and without their anomalies (identical otherwise) and checks,
// in the preprocessed 64x64 view, that the anomaly changes a small part of the image and that the change
// shrinks as Difficulty grows.
func TestAnomalyEffect(t *testing.T) {
	pre := preprocess.Default()
	for _, g := range Groups() {
		var effect [3]float64
		for i, d := range []float64{0, 0.5, 1} {
			cfg := Config{Seed: 5, Difficulty: d, Size: 96}
			for k := range 8 {
				s := Spec{Group: g.Name, Split: "test", Abnormal: true, Index: k}
				with, err := render(cfg, s, false)
				if err != nil {
					t.Fatal(err)
				}
				without, _ := render(cfg, s, true)
				a, _ := pre.Apply(with.Image, with.Organ)
				b, _ := pre.Apply(without.Image, without.Organ)
				var sum, changed float64
				for p := range a {
					diff := math.Abs(float64(a[p] - b[p]))
					sum += diff
					if diff > 0.05 {
						changed++
					}
				}
				if sum == 0 {
					t.Errorf("%s difficulty %v case %d: anomaly changes nothing", g.Name, d, k)
				}
				if frac := changed / float64(len(a)); frac > 0.2 {
					t.Errorf("%s difficulty %v case %d: anomaly changes %.0f%% of the image", g.Name, d, k, 100*frac)
				}
				effect[i] += sum / 8
			}
		}
		t.Logf("%s: mean summed |change| at difficulty 0, 0.5, 1: %.1f %.1f %.1f", g.Name, effect[0], effect[1], effect[2])
		if !(effect[0] > effect[1] && effect[1] > effect[2]) {
			t.Errorf("%s: anomaly effect does not fall with difficulty: %v", g.Name, effect)
		}
	}
}

// TestMontage writes a PNG of a few normal and abnormal cases per group when PHANTOM_MONTAGE names a file.
func TestMontage(t *testing.T) {
	out := os.Getenv("PHANTOM_MONTAGE")
	if out == "" {
		t.Skip("set PHANTOM_MONTAGE=/tmp/montage.png to render")
	}
	cfg := DefaultConfig()
	if v := os.Getenv("PHANTOM_DIFFICULTY"); v != "" {
		fmt.Sscan(v, &cfg.Difficulty)
	}
	const per = 4
	n := cfg.Size
	pre := preprocess.Default()
	img := image.NewGray(image.Rect(0, 0, 2*per*n, len(groups)*n))
	for gi, g := range Groups() {
		for col := range 2 * per {
			s := Spec{Group: g.Name, Split: "test", Abnormal: col >= per, Index: col % per}
			c, err := Render(cfg, s)
			if err != nil {
				t.Fatal(err)
			}
			lo, hi, _ := pre.Range(c.Image, c.Organ)
			for y := range n {
				for x := range n {
					v := (c.Image.Pix[y*n+x] - lo) / (hi - lo)
					img.SetGray(col*n+x, gi*n+y, color.Gray{uint8(math.Round(255 * math.Min(1, math.Max(0, float64(v)))))})
				}
			}
		}
	}
	f, err := os.Create(out)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if err := png.Encode(f, img); err != nil {
		t.Fatal(err)
	}
}

// TestLesionMetadata checks that every abnormal case records the lesions it was drawn with, that normal cases
// record none, and that the recorded size and strength fall with difficulty as the README's table says.
func TestLesionMetadata(t *testing.T) {
	for _, g := range Groups() {
		var radius, contrast [2]float64
		for i, d := range []float64{0, 1} {
			cfg := Config{Seed: 9, Difficulty: d, Size: 64}
			for k := range 6 {
				normal, err := Render(cfg, Spec{Group: g.Name, Split: "val", Index: k})
				if err != nil {
					t.Fatal(err)
				}
				if len(normal.Lesions) != 0 {
					t.Errorf("%s: normal case %s records lesions %v", g.Name, normal.ID, normal.Lesions)
				}
				c, _ := Render(cfg, Spec{Group: g.Name, Split: "val", Abnormal: true, Index: k})
				if len(c.Lesions) == 0 {
					t.Fatalf("%s: abnormal case %s records no lesion", g.Name, c.ID)
				}
				big := Largest(c.Lesions)
				if !(big.RadiusPx > 0 && big.RadiusPx < 64 && big.Contrast > 0) {
					t.Errorf("%s: case %s: largest lesion %+v out of range", g.Name, c.ID, big)
				}
				radius[i] += big.RadiusPx
				contrast[i] += big.Contrast
			}
		}
		if !(radius[0] > radius[1] && contrast[0] > contrast[1]) {
			t.Errorf("%s: radius %v and contrast %v (difficulty 0, 1) do not fall with difficulty", g.Name, radius, contrast)
		}
	}
	if ContrastUnit("liver-ct") != "HU" || ContrastUnit("chest-xray") != "attenuation" {
		t.Error("contrast units wrong")
	}
}
