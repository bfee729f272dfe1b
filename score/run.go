package score

import (
	"context"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"

	"github.com/maddr-project/maddr/atomicfile"
	"github.com/maddr-project/maddr/progress"
)

// Chunks of a run: up to chunkBatches batches of images, or fewer when
// their decoded pixels pass chunkPixelBudget (256 MB of float32).
const (
	chunkBatches     = 16
	chunkPixelBudget = 64 << 20
)

// RunOptions control a batch run over units.
type RunOptions struct {
	Request Request
	Read    ReadOptions
	// HeatmapDir, when set, receives one overlay PNG per image (Request.Maps
	// is implied), laid out like the inputs' paths.
	HeatmapDir string
	// Progress receives a progress bar (nil: none).
	Progress io.Writer
}

// Stats count what a run produced.
type Stats struct {
	Units, Images, Volumes       int
	Normal, Abnormal, OutOfScope int
	Unknown, Failed              int
	FailedPaths                  []string
}

// Run scores every image of units in order and writes each result, and after
// the slices of each volume its summary, to w. Images are read and scored a
// few batches at a time, so archives of any size stream through.
func (s *Scorer) Run(ctx context.Context, units []Unit, w Writer, o RunOptions) (Stats, error) {
	var st Stats
	if err := s.CheckRequest(o.Request); err != nil {
		return st, err
	}
	req := o.Request
	if o.HeatmapDir != "" {
		req.Maps = true
	}
	var bar *progress.Bar
	if o.Progress != nil {
		bar = progress.New(o.Progress, len(units), progress.Options{Label: "score", Unit: "img"})
	}
	// Many images are scored together so that batches fill up (each image
	// has its own position in a batch), within a memory budget for the
	// decoded originals.
	chunk := make([]Input, 0, chunkBatches*s.opts.BatchSize)
	chunkPixels := 0
	var volKey string
	var volResults []Result
	flushVolume := func() error {
		if volKey != "" {
			st.Volumes++
			if err := w.Write(Summarise(volKey, volResults)); err != nil {
				return err
			}
		}
		volKey, volResults = "", nil
		return nil
	}
	process := func() error {
		if len(chunk) == 0 {
			return nil
		}
		results, err := s.Score(ctx, chunk, req)
		if err != nil {
			return err
		}
		for i, r := range results {
			if r.Volume != volKey {
				if err := flushVolume(); err != nil {
					return err
				}
				volKey = r.Volume
			}
			if o.HeatmapDir != "" && r.Map != nil {
				if r.Heatmap, err = s.writeHeatmap(o.HeatmapDir, chunk[i], r); err != nil {
					return err
				}
			}
			r.Map = nil
			st.count(r)
			if err := w.Write(r); err != nil {
				return err
			}
			if volKey != "" {
				volResults = append(volResults, r)
			}
		}
		clear(chunk)
		chunk, chunkPixels = chunk[:0], 0
		return nil
	}
	for _, u := range units {
		n := 0
		err := ReadUnit(u, o.Read, func(in Input) error {
			chunk = append(chunk, in)
			chunkPixels += len(in.Image.Pix)
			n++
			if len(chunk) == cap(chunk) || chunkPixels >= chunkPixelBudget {
				return process()
			}
			return nil
		})
		if err != nil {
			return st, err
		}
		st.Units++
		if bar != nil {
			bar.Step(n)
		}
	}
	if err := process(); err != nil {
		return st, err
	}
	if err := flushVolume(); err != nil {
		return st, err
	}
	if bar != nil {
		bar.Finish()
	}
	return st, nil
}

func (st *Stats) count(r Result) {
	st.Images++
	switch r.Decision {
	case Normal:
		st.Normal++
	case Abnormal:
		st.Abnormal++
	case OutOfScope:
		st.OutOfScope++
	case Unknown:
		st.Unknown++
	case Failed:
		st.Failed++
		where := r.Path
		if len(r.Notes) > 0 {
			where = r.Notes[0]
		}
		st.FailedPaths = append(st.FailedPaths, where)
	}
}

// HeatmapName is where the heat map of path (and slice, for a volume) goes
// inside dir: the input's path with ".." and the root made safe, plus
// ".heatmap.png".
func HeatmapName(dir, path string, slice int, volume bool) string {
	p := filepath.ToSlash(filepath.Clean(path))
	p = strings.TrimLeft(p, "/")
	parts := strings.Split(p, "/")
	for i, part := range parts {
		if part == ".." {
			parts[i] = "__"
		}
	}
	name := filepath.Join(append([]string{dir}, parts...)...)
	if volume {
		name += fmt.Sprintf(".slice%04d", slice)
	}
	return name + ".heatmap.png"
}

func (s *Scorer) writeHeatmap(dir string, in Input, r Result) (string, error) {
	name := HeatmapName(dir, in.Path, in.Slice, in.Volume != "" && in.Volume == in.Path || in.Slice > 0)
	if err := os.MkdirAll(filepath.Dir(name), 0o755); err != nil {
		return "", err
	}
	err := atomicfile.Write(name, func(w io.Writer) error { return s.HeatmapPNG(w, in, r) })
	if err != nil {
		return "", err
	}
	return name, nil
}
