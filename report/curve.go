package report

import (
	"bytes"
	"fmt"

	"gonum.org/v1/plot"
	"gonum.org/v1/plot/plotter"
	"gonum.org/v1/plot/vg"
	"gonum.org/v1/plot/vg/draw"
	"gonum.org/v1/plot/vg/vgimg"
)

// AUCSeries is one group's validation AUC (0..1) over training iterations.
type AUCSeries struct {
	Name  string
	Iter  []float64
	Value []float64
}

// LearningCurve draws the loss terms (top, as LossCurves does) above the
// validation AUC of every group (bottom, on the same iteration range, with
// the chance level marked) and returns a PNG. With no AUC it is the loss
// plot alone; with no losses, the AUC plot alone.
func LearningCurve(title string, losses []LossSeries, auc []AUCSeries) ([]byte, error) {
	hasLoss := false
	for _, s := range losses {
		hasLoss = hasLoss || len(s.Value) > 0
	}
	hasAUC := false
	for _, s := range auc {
		hasAUC = hasAUC || len(s.Value) > 0
	}
	switch {
	case !hasLoss && !hasAUC:
		return nil, fmt.Errorf("learning curve %q: no losses and no validation AUC", title)
	case !hasAUC:
		return LossCurves(title, losses)
	}
	bottom, err := aucPlot(title, auc)
	if err != nil {
		return nil, err
	}
	if !hasLoss {
		return pngOf(bottom, plotWidth, plotHeight)
	}
	top, err := lossPlot(title, losses)
	if err != nil {
		return nil, err
	}
	bottom.Title.Text = ""
	// Both panels share the iteration axis so points line up vertically.
	lo, hi := min(top.X.Min, bottom.X.Min), max(top.X.Max, bottom.X.Max)
	top.X.Min, top.X.Max, bottom.X.Min, bottom.X.Max = lo, hi, lo, hi
	return stackedPNG([]*plot.Plot{top, bottom}, plotWidth, 1.7*plotHeight)
}

// aucPlot draws one line with point markers per group; y runs over [0, 1]
// with a dashed line at 0.5, where a detector that has learned nothing sits.
func aucPlot(title string, series []AUCSeries) (*plot.Plot, error) {
	p := newPlot(title, "iteration", "validation AUC")
	p.Legend.Top, p.Legend.Left = false, false
	p.Y.Min, p.Y.Max = 0, 1
	first, last := 0.0, 0.0
	for i, s := range series {
		if len(s.Value) == 0 {
			continue
		}
		if len(s.Iter) != len(s.Value) {
			return nil, fmt.Errorf("AUC plot %q, %s: %d iterations for %d values", title, s.Name, len(s.Iter), len(s.Value))
		}
		xy := make(plotter.XYs, len(s.Value))
		for j := range s.Value {
			xy[j] = plotter.XY{X: s.Iter[j], Y: s.Value[j]}
			first, last = min(first, s.Iter[j]), max(last, s.Iter[j])
		}
		ln, pts, err := plotter.NewLinePoints(xy)
		if err != nil {
			return nil, fmt.Errorf("AUC plot %q, %s: %w", title, s.Name, err)
		}
		ln.Color, pts.Color = Colour(i), Colour(i)
		ln.Width = vg.Points(1.2)
		pts.Shape = draw.CircleGlyph{}
		p.Add(ln, pts)
		p.Legend.Add(s.Name, ln, pts)
	}
	chance, err := plotter.NewLine(plotter.XYs{{X: first, Y: 0.5}, {X: max(last, first+1), Y: 0.5}})
	if err != nil {
		return nil, err
	}
	chance.Color = Colour(6)
	chance.Dashes = []vg.Length{vg.Points(4), vg.Points(3)}
	p.Add(chance)
	p.Legend.Add("chance", chance)
	return p, nil
}

// stackedPNG draws plots one above the other with aligned axes.
func stackedPNG(plots []*plot.Plot, w, h vg.Length) (out []byte, err error) {
	defer func() {
		if r := recover(); r != nil {
			out, err = nil, fmt.Errorf("drawing %q: %v", plots[0].Title.Text, r)
		}
	}()
	img := vgimg.New(w, h)
	dc := draw.New(img)
	rows := make([][]*plot.Plot, len(plots))
	for i, p := range plots {
		rows[i] = []*plot.Plot{p}
	}
	tiles := draw.Tiles{Rows: len(plots), Cols: 1, PadY: vg.Points(6), PadTop: vg.Points(2), PadBottom: vg.Points(2),
		PadLeft: vg.Points(2), PadRight: vg.Points(4)}
	canvases := plot.Align(rows, tiles, dc)
	for i, p := range plots {
		p.Draw(canvases[i][0])
	}
	var b bytes.Buffer
	if _, err := (vgimg.PngCanvas{Canvas: img}).WriteTo(&b); err != nil {
		return nil, err
	}
	return b.Bytes(), nil
}
