package experiment

import (
	"encoding/json"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"slices"
	"sort"
	"strings"

	"github.com/maddr-project/maddr/atomicfile"
	"github.com/maddr-project/maddr/metrics"
	"github.com/maddr-project/maddr/report"
	"github.com/maddr-project/maddr/train"
)

// WriteReport gathers the finished cells of the experiment directories
// dirs (one, or the shards of a split run) and writes into out: the table as
// tableN.md, tableN.csv and tableN.json, every plot as a PNG under plots/,
// and report.html, one self-contained page with the tables and all plots.
// It returns the files written.
func WriteReport(out string, dirs []string, logf func(string, ...any)) ([]string, error) {
	if logf == nil {
		logf = func(string, ...any) {}
	}
	if len(dirs) == 0 {
		return nil, fmt.Errorf("no experiment directory to report on")
	}
	rec, notes, err := readShardRecords(dirs)
	if err != nil {
		return nil, err
	}
	planned := slices.Clone(rec.Cells)
	results, dupNotes, err := LoadResults(dirs...)
	if err != nil {
		return nil, err
	}
	notes = append(notes, dupNotes...)
	doc, err := Build(rec.Settings, rec.Groups, planned, results)
	if err != nil {
		return nil, err
	}
	doc.Notes = append(doc.Notes, notes...)
	doc.Skipped = rec.Skipped
	stat, err := LoadStatistic(rec.Settings, rec.Groups, dirs...)
	if err != nil {
		return nil, err
	}
	doc.SetStatistic(stat)
	if err := os.MkdirAll(filepath.Join(out, PlotsDir), 0o755); err != nil {
		return nil, err
	}
	name := string(rec.Settings.Table)
	var written []string
	put := func(file string, write func(io.Writer) error) error {
		path := filepath.Join(out, file)
		if err := atomicfile.Write(path, write); err != nil {
			return err
		}
		written = append(written, path)
		return nil
	}
	if err := put(name+".md", doc.WriteMarkdown); err != nil {
		return nil, err
	}
	if err := put(name+".csv", doc.WriteCSV); err != nil {
		return nil, err
	}
	if err := put(name+".json", func(w io.Writer) error {
		enc := json.NewEncoder(w)
		enc.SetIndent("", "  ")
		return enc.Encode(doc)
	}); err != nil {
		return nil, err
	}
	var inPlan []*Result
	for _, r := range results {
		if slices.Contains(planned, r.ID) {
			inPlan = append(inPlan, r)
		}
	}
	page, pngs, err := renderPage(doc, inPlan, logf)
	if err != nil {
		return nil, err
	}
	names := make([]string, 0, len(pngs))
	for n := range pngs {
		names = append(names, n)
	}
	sort.Strings(names)
	for _, n := range names {
		b := pngs[n]
		if err := put(filepath.Join(PlotsDir, n), func(w io.Writer) error { _, err := w.Write(b); return err }); err != nil {
			return nil, err
		}
	}
	if err := put(ReportFile, page.Write); err != nil {
		return nil, err
	}
	return written, nil
}

// readShardRecords reads the record of the first directory, whose plan the
// report follows, and notes each further directory run with other settings.
func readShardRecords(dirs []string) (*Record, []string, error) {
	rec, err := readRecord(dirs[0])
	if err != nil {
		return rec, nil, err
	}
	var notes []string
	first, _ := json.Marshal(rec.Settings)
	for _, d := range dirs[1:] {
		r, err := readRecord(d)
		if err != nil {
			return rec, nil, err
		}
		if b, _ := json.Marshal(r.Settings); string(b) != string(first) {
			notes = append(notes, fmt.Sprintf("%s was run with other settings than %s; its cells count only where they are part of %s's plan", d, dirs[0], dirs[0]))
		}
	}
	return rec, notes, nil
}

// comparison lists the variants the figures compare for a model: the
// baseline on one data set, the baseline on all data sets (when run), and
// MADDR.
func comparison(d *Doc) []string {
	if d.Table == Table2 {
		return []string{"r02", "r03", "r12"}
	}
	v := []string{VariantSingle}
	if d.Settings.Mixed {
		v = append(v, VariantMixed)
	}
	return append(v, VariantMADDR)
}

// reference and treated are the two sides of the t-SNE figure.
func tsnePair(d *Doc) (string, string) {
	if d.Table == Table2 {
		return "r03", "r12"
	}
	return VariantMixed, VariantMADDR
}

type index struct {
	results []*Result
	seeds   []uint64
}

// find returns the cell of a model variant whose test set includes group, for a seed.
func (ix index) find(model, variant, group string, seed uint64) *Result {
	for _, r := range ix.results {
		if r.Model == model && r.Variant == variant && r.Seed == seed && slices.Contains(r.EvalGroups, group) {
			return r
		}
	}
	return nil
}

// firstSeed returns the cell of the earliest seed (in the settings' order) that finished.
func (ix index) firstSeed(model, variant, group string) *Result {
	for _, s := range ix.seeds {
		if r := ix.find(model, variant, group, s); r != nil {
			return r
		}
	}
	return nil
}

func slug(s string) string {
	return strings.Map(func(r rune) rune {
		if r >= 'a' && r <= 'z' || r >= '0' && r <= '9' || r == '-' || r == '_' {
			return r
		}
		if r >= 'A' && r <= 'Z' {
			return r + 'a' - 'A'
		}
		return '-'
	}, s)
}

// renderPage draws every figure and lays out the HTML page; it returns the
// PNGs by file name as well.
func renderPage(d *Doc, results []*Result, logf func(string, ...any)) (*report.Page, map[string][]byte, error) {
	pr := &pageRenderer{d: d, ix: index{results: results, seeds: d.Settings.Seeds}, variants: comparison(d),
		page: report.NewPage(d.title()), pngs: map[string][]byte{}, logf: logf}
	pr.tableSection()
	if err := pr.rocSection(); err != nil {
		return nil, nil, err
	}
	if err := pr.histogramSection(); err != nil {
		return nil, nil, err
	}
	pr.heatMapSection()
	if err := pr.tsneSection(); err != nil {
		return nil, nil, err
	}
	pr.learningCurveSection()
	pr.cellsSection(results)
	return pr.page, pr.pngs, nil
}

// pageRenderer writes the sections of an experiment's HTML page, and
// collects the figures it draws as PNG files by name.
type pageRenderer struct {
	d        *Doc
	ix       index
	variants []string
	page     *report.Page
	pngs     map[string][]byte
	logf     func(string, ...any)
}

// tableSection is the results table with the run's settings, the table's
// introduction and its notes.
func (pr *pageRenderer) tableSection() {
	d, p := pr.d, pr.page
	p.Section("Table")
	if d.Phantom {
		p.Warning(PhantomWarning)
	}
	p.Para(fmt.Sprintf("Data: %s; %s iterations per run, batch %d, input %dx%d; models: %s.", sourcesText(d.Settings.Sources),
		iterText(d.Settings.Iterations), d.Settings.BatchSize, d.Settings.Preprocess.Size, d.Settings.Preprocess.Size, strings.Join(d.Settings.Models, ", ")))
	head, rows := d.Header()
	p.Table(head, rows)
	if len(d.References) > 0 {
		p.Table(d.ReferenceHeader())
	}
	for _, line := range d.ReferenceNotes() {
		p.Para(line)
	}
	for _, line := range d.Intro() {
		if strings.HasPrefix(line, "INCOMPLETE") {
			p.Warning(line)
		} else {
			p.Para(line)
		}
	}
	for _, n := range d.Notes {
		p.Warning("Note: " + n)
	}
}

// rocSection draws a ROC figure per model and data set, every variant and
// seed in it.
func (pr *pageRenderer) rocSection() error {
	d, p := pr.d, pr.page
	p.Section("ROC curves")
	p.Para("Test-set ROC curve per data set, one colour per method; the first seed is solid, further seeds dashed. The legend gives AUC mean ± std over seeds.")
	for _, m := range d.Settings.Models {
		var figs []report.Figure
		for _, g := range d.Groups {
			lines := pr.rocLines(m, g)
			if len(lines) == 0 {
				continue
			}
			b, err := report.ROC(fmt.Sprintf("%s: %s", m, d.columnName(g)), lines)
			if err != nil {
				return err
			}
			name := fmt.Sprintf("roc-%s-%s.png", slug(m), slug(g))
			pr.pngs[name] = b
			figs = append(figs, report.Figure{PNG: b, Caption: fmt.Sprintf("ROC, %s, %s (%s)", m, g, name)})
		}
		p.Figures(figs...)
	}
	return nil
}

// rocLines are the ROC curves of model m on group g: a colour per variant,
// a line per seed, labelled with the variant's AUC over the seeds.
func (pr *pageRenderer) rocLines(m, g string) []report.ROCLine {
	var lines []report.ROCLine
	for vi, v := range pr.variants {
		var aucs []float64
		var curves []metrics.ROCCurve
		for _, seed := range pr.ix.seeds {
			r := pr.ix.find(m, v, g, seed)
			if r == nil {
				continue
			}
			sc := r.Scores[g]
			scores, labels := labelled(sc)
			c, err := metrics.ROC(scores, labels)
			if err != nil {
				continue // one class only: no curve
			}
			a, _ := metrics.AUC(scores, labels)
			aucs = append(aucs, a)
			curves = append(curves, c)
		}
		for k, c := range curves {
			lines = append(lines, report.ROCLine{Label: fmt.Sprintf("%s: AUC %s", shortLabel(pr.d, m, v), metrics.FormatMeanStd(aucs)),
				Curve: c, Colour: vi, Dashed: k > 0, NoLegend: k > 0})
		}
	}
	return lines
}

// histogramSection draws the score histograms of the first seed.
func (pr *pageRenderer) histogramSection() error {
	d, p := pr.d, pr.page
	p.Section("Score histograms")
	p.Para("Test scores of normal and abnormal images (first seed; each class normalised to sum 1) with the threshold chosen on validation as a dashed line.")
	for _, m := range d.Settings.Models {
		for _, g := range d.Groups {
			var figs []report.Figure
			for _, v := range pr.variants {
				r := pr.ix.firstSeed(m, v, g)
				if r == nil {
					continue
				}
				sc := r.Scores[g]
				b, err := report.Histogram(fmt.Sprintf("%s, %s, seed %d", shortLabel(d, m, v), g, r.Seed), sc.Normal, sc.Abnormal, sc.Threshold)
				if err != nil {
					return err
				}
				name := fmt.Sprintf("hist-%s-%s.png", slug(r.ID), slug(g))
				pr.pngs[name] = b
				figs = append(figs, report.Figure{PNG: b, Caption: fmt.Sprintf("%s on %s (%s)", VariantLabel(d.Table, m, v), g, name)})
			}
			p.Figures(figs...)
		}
	}
	return nil
}

// heatMapSection shows the heat-map montages the cells drew; one that
// cannot be read is a warning, not a failure.
func (pr *pageRenderer) heatMapSection() {
	d, p := pr.d, pr.page
	p.Section("Heat maps")
	p.Para("Per-pixel anomaly maps of each model (its own map, or the reconstruction error) over the preprocessed test images: the highest-scoring images on top, the lowest below; left the image, right the overlay. The frame gives the true label: red abnormal, green normal. All tiles of a montage share one colour scale.")
	for _, m := range d.Settings.Models {
		for _, g := range d.Groups {
			var figs []report.Figure
			for _, v := range pr.variants {
				r := pr.ix.firstSeed(m, v, g)
				if r == nil {
					continue
				}
				hm, ok := r.HeatMaps[g]
				if !ok {
					continue
				}
				b, err := os.ReadFile(filepath.Join(r.Dir, hm.File))
				if err != nil {
					pr.logf("warning: %v", err)
					continue
				}
				name := fmt.Sprintf("heat-%s-%s.png", slug(r.ID), slug(g))
				pr.pngs[name] = b
				figs = append(figs, report.Figure{PNG: b, Caption: fmt.Sprintf("%s, %s, seed %d (%s)", VariantLabel(d.Table, m, v), g, r.Seed, name), Wide: true})
			}
			p.Figures(figs...)
		}
	}
}

// tsneSection draws the t-SNE of z_c for the reference and the treated
// variant of each model side by side.
func (pr *pageRenderer) tsneSection() error {
	d, p := pr.d, pr.page
	p.Section("t-SNE of z_c")
	ref, treated := tsnePair(d)
	p.Para(fmt.Sprintf("t-SNE (exact, perplexity 30, seeded) of the continuous latent part z_c = z[m+o:] of test images, coloured by organ/modality group; rings are normal images, crosses abnormal. "+
		"Left: %s; right: %s (first seed). The baseline's z is not split, so the same coordinates are shown for it.",
		VariantLabel(d.Table, "the baseline", ref), VariantLabel(d.Table, "the baseline", treated)))
	for _, m := range d.Settings.Models {
		var figs []report.Figure
		for _, v := range []string{ref, treated} {
			r := pr.ix.firstSeed(m, v, d.Groups[0])
			if r == nil || r.Latent == "" {
				if v == VariantMixed && !d.Settings.Mixed {
					p.Para("The baseline side needs the baseline trained on all data sets: run table1 with --mixed.")
				}
				continue
			}
			b, err := tsneFigure(r, shortLabel(d, m, v))
			if err != nil {
				return err
			}
			name := fmt.Sprintf("tsne-%s.png", slug(r.ID))
			pr.pngs[name] = b
			figs = append(figs, report.Figure{PNG: b, Caption: fmt.Sprintf("%s, seed %d (%s)", VariantLabel(d.Table, m, v), r.Seed, name)})
		}
		p.Figures(figs...)
	}
	return nil
}

// learningCurveSection draws each first-seed run's learning curve once;
// a log that cannot be read or drawn is a warning, not a failure.
func (pr *pageRenderer) learningCurveSection() {
	d, p := pr.d, pr.page
	p.Section("Learning curves")
	p.Para("Top: every logged loss term over the iterations (first seed, moving average over 2% of the run; log scale when all terms are positive). " +
		"Bottom: the AUC of each training group on its validation split, measured during training without changing it (maddr train --val-every); " +
		"the dashed line is chance. A curve that stays near 0.5 is a detector that has not learned to detect.")
	for _, m := range d.Settings.Models {
		var figs []report.Figure
		done := map[string]bool{}
		for _, v := range pr.variants {
			for _, g := range d.Groups {
				r := pr.ix.firstSeed(m, v, g)
				if r == nil || done[r.ID] {
					continue
				}
				done[r.ID] = true
				curve, err := train.ReadCurve(filepath.Join(r.Dir, train.LogFile))
				if err != nil {
					pr.logf("warning: %v", err)
					continue
				}
				b, err := curve.PNG(r.ID)
				if err != nil {
					pr.logf("warning: %v", err)
					continue
				}
				name := fmt.Sprintf("curve-%s.png", slug(r.ID))
				pr.pngs[name] = b
				figs = append(figs, report.Figure{PNG: b, Caption: fmt.Sprintf("%s (%s)", VariantLabel(d.Table, m, v), name)})
			}
		}
		p.Figures(figs...)
	}
}

// cellsSection lists every finished cell with its timings and, folded
// away, its training configuration.
func (pr *pageRenderer) cellsSection(results []*Result) {
	d, p := pr.d, pr.page
	p.Section("Cells")
	p.Para(fmt.Sprintf("%d of %d planned cells finished. Times are wall-clock seconds.", d.Finished, d.Planned))
	var cellRows [][]string
	sorted := slices.Clone(results)
	sort.Slice(sorted, func(i, j int) bool { return sorted[i].ID < sorted[j].ID })
	var configs strings.Builder
	for _, r := range sorted {
		cellRows = append(cellRows, []string{r.ID, fmt.Sprint(r.Seed), fmt.Sprint(r.Iterations), fmt.Sprintf("%.1f", r.Timings.TrainS),
			fmt.Sprintf("%.1f", r.Timings.EvalS), fmt.Sprintf("%.1f", r.Timings.ExtrasS), fmt.Sprintf("%.0f", r.Timings.ImagesPerS),
			r.Host, r.Shard, r.Version, r.Finished.Format("2006-01-02 15:04:05")})
		b, _ := json.MarshalIndent(r.Config, "", "  ")
		fmt.Fprintf(&configs, "== %s (hash %s)\n%s\n\n", r.ID, r.Hash, b)
	}
	p.Table([]string{"cell", "seed", "iterations", "train s", "eval s", "plots s", "img/s", "host", "shard", "version", "finished (UTC)"}, cellRows)
	p.Details("training configuration of every cell", configs.String())
}

// shortLabel is a legend-sized name of a variant.
func shortLabel(d *Doc, model, variant string) string {
	switch variant {
	case VariantSingle:
		return model + " alone"
	case VariantMixed:
		return model + " all data"
	case VariantMADDR:
		return "MADDR+" + model
	}
	return fmt.Sprintf("%s %s", model, strings.Replace(variant, "r", "row ", 1))
}

// labelled turns a group's scores back into score/label lists.
func labelled(s GroupScores) ([]float64, []bool) {
	scores := append(append([]float64{}, s.Normal...), s.Abnormal...)
	labels := make([]bool, len(scores))
	for i := len(s.Normal); i < len(labels); i++ {
		labels[i] = true
	}
	return scores, labels
}

// tsneFigure embeds a cell's stored z_c and plots it.
func tsneFigure(r *Result, title string) ([]byte, error) {
	rows, meta, slice, err := readLatents(filepath.Join(r.Dir, r.Latent))
	if err != nil {
		return nil, err
	}
	emb, err := report.TSNE(rows, report.TSNEOptions{Seed: r.Seed})
	if err != nil {
		return nil, fmt.Errorf("%s: %w", r.ID, err)
	}
	pts := make([]report.ScatterPoint, len(emb))
	for i, e := range emb {
		pts[i] = report.ScatterPoint{X: e[0], Y: e[1], Class: meta[i].Group, Abnormal: meta[i].Abnormal}
	}
	return report.Scatter(fmt.Sprintf("%s: t-SNE of %s", title, slice), pts)
}

// Merge writes the tables and the report of a grid run as shards in
// several directories into out.
func Merge(out string, dirs []string, logf func(string, ...any)) ([]string, error) {
	if len(dirs) == 0 {
		return nil, fmt.Errorf("merge: no directories")
	}
	rec, err := readRecord(dirs[0])
	if err != nil {
		return nil, err
	}
	files, err := WriteReport(out, dirs, logf)
	if err != nil {
		return nil, err
	}
	// The merged directory says what it was made from.
	if err := writeJSON(filepath.Join(out, "merged.json"), map[string]any{"from": dirs, "settings": rec.Settings, "cells": rec.Cells}); err != nil {
		return nil, err
	}
	return files, nil
}
