package main

import (
	"bytes"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestDoctorReportsRealValues(t *testing.T) {
	bad := filepath.Join(t.TempDir(), "vgg.pth")
	os.WriteFile(bad, []byte("not weights"), 0o644)
	var out, errb bytes.Buffer
	if code := runMain([]string{"doctor", "--vgg-weights", bad}, &out, &errb); code != 0 {
		t.Fatalf("doctor exit %d: %s", code, errb.String())
	}
	for _, want := range []string{"libtorch", "1.", "threads", "cpu kernels", "cuda", "GFLOP/s", "does not load"} {
		if !strings.Contains(out.String(), want) {
			t.Errorf("doctor output lacks %q:\n%s", want, out.String())
		}
	}
}
