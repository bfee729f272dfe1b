package main

import (
	"encoding/json"
	"io"
	"testing"
)

func TestVGGFlagsReachDPAOptions(t *testing.T) {
	t.Setenv(vggWeightsEnv, "")
	fs := newFlagSet("train", io.Discard)
	mo := addModelOptionFlags(fs)
	if err := fs.Parse([]string{"--vgg-random-init", "--vgg-init", "torchvision", "--vgg-norm", "train-rms"}); err != nil {
		t.Fatal(err)
	}
	raw, err := mo.options()
	if err != nil {
		t.Fatal(err)
	}
	var got map[string]any
	if err := json.Unmarshal(raw, &got); err != nil {
		t.Fatal(err)
	}
	if got["vgg_random_init"] != true || got["vgg_init"] != "torchvision" || got["vgg_norm"] != "train-rms" {
		t.Errorf("options %s", raw)
	}
	// Unset flags add nothing, so DPA's defaults apply.
	fs = newFlagSet("train", io.Discard)
	mo = addModelOptionFlags(fs)
	if err := fs.Parse(nil); err != nil {
		t.Fatal(err)
	}
	if raw, err := mo.options(); err != nil || raw != nil {
		t.Errorf("no flags gave %s (%v)", raw, err)
	}
}
