package dataset

import (
	"bufio"
	"fmt"
	"os"
	"path/filepath"
	"strings"
)

// COVIDCT reads the UCSD-AI4H COVID-CT release with its official split
// lists: Data-split/{COVID,NonCOVID}/{train,val,test}CT_{COVID,NonCOVID}.txt
// name files (one per line, names may contain '%') under
// Images-processed/CT_COVID and Images-processed/CT_NonCOVID. NonCOVID is
// normal, COVID abnormal; training uses the NonCOVID train list only, which
// is exactly MADDR's training list (METHODS 4.2).
type COVIDCT struct {
	Root            string
	Organ, Modality string // default lung, ct
	Group           string
}

func (c *COVIDCT) Name() string { return "covidct:" + c.Root }

func (c *COVIDCT) Samples(splits []Split) ([]Sample, []Problem, error) {
	organ := NormalizeOrgan(orDefault(c.Organ, "lung"))
	modality := NormalizeModality(orDefault(c.Modality, "ct"))
	group := orDefault(c.Group, groupName(organ, modality))
	type list struct {
		split Split
		label Label
		class string // COVID or NonCOVID
		file  string // train, val, test
	}
	var lists []list
	for _, sp := range splits {
		lists = append(lists, list{sp, Normal, "NonCOVID", string(sp)})
		if sp != Train {
			lists = append(lists, list{sp, Abnormal, "COVID", string(sp)})
		}
	}
	var samples []Sample
	var probs []Problem
	for _, l := range lists {
		listPath := filepath.Join(c.Root, "Data-split", l.class, l.file+"CT_"+l.class+".txt")
		names, err := readLines(listPath)
		if err != nil {
			return nil, nil, fmt.Errorf("covidct: split %s: %w", l.split, err)
		}
		dir := filepath.Join(c.Root, "Images-processed", "CT_"+l.class)
		for _, name := range names {
			path := filepath.Join(dir, name)
			if p, bad := checkFile(path); bad {
				p.Err = fmt.Errorf("%w (listed in %s)", p.Err, listPath)
				probs = append(probs, p)
				continue
			}
			samples = append(samples, Sample{Path: path, Organ: organ, Modality: modality, Group: group,
				Split: l.split, Label: l.label, ID: "covidct/" + l.class + "/" + name})
		}
	}
	probs = append(probs, checkSplits(c.Name(), samples, splits)...)
	return samples, probs, nil
}

// readLines returns the non-blank lines of a text file, trimmed (the lists
// ship with Windows line ends).
func readLines(path string) ([]string, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	var lines []string
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		if s := strings.TrimSpace(sc.Text()); s != "" {
			lines = append(lines, s)
		}
	}
	if err := sc.Err(); err != nil {
		return nil, fmt.Errorf("reading %s: %w", path, err)
	}
	return lines, nil
}
