package experiment

import (
	_ "embed"
	"encoding/json"
	"fmt"
	"sync"
)

// paperJSON holds the paper's published numbers as data, so they can be
// checked and corrected without touching code.
//
//go:embed paper.json
var paperJSON []byte

// PaperValue is one published number in percent; Std is nil when the paper
// does not give it.
type PaperValue struct {
	Mean float64  `json:"mean"`
	Std  *float64 `json:"std,omitempty"`
}

// String formats the value as the paper's tables do.
func (v PaperValue) String() string {
	if v.Std == nil {
		return fmt.Sprintf("%.2f", v.Mean)
	}
	return fmt.Sprintf("%.2f ± %.2f", v.Mean, *v.Std)
}

// PaperDataset is one of the paper's data sets and the maddr groups that hold it.
type PaperDataset struct {
	Key    string   `json:"key"`
	Name   string   `json:"name"`
	Groups []string `json:"groups"`
}

// Paper is the content of paper.json.
type Paper struct {
	Source   string         `json:"source"`
	Datasets []PaperDataset `json:"datasets"`
	Table1   []struct {
		Model   string                `json:"model"`
		Variant string                `json:"variant"`
		AUC     map[string]PaperValue `json:"auc"`
	} `json:"table1"`
	Table2Model string `json:"table2_model"`
	Table2      []struct {
		Row int                   `json:"row"`
		AUC map[string]PaperValue `json:"auc"`
	} `json:"table2"`
}

var (
	paperOnce sync.Once
	paper     Paper
	paperErr  error
)

// Published returns the paper's numbers.
func Published() (Paper, error) {
	paperOnce.Do(func() {
		if err := json.Unmarshal(paperJSON, &paper); err != nil {
			paperErr = fmt.Errorf("experiment: embedded paper.json: %w", err)
		}
	})
	return paper, paperErr
}

// DatasetOf returns the paper's data set that a maddr group stands for.
func (p Paper) DatasetOf(group string) (PaperDataset, bool) {
	for _, d := range p.Datasets {
		for _, g := range d.Groups {
			if g == group {
				return d, true
			}
		}
	}
	return PaperDataset{}, false
}

// Table1AUC is the published Table 1 AUC of a model variant ("single" or
// "maddr") on the data set of a group.
func (p Paper) Table1AUC(model, variant, group string) (PaperValue, bool) {
	d, ok := p.DatasetOf(group)
	if !ok {
		return PaperValue{}, false
	}
	for _, r := range p.Table1 {
		if r.Model == model && r.Variant == variant {
			v, ok := r.AUC[d.Key]
			return v, ok
		}
	}
	return PaperValue{}, false
}

// Table2AUC is the published Table 2 AUC of a row on a role's data set
// ("lits", "lung-ct", "lung-xray"); the paper ran Table 2 with DPA only.
func (p Paper) Table2AUC(model string, row int, key string) (PaperValue, bool) {
	if model != p.Table2Model {
		return PaperValue{}, false
	}
	for _, r := range p.Table2 {
		if r.Row == row {
			v, ok := r.AUC[key]
			return v, ok
		}
	}
	return PaperValue{}, false
}
