// Command scoreagree measures how far two 'maddr score' outputs of the same
// inputs agree, for images without labels, where no AUC can be computed
// (docs/precision.md uses it on the real-image fixtures, fp32 against bf16):
// the largest absolute and relative raw-score difference, Spearman's rank
// correlation of the raw scores, and the images whose decision differs.
//
//	maddr score --model M --precision fp32 --out fp32.csv testdata/real/...
//	maddr score --model M --precision bf16 --out bf16.csv testdata/real/...
//	go run ./tools/scoreagree fp32.csv bf16.csv
package main

import (
	"fmt"
	"io"
	"math"
	"os"
	"sort"

	"github.com/maddr-project/maddr/metrics"
	"github.com/maddr-project/maddr/score"
)

func main() {
	if len(os.Args) != 3 {
		fmt.Fprintln(os.Stderr, "usage: scoreagree REFERENCE.csv|json OTHER.csv|json")
		os.Exit(2)
	}
	if err := run(os.Args[1], os.Args[2], os.Stdout); err != nil {
		fmt.Fprintln(os.Stderr, "scoreagree:", err)
		os.Exit(1)
	}
}

// imageKey identifies one scored image (a slice of a volume, or a file) in
// both outputs.
type imageKey struct {
	path  string
	slice int
}

// groupAgreement is one group's comparison (by the reference's group).
type groupAgreement struct {
	images              int
	maxAbs, maxRel      float64
	reference, other    []float64
	decisionFlips       int
	decidedInReference  int
	missingInOther      int
	scorelessEitherSide int
}

func run(referencePath, otherPath string, w io.Writer) error {
	refHeader, refResults, err := score.ReadOutput(referencePath)
	if err != nil {
		return fmt.Errorf("%s: %w", referencePath, err)
	}
	otherHeader, otherResults, err := score.ReadOutput(otherPath)
	if err != nil {
		return fmt.Errorf("%s: %w", otherPath, err)
	}
	if refHeader.ModelSHA256 != otherHeader.ModelSHA256 {
		return fmt.Errorf("%s and %s were scored by different models", referencePath, otherPath)
	}
	other := map[imageKey]score.Result{}
	for _, r := range otherResults {
		if r.Level == score.LevelImage {
			other[imageKey{r.Path, r.Slice}] = r
		}
	}
	groups := map[string]*groupAgreement{}
	unreadable := 0
	for _, r := range refResults {
		if r.Level != score.LevelImage {
			continue
		}
		if r.Decision == score.Failed {
			// An image the reference could not read has no group to count under.
			unreadable++
			continue
		}
		for _, name := range []string{r.Group, "all"} {
			if groups[name] == nil {
				groups[name] = &groupAgreement{}
			}
			addPair(groups[name], r, other)
		}
	}
	names := make([]string, 0, len(groups))
	for name := range groups {
		if name != "all" {
			names = append(names, name)
		}
	}
	sort.Strings(names)
	names = append(names, "all")
	fmt.Fprintf(w, "reference %s (%s), other %s (%s)\n\n", referencePath, precisionOf(refHeader), otherPath, precisionOf(otherHeader))
	fmt.Fprintln(w, "| group | images | max abs. score difference | max rel. score difference | rank correlation | decision flips / decided |")
	fmt.Fprintln(w, "|---|---|---|---|---|---|")
	var notes []string
	for _, name := range names {
		g := groups[name]
		corr := "-"
		if r, ok := metrics.RankCorrelation(g.reference, g.other); ok {
			corr = fmt.Sprintf("%.5f", r)
		}
		fmt.Fprintf(w, "| %s | %d | %.3g | %.3g | %s | %d / %d |\n", name, g.images, g.maxAbs, g.maxRel, corr, g.decisionFlips, g.decidedInReference)
		if g.missingInOther > 0 || g.scorelessEitherSide > 0 {
			notes = append(notes, fmt.Sprintf("%s: %d image(s) missing from %s, %d without a score on one side (left out)",
				name, g.missingInOther, otherPath, g.scorelessEitherSide))
		}
	}
	if unreadable > 0 {
		notes = append(notes, fmt.Sprintf("%d image(s) of %s could not be read (left out)", unreadable, referencePath))
	}
	for _, n := range notes {
		fmt.Fprintln(w, "\n"+n)
	}
	return nil
}

// addPair adds the reference result r and its counterpart in other to g.
func addPair(g *groupAgreement, r score.Result, other map[imageKey]score.Result) {
	o, found := other[imageKey{r.Path, r.Slice}]
	if !found {
		g.missingInOther++
		return
	}
	if r.Raw == nil || o.Raw == nil || math.IsNaN(*r.Raw) || math.IsNaN(*o.Raw) {
		g.scorelessEitherSide++
		return
	}
	a, b := *r.Raw, *o.Raw
	g.images++
	g.reference, g.other = append(g.reference, a), append(g.other, b)
	g.maxAbs = math.Max(g.maxAbs, math.Abs(b-a))
	g.maxRel = math.Max(g.maxRel, math.Abs(b-a)/math.Max(math.Abs(a), 1e-30))
	// Only normal/abnormal decisions can flip; unknown (no threshold) and
	// out-of-scope do not depend on the score's last bits.
	if decided(r.Decision) {
		g.decidedInReference++
		if r.Decision != o.Decision {
			g.decisionFlips++
		}
	}
}

func decided(decision string) bool { return decision == score.Normal || decision == score.Abnormal }

func precisionOf(h score.Header) string {
	if h.Settings.Precision == "" {
		return "precision not recorded (fp32)"
	}
	return h.Settings.Precision
}
