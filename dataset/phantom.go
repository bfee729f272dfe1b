package dataset

import (
	"fmt"

	"github.com/maddr-project/maddr/phantom"
)

// Phantom is the built-in synthetic data set (package phantom), generated
// in memory; it is the default data when no real set is given.
type Phantom struct {
	Config phantom.Config
}

func (p *Phantom) Name() string {
	c := p.Config
	return fmt.Sprintf("phantom(seed=%d,scale=%g,difficulty=%g,size=%d)", c.Seed, c.Scale, c.Difficulty, c.Size)
}

func (p *Phantom) Samples(splits []Split) ([]Sample, []Problem, error) {
	cases, err := phantom.Generate(p.Config)
	if err != nil {
		return nil, nil, fmt.Errorf("phantom: %w", err)
	}
	return PhantomSamples(cases, splits)
}

// PhantomSamples converts generated cases to samples of the given splits.
func PhantomSamples(cases []phantom.Case, splits []Split) ([]Sample, []Problem, error) {
	var samples []Sample
	for i := range cases {
		c := &cases[i]
		sp, err := ParseSplit(c.Split)
		if err != nil {
			return nil, nil, fmt.Errorf("phantom case %s: %w", c.ID, err)
		}
		if !wants(splits, sp) {
			continue
		}
		lab := Normal
		if c.Abnormal {
			lab = Abnormal
		}
		organ, modality := NormalizeOrgan(c.Organ), NormalizeModality(c.Modality)
		samples = append(samples, Sample{Image: &c.Image, Organ: organ, Modality: modality,
			Group: orDefault(c.Group, groupName(organ, modality)), Split: sp, Label: lab, ID: c.ID})
	}
	return samples, checkSplits("phantom", samples, splits), nil
}

// PhantomGroupPair returns the organ and modality of a built-in phantom
// group (e.g. "chest-xray" is lung + xray). Model files written before
// training recorded each group's organ and modality name phantom groups
// only, so their readers fall back on this.
func PhantomGroupPair(group string) (organ, modality string, ok bool) {
	for _, g := range phantom.Groups() {
		if g.Name == group {
			return g.Organ, g.Modality, true
		}
	}
	return "", "", false
}
