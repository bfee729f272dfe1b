package dicomresult

import (
	"fmt"
	"image"
	"path/filepath"
	"time"

	"github.com/maddr-project/maddr/modelfile"
	"github.com/maddr-project/maddr/score"
)

// ModelOf describes a loaded model file for result objects: its file name,
// a version made of its baseline, creation time (a retrained model differs
// in both) and scoring precision, its SHA-256 (modelfile.Digest of the
// file) and the running maddr build.
func ModelOf(m *modelfile.Model, sha256, software string) Model {
	version := m.Manifest.Model
	if !m.Manifest.Created.IsZero() {
		version += " " + m.Manifest.Created.UTC().Format(time.RFC3339)
	}
	// The arithmetic belongs to the version: bf16 scores differ from fp32
	// ones in their last digits.
	version += " " + modelfile.PrecisionName(m.Precision)
	return Model{Name: filepath.Base(m.Path), Version: version, SHA256: sha256, Software: software}
}

// HeatMap paints what a Secondary Capture shows for a scored image: the
// image as the model saw it with the anomaly map overlaid, the picture
// 'maddr score' writes as heat map PNG. A result without a map (maps not
// requested, or the image was not scored) gives the grey view alone, so the
// capture still shows the image next to its verdict.
func HeatMap(s *score.Scorer, in score.Input, r score.Result) (image.Image, error) {
	pp := s.Model().Manifest.Preprocess
	pix, w, h, err := score.View(in.Image, r.WindowOrgan, pp)
	if err != nil {
		return nil, fmt.Errorf("heat map of %s: %w", in.Path, err)
	}
	if r.Map == nil {
		return score.Grey(pix, w, h), nil
	}
	ov, err := score.Overlay(pix, w, h, r.Map, pp.Size)
	if err != nil {
		return nil, fmt.Errorf("heat map of %s: %w", in.Path, err)
	}
	return ov, nil
}
