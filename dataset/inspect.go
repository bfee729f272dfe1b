package dataset

import (
	"fmt"
	"image"
	"image/color"
	"image/draw"
	"io"
	"runtime"
	"sort"
	"strings"
	"sync"
	"text/tabwriter"
)

// SizeStats are the minimum, median and maximum of image widths and heights.
type SizeStats struct {
	Images                             int
	MinWidth, MedianWidth, MaxWidth    int
	MinHeight, MedianHeight, MaxHeight int
}

// ImageSizes decodes every sample (in parallel) and summarises the sizes.
// Samples that fail to decode are returned as problems.
func ImageSizes(samples []Sample, r *Reader, workers int) (SizeStats, []Problem) {
	if workers <= 0 {
		workers = runtime.NumCPU()
	}
	ws := make([]int, len(samples))
	hs := make([]int, len(samples))
	errs := make([]error, len(samples))
	next := make(chan int)
	var wg sync.WaitGroup
	for w := 0; w < workers; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range next {
				img, err := r.Load(samples[i])
				errs[i] = err
				ws[i], hs[i] = img.Width, img.Height
			}
		}()
	}
	for i := range samples {
		next <- i
	}
	close(next)
	wg.Wait()
	var probs []Problem
	var gw, gh []int
	for i, err := range errs {
		if err != nil {
			probs = append(probs, Problem{Path: samples[i].Where(), Err: err})
			continue
		}
		gw, gh = append(gw, ws[i]), append(gh, hs[i])
	}
	st := SizeStats{Images: len(gw)}
	if len(gw) > 0 {
		st.MinWidth, st.MedianWidth, st.MaxWidth = minMedMax(gw)
		st.MinHeight, st.MedianHeight, st.MaxHeight = minMedMax(gh)
	}
	return st, probs
}

// minMedMax sorts a; the median of an even count is the lower middle value
// so it is always a size that occurs.
func minMedMax(a []int) (int, int, int) {
	sort.Ints(a)
	return a[0], a[(len(a)-1)/2], a[len(a)-1]
}

// WriteCounts prints the counts as an aligned table.
func WriteCounts(w io.Writer, counts []Count) error {
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintln(tw, "group\torgan\tmodality\tsplit\tnormal\tabnormal\t")
	var tn, ta int
	for _, c := range counts {
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%d\t%d\t\n", c.Group, c.Organ, c.Modality, c.Split, c.Normal, c.Abnormal)
		tn += c.Normal
		ta += c.Abnormal
	}
	fmt.Fprintf(tw, "total\t\t\t\t%d\t%d\t\n", tn, ta)
	return tw.Flush()
}

// Montage draws, for each group, a row of up to perRow normal and a row of
// up to perRow abnormal examples as the network sees them (input(i) returns
// the size x size preprocessed values in [-1, 1] of samples[i]), each row
// labelled with its group and label. Examples are taken from the evaluation
// splits first (they hold both labels), in sample order.
func Montage(samples []Sample, input func(i int) ([]float32, error), size, perRow int) (*image.Gray, error) {
	type row struct {
		title string
		idx   []int
	}
	groups := map[string][2][]int{}
	var names []string
	for pass := 0; pass < 2; pass++ {
		for i, s := range samples {
			if (pass == 0) == (s.Split == Train) {
				continue
			}
			g, ok := groups[s.Group]
			if !ok {
				names = append(names, s.Group)
			}
			if len(g[s.Label]) < perRow {
				g[s.Label] = append(g[s.Label], i)
			}
			groups[s.Group] = g
		}
	}
	sort.Strings(names)
	var rows []row
	for _, n := range names {
		for _, lab := range []Label{Normal, Abnormal} {
			rows = append(rows, row{n + " " + lab.String(), groups[n][lab]})
		}
	}
	const pad = 4
	labelW := 0
	for _, rw := range rows {
		labelW = max(labelW, 12*len(rw.title)+2*pad)
	}
	width := labelW + perRow*(size+pad) + pad
	height := len(rows)*(size+pad) + pad
	m := image.NewGray(image.Rect(0, 0, width, height))
	draw.Draw(m, m.Bounds(), image.NewUniform(color.Gray{Y: 32}), image.Point{}, draw.Src)
	for r, rw := range rows {
		y0 := pad + r*(size+pad)
		drawText(m, pad, y0+size/2-7, rw.title)
		for k, i := range rw.idx {
			x, err := input(i)
			if err != nil {
				return nil, err
			}
			if len(x) != size*size {
				return nil, fmt.Errorf("montage: %s gave %d values, want %d", samples[i].Where(), len(x), size*size)
			}
			x0 := labelW + k*(size+pad)
			for yy := 0; yy < size; yy++ {
				for xx := 0; xx < size; xx++ {
					v := (x[yy*size+xx] + 1) / 2 * 255
					m.SetGray(x0+xx, y0+yy, color.Gray{Y: uint8(min(255, max(0, v+0.5)))})
				}
			}
		}
	}
	return m, nil
}

// drawText writes s (upper-cased) in the built-in 5x7 font at twice its
// size, top-left corner at (x, y); unknown characters become blanks.
func drawText(m *image.Gray, x, y int, s string) {
	const scale = 2
	for _, r := range strings.ToUpper(s) {
		g := glyphs[r]
		for row := 0; row < 7; row++ {
			for col := 0; col < 5; col++ {
				if g[row]&(1<<(4-col)) == 0 {
					continue
				}
				for dy := 0; dy < scale; dy++ {
					for dx := 0; dx < scale; dx++ {
						m.SetGray(x+col*scale+dx, y+row*scale+dy, color.Gray{Y: 255})
					}
				}
			}
		}
		x += 6 * scale
	}
}
