package score

import (
	"fmt"
	"maps"
	"slices"
	"strings"

	"github.com/maddr-project/maddr/dataset"
	"github.com/maddr-project/maddr/medimg"
	"github.com/maddr-project/maddr/modelfile"
)

// route fills in the organ, modality, group, threshold and decision of a
// scored result. group is the caller's group ("" = route by the heads).
func (s *Scorer) route(r *Result, img medimg.Image, organP, modalityP []float32, group, from string) {
	s.readHeads(r, organP, modalityP)
	var outOfScope []string
	if group == "" {
		outOfScope = s.routeByHeads(r)
	} else {
		s.routeToGiven(r, group, from)
	}
	outOfScope = append(outOfScope, s.foreignModality(img)...)
	s.decide(r, outOfScope)
}

// readHeads names the organ and modality the heads see.
func (s *Scorer) readHeads(r *Result, organP, modalityP []float32) {
	cls := s.model.Framework.Classes
	if organP != nil {
		i, p := argmax(organP)
		r.Organ, r.OrganProb = cls.Organs[i], &p
	}
	if modalityP != nil {
		i, p := argmax(modalityP)
		r.Modality, r.ModalityProb = cls.Modalities[i], &p
	}
	// Without a head, a part every trained group shares is known anyway.
	if r.Organ == "" {
		r.Organ = s.sharedPart(func(p modelfile.GroupPair) string { return p.Organ })
	}
	if r.Modality == "" {
		r.Modality = s.sharedPart(func(p modelfile.GroupPair) string { return p.Modality })
	}
}

// routeByHeads picks the group of the organ and modality the heads see and
// returns the reasons the image is out of scope, if any.
func (s *Scorer) routeByHeads(r *Result) (outOfScope []string) {
	r.GroupFrom = FromHeads
	if s.opts.MinConfidence > 0 {
		if r.OrganProb != nil && *r.OrganProb < s.opts.MinConfidence {
			outOfScope = append(outOfScope, fmt.Sprintf("organ head unsure (%s at %.2f < %.2f)", r.Organ, *r.OrganProb, s.opts.MinConfidence))
		}
		if r.ModalityProb != nil && *r.ModalityProb < s.opts.MinConfidence {
			outOfScope = append(outOfScope, fmt.Sprintf("modality head unsure (%s at %.2f < %.2f)", r.Modality, *r.ModalityProb, s.opts.MinConfidence))
		}
	}
	if g, ok := s.model.Manifest.GroupOf(r.Organ, r.Modality); ok {
		r.Group = g
	} else {
		outOfScope = append(outOfScope, fmt.Sprintf("%s %s is not a group this model was trained on (%s)",
			orNone(r.Organ), orNone(r.Modality), strings.Join(s.trained, ", ")))
	}
	return outOfScope
}

// routeToGiven judges the image against the caller's group, noting when
// the heads disagree.
func (s *Scorer) routeToGiven(r *Result, group, from string) {
	r.Group, r.GroupFrom = group, from
	p, ok := s.model.Manifest.PairOf(group)
	if !ok {
		return
	}
	var seen []string
	if r.OrganProb != nil && r.Organ != p.Organ {
		seen = append(seen, fmt.Sprintf("organ %s (%.2f)", r.Organ, *r.OrganProb))
	}
	if r.ModalityProb != nil && r.Modality != p.Modality {
		seen = append(seen, fmt.Sprintf("modality %s (%.2f)", r.Modality, *r.ModalityProb))
	}
	if len(seen) > 0 {
		r.Notes = append(r.Notes, fmt.Sprintf("judged as %s as asked, but the heads see %s", group, strings.Join(seen, " and ")))
	}
}

// foreignModality: a DICOM file that says what it is overrides nothing but
// can rule an image out, since the heads only know the modalities they were
// trained on.
func (s *Scorer) foreignModality(img medimg.Image) []string {
	if img.Modality == "" {
		return nil
	}
	man := s.model.Manifest
	if _, ok := dataset.Vocab(man.Vocabs.Modality).Index(dataset.NormalizeModality(img.Modality)); ok {
		return nil
	}
	return []string{fmt.Sprintf("the file's DICOM modality is %s, which this model was not trained on (it knows %s)",
		img.Modality, strings.Join(man.Vocabs.Modality, ", "))}
}

// decide applies the group's threshold (and the out-of-distribution
// limit) to the raw score.
func (s *Scorer) decide(r *Result, outOfScope []string) {
	th, hasTh := s.model.Manifest.Thresholds[r.Group]
	if r.Group != "" && hasTh {
		v, n := th.Value, th.Normalise(*r.Raw)
		r.Threshold, r.Normalised, r.ThresholdMethod = &v, &n, th.Method
		if s.opts.OODFactor > 0 && th.Value > 0 && *r.Raw > s.opts.OODFactor*th.Value {
			outOfScope = append(outOfScope, fmt.Sprintf("raw score is %.1f times the %s threshold (limit %g): "+
				"unlike anything the model was trained on, or grossly abnormal", *r.Raw/th.Value, r.Group, s.opts.OODFactor))
		}
	}
	switch {
	case len(outOfScope) > 0:
		r.Decision = OutOfScope
		r.Notes = append(outOfScope, r.Notes...)
	case !hasTh:
		r.Decision = Unknown
		r.Notes = append(r.Notes, fmt.Sprintf("the model has no threshold for group %s: run 'maddr eval --model %s' to choose and store per-group thresholds",
			r.Group, s.model.Path))
	case th.Abnormal(*r.Raw):
		r.Decision = Abnormal
	default:
		r.Decision = Normal
	}
}

func orNone(s string) string {
	if s == "" {
		return "(unknown)"
	}
	return s
}

// Summarise condenses the results of one volume's slices into one result:
// out of scope when most readable slices are, else abnormal when any
// in-scope slice is, normal when every in-scope slice is normal, otherwise
// the most telling of unknown, out of scope and error. The
// score fields are those of the slice with the highest normalised score
// (highest raw score when nothing could be normalised), named by Slice.
func Summarise(volume string, slices []Result) Result {
	sum := Result{Level: LevelVolume, Path: volume, Volume: volume, Slices: len(slices)}
	count := map[string]int{}
	groups := map[string]int{}
	organs := map[string]int{}
	modalities := map[string]int{}
	best := -1
	bestNorm := false
	for i, r := range slices {
		count[r.Decision]++
		if r.Group != "" {
			groups[r.Group]++
		}
		if r.Organ != "" {
			organs[r.Organ]++
		}
		if r.Modality != "" {
			modalities[r.Modality]++
		}
		if r.Raw == nil {
			continue
		}
		scored := r.Decision == Normal || r.Decision == Abnormal
		switch {
		case best < 0:
			best, bestNorm = i, scored && r.Normalised != nil
		case scored && r.Normalised != nil && (!bestNorm || *r.Normalised > *slices[best].Normalised):
			best, bestNorm = i, true
		case !bestNorm && *r.Raw > *slices[best].Raw:
			best = i
		}
	}
	sum.AbnormalSlices, sum.OutOfScope = count[Abnormal], count[OutOfScope]
	switch {
	case 2*count[OutOfScope] > count[Normal]+count[Abnormal]+count[Unknown]+count[OutOfScope]:
		// Mostly unlike the training data (a brain MRI sent to a chest
		// model): a few slices that slip through do not make it a chest.
		sum.Decision = OutOfScope
	case count[Abnormal] > 0:
		sum.Decision = Abnormal
	case count[Normal] > 0:
		sum.Decision = Normal
	case count[Unknown] > 0:
		sum.Decision = Unknown
	case count[OutOfScope] > 0:
		sum.Decision = OutOfScope
	default:
		sum.Decision = Failed
	}
	sum.Group, sum.Organ, sum.Modality = majority(groups), majority(organs), majority(modalities)
	if best >= 0 {
		b := slices[best]
		sum.Slice, sum.Raw, sum.Normalised, sum.Threshold, sum.ThresholdMethod = b.Slice, b.Raw, b.Normalised, b.Threshold, b.ThresholdMethod
		if b.Group != "" {
			sum.Group = b.Group
		}
		sum.GroupFrom = b.GroupFrom
	}
	var notes []string
	if n := count[OutOfScope]; n > 0 {
		notes = append(notes, fmt.Sprintf("%d of %d slices out of scope", n, len(slices)))
	}
	if n := count[Failed]; n > 0 {
		notes = append(notes, fmt.Sprintf("%d of %d slices unreadable", n, len(slices)))
	}
	if n := count[Unknown]; n > 0 {
		notes = append(notes, fmt.Sprintf("%d of %d slices without a threshold", n, len(slices)))
	}
	sum.Notes = notes
	return sum
}

// majority returns the most frequent key (the first in order on a tie).
func majority(c map[string]int) string {
	best, bn := "", 0
	for _, k := range slices.Sorted(maps.Keys(c)) {
		if c[k] > bn {
			best, bn = k, c[k]
		}
	}
	return best
}
