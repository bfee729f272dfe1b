package bench

import (
	"bytes"
	"fmt"
	"image/color"
	"slices"
	"sort"
	"strings"

	"gonum.org/v1/plot"
	"gonum.org/v1/plot/plotter"
	"gonum.org/v1/plot/vg"
	"gonum.org/v1/plot/vg/draw"
	"gonum.org/v1/plot/vg/vgimg"
)

// Targets of the performance issues (#14: DPA training >= 1.3x in fp32,
// every baseline at least PyTorch's speed, scoring with bf16 >= 2x).
const (
	TrainTarget     = 1.0 // Go/PyTorch images/s for every training step
	DPATrainTarget  = 1.3 // DPA and MADDR+DPA training steps
	ScoreTarget     = 1.0 // fp32 scoring
	BF16ScoreTarget = 2.0 // scoring with --precision bf16 against PyTorch fp32
	LoaderTarget    = 5.0 // loader images/s over the fastest compared training step's
)

func isTrain(c string) bool { return strings.Contains(c, "-train") }
func isScore(c string) bool { return strings.Contains(c, "-score") }

// speedTarget is the Go/PyTorch ratio a case must reach.
func speedTarget(c string) float64 {
	switch {
	case c == "dpa-train" || c == "maddr-dpa-train":
		return DPATrainTarget
	case strings.HasSuffix(c, "-bf16"):
		return BF16ScoreTarget
	case isScore(c):
		return ScoreTarget
	}
	return TrainTarget
}

// verdict says whether a pair meets its targets.
func (r *Report) verdict(p Pair) string {
	switch {
	case strings.HasPrefix(p.Case.Name, "loader"):
		if p.Go == nil {
			return "-"
		}
		train := r.fastestTrain()
		if train == 0 {
			return "-"
		}
		x := p.Go.ImagesPerS / train
		return fmt.Sprintf("%.0fx the fastest training step (>= %.0fx): %s", x, LoaderTarget, yes(x >= LoaderTarget))
	case p.Ratio() == 0:
		return "-"
	}
	target := speedTarget(p.Case.Name)
	speed := p.Ratio() >= target
	mem := p.MemoryRatio() <= 1
	return fmt.Sprintf("speed >= %.1fx: %s; memory <= PyTorch: %s", target, yes(speed), yes(mem))
}

// fastestTrain is the highest Go training throughput measured.
func (r *Report) fastestTrain() float64 {
	best := 0.0
	for _, p := range r.Pairs {
		if isTrain(p.Case.Name) && p.Go != nil {
			best = max(best, p.Go.ImagesPerS)
		}
	}
	return best
}

func yes(b bool) string {
	if b {
		return "met"
	}
	return "NOT met"
}

func num(v float64, format string) string {
	if v == 0 {
		return "-"
	}
	return fmt.Sprintf(format, v)
}

// Markdown renders the report as the results section of BENCHMARKS.md.
func (r *Report) Markdown() string {
	var b strings.Builder
	p := r.Params
	fmt.Fprintf(&b, "Machine: %s.  \n", r.Machine)
	if r.Versions != "" {
		fmt.Fprintf(&b, "Software: %s.  \n", r.Versions)
	}
	if r.Command != "" {
		fmt.Fprintf(&b, "Command: `%s`  \n", r.Command)
	}
	if r.Allocator != "" {
		fmt.Fprintf(&b, "Allocator: %s.  \n", r.Allocator)
	}
	if r.Deconv != "" {
		fmt.Fprintf(&b, "Transposed convolutions: %s.  \n", r.Deconv)
	}
	threads := "all cores"
	if p.Threads > 0 {
		threads = fmt.Sprint(p.Threads)
	}
	fmt.Fprintf(&b, "Batch %d, %dx%d, %s libtorch threads on both sides; median of %d timed steps after %d warm-up steps; "+
		"best of %d alternating round(s) per side; run took %.0f s, started %s.\n\n",
		p.Batch, p.Size, p.Size, threads, p.Steps, p.Warmup, r.Rounds, r.Seconds, r.Started.Format("2006-01-02 15:04 MST"))
	b.WriteString("| case | Go img/s | PyTorch img/s | Go/PyTorch | CPU-s per step Go / PyTorch | CPU ratio | peak RSS MiB Go / PyTorch | cpu/wall Go / PyTorch | targets |\n")
	b.WriteString("|---|---|---|---|---|---|---|---|---|\n")
	for _, pair := range r.Pairs {
		g, t := pair.Go, pair.PyTorch
		get := func(res *Result, f func(*Result) float64) float64 {
			if res == nil {
				return 0
			}
			return f(res)
		}
		ips := func(x *Result) float64 { return x.ImagesPerS }
		cpu := func(x *Result) float64 { return x.CPUSeconds }
		rss := func(x *Result) float64 { return x.PeakRSSMiB }
		cw := func(x *Result) float64 { return x.CPUPerWall }
		fmt.Fprintf(&b, "| %s: %s | %s | %s | %s | %s / %s | %s | %s / %s | %s / %s | %s |\n",
			pair.Case.Name, pair.Case.Title,
			num(get(g, ips), "%.1f"), num(get(t, ips), "%.1f"), num(pair.Ratio(), "**%.2fx**"),
			num(get(g, cpu), "%.3f"), num(get(t, cpu), "%.3f"), num(pair.CPURatio(), "%.2fx"),
			num(get(g, rss), "%.0f"), num(get(t, rss), "%.0f"),
			num(get(g, cw), "%.2f"), num(get(t, cw), "%.2f"), r.verdict(pair))
	}
	for _, pair := range r.Pairs {
		for _, e := range pair.Errors {
			fmt.Fprintf(&b, "\n* %s failed: %s", pair.Case.Name, e)
		}
	}
	if len(r.Scaling) > 0 {
		b.WriteString("\n\nDPA training step (Go) against batch size and image size:\n\n")
		b.WriteString("| batch | size | s per step | img/s | peak RSS MiB | cpu/wall |\n|---|---|---|---|---|---|\n")
		for _, s := range r.Scaling {
			fmt.Fprintf(&b, "| %d | %d | %.2f | %.1f | %.0f | %.2f |\n", s.Batch, s.Size, s.StepSeconds, s.ImagesPerS, s.PeakRSSMiB, s.CPUPerWall)
		}
	}
	r.paperLength(&b)
	if s := r.Schedule; s != nil {
		first := ""
		if n := s.Extra["first_epoch_iterations"]; n > 0 {
			first = fmt.Sprintf(" after a first epoch of %.0f iterations at %.2f s (target features computed and cached)",
				n, s.Extra["first_epoch_s_per_iteration"])
		}
		fmt.Fprintf(&b, "\nThe paper's full schedule (MADDR+DPA, %.0f iterations of batch %d at %dx%d, `train.Run` on the phantom data, "+
			"loader and logging included): %.2f s per iteration (median of %d, cpu/wall %.2f)%s, setup and first iteration %.0f s, "+
			"so **%.1f hours** on this machine if every iteration cost that; peak RSS %.0f MiB. The mixup window "+
			"(iterations 7001-10000) is not reached here: its steps cannot use the cache, and the estimate from the "+
			"steps above counts them at the maddr-dpa-train step.\n",
			s.Extra["iterations"], s.Batch, s.Size, s.Size, s.StepSeconds, s.Steps, s.CPUPerWall, first,
			s.Extra["setup_and_first_iteration_s"], s.Extra["full_schedule_h"], s.PeakRSSMiB)
	}
	for _, n := range r.Notes {
		fmt.Fprintf(&b, "\n* %s", n)
	}
	b.WriteString("\n")
	return b.String()
}

// PlotPNG draws, per case measured on both sides, maddr's speed as a
// multiple of PyTorch's (images/s ratio; one bar per case, cases top to
// bottom in report order), coloured by whether the case meets its speed
// target, with a line at parity and a tick at each case's target. A ratio
// reads the same for a 0.015-s and a 7-s step, which absolute images/s
// across the cases (1 to 2000) do not.
func (r *Report) PlotPNG() (out []byte, err error) {
	defer func() {
		if v := recover(); v != nil {
			out, err = nil, fmt.Errorf("bench: drawing the plot: %v", v)
		}
	}()
	var names []string
	var met, short plotter.Values
	var targets plotter.XYs
	maxX := 2.2
	for _, p := range r.Pairs {
		ratio := p.Ratio()
		if ratio == 0 {
			continue
		}
		target := speedTarget(p.Case.Name)
		names = append(names, p.Case.Name)
		if ratio >= target {
			met, short = append(met, ratio), append(short, 0)
		} else {
			met, short = append(met, 0), append(short, ratio)
		}
		targets = append(targets, plotter.XY{X: target})
		maxX = max(maxX, ratio*1.1)
	}
	if len(names) == 0 {
		return nil, fmt.Errorf("bench: no case measured on both sides to plot")
	}
	// Nominal positions count from the bottom; the report's first case goes on top.
	n := len(names)
	slices.Reverse(names)
	slices.Reverse(met)
	slices.Reverse(short)
	for i := range targets {
		targets[i].Y = float64(n - 1 - i)
	}
	pl := plot.New()
	pl.Title.Text = fmt.Sprintf("maddr speed / PyTorch speed, batch %d, %dx%d (right of 1: maddr faster)", r.Params.Batch, r.Params.Size, r.Params.Size)
	pl.X.Label.Text = "images/s ratio (a square marks the case's target)"
	w := vg.Points(9)
	for _, side := range []struct {
		name string
		v    plotter.Values
		c    color.Color
	}{{"target met", met, color.RGBA{0, 114, 178, 255}}, {"target not met", short, color.RGBA{213, 94, 0, 255}}} {
		bars, err := plotter.NewBarChart(side.v, w)
		if err != nil {
			return nil, err
		}
		bars.Horizontal = true
		bars.Color = side.c
		bars.LineStyle.Width = 0
		pl.Add(bars)
		pl.Legend.Add(side.name, bars)
	}
	parity, err := plotter.NewLine(plotter.XYs{{X: 1, Y: -0.6}, {X: 1, Y: float64(n) - 0.4}})
	if err != nil {
		return nil, err
	}
	parity.Dashes = []vg.Length{vg.Points(3), vg.Points(3)}
	pl.Add(parity)
	ticks, err := plotter.NewScatter(targets)
	if err != nil {
		return nil, err
	}
	ticks.GlyphStyle.Shape = draw.BoxGlyph{}
	ticks.GlyphStyle.Radius = vg.Points(2)
	ticks.GlyphStyle.Color = color.Black
	pl.Add(ticks)
	pl.NominalY(names...)
	pl.X.Min, pl.X.Max = 0, maxX
	pl.Legend.Top = true
	wt, err := pl.WriterTo(7.5*vg.Inch, vg.Length(1.2+0.22*float64(n))*vg.Inch, "png")
	if err != nil {
		return nil, err
	}
	var buf bytes.Buffer
	if _, err := wt.WriteTo(&buf); err != nil {
		return nil, err
	}
	return buf.Bytes(), nil
}

// Evaluation during a paper-length run, for the run-time estimates: the
// validation images are scored every evalEvery iterations.
const (
	paperIterations = 16000
	evalEvery       = 1000
	evalImages      = 216 // assumed validation set: a third of the paper's 648 training images
)

// paperLength estimates one paper-length run of DPA and of MADDR+DPA from
// the measured steps: 16000 steps plus scoring evalImages validation images
// every evalEvery iterations. MADDR+DPA mixes 3000 of its 16000 iterations
// (7001-10000; those compute target features every step) and DPA none.
func (r *Report) paperLength(b *strings.Builder) {
	get := func(name string) *Result {
		for _, p := range r.Pairs {
			if p.Case.Name == name {
				return p.Go
			}
		}
		return nil
	}
	cached, mixup, score := get("dpa-train"), get("maddr-dpa-train"), get("dpa-score")
	if cached == nil || score == nil {
		return
	}
	evalS := float64(paperIterations/evalEvery) * evalImages / score.ImagesPerS
	dpaH := (paperIterations*cached.StepSeconds + evalS) / 3600
	fmt.Fprintf(b, "\nPaper-length runs computed from these steps (%d iterations, %d validation images scored every %d iterations, "+
		"%.0f s of evaluation in all): **DPA %.1f hours**", paperIterations, evalImages, evalEvery, evalS, dpaH)
	if mixup != nil {
		const mixed = 3000
		h := ((paperIterations-mixed)*cached.StepSeconds + mixed*mixup.StepSeconds + evalS) / 3600
		fmt.Fprintf(b, ", **MADDR+DPA %.1f hours** (%d mixup steps at the maddr-dpa-train step, the rest at the dpa-train step: "+
			"MADDR's own terms cost nothing measurable)", h, mixed)
	}
	b.WriteString(" on this machine.\n")
}

// ScalingPNG draws the DPA step time against batch size (at the run's image
// size) and against image size (at the run's batch size), side by side.
func (r *Report) ScalingPNG() (out []byte, err error) {
	defer func() {
		if v := recover(); v != nil {
			out, err = nil, fmt.Errorf("bench: drawing the scaling plot: %v", v)
		}
	}()
	var byBatch, bySize plotter.XYs
	for _, s := range r.Scaling {
		if s.Size == r.Params.Size {
			byBatch = append(byBatch, plotter.XY{X: float64(s.Batch), Y: s.StepSeconds})
		}
		if s.Size != r.Params.Size || s.Batch == r.Params.Batch {
			// Time per image-pixel-batch unit: sizes were run at different batches.
			bySize = append(bySize, plotter.XY{X: float64(s.Size), Y: s.StepSeconds / float64(s.Batch) * float64(r.Params.Batch)})
		}
	}
	if len(byBatch) == 0 || len(bySize) == 0 {
		return nil, fmt.Errorf("bench: no scaling measurements to plot (run with --scaling)")
	}
	sortXY(byBatch)
	sortXY(bySize)
	line := func(title, x string, pts plotter.XYs) (*plot.Plot, error) {
		pl := plot.New()
		pl.Title.Text = title
		pl.X.Label.Text = x
		pl.Y.Label.Text = "s per step"
		pl.X.Scale, pl.Y.Scale = plot.LogScale{}, plot.LogScale{}
		pl.X.Tick.Marker, pl.Y.Tick.Marker = plot.LogTicks{Prec: -1}, plot.LogTicks{Prec: -1}
		l, p, err := plotter.NewLinePoints(pts)
		if err != nil {
			return nil, err
		}
		l.Color, p.Color = color.RGBA{0, 114, 178, 255}, color.RGBA{0, 114, 178, 255}
		pl.Add(l, p)
		return pl, nil
	}
	left, err := line(fmt.Sprintf("DPA step, %dx%d images", r.Params.Size, r.Params.Size), "batch size", byBatch)
	if err != nil {
		return nil, err
	}
	right, err := line(fmt.Sprintf("DPA step, batch %d (scaled)", r.Params.Batch), "image side (pixels)", bySize)
	if err != nil {
		return nil, err
	}
	img := vgimg.New(9*vg.Inch, 3.6*vg.Inch)
	dc := draw.New(img)
	tiles := draw.Tiles{Rows: 1, Cols: 2, PadX: vg.Millimeter * 4, PadTop: vg.Millimeter * 2, PadBottom: vg.Millimeter * 2,
		PadLeft: vg.Millimeter * 2, PadRight: vg.Millimeter * 2}
	canvases := plot.Align([][]*plot.Plot{{left, right}}, tiles, dc)
	left.Draw(canvases[0][0])
	right.Draw(canvases[0][1])
	var buf bytes.Buffer
	if _, err := (vgimg.PngCanvas{Canvas: img}).WriteTo(&buf); err != nil {
		return nil, err
	}
	return buf.Bytes(), nil
}

func sortXY(pts plotter.XYs) {
	sort.Slice(pts, func(i, j int) bool { return pts[i].X < pts[j].X })
}
