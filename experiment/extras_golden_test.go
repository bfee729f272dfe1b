package experiment

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"flag"
	"math"
	"os"
	"path/filepath"
	"testing"

	"github.com/maddr-project/maddr/dataset"
	"github.com/maddr-project/maddr/evaluate"
	"github.com/maddr-project/maddr/modelfile"
	"github.com/maddr-project/maddr/safetensors"
	"github.com/maddr-project/maddr/score/scoretest"
	"github.com/maddr-project/maddr/torch"
)

var updateExtras = flag.Bool("update-golden", false, "rewrite testdata/golden-extras.json from the current code")

// The fixture model is package infer's (see infer/golden_test.go).
const (
	extrasModel  = "../infer/testdata/golden-model.safetensors"
	extrasGolden = "testdata/golden-extras.json"
)

// extrasOutputs is what a cell's extras produced before inference went
// through package infer: the maps behind the heat-map montages and the z_c
// rows of the t-SNE file, as hashes of their exact bits, and the montages.
type extrasOutputs struct {
	TestScoresSHA256 string            `json:"test_scores_sha256"`
	HeatMaps         map[string]string `json:"heat_maps_png_sha256"`
	LatentsSHA256    string            `json:"latents_sha256"`
}

func fileSHA256(t *testing.T, path string) string {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	s := sha256.Sum256(b)
	return hex.EncodeToString(s[:])
}

// TestExtrasBitForBitAsBefore fails if a cell's test scores, heat maps or
// latent codes differ by one bit from before. They were recorded with
// libtorch's conv_transpose2d kernel, so the test runs with it (the default
// kernel is checked against recorded outputs, to rounding, by package infer's
// TestGradientDeconvWithinRoundingOfGolden).
func TestExtrasBitForBitAsBefore(t *testing.T) {
	m, err := modelfile.Load(extrasModel)
	if err != nil {
		t.Fatal(err)
	}
	defer m.Framework.Base.Store().Free()
	torch.SetConvTransposeByGradient(false)
	defer torch.SetConvTransposeByGradient(true)
	ctx := context.Background()
	test := dataset.Filter(scoretest.Phantom(t), dataset.Test)
	ts, err := evaluate.ScoreSamples(ctx, m, test, 32, false)
	if err != nil {
		t.Fatal(err)
	}
	ts32 := make([]float32, 0, 2*len(ts))
	for _, s := range ts {
		b := math.Float64bits(s)
		ts32 = append(ts32, math.Float32frombits(uint32(b>>32)), math.Float32frombits(uint32(b)))
	}
	dir := t.TempDir()
	heat, err := writeHeatMaps(ctx, m, test, ts, dir, 3)
	if err != nil {
		t.Fatal(err)
	}
	got := extrasOutputs{TestScoresSHA256: scoretest.BitsSHA256(ts32), HeatMaps: map[string]string{}}
	for g, hm := range heat {
		got.HeatMaps[g] = fileSHA256(t, filepath.Join(dir, hm.File))
	}
	latents := filepath.Join(dir, LatentFile)
	if err := writeLatents(ctx, m, test, latents, 8); err != nil {
		t.Fatal(err)
	}
	f, err := safetensors.ReadFile(latents)
	if err != nil {
		t.Fatal(err)
	}
	got.LatentsSHA256 = scoretest.BitsSHA256(f.Tensors["z_c"].F32)
	if *updateExtras {
		b, _ := json.MarshalIndent(got, "", " ")
		if err := os.WriteFile(extrasGolden, append(b, '\n'), 0o644); err != nil {
			t.Fatal(err)
		}
		return
	}
	b, err := os.ReadFile(extrasGolden)
	if err != nil {
		t.Fatal(err)
	}
	var want extrasOutputs
	if err := json.Unmarshal(b, &want); err != nil {
		t.Fatalf("%s: %v", extrasGolden, err)
	}
	if want.TestScoresSHA256 != got.TestScoresSHA256 || want.LatentsSHA256 != got.LatentsSHA256 {
		t.Errorf("test scores or latents changed:\nwant %+v\ngot  %+v", want, got)
	}
	for g, h := range want.HeatMaps {
		if got.HeatMaps[g] != h {
			t.Errorf("heat map of %s changed: sha256 %s, want %s", g, got.HeatMaps[g], h)
		}
	}
	if len(got.HeatMaps) != len(want.HeatMaps) {
		t.Errorf("%d heat maps, want %d", len(got.HeatMaps), len(want.HeatMaps))
	}
}
