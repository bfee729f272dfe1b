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
	if err := s.CheckRequest(o.Request); err != nil {
		return Stats{}, err
	}
	r := &runState{s: s, ctx: ctx, w: w, o: o, req: o.Request}
	if o.HeatmapDir != "" {
		r.req.Maps = true
	}
	var bar *progress.Bar
	if o.Progress != nil {
		bar = progress.New(o.Progress, len(units), progress.Options{Label: "score", Unit: "img"})
	}
	// Many images are scored together so that batches fill up (each image
	// has its own position in a batch), within a memory budget for the
	// decoded originals.
	r.chunk = make([]Input, 0, chunkBatches*s.opts.BatchSize)
	for _, u := range units {
		n := 0
		err := ReadUnit(u, o.Read, func(in Input) error {
			n++
			return r.add(in)
		})
		if err != nil {
			return r.st, err
		}
		r.st.Units++
		if bar != nil {
			bar.Step(n)
		}
	}
	if err := r.process(); err != nil {
		return r.st, err
	}
	if err := r.flushVolume(); err != nil {
		return r.st, err
	}
	if bar != nil {
		bar.Finish()
	}
	return r.st, nil
}

// runState is a Run under way: the chunk of images read but not yet
// scored, and the volume whose slices are being written.
type runState struct {
	s     *Scorer
	ctx   context.Context
	w     Writer
	o     RunOptions
	req   Request
	st    Stats
	chunk []Input
	// chunkPixels counts the decoded pixels held in chunk.
	chunkPixels int
	volKey      string
	volResults  []Result
}

// add queues an image, scoring the chunk when it is full.
func (r *runState) add(in Input) error {
	r.chunk = append(r.chunk, in)
	r.chunkPixels += len(in.Image.Pix)
	if len(r.chunk) == cap(r.chunk) || r.chunkPixels >= chunkPixelBudget {
		return r.process()
	}
	return nil
}

// process scores the queued images and writes their results.
func (r *runState) process() error {
	if len(r.chunk) == 0 {
		return nil
	}
	results, err := r.s.Score(r.ctx, r.chunk, r.req)
	if err != nil {
		return err
	}
	for i, res := range results {
		if err := r.emit(r.chunk[i], res); err != nil {
			return err
		}
	}
	clear(r.chunk)
	r.chunk, r.chunkPixels = r.chunk[:0], 0
	return nil
}

// emit writes one image's result (and its heat map), closing the previous
// volume when this image starts another.
func (r *runState) emit(in Input, res Result) error {
	if res.Volume != r.volKey {
		if err := r.flushVolume(); err != nil {
			return err
		}
		r.volKey = res.Volume
	}
	if r.o.HeatmapDir != "" && res.Map != nil {
		var err error
		if res.Heatmap, err = r.s.writeHeatmap(r.o.HeatmapDir, in, res); err != nil {
			return err
		}
	}
	res.Map = nil
	r.st.count(res)
	if err := r.w.Write(res); err != nil {
		return err
	}
	if r.volKey != "" {
		r.volResults = append(r.volResults, res)
	}
	return nil
}

// flushVolume writes the summary of the volume whose slices were written.
func (r *runState) flushVolume() error {
	if r.volKey != "" {
		r.st.Volumes++
		if err := r.w.Write(Summarise(r.volKey, r.volResults)); err != nil {
			return err
		}
	}
	r.volKey, r.volResults = "", nil
	return nil
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
