package experiment

import (
	"encoding/csv"
	"fmt"
	"io"
	"slices"
	"strconv"
	"strings"

	"github.com/maddr-project/maddr/dataset"
	"github.com/maddr-project/maddr/evaluate"
	"github.com/maddr-project/maddr/metrics"
)

// Stat is one metric over the seeds of a table cell, in percent.
type Stat struct {
	Mean   float64   `json:"mean"`
	Std    float64   `json:"std"`
	N      int       `json:"n"`
	Values []float64 `json:"values"`
	Seeds  []uint64  `json:"seeds"`
}

// String formats the statistic as the paper does: mean ± population std.
func (s Stat) String() string {
	if s.N == 0 {
		return "–"
	}
	return fmt.Sprintf("%.2f ± %.2f", s.Mean, s.Std)
}

func newStat(values []float64, seeds []uint64) Stat {
	if len(values) == 0 {
		return Stat{}
	}
	m, sd := metrics.MeanStd(values)
	return Stat{Mean: m, Std: sd, N: len(values), Values: values, Seeds: seeds}
}

// Metrics are the statistics of one method on one data set.
type Metrics struct {
	ACC Stat `json:"acc"`
	F1  Stat `json:"f1"`
	AUC Stat `json:"auc"`
	// PaperAUC is the published AUC for the same method and data set, if any.
	PaperAUC *PaperValue `json:"paper_auc,omitempty"`
	// AUC95 is the 95% bootstrap interval of a seedless row's AUC, in
	// percent (the training-free statistic's).
	AUC95 *[2]float64 `json:"auc_bootstrap_95,omitempty"`
}

// Row is one line of a table: a method (Table 1) or an ablation (Table 2).
type Row struct {
	Model   string `json:"model"`
	Variant string `json:"variant"`
	Label   string `json:"label"`
	// Ablation is set for Table 2 rows.
	Ablation *Ablation `json:"ablation,omitempty"`
	// LatentDim is the width of z the row's models had.
	LatentDim int                `json:"latent_dim,omitempty"`
	Groups    map[string]Metrics `json:"groups"`
}

// Doc is a finished table with everything needed to print it.
type Doc struct {
	Table    Table    `json:"table"`
	Settings Settings `json:"settings"`
	Groups   []string `json:"groups"`
	// DatasetNames give each group's paper data set, where one matches.
	DatasetNames map[string]string `json:"dataset_names"`
	Rows         []Row             `json:"rows"`
	// References are the rows a trained row must clearly beat, scored on
	// the same data, preprocessing, thresholds and split without training:
	// the training-free statistic (when the directory holds it, see
	// SetStatistic) and each row's network before training (when the cells
	// scored it, Settings.Untrained).
	References []Row `json:"references,omitempty"`
	// Skipped are the cells the user left out of the plan (Settings.SkipCells).
	Skipped []string `json:"skipped_cells,omitempty"`
	// Phantom is true when any source is the synthetic phantom.
	Phantom  bool     `json:"phantom"`
	Planned  int      `json:"planned_cells"`
	Finished int      `json:"finished_cells"`
	Notes    []string `json:"notes,omitempty"`
	Paper    string   `json:"paper_source"`
	F1Note   string   `json:"f1_note"`
}

// PhantomWarning heads every table computed on phantom data.
const PhantomWarning = "Phantom data: these numbers come from maddr's built-in synthetic images and are NOT comparable " +
	"to the paper's; the paper's numbers are shown only as a reference for runs on the real data sets."

// Build aggregates finished cells into the experiment's table.
func Build(s Settings, groups []string, planned []string, results []*Result) (*Doc, error) {
	p, err := Published()
	if err != nil {
		return nil, err
	}
	d := &Doc{Table: s.Table, Settings: s, Groups: groups, DatasetNames: map[string]string{}, Planned: len(planned),
		Paper: p.Source, F1Note: evaluate.F1Explanation}
	for _, src := range s.Sources {
		if src.Kind == "phantom" {
			d.Phantom = true
		}
	}
	if s.Table == Table2 {
		d.Groups = s.Roles.list()
	}
	for _, g := range d.Groups {
		if ds, ok := p.DatasetOf(g); ok {
			d.DatasetNames[g] = ds.Name
		}
	}
	for _, r := range results {
		if slices.Contains(planned, r.ID) {
			d.Finished++
		}
	}
	notes := map[string]bool{}
	trained := func(r *Result) *metrics.GroupedReport { return &r.Results }
	untrained := func(r *Result) *metrics.GroupedReport {
		if r.Untrained == nil {
			return nil
		}
		return &r.Untrained.Results
	}
	for _, k := range rowOrder(s) {
		row := Row{Model: k.model, Variant: k.variant, Label: VariantLabel(s.Table, k.model, k.variant), Groups: map[string]Metrics{}}
		if s.Table == Table2 {
			n, _ := strconv.Atoi(strings.TrimPrefix(k.variant, "r"))
			a := Ablations[n-1]
			row.Ablation = &a
		}
		ref := row
		ref.Variant, ref.Label, ref.Groups = k.variant+Iter0Suffix, "reference: "+row.Label+", before training (iteration 0)", map[string]Metrics{}
		scoredBefore := false
		for _, g := range d.Groups {
			row.Groups[g] = groupMetrics(s, p, k, g, &row, planned, results, notes, trained)
			m := groupMetrics(s, p, k, g, &ref, planned, results, notes, untrained)
			m.PaperAUC = nil
			ref.Groups[g] = m
			scoredBefore = scoredBefore || m.AUC.N > 0
		}
		d.Rows = append(d.Rows, row)
		if scoredBefore {
			d.References = append(d.References, ref)
		}
	}
	for n := range notes {
		d.Notes = append(d.Notes, n)
	}
	slices.Sort(d.Notes)
	return d, nil
}

// Iter0Suffix ends the variant of a reference row that scores a row's
// network before training.
const Iter0Suffix = "-iter0"

// VariantStatistic is the variant of the training-free statistic's reference row.
const VariantStatistic = "statistic"

// StatisticLabel names the training-free statistic's reference row.
const StatisticLabel = "reference: distance to the group's mean training image (no training)"

// SetStatistic puts the training-free statistic first among the reference
// rows (nil: the directory holds none, which the notes say).
func (d *Doc) SetStatistic(st *Statistic) {
	if st == nil {
		return
	}
	row := Row{Variant: VariantStatistic, Label: StatisticLabel, Groups: map[string]Metrics{}}
	for _, gr := range st.Results.Groups {
		if !slices.Contains(d.Groups, gr.Group) {
			continue
		}
		m := Metrics{ACC: newStat([]float64{100 * gr.Test.Accuracy}, nil), F1: newStat([]float64{100 * gr.Test.MacroF1}, nil)}
		if gr.Test.AUC != nil {
			m.AUC = newStat([]float64{100 * *gr.Test.AUC}, nil)
		}
		if ci, ok := st.AUC95[gr.Group]; ok {
			m.AUC95 = &[2]float64{100 * ci[0], 100 * ci[1]}
		}
		row.Groups[gr.Group] = m
	}
	d.References = append([]Row{row}, d.References...)
}

// rowKey names one row of a table: a baseline and a variant.
type rowKey struct{ model, variant string }

// rowOrder is the order of a table's rows: per baseline single, mixed, MADDR
// (Table 1), or the ablation rows (Table 2).
func rowOrder(s Settings) []rowKey {
	var order []rowKey
	switch s.Table {
	case Table1:
		for _, m := range s.Models {
			order = append(order, rowKey{m, VariantSingle})
			if s.Mixed {
				order = append(order, rowKey{m, VariantMixed})
			}
			order = append(order, rowKey{m, VariantMADDR})
		}
	case Table2:
		for _, a := range Ablations {
			order = append(order, rowKey{s.Models[0], fmt.Sprintf("r%02d", a.Row)})
		}
	}
	return order
}

// groupMetrics is one cell of a table: the row's test metrics on group g over
// the planned results' seeds, with the paper's AUC where there is one. It
// records the row's latent width and the results' notes on the way.
// The metrics are those evaluation picks from each result (nil: none).
func groupMetrics(s Settings, p Paper, k rowKey, g string, row *Row, planned []string, results []*Result, notes map[string]bool,
	evaluation func(*Result) *metrics.GroupedReport) Metrics {
	var acc, f1, auc []float64
	var seeds, aucSeeds []uint64
	for _, r := range results {
		if r.Model != k.model || r.Variant != k.variant || r.Table != s.Table || !slices.Contains(planned, r.ID) {
			continue
		}
		ev := evaluation(r)
		if ev == nil {
			continue
		}
		gr, ok := groupOf(*ev, g)
		if !ok {
			continue
		}
		row.LatentDim = r.LatentDim
		for _, n := range r.Notes {
			notes[n] = true
		}
		acc = append(acc, 100*gr.Test.Accuracy)
		f1 = append(f1, 100*gr.Test.MacroF1)
		seeds = append(seeds, r.Seed)
		if gr.Test.AUC != nil {
			auc = append(auc, 100**gr.Test.AUC)
			aucSeeds = append(aucSeeds, r.Seed)
		}
	}
	mt := Metrics{ACC: newStat(acc, seeds), F1: newStat(f1, seeds), AUC: newStat(auc, aucSeeds)}
	var pv PaperValue
	var ok bool
	if s.Table == Table1 && k.variant != VariantMixed {
		pv, ok = p.Table1AUC(k.model, k.variant, g)
	} else if s.Table == Table2 {
		pv, ok = p.Table2AUC(k.model, row.Ablation.Row, s.Roles.keyOf(g))
	}
	if ok {
		mt.PaperAUC = &pv
	}
	return mt
}

func groupOf(rep metrics.GroupedReport, g string) (metrics.GroupResult, bool) {
	for _, gr := range rep.Groups {
		if gr.Group == g {
			return gr, true
		}
	}
	return metrics.GroupResult{}, false
}

// columnName names a group's column: the group and, where it stands for
// one, the paper's data set.
func (d *Doc) columnName(g string) string {
	if n, ok := d.DatasetNames[g]; ok {
		return fmt.Sprintf("%s (%s)", g, n)
	}
	return g
}

// seedList names the seeds of the settings.
func (d *Doc) seedList() string {
	var parts []string
	for _, s := range d.Settings.Seeds {
		parts = append(parts, strconv.FormatUint(s, 10))
	}
	return strings.Join(parts, ", ")
}

// Header is the table's column header and its rows as text, shared by the
// Markdown and HTML renderings.
func (d *Doc) Header() ([]string, [][]string) {
	var head []string
	var rows [][]string
	paperCell := func(m Metrics) string {
		if m.PaperAUC == nil {
			return "–"
		}
		return m.PaperAUC.String()
	}
	switch d.Table {
	case Table1:
		head = []string{"method", "seeds"}
		for _, g := range d.Groups {
			head = append(head, g+" ACC", g+" F1", g+" AUC", g+" AUC paper")
		}
		for _, r := range d.Rows {
			line := []string{r.Label, strconv.Itoa(maxN(r))}
			for _, g := range d.Groups {
				m := r.Groups[g]
				line = append(line, m.ACC.String(), m.F1.String(), m.AUC.String(), paperCell(m))
			}
			rows = append(rows, line)
		}
	case Table2:
		head = []string{"#", "datasets", "L_o", "L_m", "L_c", "fd", "z", "seeds"}
		for _, g := range d.Groups {
			head = append(head, g+" AUC", g+" paper")
		}
		yes := func(b bool) string {
			if b {
				return "y"
			}
			return "-"
		}
		for _, r := range d.Rows {
			a := r.Ablation
			z := "-"
			if r.LatentDim > 0 {
				z = strconv.Itoa(r.LatentDim)
			}
			line := []string{strconv.Itoa(a.Row), a.DatasetsLabel(), yes(a.Organ), yes(a.Modality), yes(a.Center), yes(a.Disentangle), z, strconv.Itoa(maxN(r))}
			trained := a.groups(d.Settings.Roles)
			for _, g := range d.Groups {
				if !slices.Contains(trained, g) {
					line = append(line, "-", "-")
					continue
				}
				m := r.Groups[g]
				line = append(line, m.AUC.String(), paperCell(m))
			}
			rows = append(rows, line)
		}
	}
	return head, rows
}

// ReferenceHeader is the reference table's column header and its rows as
// text: per group ACC, F1 and AUC, the statistic's AUC with its bootstrap
// interval, the iteration-0 rows' mean ± std over the seeds.
func (d *Doc) ReferenceHeader() ([]string, [][]string) {
	head := []string{"reference", "seeds"}
	for _, g := range d.Groups {
		head = append(head, g+" ACC", g+" F1", g+" AUC")
	}
	var rows [][]string
	for _, r := range d.References {
		seeds := strconv.Itoa(maxN(r))
		if r.Variant == VariantStatistic {
			seeds = "none"
		}
		line := []string{r.Label, seeds}
		for _, g := range d.Groups {
			m, ok := r.Groups[g]
			switch {
			case !ok || m.AUC.N == 0 && m.ACC.N == 0:
				line = append(line, "-", "-", "-")
			case r.Variant == VariantStatistic:
				auc := "–"
				if m.AUC.N > 0 {
					auc = fmt.Sprintf("%.2f", m.AUC.Mean)
					if m.AUC95 != nil {
						auc += fmt.Sprintf(" [%.2f, %.2f]", m.AUC95[0], m.AUC95[1])
					}
				}
				line = append(line, fmt.Sprintf("%.2f", m.ACC.Mean), fmt.Sprintf("%.2f", m.F1.Mean), auc)
			default:
				line = append(line, m.ACC.String(), m.F1.String(), m.AUC.String())
			}
		}
		rows = append(rows, line)
	}
	return head, rows
}

// ReferenceNotes say how to read the reference table and which reference is
// missing.
func (d *Doc) ReferenceNotes() []string {
	out := []string{fmt.Sprintf("References: the same data, preprocessing, validation-chosen thresholds and scored images, without training: "+
		"a training-free statistic (each image's mean squared distance to its group's mean preprocessed normal training image; "+
		"its AUC with a 95%% bootstrap interval, %d resamples within each class) and each row's network before its first training "+
		"step (iteration 0, same seeds and calibration; mean ± std over the seeds). A trained row that does not clearly beat them "+
		"has not learned to detect.", StatisticResamples)}
	hasStatistic, hasIter0 := false, false
	for _, r := range d.References {
		if r.Variant == VariantStatistic {
			hasStatistic = true
		} else {
			hasIter0 = true
		}
	}
	if !hasStatistic {
		out = append(out, "No training-free statistic: the directory holds none for these settings (it was run before maddr computed it, "+
			"or the statistic failed on unreadable images with --skip-bad); rerun the same command to add it (no training).")
	}
	if !hasIter0 {
		out = append(out, "No iteration-0 reference: no finished cell scored its network before training (--untrained=false); "+
			"rerun with --untrained to add it (no training).")
	}
	return out
}

func maxN(r Row) int {
	n := 0
	for _, m := range r.Groups {
		n = max(n, m.ACC.N)
	}
	return n
}

// Intro is the paragraph that says how to read the table.
func (d *Doc) Intro() []string {
	var out []string
	what := "ACC, F1 and AUC"
	if d.Table == Table2 {
		what = "Test AUC"
	}
	out = append(out, fmt.Sprintf("%s in %%, mean ± population std (ddof 0, numpy's default) over the seeds (%s). "+
		"Each data set's threshold is chosen on its own validation images and applied to its test images.", what, d.seedList()))
	var cols []string
	for _, g := range d.Groups {
		cols = append(cols, d.columnName(g))
	}
	out = append(out, "Columns are organ/modality groups: "+strings.Join(cols, "; ")+".")
	if d.Table == Table1 {
		out = append(out, d.F1Note)
	}
	out = append(out, "Paper column: "+d.Paper)
	if len(d.Skipped) > 0 {
		out = append(out, fmt.Sprintf("Not planned (skipped by the user with --skip-cells): %s. The table covers the other cells.", strings.Join(d.Skipped, ", ")))
	}
	if d.Finished < d.Planned {
		out = append(out, fmt.Sprintf("INCOMPLETE: %d of %d cells are finished; missing cells are left out of the statistics (see the seeds column).", d.Finished, d.Planned))
	}
	return out
}

func (d *Doc) title() string {
	switch d.Table {
	case Table1:
		return fmt.Sprintf("Table 1: %s alone vs with MADDR", strings.Join(d.Settings.Models, ", "))
	case Table2:
		return fmt.Sprintf("Table 2: MADDR ablations with %s", strings.Join(d.Settings.Models, ", "))
	}
	return string(d.Table)
}

// WriteMarkdown writes the table as Markdown.
func (d *Doc) WriteMarkdown(w io.Writer) error {
	var b strings.Builder
	fmt.Fprintf(&b, "# %s\n\n", d.title())
	if d.Phantom {
		fmt.Fprintf(&b, "> **%s**\n\n", PhantomWarning)
	}
	fmt.Fprintf(&b, "Data: %s; %s iterations per run, batch %d, input %dx%d.\n\n", sourcesText(d.Settings.Sources), iterText(d.Settings.Iterations),
		d.Settings.BatchSize, d.Settings.Preprocess.Size, d.Settings.Preprocess.Size)
	writeMarkdownTable(&b, d.Header)
	if len(d.References) > 0 {
		writeMarkdownTable(&b, d.ReferenceHeader)
	}
	for _, p := range d.ReferenceNotes() {
		b.WriteString(p + "\n\n")
	}
	for _, p := range d.Intro() {
		b.WriteString(p + "\n\n")
	}
	for _, n := range d.Notes {
		fmt.Fprintf(&b, "> Note: %s\n\n", n)
	}
	_, err := io.WriteString(w, b.String())
	return err
}

// writeMarkdownTable writes the header and rows table gives as a Markdown table and a blank line.
func writeMarkdownTable(b *strings.Builder, table func() ([]string, [][]string)) {
	head, rows := table()
	b.WriteString("| " + strings.Join(head, " | ") + " |\n|")
	for range head {
		b.WriteString("---|")
	}
	b.WriteString("\n")
	for _, r := range rows {
		b.WriteString("| " + strings.Join(r, " | ") + " |\n")
	}
	b.WriteString("\n")
}

// WriteCSV writes the table in long form: one line per method, data set
// and metric, with the per-seed values, ready for a spreadsheet or pandas.
func (d *Doc) WriteCSV(w io.Writer) error {
	cw := csv.NewWriter(w)
	_ = cw.Write([]string{"table", "model", "variant", "label", "group", "dataset", "metric", "mean", "std", "n", "seeds", "values", "paper_mean", "paper_std", "phantom"})
	for _, r := range append(slices.Clone(d.Rows), d.References...) {
		for _, g := range d.Groups {
			m, ok := r.Groups[g]
			if !ok {
				continue
			}
			for _, mv := range []struct {
				name string
				s    Stat
			}{{"acc", m.ACC}, {"f1", m.F1}, {"auc", m.AUC}} {
				if mv.s.N == 0 {
					continue
				}
				var vals, seeds []string
				for _, v := range mv.s.Values {
					vals = append(vals, strconv.FormatFloat(v, 'f', 4, 64))
				}
				for _, seed := range mv.s.Seeds { // none for the training-free statistic
					seeds = append(seeds, strconv.FormatUint(seed, 10))
				}
				pm, ps := "", ""
				if mv.name == "auc" && m.PaperAUC != nil {
					pm = strconv.FormatFloat(m.PaperAUC.Mean, 'f', 2, 64)
					if m.PaperAUC.Std != nil {
						ps = strconv.FormatFloat(*m.PaperAUC.Std, 'f', 2, 64)
					}
				}
				_ = cw.Write([]string{string(d.Table), r.Model, r.Variant, r.Label, g, d.DatasetNames[g], mv.name,
					strconv.FormatFloat(mv.s.Mean, 'f', 4, 64), strconv.FormatFloat(mv.s.Std, 'f', 4, 64), strconv.Itoa(mv.s.N),
					strings.Join(seeds, " "), strings.Join(vals, " "), pm, ps, strconv.FormatBool(d.Phantom)})
			}
		}
	}
	cw.Flush()
	return cw.Error()
}

func sourcesText(specs []dataset.Spec) string {
	var parts []string
	for _, s := range specs {
		parts = append(parts, s.String())
	}
	if len(parts) == 0 {
		return "in-memory samples"
	}
	return strings.Join(parts, " + ")
}

func iterText(n int) string {
	if n == 0 {
		return "the baseline's paper schedule of"
	}
	return strconv.Itoa(n)
}
