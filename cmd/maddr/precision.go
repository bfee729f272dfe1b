package main

import (
	"flag"

	"github.com/maddr-project/maddr/modelfile"
	"github.com/maddr-project/maddr/score"
)

// precisionFlag adds --precision to a scoring command.
func precisionFlag(fs *flag.FlagSet) *string {
	return fs.String("precision", "fp32", "arithmetic of scoring: fp32 (default) or bf16 (bfloat16 autocast: faster on CPUs with "+
		"avx512_bf16, scores rounded; docs/precision.md has the AUC measured both ways and why fp32 is the default)")
}

// setPrecision applies a --precision value to a loaded model.
func setPrecision(m *modelfile.Model, value string) error {
	p, err := modelfile.ParsePrecision(value)
	if err != nil {
		return err
	}
	m.Precision = p
	return nil
}

// openScorer loads the model file at path (see resolveModel) for scoring at
// the given precision and returns it with its scorer and the file's SHA-256,
// which score, serve and watch all report.
func openScorer(path, precision string, sf *scoreFlags) (*modelfile.Model, *score.Scorer, string, error) {
	m, err := modelfile.Load(path)
	if err != nil {
		return nil, nil, "", err
	}
	if err := setPrecision(m, precision); err != nil {
		return nil, nil, "", err
	}
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
