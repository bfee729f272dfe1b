package bench

import (
	"bytes"
	"fmt"
	"image/color"
	"strings"

	"gonum.org/v1/plot"
	"gonum.org/v1/plot/plotter"
	"gonum.org/v1/plot/vg"
)

// Targets of the performance issue.
const (
	TrainTarget  = 1.0 // Go/PyTorch images/s for every training step (aim 1.2)
	ScoreTarget  = 1.3 // Go/PyTorch images/s for scoring
	LoaderTarget = 5.0 // loader images/s over the fastest compared training step's
)

func isTrain(c string) bool { return strings.HasSuffix(c, "-train") }
func isScore(c string) bool { return strings.HasSuffix(c, "-score") }

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
	target := TrainTarget
	if isScore(p.Case.Name) {
		target = ScoreTarget
	}
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
	if s := r.Schedule; s != nil {
		fmt.Fprintf(&b, "\nThe paper's full schedule (MADDR+DPA, %.0f iterations of batch %d at %dx%d, `train.Run` on the phantom data, "+
			"loader and logging included): %.2f s per iteration (median of %d, cpu/wall %.2f), setup and first iteration %.0f s, "+
			"so **%.1f hours** on this machine; peak RSS %.0f MiB.\n",
			s.Extra["iterations"], s.Batch, s.Size, s.Size, s.StepSeconds, s.Steps, s.CPUPerWall,
			s.Extra["setup_and_first_iteration_s"], s.Extra["full_schedule_h"], s.PeakRSSMiB)
	}
	for _, n := range r.Notes {
		fmt.Fprintf(&b, "\n* %s", n)
	}
	b.WriteString("\n")
	return b.String()
}

// PlotPNG draws Go and PyTorch images/s per compared case.
func (r *Report) PlotPNG() (out []byte, err error) {
	defer func() {
		if v := recover(); v != nil {
			out, err = nil, fmt.Errorf("bench: drawing the plot: %v", v)
		}
	}()
	var names []string
	var goV, ptV plotter.Values
	for _, p := range r.Pairs {
		if p.Go == nil || p.PyTorch == nil {
			continue
		}
		names = append(names, p.Case.Name)
		goV = append(goV, p.Go.ImagesPerS)
		ptV = append(ptV, p.PyTorch.ImagesPerS)
	}
	if len(names) == 0 {
		return nil, fmt.Errorf("bench: no case measured on both sides to plot")
	}
	pl := plot.New()
	pl.Title.Text = fmt.Sprintf("images/s, batch %d, %dx%d (higher is better)", r.Params.Batch, r.Params.Size, r.Params.Size)
	pl.Y.Label.Text = "images/s"
	w := vg.Points(14)
	for i, side := range []struct {
		name string
		v    plotter.Values
		c    color.Color
	}{{"maddr (Go)", goV, color.RGBA{0, 114, 178, 255}}, {"PyTorch", ptV, color.RGBA{213, 94, 0, 255}}} {
		bars, err := plotter.NewBarChart(side.v, w)
		if err != nil {
			return nil, err
		}
		bars.Color = side.c
		bars.LineStyle.Width = 0
		bars.Offset = vg.Length(2*i-1) * w / 2
		pl.Add(bars)
		pl.Legend.Add(side.name, bars)
	}
	pl.Legend.Top, pl.Legend.Left = true, true
	pl.NominalX(names...)
	pl.Y.Min = 0
	pl.Y.Max *= 1.25 // room for the legend above the bars
	wt, err := pl.WriterTo(7*vg.Inch, 3.8*vg.Inch, "png")
	if err != nil {
		return nil, err
	}
	var buf bytes.Buffer
	if _, err := wt.WriteTo(&buf); err != nil {
		return nil, err
	}
	return buf.Bytes(), nil
}
