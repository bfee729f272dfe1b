package dataset

import (
	"fmt"
	"math"
	"math/rand/v2"
	"path/filepath"
	"regexp"
	"sort"
	"strconv"
)

// cxrFile is one chest X-ray named <prefix>_<id>_<0|1>.png.
type cxrFile struct {
	path  string
	id    int
	label Label
}

// findCXR lists the files matching re in the first candidate directory that
// holds any; names that look like the set's but do not parse are problems.
func findCXR(root string, candidates []string, re *regexp.Regexp, set string) (string, []cxrFile, []Problem, error) {
	for _, c := range candidates {
		dir := filepath.Join(root, filepath.FromSlash(c))
		files, err := listImages(dir)
		if err != nil {
			continue
		}
		var out []cxrFile
		var probs []Problem
		seen := map[int]string{}
		for _, f := range files {
			m := re.FindStringSubmatch(filepath.Base(f))
			if m == nil {
				continue
			}
			id, _ := strconv.Atoi(m[1])
			lab := Normal
			if m[2] == "1" {
				lab = Abnormal
			}
			if prev, dup := seen[id]; dup {
				probs = append(probs, Problem{Path: f, Err: fmt.Errorf("id %04d already used by %s", id, prev)})
				continue
			}
			seen[id] = f
			out = append(out, cxrFile{path: f, id: id, label: lab})
		}
		if len(out) > 0 || len(probs) > 0 {
			return dir, out, probs, nil
		}
	}
	return "", nil, nil, fmt.Errorf("%s: no %s images under %s (looked in %v)", set, re.String(), root, candidates)
}

// Shenzhen reads the Shenzhen tuberculosis chest X-rays
// (ChinaSet_AllFiles/CXR_png/CHNCXR_####_{0,1}.png, or the Kaggle layout
// images/CHNCXR_####_#.png; Root may also be the image folder itself).
// The suffix gives the label (_1 tuberculosis = abnormal). The split is the
// one of REFERS, which the paper follows: normal ids 0001-0228 train,
// 0229-0261 val, 0262-0326 test; tuberculosis 0562-0595 val, 0596-0662
// test (0327-0561 would be abnormal training images and are unused).
type Shenzhen struct {
	Root            string
	Organ, Modality string // default lung, xray
	Group           string
}

func (s *Shenzhen) Name() string { return "shenzhen:" + s.Root }

var shenzhenRe = regexp.MustCompile(`^CHNCXR_(\d{4})_([01])\.png$`)

// shenzhenSplit returns the REFERS split of an id, or ok=false when the id
// is unused; a suffix that contradicts the release's numbering (normals are
// 0001-0326, tuberculosis 0327-0662) is an error.
func shenzhenSplit(id int, lab Label) (Split, bool, error) {
	switch {
	case id < 1 || id > 662:
		return "", false, fmt.Errorf("id %04d is outside the release's 0001-0662", id)
	case lab == Normal && id > 326:
		return "", false, fmt.Errorf("suffix _0 (normal) but ids 0327-0662 are tuberculosis in the release: mislabelled file")
	case lab == Abnormal && id <= 326:
		return "", false, fmt.Errorf("suffix _1 (tuberculosis) but ids 0001-0326 are normal in the release: mislabelled file")
	case id <= 228:
		return Train, true, nil
	case id <= 261:
		return Val, true, nil
	case id <= 326:
		return Test, true, nil
	case id <= 561:
		return "", false, nil
	case id <= 595:
		return Val, true, nil
	}
	return Test, true, nil
}

func (s *Shenzhen) Samples(splits []Split) ([]Sample, []Problem, error) {
	_, files, probs, err := findCXR(s.Root, []string{"ChinaSet_AllFiles/CXR_png", "CXR_png", "images", "images/images", "."}, shenzhenRe, "shenzhen")
	if err != nil {
		return nil, nil, err
	}
	organ := NormalizeOrgan(orDefault(s.Organ, "lung"))
	modality := NormalizeModality(orDefault(s.Modality, "xray"))
	group := orDefault(s.Group, groupName(organ, modality))
	var samples []Sample
	for _, f := range files {
		sp, used, err := shenzhenSplit(f.id, f.label)
		if err != nil {
			probs = append(probs, Problem{Path: f.path, Err: err})
			continue
		}
		if !used || !wants(splits, sp) {
			continue
		}
		if p, bad := checkFile(f.path); bad {
			probs = append(probs, p)
			continue
		}
		samples = append(samples, Sample{Path: f.path, Organ: organ, Modality: modality, Group: group,
			Split: sp, Label: f.label, ID: filepath.Base(f.path)})
	}
	probs = append(probs, checkSplits(s.Name(), samples, splits)...)
	return samples, probs, nil
}

// Montgomery reads the Montgomery County chest X-rays
// (MontgomerySet/CXR_png/MCUCXR_####_{0,1}.png; Root may also be the image
// folder). There is no published split, so it is drawn with Seed in
// Shenzhen's proportions: normals 228:33:65 into train, val and test;
// abnormals (never used for training) 34:67 into val and test, all of them,
// because the set has only 58.
type Montgomery struct {
	Root            string
	Seed            uint64
	Organ, Modality string // default lung, xray
	Group           string
}

func (m *Montgomery) Name() string { return "montgomery:" + m.Root }

var montgomeryRe = regexp.MustCompile(`^MCUCXR_(\d{4})_([01])\.png$`)

func (m *Montgomery) Samples(splits []Split) ([]Sample, []Problem, error) {
	_, files, probs, err := findCXR(m.Root, []string{"MontgomerySet/CXR_png", "CXR_png", "."}, montgomeryRe, "montgomery")
	if err != nil {
		return nil, nil, err
	}
	organ := NormalizeOrgan(orDefault(m.Organ, "lung"))
	modality := NormalizeModality(orDefault(m.Modality, "xray"))
	group := orDefault(m.Group, groupName(organ, modality))
	var normal, abnormal []cxrFile
	for _, f := range files {
		if p, bad := checkFile(f.path); bad {
			probs = append(probs, p)
			continue
		}
		if f.label == Abnormal {
			abnormal = append(abnormal, f)
		} else {
			normal = append(normal, f)
		}
	}
	rng := rand.New(rand.NewPCG(m.Seed, 0x4d435543))
	var samples []Sample
	add := func(files []cxrFile, fractions []float64, targets []Split) {
		perm := rng.Perm(len(files))
		parts := apportion(len(files), fractions)
		k := 0
		for i, n := range parts {
			picked := perm[k : k+n]
			k += n
			if !wants(splits, targets[i]) {
				continue
			}
			for _, j := range sortedInts(picked) {
				f := files[j]
				samples = append(samples, Sample{Path: f.path, Organ: organ, Modality: modality, Group: group,
					Split: targets[i], Label: f.label, ID: filepath.Base(f.path)})
			}
		}
	}
	add(normal, []float64{228, 33, 65}, []Split{Train, Val, Test})
	add(abnormal, []float64{34, 67}, []Split{Val, Test})
	probs = append(probs, checkSplits(m.Name(), samples, splits)...)
	return samples, probs, nil
}

// apportion splits n items in the given proportions, rounding each part but
// the first and giving each part at least one item when n allows.
func apportion(n int, fractions []float64) []int {
	total := 0.0
	for _, f := range fractions {
		total += f
	}
	parts := make([]int, len(fractions))
	rest := n
	for i := len(fractions) - 1; i >= 1; i-- {
		parts[i] = int(math.Round(float64(n) * fractions[i] / total))
		if parts[i] == 0 && n >= len(fractions) {
			parts[i] = 1
		}
		parts[i] = min(parts[i], rest)
		rest -= parts[i]
	}
	parts[0] = rest
	return parts
}

func sortedInts(a []int) []int {
	out := append([]int(nil), a...)
	sort.Ints(out)
	return out
}
