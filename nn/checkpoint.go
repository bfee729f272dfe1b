package nn

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"sort"
	"strings"

	"github.com/maddr-project/maddr/atomicfile"
	"github.com/maddr-project/maddr/safetensors"
	"github.com/maddr-project/maddr/torch"
)

// configKey is the safetensors metadata entry that carries the JSON config, so
// the weights file alone is enough to rebuild the network.
const configKey = "maddr.config"

// TensorsToFile converts named tensors to safetensors form (copying to the host).
func TensorsToFile(named map[string]*torch.Tensor) (safetensors.File, error) {
	f := safetensors.File{Tensors: map[string]safetensors.Tensor{}, Metadata: map[string]string{}}
	for name, t := range named {
		if err := t.Err(); err != nil {
			return f, fmt.Errorf("saving %s: %w", name, err)
		}
		st := safetensors.Tensor{Shape: t.Shape()}
		var err error
		switch t.DType() {
		case torch.Int64, torch.Int32, torch.Uint8, torch.Bool:
			st.DType = safetensors.I64
			st.I64, err = t.Int64s()
		default:
			st.DType = safetensors.F32
			st.F32, err = t.Float32s()
		}
		if err != nil {
			return f, fmt.Errorf("saving %s: %w", name, err)
		}
		f.Tensors[name] = st
	}
	return f, nil
}

// SaveCheckpoint writes the store's parameters and buffers, plus extra named
// tensors (optimizer state), to path in safetensors format, with config
// (any JSON-serialisable value) both inside the file's metadata and in a
// human-readable sidecar path+".json". Both files are written atomically.
func SaveCheckpoint(path string, s *Store, extra map[string]*torch.Tensor, config any) error {
	named := map[string]*torch.Tensor{}
	for _, p := range s.All() {
		named[p.Name] = p.T
	}
	for k, t := range extra {
		if _, clash := named[k]; clash {
			return fmt.Errorf("saving %s: extra tensor %q clashes with a parameter", path, k)
		}
		named[k] = t
	}
	f, err := TensorsToFile(named)
	if err != nil {
		return fmt.Errorf("saving %s: %w", path, err)
	}
	cfg, err := json.MarshalIndent(config, "", "  ")
	if err != nil {
		return fmt.Errorf("saving %s: config: %w", path, err)
	}
	f.Metadata[configKey] = string(cfg)
	if err := safetensors.WriteFile(path, f); err != nil {
		return err
	}
	return atomicfile.Write(path+".json", func(w io.Writer) error {
		_, err := w.Write(append(cfg, '\n'))
		return err
	})
}

// Checkpoint is a loaded checkpoint file.
type Checkpoint struct {
	Path   string
	File   safetensors.File
	Config json.RawMessage
}

// ReadCheckpoint reads a checkpoint written by SaveCheckpoint. A truncated or
// corrupted file gives an error naming it.
func ReadCheckpoint(path string) (*Checkpoint, error) {
	f, err := safetensors.ReadFile(path)
	if err != nil {
		if errors.Is(err, os.ErrNotExist) {
			return nil, fmt.Errorf("checkpoint %s does not exist", path)
		}
		return nil, fmt.Errorf("reading checkpoint: %w", err)
	}
	c := &Checkpoint{Path: path, File: f}
	if cfg, ok := f.Metadata[configKey]; ok {
		c.Config = json.RawMessage(cfg)
	}
	return c, nil
}

// Tensor returns the named entry as a new unscoped tensor.
func (c *Checkpoint) Tensor(name string) (*torch.Tensor, bool) {
	st, ok := c.File.Tensors[name]
	if !ok {
		return nil, false
	}
	if st.I64 != nil {
		return torch.FromInt64(st.I64, st.Shape...), true
	}
	return torch.FromFloat32(st.F32, st.Shape...), true
}

// LoadInto copies every parameter and buffer of s from the checkpoint. It fails,
// naming the entries, when one is missing or has another shape; entries the
// store does not know are ignored only under a prefix listed in ignore.
func (c *Checkpoint) LoadInto(s *Store, ignore ...string) error {
	known := map[string]bool{}
	var missing, wrong []string
	for _, p := range s.All() {
		known[p.Name] = true
		st, ok := c.File.Tensors[p.Name]
		if !ok {
			missing = append(missing, p.Name)
			continue
		}
		if !sameShape(st.Shape, p.T.Shape()) {
			wrong = append(wrong, fmt.Sprintf("%s (file %v, model %v)", p.Name, st.Shape, p.T.Shape()))
			continue
		}
		t, _ := c.Tensor(p.Name)
		err := p.T.CopyFrom(t)
		t.Free()
		if err != nil {
			return fmt.Errorf("%s: loading %s: %w", c.Path, p.Name, err)
		}
	}
	var unexpected []string
	for name := range c.File.Tensors {
		if known[name] || hasAnyPrefix(name, ignore) {
			continue
		}
		unexpected = append(unexpected, name)
	}
	sort.Strings(unexpected)
	var problems []string
	if len(missing) > 0 {
		problems = append(problems, "missing "+strings.Join(missing, ", "))
	}
	if len(wrong) > 0 {
		problems = append(problems, "wrong shape "+strings.Join(wrong, ", "))
	}
	if len(unexpected) > 0 {
		problems = append(problems, "unexpected "+strings.Join(unexpected, ", "))
	}
	if len(problems) > 0 {
		return fmt.Errorf("%s does not match the model: %s", c.Path, strings.Join(problems, "; "))
	}
	return nil
}

// Extra returns the entries under prefix (with the prefix removed) as new tensors.
func (c *Checkpoint) Extra(prefix string) map[string]*torch.Tensor {
	out := map[string]*torch.Tensor{}
	for name := range c.File.Tensors {
		if rest, ok := strings.CutPrefix(name, prefix); ok {
			t, _ := c.Tensor(name)
			out[rest] = t
		}
	}
	return out
}

func hasAnyPrefix(s string, prefixes []string) bool {
	for _, p := range prefixes {
		if strings.HasPrefix(s, p) {
			return true
		}
	}
	return false
}

func sameShape(a, b []int64) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if a[i] != b[i] {
			return false
		}
	}
	return true
}
