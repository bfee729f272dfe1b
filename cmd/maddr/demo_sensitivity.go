package main

import (
	"fmt"
	"math"
	"slices"
	"strings"

	"github.com/maddr-project/maddr/metrics"
	"github.com/maddr-project/maddr/phantom"
	"github.com/maddr-project/maddr/preprocess"
	"github.com/maddr-project/maddr/report"
)

// caseLesion is what the sensitivity tables need of one abnormal phantom case.
type caseLesion struct {
	Count    int
	RadiusPx float64 // largest lesion's radius in network-input pixels
	Contrast float64 // that lesion's contrast, in phantom.ContrastUnit(group)
}

// networkPixelsPerNative is how many network-input pixels one native pixel becomes through pp.
func networkPixelsPerNative(pp preprocess.Config, native int) float64 {
	f, side := 1.0, float64(native)
	if pp.Resize > 0 {
		f, side = float64(pp.Resize)/float64(native), float64(pp.Resize)
	}
	if pp.Crop > 0 {
		side = float64(pp.Crop)
	}
	return f * float64(pp.Size) / side
}

func lesionsByID(cases []phantom.Case, pp preprocess.Config, native int) map[string]caseLesion {
	f := networkPixelsPerNative(pp, native)
	out := map[string]caseLesion{}
	for _, c := range cases {
		if len(c.Lesions) == 0 {
			continue
		}
		big := phantom.Largest(c.Lesions)
		out[c.ID] = caseLesion{Count: len(c.Lesions), RadiusPx: big.RadiusPx * f, Contrast: big.Contrast}
	}
	return out
}

// sensBin is one size or contrast bin of one group's abnormal cases for one detector.
type sensBin struct {
	Method   string  `json:"method"`
	Group    string  `json:"group"`
	Property string  `json:"property"` // "radius" or "contrast"
	Lo       float64 `json:"lo"`
	Hi       float64 `json:"hi"`
	Median   float64 `json:"median"`
	Cases    int     `json:"abnormal_cases"`
	// Detected is the fraction of the bin's abnormal cases at or above the validation-chosen threshold, and AUC
	// ranks the bin's abnormal cases against all normal cases of the split; one value per training seed.
	Detected []float64 `json:"detection_rate"`
	AUC      []float64 `json:"auc"`
}

const sensitivityBins = 3

var sensitivityMethods = []string{rowStatistic, rowBase, rowMADDR}

// sensitivity splits each group's abnormal cases into terciles of the largest lesion's radius and, separately,
// of its contrast, and measures each detector on each bin.
func sensitivity(runs []demoRun, lesions map[string]caseLesion, groups []string) []sensBin {
	var out []sensBin
	for _, g := range groups {
		for _, prop := range []string{"radius", "contrast"} {
			value := func(l caseLesion) float64 {
				if prop == "radius" {
					return l.RadiusPx
				}
				return l.Contrast
			}
			for _, m := range sensitivityMethods {
				rs := runsOf(runs, m, g)
				if len(rs) == 0 {
					continue
				}
				// Bin edges come from the first run's case list; every run of a group scores the same cases.
				var vals []float64
				for i, id := range rs[0].IDs {
					if l, ok := lesions[id]; ok && rs[0].Abnormal[i] {
						vals = append(vals, value(l))
					}
				}
				if len(vals) < sensitivityBins {
					continue
				}
				slices.Sort(vals)
				for k := range sensitivityBins {
					lo, hi := vals[k*len(vals)/sensitivityBins], vals[(k+1)*len(vals)/sensitivityBins-1]
					bin := sensBin{Method: m, Group: g, Property: prop, Lo: lo, Hi: hi}
					var members []float64
					for _, r := range rs {
						var scores []float64
						var labels []bool
						detected, n := 0, 0
						for i, id := range r.IDs {
							if !r.Abnormal[i] {
								scores, labels = append(scores, r.Scores[i]), append(labels, false)
								continue
							}
							l, ok := lesions[id]
							if !ok || value(l) < lo || value(l) > hi {
								continue
							}
							scores, labels = append(scores, r.Scores[i]), append(labels, true)
							n++
							if r.Scores[i] >= r.Threshold {
								detected++
							}
							if len(bin.Detected) == 0 {
								members = append(members, value(l))
							}
						}
						if n == 0 {
							break
						}
						bin.Cases = n
						bin.Detected = append(bin.Detected, float64(detected)/float64(n))
						if a, err := metrics.AUC(scores, labels); err == nil {
							bin.AUC = append(bin.AUC, a)
						}
					}
					if bin.Cases == 0 {
						continue
					}
					slices.Sort(members)
					bin.Median = members[len(members)/2]
					out = append(out, bin)
				}
			}
		}
	}
	return out
}

func writeSensitivity(b *strings.Builder, bins []sensBin, st demoSettings) {
	fmt.Fprintf(b, "\nSensitivity by lesion size and contrast (%s split, abnormal cases of each group split into thirds by their\n", st.Split)
	fmt.Fprintf(b, "largest lesion's radius in %dx%d input pixels, and separately by that lesion's contrast: HU for CT, added\n", st.Size, st.Size)
	b.WriteString("attenuation for the X-ray). Detected = share of the bin at or above the validation threshold; AUC = the bin's\n")
	b.WriteString("abnormal cases against all normal cases. Mean +- std over training seeds, in %.\n\n")
	b.WriteString("| group | by | bin | cases | row | detected | AUC |\n|---|---|---|---|---|---|---|\n")
	for _, s := range bins {
		unit := "px"
		if s.Property == "contrast" {
			unit = phantom.ContrastUnit(s.Group)
		}
		fmt.Fprintf(b, "| %s | %s | %s-%s %s | %d | %s | %s | %s |\n", s.Group, s.Property, trimNum(s.Lo), trimNum(s.Hi), unit, s.Cases,
			shortLabel(s.Method, st.Model), metrics.FormatMeanStd(s.Detected), metrics.FormatMeanStd(s.AUC))
	}
}

func shortLabel(method, model string) string {
	switch method {
	case rowStatistic:
		return "mean-image statistic"
	case rowBase:
		return model
	case rowMADDR:
		return "MADDR+" + model
	}
	return method
}

func trimNum(v float64) string {
	if math.Abs(v) >= 10 {
		return fmt.Sprintf("%.0f", v)
	}
	return fmt.Sprintf("%.2f", v)
}

// sensitivityPlots draws detection rate against lesion radius and against contrast third, one line per group and
// detector (the statistic is left out to keep the plots readable; it is in the table).
func sensitivityPlots(bins []sensBin, st demoSettings) (map[string][]byte, error) {
	out := map[string][]byte{}
	for _, prop := range []string{"radius", "contrast"} {
		var lines []report.SensitivityLine
		key := map[string]int{}
		for _, s := range bins {
			if s.Property != prop || s.Method == rowStatistic {
				continue
			}
			name := s.Group + ", " + shortLabel(s.Method, st.Model)
			i, ok := key[name]
			if !ok {
				i = len(lines)
				key[name] = i
				lines = append(lines, report.SensitivityLine{Label: name, Colour: groupColour(s.Group), Dashed: s.Method == rowMADDR})
			}
			mu, _ := metrics.MeanStd(s.Detected)
			x := s.Median
			if prop == "contrast" {
				x = float64(len(lines[i].X) + 1)
			}
			lines[i].X = append(lines[i].X, x)
			lines[i].Rate = append(lines[i].Rate, mu)
		}
		if len(lines) == 0 {
			continue
		}
		xLabel := fmt.Sprintf("largest lesion radius (pixels of the %dx%d input), median of the bin", st.Size, st.Size)
		if prop == "contrast" {
			xLabel = "contrast third (1 = weakest; ranges in demo.md)"
		}
		png, err := report.Sensitivity(fmt.Sprintf("Detection rate by lesion %s (difficulty %.2f)", prop, st.Difficulty), xLabel, lines)
		if err != nil {
			return nil, err
		}
		out["sensitivity-"+prop+".png"] = png
	}
	return out, nil
}

func groupColour(g string) int {
	for i, info := range phantom.Groups() {
		if info.Name == g {
			return i
		}
	}
	return len(phantom.Groups())
}
