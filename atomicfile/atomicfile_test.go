package atomicfile

import (
	"errors"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// TestFailedWriteKeepsOldFile checks the promise readers rely on: when the
// writer fails halfway, the previous file is untouched and no temporary file
// is left in the directory.
func TestFailedWriteKeepsOldFile(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "scores.csv")
	if err := WriteBytes(path, []byte("old\n")); err != nil {
		t.Fatal(err)
	}
	boom := errors.New("disk on fire")
	err := Write(path, func(w io.Writer) error {
		if _, err := io.WriteString(w, "half a ne"); err != nil {
			return err
		}
		return boom
	})
	if !errors.Is(err, boom) {
		t.Fatalf("error %v does not wrap the writer's error", err)
	}
	if got, _ := os.ReadFile(path); string(got) != "old\n" {
		t.Fatalf("old file changed to %q", got)
	}
	assertOnlyFiles(t, dir, "scores.csv")
}

func TestWriteReplacesWithMode(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "report.json")
	if err := WriteBytes(path, []byte("{}")); err != nil {
		t.Fatal(err)
	}
	if err := WriteMode(path, 0o600, func(w io.Writer) error { _, err := io.WriteString(w, `{"auc":1}`); return err }); err != nil {
		t.Fatal(err)
	}
	got, err := os.ReadFile(path)
	if err != nil || string(got) != `{"auc":1}` {
		t.Fatalf("read %q, %v", got, err)
	}
	st, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	if st.Mode().Perm() != 0o600 {
		t.Fatalf("mode %v, want 0600", st.Mode().Perm())
	}
	if err := WriteBytes(path, nil); err != nil {
		t.Fatal(err)
	}
	if st, _ := os.Stat(path); st.Mode().Perm() != DefaultMode {
		t.Fatalf("mode %v, want %v", st.Mode().Perm(), DefaultMode)
	}
	assertOnlyFiles(t, dir, "report.json")
}

func TestMissingDirectoryNamesPath(t *testing.T) {
	path := filepath.Join(t.TempDir(), "no-such-dir", "out.png")
	err := WriteBytes(path, []byte("x"))
	if err == nil || !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("got %v, want a not-exist error", err)
	}
	if !strings.HasPrefix(err.Error(), "writing "+path) {
		t.Fatalf("error %q does not name %s", err, path)
	}
}

func assertOnlyFiles(t *testing.T, dir string, want ...string) {
	t.Helper()
	entries, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, e := range entries {
		got = append(got, e.Name())
	}
	if len(got) != len(want) {
		t.Fatalf("directory holds %v, want only %v (a temporary file was left behind?)", got, want)
	}
	for i := range want {
		if got[i] != want[i] {
			t.Fatalf("directory holds %v, want %v", got, want)
		}
	}
}
