package main

import (
	"strings"
	"testing"

	"github.com/maddr-project/maddr/modelfile"
	"github.com/maddr-project/maddr/torch"
)

func TestPrecisionIsReportedWithThresholdMismatch(t *testing.T) {
	m := &modelfile.Model{Path: "m.safetensors", Manifest: modelfile.Manifest{Model: "ae",
		Thresholds: map[string]modelfile.Threshold{"liver-ct": {Value: 1, Precision: "bf16"}}}}
	var log strings.Builder
	if err := setPrecision(m, "auto", &log); err != nil {
		t.Fatal(err)
	}
	if m.Precision != torch.Float32 || !strings.Contains(log.String(), "precision: fp32 (auto: ae scores in fp32") {
		t.Errorf("auto on an AE: precision %v, log %q", m.Precision, log.String())
	}
	log.Reset()
	warnThresholdPrecision(m, &log)
	if !strings.Contains(log.String(), "chosen on bf16 scores and this process scores in fp32") {
		t.Errorf("bf16 thresholds scored in fp32: log %q, want a warning", log.String())
	}
	log.Reset()
	if err := setPrecision(m, "bf16", &log); err != nil {
		t.Fatal(err)
	}
	warnThresholdPrecision(m, &log)
	if strings.Contains(log.String(), "thresholds") {
		t.Errorf("bf16 thresholds scored in bf16: log %q, want no warning", log.String())
	}
	if err := setPrecision(m, "int8", &log); err == nil {
		t.Error("precision int8 accepted")
	}
}
