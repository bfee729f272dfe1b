package experiment

import (
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"slices"
	"strings"
	"testing"

	_ "github.com/maddr-project/maddr/baselines/all"
	"github.com/maddr-project/maddr/dataset"
	"github.com/maddr-project/maddr/maddr"
	"github.com/maddr-project/maddr/metrics"
	"github.com/maddr-project/maddr/preprocess"
	"github.com/maddr-project/maddr/train"
)

var phantomGroups = []string{"liver-ct", "lung-ct", "chest-xray"}

func planSettings(table Table) Settings {
	pp := preprocess.Default()
	pp.Size, pp.Resize, pp.Crop = 32, 0, 0
	return Settings{Table: table, Sources: []dataset.Spec{{Kind: "phantom"}}, Models: []string{"ae"}, Seeds: []uint64{1, 2},
		Iterations: 10, BatchSize: 4, Preprocess: pp, Mixed: true, Roles: DefaultRoles()}
}

func TestPlanTable1(t *testing.T) {
	s := planSettings(Table1)
	s.Models = []string{"ae", "memae"}
	cells, err := Plan(s, phantomGroups)
	if err != nil {
		t.Fatal(err)
	}
	// Per seed and model: 3 single-data-set baselines, the mixed baseline, MADDR.
	if len(cells) != 2*2*5 {
		t.Fatalf("%d cells, want 20", len(cells))
	}
	ids, hashes := map[string]bool{}, map[string]bool{}
	for _, c := range cells {
		if ids[c.ID] {
			t.Errorf("duplicate id %s", c.ID)
		}
		ids[c.ID] = true
		hashes[c.Hash(s.selectOptions())] = true
		switch c.Variant {
		case VariantSingle:
			if !slices.Equal(c.Config.Groups, []string{c.Group}) || !slices.Equal(c.EvalGroups, []string{c.Group}) || c.Config.MADDR.AnyConstraint() {
				t.Errorf("%s: trains on %v, evaluates %v, constraints %v", c.ID, c.Config.Groups, c.EvalGroups, c.Config.MADDR.AnyConstraint())
			}
		case VariantMixed:
			if c.Config.MADDR.AnyConstraint() || c.Config.MADDR.MixupActive(6) || len(c.Config.Groups) != 3 {
				t.Errorf("%s: the mixed baseline must train on all groups without MADDR", c.ID)
			}
		case VariantMADDR:
			m := c.Config.MADDR
			if !m.Organ || !m.Modality || !m.Center || !m.Disentangle || len(c.EvalGroups) != 3 {
				t.Errorf("%s: MADDR cell without the full method: %+v", c.ID, m)
			}
			// The paper's mixup window 7001..10000 of 16000, scaled to 10 iterations.
			if m.Mixup.Start != 5 || m.Mixup.End != 6 {
				t.Errorf("%s: mixup window %d..%d, want 5..6", c.ID, m.Mixup.Start, m.Mixup.End)
			}
		}
	}
	if len(hashes) != len(cells) {
		t.Errorf("%d distinct hashes for %d cells", len(hashes), len(cells))
	}
	// Seed-major order: every cell of the first seed comes first.
	for i, c := range cells {
		if (i < 10) != (c.Seed == 1) {
			t.Fatalf("cell %d (%s) out of seed order", i, c.ID)
		}
	}
	s.Mixed = false
	cells, _ = Plan(s, phantomGroups)
	if len(cells) != 2*2*4 {
		t.Errorf("without --mixed: %d cells, want 16", len(cells))
	}
}

func TestPlanTable2(t *testing.T) {
	s := planSettings(Table2)
	cells, err := Plan(s, phantomGroups)
	if err != nil {
		t.Fatal(err)
	}
	// Rows 1 and 2 train one model per data set: 3 + 3 + 10 cells per seed.
	if len(cells) != 2*16 {
		t.Fatalf("%d cells, want 32", len(cells))
	}
	byRow := map[int][]Cell{}
	for _, c := range cells {
		if c.Seed == 1 {
			byRow[c.Row] = append(byRow[c.Row], c)
		}
	}
	check := func(row int, groups []string, organ, modality, center, fd bool) {
		t.Helper()
		c := byRow[row][0]
		m := c.Config.MADDR
		if !slices.Equal(c.Config.Groups, groups) {
			t.Errorf("row %d trains on %v, want %v", row, c.Config.Groups, groups)
		}
		if m.Organ != organ || m.Modality != modality || m.Center != center || (m.AnyConstraint() && m.Disentangle != fd) {
			t.Errorf("row %d: organ %v modality %v center %v fd %v", row, m.Organ, m.Modality, m.Center, m.Disentangle)
		}
		if m.AnyConstraint() != m.MixupActive(m.Mixup.Start) {
			t.Errorf("row %d: mixup must be on exactly when a constraint is", row)
		}
	}
	check(3, phantomGroups, false, false, false, false)
	check(4, []string{"liver-ct", "lung-ct"}, true, false, false, false)
	check(6, []string{"liver-ct", "lung-ct"}, true, false, true, true)
	check(7, []string{"lung-ct", "chest-xray"}, false, true, false, false)
	check(9, []string{"lung-ct", "chest-xray"}, false, true, true, true)
	check(11, phantomGroups, true, true, true, false)
	check(12, phantomGroups, true, true, true, true)
	if len(byRow[1]) != 3 || byRow[1][0].Config.LatentDim != 16 || byRow[2][0].Config.LatentDim != 0 {
		t.Errorf("rows 1-2: %d cells, latents %d and %d; want 3 cells, 16 and the default", len(byRow[1]), byRow[1][0].Config.LatentDim, byRow[2][0].Config.LatentDim)
	}

	s.Models = []string{"ae", "memae"}
	if _, err := Plan(s, phantomGroups); err == nil {
		t.Error("table 2 with two models: want an error")
	}
	s.Models = []string{"ae"}
	s.Roles = Roles{LiTS: "liver-ct", LungCT: "lung-ct", LungXray: "lung-xray"}
	if _, err := Plan(s, phantomGroups); err == nil || !strings.Contains(err.Error(), "lung-xray") {
		t.Errorf("role group missing from the data: err = %v", err)
	}
}

func TestShards(t *testing.T) {
	for _, n := range []int{1, 2, 3, 7} {
		owners := make([]int, 23)
		for i := 1; i <= n; i++ {
			sh, err := ParseShard(strings.Join([]string{itoa(i), itoa(n)}, "/"))
			if err != nil {
				t.Fatal(err)
			}
			for k := range owners {
				if sh.OwnsPosition(k) {
					owners[k]++
				}
			}
		}
		for k, c := range owners {
			if c != 1 {
				t.Fatalf("%d shards: cell %d owned %d times", n, k, c)
			}
		}
	}
	for _, bad := range []string{"0/2", "3/2", "1/0", "a/b", "1", "1/2/3"} {
		if _, err := ParseShard(bad); err == nil {
			t.Errorf("ParseShard(%q): want an error", bad)
		}
	}
	if sh, err := ParseShard(""); err != nil || !sh.OwnsPosition(5) {
		t.Error("no shard must own everything")
	}
}

func itoa(i int) string { return string(rune('0' + i)) }

func TestRolesAndGroups(t *testing.T) {
	r, err := ParseRoles("a,b,c")
	if err != nil || r.LiTS != "a" || r.LungXray != "c" {
		t.Fatalf("ParseRoles = %+v, %v", r, err)
	}
	if _, err := ParseRoles("a,b"); err == nil {
		t.Error("two roles: want an error")
	}
	got := OrderGroups([]string{"brain-mri", "chest-xray", "lung-ct", "liver-ct"})
	if !slices.Equal(got, []string{"liver-ct", "lung-ct", "chest-xray", "brain-mri"}) {
		t.Errorf("OrderGroups = %v", got)
	}
}

func TestPaperNumbers(t *testing.T) {
	p, err := Published()
	if err != nil {
		t.Fatal(err)
	}
	v, ok := p.Table1AUC("dpa", VariantSingle, "liver-ct")
	if !ok || v.Mean != 61.34 || v.Std == nil || *v.Std != 4.64 {
		t.Errorf("DPA on LiTS = %+v", v)
	}
	if v, ok := p.Table1AUC("ganomaly", VariantMADDR, "lung-xray"); !ok || v.Mean != 68.45 || v.String() != "68.45" {
		t.Errorf("MADDR+GANomaly on Lung-X = %+v", v)
	}
	if _, ok := p.Table1AUC("ae", VariantSingle, "liver-ct"); ok {
		t.Error("the paper has no plain autoencoder")
	}
	// Table 2 rows 2 and 12 are Table 1's DPA and MADDR + DPA.
	for _, key := range []string{"lits", "lung-ct", "lung-xray"} {
		group := map[string]string{"lits": "liver-ct", "lung-ct": "lung-ct", "lung-xray": "chest-xray"}[key]
		for _, pair := range []struct {
			row     int
			variant string
		}{{2, VariantSingle}, {12, VariantMADDR}} {
			a, _ := p.Table2AUC("dpa", pair.row, key)
			b, _ := p.Table1AUC("dpa", pair.variant, group)
			if a.String() != b.String() {
				t.Errorf("%s: table 2 row %d %v != table 1 %v", key, pair.row, a, b)
			}
		}
	}
	if _, ok := p.Table2AUC("dpa", 4, "lung-xray"); ok {
		t.Error("row 4 has no X-ray number")
	}
}

// TestPlanRunnerOptions checks the options the demo added to the runner: unset, they leave every cell's hash as
// it was before they existed; set, they are part of each cell.
func TestPlanRunnerOptions(t *testing.T) {
	s := planSettings(Table1)
	cells, err := Plan(s, phantomGroups)
	if err != nil {
		t.Fatal(err)
	}
	for _, c := range cells {
		// The hash as computed before Split, Untrained and MADDR existed.
		cfg := c.Config
		cfg.Threads, cfg.Workers, cfg.CacheBytes, cfg.CheckpointEvery, cfg.SkipBad = 0, 0, 0, 0, false
		b, _ := json.Marshal(struct {
			Config train.Config          `json:"config"`
			Eval   []string              `json:"eval"`
			Select metrics.SelectOptions `json:"select"`
		}{cfg, c.EvalGroups, s.selectOptions()})
		h := sha256.Sum256(b)
		if want := hex.EncodeToString(h[:8]); c.Hash(s.selectOptions()) != want {
			t.Errorf("%s: hash %s, was %s", c.ID, c.Hash(s.selectOptions()), want)
		}
	}

	spelt := s
	spelt.Split = "test"
	same, err := Plan(spelt, phantomGroups)
	if err != nil || same[0].Hash(s.selectOptions()) != cells[0].Hash(s.selectOptions()) {
		t.Errorf("split \"test\" spelt out changed the cells: %v", err)
	}

	opt := s
	opt.Split, opt.Untrained = SplitVal, true
	mc := maddr.Paper()
	mc.LambdaCenter = 0.5
	opt.MADDR = &mc
	changed, err := Plan(opt, phantomGroups)
	if err != nil {
		t.Fatal(err)
	}
	for i, c := range changed {
		if c.Split != SplitVal || !c.Untrained || c.Hash(s.selectOptions()) == cells[i].Hash(s.selectOptions()) {
			t.Errorf("%s: split %q, untrained %v, hash unchanged %v", c.ID, c.Split, c.Untrained, c.Hash(s.selectOptions()) == cells[i].Hash(s.selectOptions()))
		}
		if got := c.Config.MADDR.LambdaCenter; c.Variant == VariantMADDR && got != 0.5 {
			t.Errorf("%s: center weight %g, want the settings' 0.5", c.ID, got)
		}
		if c.Variant == VariantMADDR && c.Config.MADDR.Mixup.End != cells[i].Config.MADDR.Mixup.End {
			t.Errorf("%s: the settings' MADDR configuration must get the schedule's mixup window", c.ID)
		}
	}

	bad := s
	bad.Split = "train"
	if _, err := Plan(bad, phantomGroups); err == nil || !strings.Contains(err.Error(), "want test or val") {
		t.Errorf("split train: %v", err)
	}
}
