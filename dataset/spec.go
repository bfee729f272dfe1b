package dataset

import (
	"encoding/json"
	"fmt"
	"strconv"
	"strings"

	"github.com/maddr-project/maddr/phantom"
)

// Spec configures one source. The same fields have a JSON form (field names
// below) and a one-line form for the command line:
//
//	KIND[:ROOT][,key=value]...
//
// for example
//
//	folder:/data/mine,organ=liver,modality=ct
//	lits:/data/LiTS,seed=7,all=true
//	shenzhen:/data/ChinaSet_AllFiles
//	manifest:/data/synth/manifest.csv
//	phantom,scale=0.1,groups=liver-ct+lung-ct
//
// Values cannot contain commas in the one-line form (use JSON for such paths);
// lists (groups) are joined with '+'; counts are five numbers
// trainNormal/valNormal/valAbnormal/testNormal/testAbnormal.
type Spec struct {
	Kind     string  `json:"kind"`
	Root     string  `json:"root,omitempty"`
	Organ    string  `json:"organ,omitempty"`
	Modality string  `json:"modality,omitempty"`
	Group    string  `json:"group,omitempty"`
	Seed     *uint64 `json:"seed,omitempty"` // nil: 0, or the phantom's default

	// lits: keep every usable slice instead of sampling to Counts.
	All bool `json:"all,omitempty"`
	// lits: slice counts to sample to; nil means the paper's.
	Counts *SplitCounts `json:"counts,omitempty"`

	// phantom generator settings (zero means the generator's default).
	Scale      float64  `json:"scale,omitempty"`
	Difficulty *float64 `json:"difficulty,omitempty"`
	Size       int      `json:"size,omitempty"`
	Groups     []string `json:"groups,omitempty"`
}

// SplitCounts are per-split sample counts of one data set.
type SplitCounts struct {
	TrainNormal  int `json:"train_normal"`
	ValNormal    int `json:"val_normal"`
	ValAbnormal  int `json:"val_abnormal"`
	TestNormal   int `json:"test_normal"`
	TestAbnormal int `json:"test_abnormal"`
}

// Kinds lists the source kinds with the keys each accepts besides kind.
var Kinds = map[string][]string{
	"folder":     {"root", "organ", "modality", "group"},
	"manifest":   {"root", "group"},
	"lits":       {"root", "organ", "modality", "group", "seed", "all", "counts"},
	"covidct":    {"root", "organ", "modality", "group"},
	"shenzhen":   {"root", "organ", "modality", "group"},
	"montgomery": {"root", "organ", "modality", "group", "seed"},
	"phantom":    {"seed", "scale", "difficulty", "size", "groups"},
}

// ParseSpec reads the one-line form.
func ParseSpec(s string) (Spec, error) {
	s = strings.TrimSpace(s)
	if strings.HasPrefix(s, "{") {
		var sp Spec
		if err := json.Unmarshal([]byte(s), &sp); err != nil {
			return Spec{}, fmt.Errorf("source spec %s: %w", s, err)
		}
		return sp, sp.check()
	}
	parts := strings.Split(s, ",")
	var sp Spec
	first := parts[0]
	if !strings.Contains(first, "=") {
		kind, root, hasRoot := strings.Cut(first, ":")
		sp.Kind = kind
		if hasRoot {
			sp.Root = root
		}
		parts = parts[1:]
	}
	for _, kv := range parts {
		key, val, ok := strings.Cut(kv, "=")
		if !ok {
			return Spec{}, fmt.Errorf("source spec %q: %q is not key=value", s, kv)
		}
		if err := sp.set(strings.ToLower(strings.TrimSpace(key)), strings.TrimSpace(val)); err != nil {
			return Spec{}, fmt.Errorf("source spec %q: %w", s, err)
		}
	}
	if err := sp.check(); err != nil {
		return Spec{}, fmt.Errorf("source spec %q: %w", s, err)
	}
	return sp, nil
}

func (sp *Spec) set(key, val string) error {
	var err error
	switch key {
	case "kind":
		sp.Kind = val
	case "root":
		sp.Root = val
	case "organ":
		sp.Organ = val
	case "modality":
		sp.Modality = val
	case "group":
		sp.Group = val
	case "seed":
		var v uint64
		v, err = strconv.ParseUint(val, 10, 64)
		sp.Seed = &v
	case "all":
		sp.All, err = strconv.ParseBool(val)
	case "counts":
		sp.Counts, err = parseCounts(val)
	case "scale":
		sp.Scale, err = strconv.ParseFloat(val, 64)
	case "difficulty":
		var v float64
		v, err = strconv.ParseFloat(val, 64)
		sp.Difficulty = &v
	case "size":
		sp.Size, err = strconv.Atoi(val)
	case "groups":
		sp.Groups = strings.Split(val, "+")
	default:
		return fmt.Errorf("unknown key %q", key)
	}
	if err != nil {
		return fmt.Errorf("key %s: %w", key, err)
	}
	return nil
}

func parseCounts(s string) (*SplitCounts, error) {
	f := strings.Split(s, "/")
	if len(f) != 5 {
		return nil, fmt.Errorf("want 5 counts trainNormal/valNormal/valAbnormal/testNormal/testAbnormal, got %q", s)
	}
	var n [5]int
	for i, v := range f {
		x, err := strconv.Atoi(v)
		if err != nil || x < 0 {
			return nil, fmt.Errorf("count %q is not a non-negative integer", v)
		}
		n[i] = x
	}
	return &SplitCounts{n[0], n[1], n[2], n[3], n[4]}, nil
}

// String gives the one-line form.
func (sp Spec) String() string {
	var b strings.Builder
	b.WriteString(sp.Kind)
	if sp.Root != "" {
		b.WriteString(":" + sp.Root)
	}
	add := func(k, v string) { b.WriteString("," + k + "=" + v) }
	if sp.Organ != "" {
		add("organ", sp.Organ)
	}
	if sp.Modality != "" {
		add("modality", sp.Modality)
	}
	if sp.Group != "" {
		add("group", sp.Group)
	}
	if sp.Seed != nil {
		add("seed", strconv.FormatUint(*sp.Seed, 10))
	}
	if sp.All {
		add("all", "true")
	}
	if c := sp.Counts; c != nil {
		add("counts", fmt.Sprintf("%d/%d/%d/%d/%d", c.TrainNormal, c.ValNormal, c.ValAbnormal, c.TestNormal, c.TestAbnormal))
	}
	if sp.Scale != 0 {
		add("scale", strconv.FormatFloat(sp.Scale, 'g', -1, 64))
	}
	if sp.Difficulty != nil {
		add("difficulty", strconv.FormatFloat(*sp.Difficulty, 'g', -1, 64))
	}
	if sp.Size != 0 {
		add("size", strconv.Itoa(sp.Size))
	}
	if len(sp.Groups) > 0 {
		add("groups", strings.Join(sp.Groups, "+"))
	}
	return b.String()
}

// check rejects unknown kinds and keys that do not apply to the kind, so a
// typo never silently falls back to a default.
func (sp Spec) check() error {
	allowed, ok := Kinds[sp.Kind]
	if !ok {
		return fmt.Errorf("unknown source kind %q (want one of folder, manifest, lits, covidct, shenzhen, montgomery, phantom)", sp.Kind)
	}
	has := func(k string) bool {
		for _, a := range allowed {
			if a == k {
				return true
			}
		}
		return false
	}
	used := map[string]bool{
		"root": sp.Root != "", "organ": sp.Organ != "", "modality": sp.Modality != "", "group": sp.Group != "",
		"seed": sp.Seed != nil, "all": sp.All, "counts": sp.Counts != nil, "scale": sp.Scale != 0,
		"difficulty": sp.Difficulty != nil, "size": sp.Size != 0, "groups": len(sp.Groups) > 0,
	}
	for k, u := range used {
		if u && !has(k) {
			return fmt.Errorf("key %q does not apply to kind %s", k, sp.Kind)
		}
	}
	if has("root") && sp.Root == "" {
		return fmt.Errorf("kind %s needs a root", sp.Kind)
	}
	if sp.Kind == "folder" && (sp.Organ == "" || sp.Modality == "") {
		return fmt.Errorf("kind folder needs organ and modality")
	}
	return nil
}

// Source builds the source the spec describes.
func (sp Spec) Source() (Source, error) {
	if err := sp.check(); err != nil {
		return nil, fmt.Errorf("source %s: %w", sp, err)
	}
	switch sp.Kind {
	case "folder":
		return &Folder{Root: sp.Root, Organ: sp.Organ, Modality: sp.Modality, Group: sp.Group}, nil
	case "manifest":
		return &Manifest{Path: sp.Root, Group: sp.Group}, nil
	case "lits":
		return &LiTS{Root: sp.Root, Seed: sp.seed(), All: sp.All, Counts: sp.Counts,
			Organ: sp.Organ, Modality: sp.Modality, Group: sp.Group}, nil
	case "covidct":
		return &COVIDCT{Root: sp.Root, Organ: sp.Organ, Modality: sp.Modality, Group: sp.Group}, nil
	case "shenzhen":
		return &Shenzhen{Root: sp.Root, Organ: sp.Organ, Modality: sp.Modality, Group: sp.Group}, nil
	case "montgomery":
		return &Montgomery{Root: sp.Root, Seed: sp.seed(), Organ: sp.Organ, Modality: sp.Modality, Group: sp.Group}, nil
	case "phantom":
		cfg := phantom.DefaultConfig()
		if sp.Seed != nil {
			cfg.Seed = *sp.Seed
		}
		if sp.Scale != 0 {
			cfg.Scale = sp.Scale
		}
		if sp.Difficulty != nil {
			cfg.Difficulty = *sp.Difficulty
		}
		if sp.Size != 0 {
			cfg.Size = sp.Size
		}
		cfg.Groups = sp.Groups
		return &Phantom{Config: cfg}, nil
	}
	panic("unreachable: kind checked above")
}

func (sp Spec) seed() uint64 {
	if sp.Seed == nil {
		return 0
	}
	return *sp.Seed
}

// NormalizeOrgan lower-cases an organ name.
func NormalizeOrgan(s string) string { return strings.ToLower(strings.TrimSpace(s)) }

// NormalizeModality lower-cases a modality and maps the usual spellings of
// radiography (x-ray, xr, cxr, cr, dx) to "xray" so sources agree.
func NormalizeModality(s string) string {
	m := strings.ToLower(strings.TrimSpace(s))
	switch m {
	case "x-ray", "xr", "cxr", "cr", "dx", "radiograph":
		return "xray"
	}
	return m
}

func orDefault(v, def string) string {
	if v == "" {
		return def
	}
	return v
}
