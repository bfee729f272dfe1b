package experiment

import (
	"context"
	"encoding/json"
	"fmt"
	"path/filepath"

	"github.com/maddr-project/maddr/atomicfile"
	"github.com/maddr-project/maddr/dataset"
	"github.com/maddr-project/maddr/infer"
	"github.com/maddr-project/maddr/modelfile"
	"github.com/maddr-project/maddr/report"
	"github.com/maddr-project/maddr/safetensors"
)

// writeHeatMaps draws, for each group, the k most abnormal and the k most
// normal test images by score with the model's anomaly map laid over them,
// as heatmap-<group>.png in dir.
func writeHeatMaps(ctx context.Context, m *modelfile.Model, test []dataset.Sample, scores []float64, dir string, k int) (map[string]HeatMap, error) {
	size := m.Manifest.Preprocess.Size
	groups := map[string]bool{}
	for _, s := range test {
		groups[s.Group] = true
	}
	out := map[string]HeatMap{}
	for g := range groups {
		top, bottom := extremes(test, scores, g, k)
		if len(top) == 0 {
			continue
		}
		picked := append(append([]int{}, top...), bottom...)
		var smp []dataset.Sample
		for _, i := range picked {
			smp = append(smp, test[i])
		}
		x, err := Inputs(ctx, m.Manifest.Preprocess, smp)
		if err != nil {
			return nil, err
		}
		// One pass over the group's picks, as the montages were always drawn.
		res, err := infer.New(m).WithBatchSize(len(x)).InOrder(ctx, x, infer.Maps)
		if err != nil {
			return nil, err
		}
		hm := HeatMap{File: "heatmap-" + g + ".png"}
		rows := [][]report.Tile{nil, nil}
		for j, i := range picked {
			p := Pick{ID: test[i].ID, Where: test[i].Where(), Score: scores[i], Abnormal: test[i].Label == dataset.Abnormal}
			tile := report.Tile{Image: x[j], Map: res.Maps[j], Caption: fmt.Sprintf("%.4g", p.Score), Abnormal: p.Abnormal}
			if j < len(top) {
				hm.Abnormal = append(hm.Abnormal, p)
				rows[0] = append(rows[0], tile)
			} else {
				hm.Normal = append(hm.Normal, p)
				rows[1] = append(rows[1], tile)
			}
		}
		img, err := report.HeatMontage(rows, []string{g + ": highest scores", g + ": lowest scores"}, size)
		if err != nil {
			return nil, err
		}
		b, err := report.PNG(img)
		if err != nil {
			return nil, err
		}
		if err := atomicfile.WriteBytes(filepath.Join(dir, hm.File), b); err != nil {
			return nil, err
		}
		out[g] = hm
	}
	return out, nil
}

// latentSample describes one row of the latent file.
type latentSample struct {
	ID       string `json:"id"`
	Group    string `json:"group"`
	Abnormal bool   `json:"abnormal"`
}

// zcStart is where z_c begins in z: after z_m and z_o (m + o dims). The
// same slice is taken for baseline-only models, whose z is not split, so
// both sides of the t-SNE figure show the same coordinates; when the latent
// is too narrow to have such a slice the whole z is used.
func zcStart(m *modelfile.Model) int {
	c := m.Manifest.MADDR
	start := c.ModalityDims + c.OrganDims
	if start >= m.Framework.Base.LatentDim() {
		return 0
	}
	return start
}

// writeLatents stores z_c of up to perGroup test images per group (spread
// evenly over each group's test list, so both labels appear) for the t-SNE
// figure: the encoder's z in evaluation mode, sliced as zcStart says.
func writeLatents(ctx context.Context, m *modelfile.Model, test []dataset.Sample, path string, perGroup int) error {
	byGroup := map[string][]int{}
	var order []string
	for i, s := range test {
		if _, ok := byGroup[s.Group]; !ok {
			order = append(order, s.Group)
		}
		byGroup[s.Group] = append(byGroup[s.Group], i)
	}
	var picked []int
	for _, g := range order {
		idx := byGroup[g]
		n := min(perGroup, len(idx))
		for j := 0; j < n; j++ {
			picked = append(picked, idx[j*len(idx)/n])
		}
	}
	var smp []dataset.Sample
	var meta []latentSample
	for _, i := range picked {
		smp = append(smp, test[i])
		meta = append(meta, latentSample{ID: test[i].ID, Group: test[i].Group, Abnormal: test[i].Label == dataset.Abnormal})
	}
	x, err := Inputs(ctx, m.Manifest.Preprocess, smp)
	if err != nil {
		return err
	}
	out, err := infer.New(m).InOrder(ctx, x, infer.Latents)
	if err != nil {
		return err
	}
	d := int64(m.Framework.Base.LatentDim())
	start := int64(zcStart(m))
	var zc []float32
	for _, z := range out.Latents {
		zc = append(zc, z[start:d]...)
	}
	metaJSON, _ := json.Marshal(meta)
	f := safetensors.File{
		Tensors: map[string]safetensors.Tensor{"z_c": {DType: safetensors.F32, Shape: []int64{int64(len(smp)), d - start}, F32: zc}},
		Metadata: map[string]string{
			"samples": string(metaJSON),
			"slice":   fmt.Sprintf("z[%d:%d]", start, d),
			"model":   m.Manifest.Model,
		},
	}
	return safetensors.WriteFile(path, f)
}

// readLatents reads a latent file back.
func readLatents(path string) (rows [][]float64, meta []latentSample, slice string, err error) {
	f, err := safetensors.ReadFile(path)
	if err != nil {
		return nil, nil, "", err
	}
	t, ok := f.Tensors["z_c"]
	if !ok || len(t.Shape) != 2 {
		return nil, nil, "", fmt.Errorf("%s: no 2-D z_c tensor", path)
	}
	if err := json.Unmarshal([]byte(f.Metadata["samples"]), &meta); err != nil {
		return nil, nil, "", fmt.Errorf("%s: sample list: %w", path, err)
	}
	n, d := int(t.Shape[0]), int(t.Shape[1])
	if len(meta) != n {
		return nil, nil, "", fmt.Errorf("%s: %d rows but %d sample descriptions", path, n, len(meta))
	}
	for i := 0; i < n; i++ {
		row := make([]float64, d)
		for j := range row {
			row[j] = float64(t.F32[i*d+j])
		}
		rows = append(rows, row)
	}
	return rows, meta, f.Metadata["slice"], nil
}
