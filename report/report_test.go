package report

import (
	"bytes"
	"image"
	"image/png"
	"math"
	"math/rand/v2"
	"strings"
	"testing"

	"github.com/maddr-project/maddr/metrics"
)

// blobs draws k Gaussian clusters in d dimensions, m points each.
func blobs(k, m, d int, spread float64, seed uint64) ([][]float64, []int) {
	rng := rand.New(rand.NewPCG(seed, 1))
	var x [][]float64
	var labels []int
	for c := 0; c < k; c++ {
		center := make([]float64, d)
		for i := range center {
			center[i] = rng.NormFloat64() * spread
		}
		for j := 0; j < m; j++ {
			row := make([]float64, d)
			for i := range row {
				row[i] = center[i] + rng.NormFloat64()
			}
			x = append(x, row)
			labels = append(labels, c)
		}
	}
	return x, labels
}

func TestTSNEKeepsClusters(t *testing.T) {
	x, labels := blobs(4, 40, 20, 4, 7)
	emb, err := TSNE(x, TSNEOptions{Seed: 1, Iterations: 500})
	if err != nil {
		t.Fatal(err)
	}
	if got := NeighbourAgreement(emb, labels, 5); got < 0.9 {
		t.Errorf("5-NN label agreement in the embedding = %.3f, want > 0.9", got)
	}
	// Clusters must also be apart: the mean distance between cluster
	// centres beats the mean spread inside clusters.
	cent := make([][2]float64, 4)
	for i, p := range emb {
		cent[labels[i]][0] += p[0] / 40
		cent[labels[i]][1] += p[1] / 40
	}
	var within, between float64
	for i, p := range emb {
		c := cent[labels[i]]
		within += math.Hypot(p[0]-c[0], p[1]-c[1]) / float64(len(emb))
	}
	for a := 0; a < 4; a++ {
		for b := a + 1; b < 4; b++ {
			between += math.Hypot(cent[a][0]-cent[b][0], cent[a][1]-cent[b][1]) / 6
		}
	}
	if between < 2*within {
		t.Errorf("clusters overlap: mean centre distance %.2f, mean within-cluster spread %.2f", between, within)
	}

	again, _ := TSNE(x, TSNEOptions{Seed: 1, Iterations: 500})
	for i := range emb {
		if emb[i] != again[i] {
			t.Fatalf("t-SNE is not deterministic for a seed: point %d %v vs %v", i, emb[i], again[i])
		}
	}
}

// A random labelling of one blob must not look clustered: this is what
// makes the agreement test able to fail.
func TestNeighbourAgreementOfNoise(t *testing.T) {
	x, _ := blobs(1, 120, 10, 0, 3)
	emb, err := TSNE(x, TSNEOptions{Seed: 2, Iterations: 300})
	if err != nil {
		t.Fatal(err)
	}
	labels := make([]int, len(x))
	for i := range labels {
		labels[i] = i % 4
	}
	if got := NeighbourAgreement(emb, labels, 5); got > 0.5 {
		t.Errorf("agreement of arbitrary labels = %.2f, want low", got)
	}
}

func TestTSNEBadInput(t *testing.T) {
	if _, err := TSNE([][]float64{{1}, {2}}, TSNEOptions{}); err == nil {
		t.Error("2 points: want an error")
	}
	if _, err := TSNE([][]float64{{1, 2}, {2}, {3, 1}, {4, 4}}, TSNEOptions{}); err == nil {
		t.Error("ragged rows: want an error")
	}
	if _, err := TSNE([][]float64{{1}, {math.NaN()}, {3}, {4}}, TSNEOptions{}); err == nil {
		t.Error("NaN: want an error")
	}
}

func decodePNG(t *testing.T, b []byte) image.Image {
	t.Helper()
	img, err := png.Decode(bytes.NewReader(b))
	if err != nil {
		t.Fatalf("not a PNG: %v", err)
	}
	if img.Bounds().Dx() < 100 || img.Bounds().Dy() < 100 {
		t.Fatalf("PNG is only %v", img.Bounds())
	}
	return img
}

func TestPlots(t *testing.T) {
	scores := []float64{0.1, 0.2, 0.3, 0.35, 0.5, 0.6, 0.8, 0.9}
	labels := []bool{false, false, true, false, true, false, true, true}
	curve, err := metrics.ROC(scores, labels)
	if err != nil {
		t.Fatal(err)
	}
	b, err := ROC("ROC", []ROCLine{{Label: "a", Curve: curve}, {Label: "b", Curve: curve, Colour: 1, Dashed: true, NoLegend: true}})
	if err != nil {
		t.Fatal(err)
	}
	decodePNG(t, b)

	b, err = Histogram("scores", scores[:4], scores[4:], 0.42)
	if err != nil {
		t.Fatal(err)
	}
	decodePNG(t, b)
	if _, err := Histogram("empty", nil, nil, 0); err == nil {
		t.Error("histogram of nothing: want an error")
	}

	it := []float64{1, 2, 3, 4, 5}
	b, err = LossCurves("loss", []LossSeries{{Name: "rec", Iter: it, Value: []float64{5, 4, 3, 2, 1}}, {Name: "center", Iter: it, Value: []float64{1, 1, 0.5, 0.4, 0.3}}})
	if err != nil {
		t.Fatal(err)
	}
	decodePNG(t, b)
	// Negative terms (adversarial losses) switch the log axis off instead of failing.
	if _, err := LossCurves("gan", []LossSeries{{Name: "g", Iter: it, Value: []float64{-1, 2, -3, 4, 0}}}); err != nil {
		t.Fatal(err)
	}

	// A run of one or two iterations gives flat, single-point series.
	if _, err := LossCurves("short", []LossSeries{{Name: "rec", Iter: []float64{1}, Value: []float64{0.3}}}); err != nil {
		t.Errorf("one-point loss curve: %v", err)
	}

	b, err = Scatter("tsne", []ScatterPoint{{0, 0, "liver-ct", false}, {1, 1, "lung-ct", true}, {2, 0, "lung-ct", false}})
	if err != nil {
		t.Fatal(err)
	}
	decodePNG(t, b)
}

func TestMovingAverage(t *testing.T) {
	got := movingAverage([]float64{0, 3, 6, 9}, 1)
	want := []float64{1.5, 3, 6, 7.5}
	for i := range want {
		if !(math.Abs(got[i]-want[i]) <= 1e-12) {
			t.Fatalf("movingAverage = %v, want %v", got, want)
		}
	}
}

func TestHeatMontage(t *testing.T) {
	const size = 8
	img := make([]float32, size*size)
	hot := make([]float32, size*size)
	cold := make([]float32, size*size)
	for i := range img {
		img[i] = -1 + 2*float32(i)/float32(len(img))
	}
	hot[3*size+3] = 5 // one bright pixel in the hot map
	rows := [][]Tile{{{Image: img, Map: hot, Caption: "0.9", Abnormal: true}}, {{Image: img, Map: cold, Caption: "0.1"}}}
	m, err := HeatMontage(rows, []string{"most abnormal", "most normal"}, size)
	if err != nil {
		t.Fatal(err)
	}
	zoom := zoomFor(size)
	// The frame's colour says the true label: red above, green below.
	top := m.RGBAAt(tileGap+1, tileGap+rowTitleH+1)
	if top.R < 200 || top.G > 80 {
		t.Errorf("frame of an abnormal tile = %v, want red", top)
	}
	bottom := m.RGBAAt(tileGap+1, tileGap+2*rowTitleH+size*zoom+2*frameWidth+captionRows+tileGap+1)
	if bottom.G < 120 || bottom.R > 80 {
		t.Errorf("frame of a normal tile = %v, want green", bottom)
	}
	// The hot pixel of the overlay is brighter and warmer than the same pixel without the map.
	ox := tileGap + frameWidth + size*zoom + 2 + 3*zoom + zoom/2
	oy := tileGap + rowTitleH + frameWidth + 3*zoom + zoom/2
	hotPx := m.RGBAAt(ox, oy)
	grey := Gray(img, size, zoom).RGBAAt(3*zoom+zoom/2, 3*zoom+zoom/2)
	if int(hotPx.R) <= int(grey.R)+40 {
		t.Errorf("hot overlay pixel %v is not warmer than the image %v", hotPx, grey)
	}
	if _, err := HeatMontage(nil, nil, size); err == nil {
		t.Error("empty montage: want an error")
	}
	if _, err := Overlay(img, hot[:5], size, 0, 1, 1); err == nil {
		t.Error("map of the wrong size: want an error")
	}
	if b, err := PNG(m); err != nil || len(b) == 0 {
		t.Fatal(err)
	}
}

func TestHeatColourEnds(t *testing.T) {
	if c := HeatColour(0); c.R > 10 || c.G > 10 {
		t.Errorf("cold end %v, want near black", c)
	}
	if c := HeatColour(1); c.R < 240 || c.G < 240 {
		t.Errorf("hot end %v, want pale yellow", c)
	}
	if HeatColour(-3) != HeatColour(0) || HeatColour(7) != HeatColour(1) {
		t.Error("out-of-range values must clamp")
	}
}

func TestPage(t *testing.T) {
	p := NewPage("Table 1 <run>")
	p.Section("Results")
	p.Warning("phantom data")
	p.Table([]string{"method", "AUC"}, [][]string{{"ae & co", "50.00 ± 1.00"}})
	img := image.NewRGBA(image.Rect(0, 0, 2, 2))
	b, _ := PNG(img)
	p.Figures(Figure{PNG: b, Caption: "roc"})
	p.Section("Cells")
	p.Details("config", `{"a": "<b>"}`)
	var out strings.Builder
	if err := p.Write(&out); err != nil {
		t.Fatal(err)
	}
	s := out.String()
	for _, want := range []string{"<title>Table 1 &lt;run&gt;</title>", "<td>50.00 ± 1.00</td>", "<th>ae &amp; co</th>",
		"src=\"data:image/png;base64,", "<style>", "href=\"#s2\"", "&lt;b&gt;"} {
		if !strings.Contains(s, want) {
			t.Errorf("page lacks %q", want)
		}
	}
	if strings.Contains(s, "<link") || strings.Contains(s, "src=\"http") {
		t.Error("page refers to outside files")
	}
}

func TestSensitivityPlot(t *testing.T) {
	png, err := Sensitivity("t", "radius", []SensitivityLine{{Label: "a", X: []float64{1, 2, 3}, Rate: []float64{0.1, 0.5, 0.9}}, {Label: "b", X: []float64{1, 2}, Rate: []float64{0.2, 0.4}, Dashed: true}})
	if err != nil || len(png) < 100 || string(png[1:4]) != "PNG" {
		t.Fatalf("sensitivity plot: %v (%d bytes)", err, len(png))
	}
	if _, err := Sensitivity("t", "x", []SensitivityLine{{Label: "a", X: []float64{1}, Rate: []float64{1.5}}}); err == nil {
		t.Error("a rate above 1 was drawn")
	}
	if _, err := Sensitivity("t", "x", []SensitivityLine{{Label: "a", X: []float64{1, 2}, Rate: []float64{0.5}}}); err == nil {
		t.Error("mismatched x and rate lengths were drawn")
	}
	if _, err := Sensitivity("t", "x", nil); err == nil {
		t.Error("an empty plot was drawn")
	}
}
