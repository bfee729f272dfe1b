package modelfile

import (
	"strings"
	"testing"

	"github.com/maddr-project/maddr/torch"
)

func TestChoosePrecision(t *testing.T) {
	saved := nativeBF16
	defer func() { nativeBF16 = saved }()
	cases := []struct {
		value, family string
		native        bool
		want          torch.DType
		why           string
	}{
		{"auto", "dpa", true, torch.BFloat16, "native bfloat16"},
		{"auto", "dpa", false, torch.Float32, "no native bfloat16"},
		{"auto", "ae", true, torch.Float32, "ae scores in fp32"},
		{"auto", "ganomaly", true, torch.Float32, "ganomaly scores in fp32"},
		{"fp32", "dpa", true, torch.Float32, "--precision"},
		{"bf16", "ae", false, torch.BFloat16, "--precision"},
		{"", "dpa", true, torch.Float32, "--precision"},
	}
	for _, c := range cases {
		nativeBF16 = func() bool { return c.native }
		got, why, err := ChoosePrecision(c.value, c.family)
		if err != nil || got != c.want || !strings.Contains(why, c.why) {
			t.Errorf("ChoosePrecision(%q, %q) on a CPU with native bf16 %v = %v, %q, %v; want %v and a reason with %q",
				c.value, c.family, c.native, got, why, err, c.want, c.why)
		}
	}
	if _, _, err := ChoosePrecision("fp8", "dpa"); err == nil || !strings.Contains(err.Error(), "auto, fp32 or bf16") {
		t.Errorf("precision fp8: error %v, want one listing the choices", err)
	}
}

func TestThresholdPrecisions(t *testing.T) {
	cases := []struct {
		thresholds map[string]Threshold
		want       string
	}{
		{nil, ""},
		{map[string]Threshold{"a": {}, "b": {Precision: "fp32"}}, "fp32"}, // unrecorded: chosen by an fp32-only eval
		{map[string]Threshold{"a": {Precision: "bf16"}}, "bf16"},
		{map[string]Threshold{"a": {Precision: "bf16"}, "b": {}}, "bf16 fp32"},
	}
	for _, c := range cases {
		if got := strings.Join(Manifest{Thresholds: c.thresholds}.ThresholdPrecisions(), " "); got != c.want {
			t.Errorf("thresholds %v: precisions %q, want %q", c.thresholds, got, c.want)
		}
	}
}
