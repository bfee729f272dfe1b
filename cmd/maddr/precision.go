package main

import (
	"flag"

	"github.com/maddr-project/maddr/modelfile"
)

// precisionFlag adds --precision to a scoring command.
func precisionFlag(fs *flag.FlagSet) *string {
	return fs.String("precision", "fp32", "arithmetic of scoring: fp32 (default) or bf16 (bfloat16 autocast: faster on CPUs with "+
		"avx512_bf16, scores rounded; see BENCHMARKS.md for the measured AUC difference)")
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
