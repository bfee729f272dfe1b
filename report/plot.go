// Package report draws what people look at after an experiment: ROC curves,
// histograms of normal and abnormal scores with the decision threshold,
// learning curves (loss terms and validation AUC over the iterations),
// t-SNE maps of latent codes, anomaly heat maps laid
// over the images, and one self-contained HTML page that embeds all of them
// next to the tables.
//
// Everything here works on plain Go values (scores, curves, float32 images),
// so the package does not depend on libtorch and its tests are pure Go.
package report

import (
	"bytes"
	"fmt"
	"image/color"
	"math"
	"sort"

	"gonum.org/v1/plot"
	"gonum.org/v1/plot/plotter"
	"gonum.org/v1/plot/vg"
	"gonum.org/v1/plot/vg/draw"

	"github.com/maddr-project/maddr/metrics"
)

// Palette is the colour cycle of every plot: distinguishable for the common
// forms of colour blindness (Okabe and Ito's set, minus yellow, which
// disappears on white).
var Palette = []color.Color{
	color.RGBA{0, 114, 178, 255},   // blue
	color.RGBA{213, 94, 0, 255},    // vermillion
	color.RGBA{0, 158, 115, 255},   // bluish green
	color.RGBA{204, 121, 167, 255}, // reddish purple
	color.RGBA{86, 180, 233, 255},  // sky blue
	color.RGBA{230, 159, 0, 255},   // orange
	color.RGBA{0, 0, 0, 255},       // black
}

// Colour returns the i-th palette colour, cycling.
func Colour(i int) color.Color { return Palette[((i%len(Palette))+len(Palette))%len(Palette)] }

// Plot sizes: wide enough for a legend, small enough for two side by side on a page.
const (
	plotWidth  = 5.2 * vg.Inch
	plotHeight = 3.9 * vg.Inch
)

// pngOf renders p as PNG bytes. gonum/plot panics on some degenerate
// inputs (e.g. a log axis over a non-positive range); those become errors.
func pngOf(p *plot.Plot, w, h vg.Length) (out []byte, err error) {
	defer func() {
		if r := recover(); r != nil {
			out, err = nil, fmt.Errorf("drawing %q: %v", p.Title.Text, r)
		}
	}()
	wt, err := p.WriterTo(w, h, "png")
	if err != nil {
		return nil, err
	}
	var b bytes.Buffer
	if _, err := wt.WriteTo(&b); err != nil {
		return nil, err
	}
	return b.Bytes(), nil
}

func newPlot(title, x, y string) *plot.Plot {
	p := plot.New()
	p.Title.Text = title
	p.X.Label.Text = x
	p.Y.Label.Text = y
	p.Legend.Top = true
	p.Add(plotter.NewGrid())
	return p
}

// ROCLine is one ROC curve of an ROC plot.
type ROCLine struct {
	Label string
	Curve metrics.ROCCurve
	// Colour indexes Palette, so the same method keeps its colour across plots.
	Colour int
	// Dashed draws the line dashed (e.g. the second and third seeds).
	Dashed bool
	// NoLegend leaves the line out of the legend (repeats of one method).
	NoLegend bool
}

// ROC plots ROC curves with the chance diagonal and returns a PNG.
func ROC(title string, lines []ROCLine) ([]byte, error) {
	p := newPlot(title, "false-positive rate (normal flagged)", "true-positive rate (abnormal found)")
	p.X.Min, p.X.Max, p.Y.Min, p.Y.Max = 0, 1, 0, 1
	p.Legend.Top, p.Legend.Left = false, false
	chance, err := plotter.NewLine(plotter.XYs{{X: 0, Y: 0}, {X: 1, Y: 1}})
	if err != nil {
		return nil, err
	}
	chance.Color = color.Gray{Y: 160}
	chance.Dashes = []vg.Length{vg.Points(2), vg.Points(2)}
	p.Add(chance)
	for _, l := range lines {
		if len(l.Curve.FPR) == 0 {
			continue
		}
		xy := make(plotter.XYs, len(l.Curve.FPR))
		for i := range xy {
			xy[i] = plotter.XY{X: l.Curve.FPR[i], Y: l.Curve.TPR[i]}
		}
		ln, err := plotter.NewLine(xy)
		if err != nil {
			return nil, fmt.Errorf("ROC %q: %w", l.Label, err)
		}
		ln.Color = Colour(l.Colour)
		ln.Width = vg.Points(1.5)
		if l.Dashed {
			ln.Dashes = []vg.Length{vg.Points(4), vg.Points(2)}
			ln.Width = vg.Points(1)
		}
		p.Add(ln)
		if !l.NoLegend {
			p.Legend.Add(l.Label, ln)
		}
	}
	return pngOf(p, plotWidth, plotHeight)
}

// Histogram plots the test scores of normal and abnormal images on shared
// bins with the decision threshold as a vertical line, and returns a PNG.
// Counts are normalised per class so the two shapes compare even when one
// class is much larger.
func Histogram(title string, normal, abnormal []float64, threshold float64) ([]byte, error) {
	all := append(append([]float64{}, normal...), abnormal...)
	if len(all) == 0 {
		return nil, fmt.Errorf("histogram %q: no scores", title)
	}
	lo, hi := math.Inf(1), math.Inf(-1)
	for _, v := range append(all, threshold) {
		if math.IsNaN(v) || math.IsInf(v, 0) {
			continue
		}
		lo, hi = math.Min(lo, v), math.Max(hi, v)
	}
	if !(hi > lo) {
		hi = lo + 1
	}
	nbins := int(math.Max(10, math.Min(40, math.Sqrt(float64(len(all)))*2)))
	width := (hi - lo) / float64(nbins)
	bins := func(v []float64) []plotter.HistogramBin {
		out := make([]plotter.HistogramBin, nbins)
		for i := range out {
			out[i].Min, out[i].Max = lo+float64(i)*width, lo+float64(i+1)*width
		}
		for _, s := range v {
			if math.IsNaN(s) {
				continue
			}
			i := min(max(int((s-lo)/width), 0), nbins-1)
			out[i].Weight++
		}
		for i := range out {
			out[i].Weight /= math.Max(1, float64(len(v)))
		}
		return out
	}
	p := newPlot(title, "anomaly score (higher = more abnormal)", "fraction of the class")
	add := func(name string, v []float64, c color.Color) {
		h := &plotter.Histogram{Bins: bins(v), Width: width, FillColor: withAlpha(c, 110), LineStyle: plotter.DefaultLineStyle}
		h.LineStyle.Color = c
		h.LineStyle.Width = vg.Points(0.8)
		p.Add(h)
		p.Legend.Add(fmt.Sprintf("%s (%d)", name, len(v)), h)
	}
	add("normal", normal, Colour(2))
	add("abnormal", abnormal, Colour(1))
	ymax := 0.0
	for _, v := range [][]float64{normal, abnormal} {
		for _, b := range bins(v) {
			ymax = math.Max(ymax, b.Weight)
		}
	}
	th, err := plotter.NewLine(plotter.XYs{{X: threshold, Y: 0}, {X: threshold, Y: ymax * 1.05}})
	if err != nil {
		return nil, err
	}
	th.Color = color.Black
	th.Width = vg.Points(1.5)
	th.Dashes = []vg.Length{vg.Points(5), vg.Points(3)}
	p.Add(th)
	p.Legend.Add(fmt.Sprintf("threshold %.4g", threshold), th)
	return pngOf(p, plotWidth, plotHeight)
}

func withAlpha(c color.Color, a uint8) color.Color {
	r, g, b, _ := c.RGBA()
	// Premultiplied, as color.RGBA requires.
	f := float64(a) / 255
	return color.RGBA{uint8(float64(r>>8) * f), uint8(float64(g>>8) * f), uint8(float64(b>>8) * f), a}
}

// LossSeries is one loss term over training iterations.
type LossSeries struct {
	Name  string
	Iter  []float64
	Value []float64
}

// LossCurves plots loss terms over iterations (each smoothed by a moving
// average over about 2% of the run, so noisy per-batch losses stay
// readable) and returns a PNG. The y axis is logarithmic when every value
// is positive, since terms of very different sizes share the plot.
func LossCurves(title string, series []LossSeries) ([]byte, error) {
	p, err := lossPlot(title, series)
	if err != nil {
		return nil, err
	}
	return pngOf(p, plotWidth, plotHeight)
}

func lossPlot(title string, series []LossSeries) (*plot.Plot, error) {
	p := newPlot(title, "iteration", "loss (moving average)")
	p.Legend.Top, p.Legend.Left = true, false
	positive := true
	n := 0
	lo, hi := math.Inf(1), math.Inf(-1)
	for _, s := range series {
		for _, v := range s.Value {
			if !(v > 0) || math.IsInf(v, 0) {
				positive = false
			}
			lo, hi = math.Min(lo, v), math.Max(hi, v)
		}
		n += len(s.Value)
	}
	if n == 0 {
		return nil, fmt.Errorf("loss plot %q: no values", title)
	}
	if positive {
		// The range is set here because gonum pads a flat range
		// symmetrically, which can cross zero.
		p.Y.Scale = plot.LogScale{}
		p.Y.Tick.Marker = plot.LogTicks{Prec: -1}
		p.Y.Min, p.Y.Max = lo/1.5, hi*1.5
	}
	for i, s := range series {
		if len(s.Value) == 0 {
			continue
		}
		sm := movingAverage(s.Value, max(1, len(s.Value)/50))
		xy := make(plotter.XYs, len(sm))
		for j := range sm {
			xy[j] = plotter.XY{X: s.Iter[j], Y: sm[j]}
		}
		ln, err := plotter.NewLine(xy)
		if err != nil {
			return nil, fmt.Errorf("loss plot %q, %s: %w", title, s.Name, err)
		}
		ln.Color = Colour(i)
		ln.Width = vg.Points(1.2)
		p.Add(ln)
		p.Legend.Add(s.Name, ln)
	}
	return p, nil
}

// movingAverage is a centred running mean with window 2k+1 (shrunk at the ends).
func movingAverage(v []float64, k int) []float64 {
	out := make([]float64, len(v))
	prefix := make([]float64, len(v)+1)
	for i, x := range v {
		prefix[i+1] = prefix[i] + x
	}
	for i := range v {
		a, b := max(0, i-k), min(len(v), i+k+1)
		out[i] = (prefix[b] - prefix[a]) / float64(b-a)
	}
	return out
}

// ScatterPoint is one point of a 2-D embedding.
type ScatterPoint struct {
	X, Y float64
	// Class picks the colour (e.g. the organ/modality group).
	Class string
	// Abnormal picks the glyph: a ring for normal, a cross for abnormal.
	Abnormal bool
}

// Scatter plots an embedding coloured by class with normal and abnormal
// images as different glyphs, and returns a PNG. Classes are coloured in
// sorted order so two plots of the same groups use the same colours.
func Scatter(title string, pts []ScatterPoint) ([]byte, error) {
	if len(pts) == 0 {
		return nil, fmt.Errorf("scatter %q: no points", title)
	}
	classes := map[string]bool{}
	for _, pt := range pts {
		classes[pt.Class] = true
	}
	names := make([]string, 0, len(classes))
	for c := range classes {
		names = append(names, c)
	}
	sort.Strings(names)
	p := newPlot(title, "t-SNE 1", "t-SNE 2")
	p.Legend.Top, p.Legend.Left = true, false
	for ci, c := range names {
		for _, abnormal := range []bool{false, true} {
			var xy plotter.XYs
			for _, pt := range pts {
				if pt.Class == c && pt.Abnormal == abnormal {
					xy = append(xy, plotter.XY{X: pt.X, Y: pt.Y})
				}
			}
			if len(xy) == 0 {
				continue
			}
			sc, err := plotter.NewScatter(xy)
			if err != nil {
				return nil, err
			}
			sc.GlyphStyle = draw.GlyphStyle{Color: Colour(ci), Radius: vg.Points(2.2), Shape: draw.RingGlyph{}}
			label := c + " normal"
			if abnormal {
				sc.GlyphStyle.Shape = draw.CrossGlyph{}
				label = c + " abnormal"
			}
			p.Add(sc)
			p.Legend.Add(label, sc)
		}
	}
	// Leave the right third empty for the legend, which would hide points otherwise.
	lo, hi := math.Inf(1), math.Inf(-1)
	for _, pt := range pts {
		lo, hi = math.Min(lo, pt.X), math.Max(hi, pt.X)
	}
	if hi > lo {
		p.X.Min, p.X.Max = lo-0.03*(hi-lo), hi+0.6*(hi-lo)
	}
	p.X.Tick.Marker = plot.ConstantTicks(nil)
	p.Y.Tick.Marker = plot.ConstantTicks(nil)
	return pngOf(p, plotWidth, plotHeight)
}
