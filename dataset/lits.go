package dataset

import (
	"fmt"
	"math"
	"math/rand/v2"
	"os"
	"path/filepath"
	"regexp"
	"runtime"
	"sort"
	"strconv"
	"sync"

	"github.com/maddr-project/maddr/medimg"
)

// PaperLiTSCounts are the slice counts of the paper (METHODS 4.2).
var PaperLiTSCounts = SplitCounts{TrainNormal: 186, ValNormal: 192, ValAbnormal: 105, TestNormal: 164, TestAbnormal: 249}

// LiTS reads the LiTS training volumes ("Training Batch 1/volume-N.nii" with
// "segmentation-N.nii", and "Training Batch 2/...") or the Medical
// Segmentation Decathlon Task03 layout (imagesTr/liver_N.nii.gz with
// labelsTr/liver_N.nii.gz), and turns axial slices into samples.
//
// A slice is normal when its segmentation holds liver (label 1) and no
// tumour (label 2), abnormal when it holds tumour; other slices are unused.
// Volumes, not slices, are split 77/27/27 (scaled to the number of volumes)
// with Seed, so no patient is in two splits; abnormal slices of training
// volumes are dropped (the paper trains on normal slices only). Unless All is
// set, each split is then sampled with Seed down to Counts (the paper's by
// default), or fewer when the volumes do not hold enough.
type LiTS struct {
	Root            string
	Seed            uint64
	All             bool
	Counts          *SplitCounts
	Organ, Modality string // default liver, ct
	Group           string
	Workers         int // segmentations scanned in parallel; 0 means NumCPU
}

func (l *LiTS) Name() string { return "lits:" + l.Root }

// litsPair is one labelled volume.
type litsPair struct {
	id          int
	image, mask string
	normal      []int // slice indices
	abnormal    []int
}

var (
	litsVolumeRe = regexp.MustCompile(`^volume-(\d+)\.nii(\.gz)?$`)
	msdVolumeRe  = regexp.MustCompile(`^liver_(\d+)\.nii(\.gz)?$`)
)

// findLiTS lists the labelled volumes under root in either layout.
func findLiTS(root string) ([]litsPair, []Problem, error) {
	var pairs []litsPair
	var probs []Problem
	add := func(imageDir, maskDir string, re *regexp.Regexp, maskName func(id, ext string) string) error {
		files, err := listImages(imageDir)
		if err != nil {
			return err
		}
		for _, f := range files {
			m := re.FindStringSubmatch(filepath.Base(f))
			if m == nil {
				continue
			}
			id, _ := strconv.Atoi(m[1])
			mask := filepath.Join(maskDir, maskName(m[1], m[2]))
			if _, err := os.Stat(mask); err != nil {
				// The other compression is accepted too: people gzip one and not the other.
				alt := filepath.Join(maskDir, maskName(m[1], map[string]string{"": ".gz", ".gz": ""}[m[2]]))
				if _, err2 := os.Stat(alt); err2 != nil {
					probs = append(probs, Problem{Path: f, Err: fmt.Errorf("missing segmentation %s", mask)})
					continue
				}
				mask = alt
			}
			pairs = append(pairs, litsPair{id: id, image: f, mask: mask})
		}
		return nil
	}
	litsMask := func(id, ext string) string { return "segmentation-" + id + ".nii" + ext }
	msdMask := func(id, ext string) string { return "liver_" + id + ".nii" + ext }

	dirs, _ := filepath.Glob(filepath.Join(root, "Training Batch *"))
	dirs = append(dirs, root)
	for _, d := range dirs {
		if err := add(d, d, litsVolumeRe, litsMask); err != nil {
			return nil, nil, fmt.Errorf("lits: %w", err)
		}
	}
	if st, err := os.Stat(filepath.Join(root, "imagesTr")); err == nil && st.IsDir() {
		if err := add(filepath.Join(root, "imagesTr"), filepath.Join(root, "labelsTr"), msdVolumeRe, msdMask); err != nil {
			return nil, nil, fmt.Errorf("lits: %w", err)
		}
	}
	if len(pairs) == 0 && len(probs) == 0 {
		return nil, nil, fmt.Errorf("lits: no volume-N.nii under %s or its \"Training Batch *\" folders, and no imagesTr/liver_N.nii.gz", root)
	}
	sort.Slice(pairs, func(a, b int) bool { return pairs[a].id < pairs[b].id })
	for i := 1; i < len(pairs); i++ {
		if pairs[i].id == pairs[i-1].id {
			return nil, nil, fmt.Errorf("lits: volume %d appears twice: %s and %s", pairs[i].id, pairs[i-1].image, pairs[i].image)
		}
	}
	return pairs, probs, nil
}

// scanMask classifies the slices of one segmentation and checks that it
// has the shape of its volume.
func scanMask(p *litsPair) error {
	for _, f := range []string{p.image, p.mask} {
		if pr, bad := checkFile(f); bad {
			return pr.Err
		}
	}
	img, err := medimg.OpenVolume(p.image)
	if err != nil {
		return err
	}
	defer img.Close()
	mask, err := medimg.OpenVolume(p.mask)
	if err != nil {
		return err
	}
	defer mask.Close()
	n := mask.NumSlices()
	if n == 0 {
		return fmt.Errorf("segmentation %s has no slices", p.mask)
	}
	first, err := img.Slice(0)
	if err != nil {
		return err
	}
	for z := 0; z < n; z++ {
		m, err := mask.Slice(z)
		if err != nil {
			return err
		}
		if z == 0 && (img.NumSlices() != n || m.Width != first.Width || m.Height != first.Height) {
			return fmt.Errorf("segmentation %s is %dx%dx%d but volume %s is %dx%dx%d",
				p.mask, m.Width, m.Height, n, p.image, first.Width, first.Height, img.NumSlices())
		}
		liver, tumour := false, false
		for _, v := range m.Pix {
			switch {
			case math.IsNaN(float64(v)):
				return fmt.Errorf("segmentation %s slice %d holds NaN", p.mask, z)
			case v >= 1.5:
				tumour = true
			case v >= 0.5:
				liver = true
			}
		}
		switch {
		case tumour:
			p.abnormal = append(p.abnormal, z)
		case liver:
			p.normal = append(p.normal, z)
		}
	}
	return nil
}

// splitVolumes assigns volume positions to splits in the paper's 77/27/27
// proportions, shuffled with seed; val and test get at least one volume.
func splitVolumes(n int, seed uint64) (map[int]Split, error) {
	if n < 3 {
		return nil, fmt.Errorf("need at least 3 labelled volumes to split by volume, have %d", n)
	}
	nVal := max(1, int(math.Round(float64(n)*27/131)))
	nTest := max(1, int(math.Round(float64(n)*27/131)))
	nTrain := n - nVal - nTest
	rng := rand.New(rand.NewPCG(seed, 0x4c695453))
	perm := rng.Perm(n)
	out := make(map[int]Split, n)
	for i, p := range perm {
		switch {
		case i < nTrain:
			out[p] = Train
		case i < nTrain+nVal:
			out[p] = Val
		default:
			out[p] = Test
		}
	}
	return out, nil
}

func (l *LiTS) Samples(splits []Split) ([]Sample, []Problem, error) {
	pairs, probs, err := findLiTS(l.Root)
	if err != nil {
		return nil, nil, err
	}
	workers := l.Workers
	if workers <= 0 {
		workers = runtime.NumCPU()
	}
	errs := make([]error, len(pairs))
	var wg sync.WaitGroup
	next := make(chan int)
	for w := 0; w < workers; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range next {
				errs[i] = scanMask(&pairs[i])
			}
		}()
	}
	for i := range pairs {
		next <- i
	}
	close(next)
	wg.Wait()
	var good []litsPair
	for i, e := range errs {
		if e != nil {
			probs = append(probs, Problem{Path: pairs[i].image, Err: e})
			continue
		}
		good = append(good, pairs[i])
	}
	// Bad volumes are left out before splitting, so with SkipBad the split
	// of the remaining volumes is the one a clean copy of them would get.
	assign, err := splitVolumes(len(good), l.Seed)
	if err != nil {
		if len(probs) > 0 {
			return nil, probs, nil
		}
		return nil, nil, fmt.Errorf("lits %s: %w", l.Root, err)
	}

	organ := NormalizeOrgan(orDefault(l.Organ, "liver"))
	modality := NormalizeModality(orDefault(l.Modality, "ct"))
	group := orDefault(l.Group, groupName(organ, modality))
	pools := map[Split]map[Label][]Sample{Train: {}, Val: {}, Test: {}}
	for i, p := range good {
		sp := assign[i]
		mk := func(z int, lab Label) Sample {
			return Sample{Path: p.image, Slice: z, Organ: organ, Modality: modality, Group: group,
				Split: sp, Label: lab, HU: true, ID: fmt.Sprintf("lits/volume-%d/%03d", p.id, z)}
		}
		for _, z := range p.normal {
			pools[sp][Normal] = append(pools[sp][Normal], mk(z, Normal))
		}
		if sp != Train {
			for _, z := range p.abnormal {
				pools[sp][Abnormal] = append(pools[sp][Abnormal], mk(z, Abnormal))
			}
		}
	}
	counts := PaperLiTSCounts
	if l.Counts != nil {
		counts = *l.Counts
	}
	want := map[Split]map[Label]int{
		Train: {Normal: counts.TrainNormal},
		Val:   {Normal: counts.ValNormal, Abnormal: counts.ValAbnormal},
		Test:  {Normal: counts.TestNormal, Abnormal: counts.TestAbnormal},
	}
	var samples []Sample
	for k, sp := range AllSplits {
		if !wants(splits, sp) {
			continue
		}
		for _, lab := range []Label{Normal, Abnormal} {
			pool := pools[sp][lab]
			if !l.All {
				pool = sampleN(pool, want[sp][lab], l.Seed, uint64(k*2+int(lab)))
			}
			samples = append(samples, pool...)
		}
	}
	probs = append(probs, checkSplits(l.Name(), samples, splits)...)
	return samples, probs, nil
}

// sampleN draws n of pool without replacement (all when n >= len(pool)),
// keeping pool order so samples of one volume stay together.
func sampleN(pool []Sample, n int, seed, stream uint64) []Sample {
	if n >= len(pool) {
		return pool
	}
	rng := rand.New(rand.NewPCG(seed, 0x53616d70^stream))
	picked := rng.Perm(len(pool))[:n]
	sort.Ints(picked)
	out := make([]Sample, n)
	for i, j := range picked {
		out[i] = pool[j]
	}
	return out
}
