package reliability

import (
	"context"
	"encoding/binary"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/maddr-project/maddr/modelfile"
	"github.com/maddr-project/maddr/nn"
	"github.com/maddr-project/maddr/train"
)

// tinyRun trains the tiny ae for 3 steps and returns its directory.
func tinyRun(t *testing.T) string {
	t.Helper()
	dir := t.TempDir()
	cfg := tinyConfig("ae", `{"base_width":2,"hidden":16}`, 24, 3, 1)
	if _, err := train.Run(context.Background(), cfg, dir, train.Options{Samples: smallPhantom(t)}); err != nil {
		t.Fatal(err)
	}
	return dir
}

// damaged writes variants of a file: truncated at 48 points spread over the
// file, and with one byte changed at every 7th position of the header (the
// JSON that says where every tensor lies).
func damaged(t *testing.T, good []byte, dir string) map[string]string {
	t.Helper()
	out := map[string]string{}
	write := func(name string, data []byte) {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, data, 0o644); err != nil {
			t.Fatal(err)
		}
		out[name] = p
	}
	for i := 0; i < 48; i++ {
		cut := len(good) * i / 48
		write(fmt.Sprintf("cut-%07d.safetensors", cut), good[:cut])
	}
	hlen := int(binary.LittleEndian.Uint64(good))
	for at := 0; at < 8+hlen; at += 7 {
		b := append([]byte(nil), good...)
		b[at] ^= 0x5a
		write(fmt.Sprintf("flip-%07d.safetensors", at), b)
	}
	return out
}

// TestCorruptCheckpointAndModelFiles: every truncation of a checkpoint or a
// model file, and every damaged header byte, gives an error naming the file
// (or, for a harmless header byte, a file that still loads), never a panic.
// Damage inside the tensor data is not detected: the format has no checksum.
func TestCorruptCheckpointAndModelFiles(t *testing.T) {
	run := tinyRun(t)
	for _, file := range []string{train.CheckpointFile, train.ModelFile} {
		good, err := os.ReadFile(filepath.Join(run, file))
		if err != nil {
			t.Fatal(err)
		}
		loaded, refused := 0, 0
		for name, path := range damaged(t, good, t.TempDir()) {
			var err error
			if file == train.CheckpointFile {
				_, err = nn.ReadCheckpoint(path)
			} else {
				var m *modelfile.Model
				if m, err = modelfile.Load(path); err == nil {
					m.Framework.Base.Store().Free()
				}
			}
			switch {
			case err == nil && strings.HasPrefix(name, "cut-"):
				t.Errorf("%s %s: a truncated file was accepted", file, name)
			case err == nil:
				loaded++
			case !strings.Contains(err.Error(), path):
				t.Errorf("%s %s: error does not name the file: %v", file, name, err)
			default:
				refused++
			}
		}
		t.Logf("%s (%d bytes): %d damaged copies refused with the file named, %d header changes harmless", file, len(good), refused, loaded)
	}

	// A flipped bit in the weights is caught by the data checksum.
	good, _ := os.ReadFile(filepath.Join(run, train.ModelFile))
	b := append([]byte(nil), good...)
	b[len(b)-3] ^= 0x01
	p := filepath.Join(t.TempDir(), "bitrot.safetensors")
	os.WriteFile(p, b, 0o644)
	if _, err := modelfile.Load(p); err == nil || !strings.Contains(err.Error(), "checksum") || !strings.Contains(err.Error(), p) {
		t.Fatalf("a flipped bit in the data: %v", err)
	}
}

// TestEvalRefusesCorruptModel runs 'maddr eval' on a truncated model file and
// on a checkpoint: the command fails with the file named and a reason, and
// does not panic.
func TestEvalRefusesCorruptModel(t *testing.T) {
	bin := maddrBinary(t)
	run := tinyRun(t)
	good, _ := os.ReadFile(filepath.Join(run, train.ModelFile))
	dir := t.TempDir()
	truncated := filepath.Join(dir, "corrupt.safetensors")
	os.WriteFile(truncated, good[:len(good)/3], 0o644)
	garbage := filepath.Join(dir, "garbage.safetensors")
	os.WriteFile(garbage, []byte("\xff\xff\xff\xff\xff\xff\xff\x7fnot json"), 0o644)
	cases := []struct{ path, want string }{
		{truncated, "truncated file"},
		{garbage, "header length"},
		{filepath.Join(run, train.CheckpointFile), "not a maddr model"},
		{filepath.Join(dir, "missing.safetensors"), "does not exist"},
	}
	for _, tc := range cases {
		out, err := exec.Command(bin, "eval", "--model", tc.path).CombinedOutput()
		text := string(out)
		if err == nil || !strings.Contains(text, tc.path) || !strings.Contains(text, tc.want) {
			t.Errorf("maddr eval --model %s: %v\n%s\nwant a failure naming the file and %q", tc.path, err, text, tc.want)
		}
		if strings.Contains(text, "panic") || strings.Contains(text, "goroutine ") {
			t.Errorf("maddr eval --model %s panicked:\n%s", tc.path, text)
		}
	}
}
