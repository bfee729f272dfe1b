package main

import (
	"flag"
	"fmt"
	"io"
	"strings"

	"github.com/maddr-project/maddr/modelfile"
	"github.com/maddr-project/maddr/score"
)

// precisionFlag adds --precision to a scoring command.
func precisionFlag(fs *flag.FlagSet) *string {
	return fs.String("precision", modelfile.AutoPrecision, "arithmetic of scoring: auto (default: bf16 for DPA on CPUs with native "+
		"bfloat16, fp32 otherwise), fp32 (exact) or bf16 (bfloat16 autocast, scores rounded); docs/precision.md has the AUC "+
		"measured both ways")
}

// setPrecision applies a --precision value to a loaded model and says on
// log which arithmetic scores and why.
func setPrecision(m *modelfile.Model, value string, log io.Writer) error {
	p, why, err := modelfile.ChoosePrecision(value, m.Manifest.Model)
	if err != nil {
		return err
	}
	m.Precision = p
	fmt.Fprintf(log, "precision: %s (%s)\n", modelfile.PrecisionName(p), why)
	return nil
}

// warnThresholdPrecision says on log when the model's thresholds were chosen
// from scores of another precision than the one that will be compared with
// them: bf16 moves a score by a fraction of a percent (docs/precision.md), so
// only decisions that close to a threshold can differ.
func warnThresholdPrecision(m *modelfile.Model, log io.Writer) {
	name := modelfile.PrecisionName(m.Precision)
	if chosen := m.Manifest.ThresholdPrecisions(); len(chosen) > 1 || (len(chosen) == 1 && chosen[0] != name) {
		fmt.Fprintf(log, "precision: the thresholds in %s were chosen on %s scores and this process scores in %s: decisions "+
			"within a fraction of a percent of a threshold may differ (maddr eval --precision %s chooses them again)\n",
			m.Path, strings.Join(chosen, " and "), name, name)
	}
}

// openScorer loads the model file at path (see resolveModel) for scoring at
// the given precision and returns it with its scorer and the file's SHA-256,
// which score, serve and watch all report.
func openScorer(path, precision string, sf *scoreFlags, log io.Writer) (*modelfile.Model, *score.Scorer, string, error) {
	m, err := modelfile.Load(path)
	if err != nil {
		return nil, nil, "", err
	}
	if err := setPrecision(m, precision, log); err != nil {
		return nil, nil, "", err
	}
	warnThresholdPrecision(m, log)
	sc, err := score.New(m, sf.options())
	if err != nil {
		return nil, nil, "", err
	}
	digest, err := modelfile.Digest(path)
	if err != nil {
		return nil, nil, "", err
	}
	return m, sc, digest, nil
}
