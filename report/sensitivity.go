package report

import (
	"fmt"

	"gonum.org/v1/plot/plotter"
	"gonum.org/v1/plot/vg"
)

// SensitivityLine is one detector's detection rate (0..1) over bins of a lesion property.
type SensitivityLine struct {
	Label string
	X     []float64
	Rate  []float64
	// Colour indexes Palette (one colour per data group); Dashed tells a second detector of the same group apart.
	Colour int
	Dashed bool
}

// Sensitivity plots detection rate against a lesion property (size, contrast) and returns a PNG, so a reader
// sees which lesions a detector finds and which it misses.
func Sensitivity(title, xLabel string, lines []SensitivityLine) ([]byte, error) {
	p := newPlot(title, xLabel, "detection rate at the threshold")
	p.Y.Min, p.Y.Max = 0, 1
	p.Legend.Top, p.Legend.Left = false, false
	n := 0
	for _, l := range lines {
		if len(l.X) != len(l.Rate) {
			return nil, fmt.Errorf("sensitivity plot %q, %s: %d x values for %d rates", title, l.Label, len(l.X), len(l.Rate))
		}
		if len(l.X) == 0 {
			continue
		}
		xy := make(plotter.XYs, len(l.X))
		for i := range l.X {
			if l.Rate[i] < 0 || l.Rate[i] > 1 {
				return nil, fmt.Errorf("sensitivity plot %q, %s: rate %g outside [0, 1]", title, l.Label, l.Rate[i])
			}
			xy[i] = plotter.XY{X: l.X[i], Y: l.Rate[i]}
		}
		ln, pts, err := plotter.NewLinePoints(xy)
		if err != nil {
			return nil, fmt.Errorf("sensitivity plot %q, %s: %w", title, l.Label, err)
		}
		ln.Color, pts.Color = Colour(l.Colour), Colour(l.Colour)
		ln.Width = vg.Points(1.4)
		if l.Dashed {
			ln.Dashes = []vg.Length{vg.Points(5), vg.Points(3)}
		}
		p.Add(ln, pts)
		p.Legend.Add(l.Label, ln, pts)
		n++
	}
	if n == 0 {
		return nil, fmt.Errorf("sensitivity plot %q: no data", title)
	}
	return pngOf(p, plotWidth, plotHeight)
}
