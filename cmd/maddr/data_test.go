package main

import (
	"bytes"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestDataSynthInspect(t *testing.T) {
	dir := t.TempDir()
	var out, errb bytes.Buffer
	if code := runMain([]string{"data", "synth", "--out", dir, "--scale", "0.02", "--size", "40", "--seed", "3"}, &out, &errb); code != 0 {
		t.Fatalf("synth exit %d: %s", code, errb.String())
	}
	manifest := filepath.Join(dir, "manifest.csv")
	if _, err := os.Stat(manifest); err != nil {
		t.Fatal(err)
	}
	out.Reset()
	png := filepath.Join(dir, "montage.png")
	if code := runMain([]string{"data", "inspect", "manifest:" + manifest, "--montage", png, "--per-row", "2"}, &out, &errb); code != 0 {
		t.Fatalf("inspect exit %d: %s", code, errb.String())
	}
	for _, want := range []string{"liver-ct", "chest-xray", "width min/median/max 40/40/40", "montage:"} {
		if !strings.Contains(out.String(), want) {
			t.Errorf("inspect output lacks %q:\n%s", want, out.String())
		}
	}
	if st, err := os.Stat(png); err != nil || st.Size() == 0 {
		t.Errorf("montage: %v", err)
	}
	if code := runMain([]string{"data", "inspect", "nosuch:/x"}, &out, &errb); code != 1 || !strings.Contains(errb.String(), "unknown source kind") {
		t.Errorf("bad source: exit %d, stderr %q", code, errb.String())
	}
}

// TestInspectRealFixtures runs inspect on the real DICOM/NIfTI images that
// tools/fetch-fixtures.sh downloads (and lists in a manifest).
func TestInspectRealFixtures(t *testing.T) {
	manifest := filepath.Join("..", "..", "testdata", "real", "manifest.csv")
	if _, err := os.Stat(manifest); err != nil {
		t.Skip("real fixtures absent: run tools/fetch-fixtures.sh (make fixtures)")
	}
	var out, errb bytes.Buffer
	png := filepath.Join(t.TempDir(), "real.png")
	if code := runMain([]string{"data", "inspect", "manifest:" + manifest, "--montage", png}, &out, &errb); code != 0 {
		t.Fatalf("inspect exit %d: %s", code, errb.String())
	}
	for _, want := range []string{"brain-mri", "lung-ct", "lung-xray", "width min/median/max 33/128/1760", "montage:"} {
		if !strings.Contains(out.String(), want) {
			t.Errorf("inspect output lacks %q:\n%s", want, out.String())
		}
	}
	if st, err := os.Stat(png); err != nil || st.Size() == 0 {
		t.Fatalf("montage not written: %v", err)
	}
}
