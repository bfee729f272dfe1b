package report

import (
	"bytes"
	"fmt"
	"image"
	"image/color"
	"image/draw"
	"image/png"
	"math"

	"github.com/maddr-project/maddr/heatmap"
	"golang.org/x/image/font"
	"golang.org/x/image/font/basicfont"
	"golang.org/x/image/math/fixed"
)

// HeatColour maps t in [0, 1] to the heat ramp (package heatmap's).
func HeatColour(t float64) color.RGBA { return heatmap.Colour(t) }

// MapRange returns the values a set of anomaly maps shown together is
// scaled by (heatmap.Shared): 0 to the 99.5th percentile of all their
// pixels, so one hot pixel does not wash out the rest and maps share a scale.
func MapRange(maps ...[]float32) (lo, hi float32) {
	s := heatmap.Shared(maps...)
	return float32(s.Lo), float32(s.Hi)
}

// Overlay draws a size x size image (values in [-1, 1], the network's input
// range) in grey with its anomaly map (same size) painted on top by package
// heatmap, the map scaled from lo to hi. Each pixel becomes a zoom x zoom
// block.
func Overlay(img, amap []float32, size int, lo, hi float32, zoom int) (*image.RGBA, error) {
	if len(img) != size*size || len(amap) != size*size {
		return nil, fmt.Errorf("overlay: image has %d values and map %d, want %d (%dx%d)", len(img), len(amap), size*size, size, size)
	}
	grey := make([]float32, len(img))
	for i, v := range img {
		grey[i] = (v + 1) / 2
	}
	small, err := heatmap.Overlay(grey, amap, size, size, heatmap.Scale{Lo: float64(lo), Hi: float64(hi)})
	if err != nil {
		return nil, err
	}
	zoom = max(zoom, 1)
	out := image.NewRGBA(image.Rect(0, 0, size*zoom, size*zoom))
	for y := 0; y < size; y++ {
		for x := 0; x < size; x++ {
			c := small.RGBAAt(x, y)
			draw.Draw(out, image.Rect(x*zoom, y*zoom, (x+1)*zoom, (y+1)*zoom), &image.Uniform{c}, image.Point{}, draw.Src)
		}
	}
	return out, nil
}

// Gray draws a size x size image in [-1, 1] in grey, zoomed.
func Gray(img []float32, size, zoom int) *image.RGBA {
	zoom = max(zoom, 1)
	out := image.NewRGBA(image.Rect(0, 0, size*zoom, size*zoom))
	for y := 0; y < size; y++ {
		for x := 0; x < size; x++ {
			g := uint8(math.Max(0, math.Min(1, (float64(img[y*size+x])+1)/2)) * 255)
			draw.Draw(out, image.Rect(x*zoom, y*zoom, (x+1)*zoom, (y+1)*zoom), &image.Uniform{color.RGBA{g, g, g, 255}}, image.Point{}, draw.Src)
		}
	}
	return out
}

// Tile is one image of a heat-map montage.
type Tile struct {
	Image []float32 // size x size in [-1, 1]
	Map   []float32 // size x size anomaly map
	// Caption is drawn under the tile (a few words: the score).
	Caption string
	// Abnormal is the image's true label: the tile gets a red frame when
	// abnormal and a green one when normal, so a false alarm is seen at once.
	Abnormal bool
}

// Montage geometry in pixels.
const (
	tileGap     = 6
	frameWidth  = 3
	captionRows = 16
	rowTitleH   = 18
)

// HeatMontage lays rows of tiles out as one image: each tile shows the
// image and, beside it, the image with its heat map, over a caption, in a
// frame coloured by the true label. Every row starts with its title. All
// maps share one colour scale (MapRange over every tile), so tiles compare.
func HeatMontage(rows [][]Tile, titles []string, size int) (*image.RGBA, error) {
	var maps [][]float32
	cols := 0
	for _, r := range rows {
		cols = max(cols, len(r))
		for _, t := range r {
			maps = append(maps, t.Map)
		}
	}
	if cols == 0 {
		return nil, fmt.Errorf("heat-map montage: no tiles")
	}
	lo, hi := MapRange(maps...)
	zoom := zoomFor(size)
	side := size * zoom
	tileW := 2*side + 2*frameWidth + 2
	tileH := side + 2*frameWidth + captionRows
	w := cols*tileW + (cols+1)*tileGap
	h := 0
	for range rows {
		h += rowTitleH + tileH + tileGap
	}
	out := image.NewRGBA(image.Rect(0, 0, w, h+tileGap))
	draw.Draw(out, out.Bounds(), &image.Uniform{color.White}, image.Point{}, draw.Src)
	y := tileGap
	for ri, r := range rows {
		if ri < len(titles) {
			label(out, tileGap, y+12, titles[ri], color.Black)
		}
		y += rowTitleH
		for ci, t := range r {
			x := tileGap + ci*(tileW+tileGap)
			frame := color.RGBA{0, 158, 115, 255}
			if t.Abnormal {
				frame = color.RGBA{213, 40, 0, 255}
			}
			draw.Draw(out, image.Rect(x, y, x+tileW, y+side+2*frameWidth), &image.Uniform{frame}, image.Point{}, draw.Src)
			draw.Draw(out, image.Rect(x+frameWidth, y+frameWidth, x+frameWidth+side, y+frameWidth+side), Gray(t.Image, size, zoom), image.Point{}, draw.Src)
			ov, err := Overlay(t.Image, t.Map, size, lo, hi, zoom)
			if err != nil {
				return nil, err
			}
			ox := x + frameWidth + side + 2
			draw.Draw(out, image.Rect(ox, y+frameWidth, ox+side, y+frameWidth+side), ov, image.Point{}, draw.Src)
			label(out, x+2, y+side+2*frameWidth+12, t.Caption, color.Black)
		}
		y += tileH + tileGap
	}
	return out, nil
}

// zoomFor makes tiles at least 128 px wide whatever the network's input size.
func zoomFor(size int) int { return max(1, (128+size-1)/size) }

func label(img *image.RGBA, x, y int, s string, c color.Color) {
	d := font.Drawer{Dst: img, Src: image.NewUniform(c), Face: basicfont.Face7x13, Dot: fixed.P(x, y)}
	d.DrawString(s)
}

// PNG encodes an image.
func PNG(img image.Image) ([]byte, error) {
	var b bytes.Buffer
	if err := png.Encode(&b, img); err != nil {
		return nil, err
	}
	return b.Bytes(), nil
}
