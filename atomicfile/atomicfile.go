// Package atomicfile writes files so that a reader (or a crash) sees either
// the previous complete file or the new complete one, never a half-written
// file: the content goes to a temporary file in the same directory, which is
// synced and then renamed over the target. Every output maddr writes whole
// (model files, checkpoints, reports, JSON, CSV, PNG) goes through it.
package atomicfile

import (
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
)

// DefaultMode is the permission of files written by Write: results are meant
// to be shared like any other output, while os.CreateTemp makes files private.
const DefaultMode fs.FileMode = 0o644

// Write writes path through write, atomically, with DefaultMode.
func Write(path string, write func(io.Writer) error) error {
	return WriteMode(path, DefaultMode, write)
}

// WriteBytes writes data to path atomically with DefaultMode.
func WriteBytes(path string, data []byte) error {
	return Write(path, func(w io.Writer) error {
		_, err := w.Write(data)
		return err
	})
}

// WriteMode writes path through write with the given permission bits. The
// temporary file lives beside path (a rename across file systems would not be
// atomic) and is removed when anything fails, leaving the old file as it was.
func WriteMode(path string, mode fs.FileMode, write func(io.Writer) error) (err error) {
	dir := filepath.Dir(path)
	tmp, err := os.CreateTemp(dir, "."+filepath.Base(path)+".tmp-*")
	if err != nil {
		return fmt.Errorf("writing %s: %w", path, err)
	}
	defer func() {
		if err != nil {
			tmp.Close()
			os.Remove(tmp.Name())
		}
	}()
	if err = tmp.Chmod(mode); err != nil {
		return fmt.Errorf("writing %s: %w", path, err)
	}
	if err = write(tmp); err != nil {
		return fmt.Errorf("writing %s: %w", path, err)
	}
	if err = tmp.Sync(); err != nil {
		return fmt.Errorf("writing %s: %w", path, err)
	}
	if err = tmp.Close(); err != nil {
		return fmt.Errorf("writing %s: %w", path, err)
	}
	if err = os.Rename(tmp.Name(), path); err != nil {
		return fmt.Errorf("writing %s: %w", path, err)
	}
	// Persist the rename itself; ignore file systems that cannot sync a directory.
	if d, derr := os.Open(dir); derr == nil {
		_ = d.Sync()
		d.Close()
	}
	return nil
}
