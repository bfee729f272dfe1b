package reliability

import (
	"bytes"
	"context"
	"encoding/binary"
	"encoding/json"
	"fmt"
	"image"
	"image/png"
	"math"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/maddr-project/maddr/baselines"
	"github.com/maddr-project/maddr/dataset"
	"github.com/maddr-project/maddr/nn"
	"github.com/maddr-project/maddr/torch"
	"github.com/maddr-project/maddr/train"
)

// faulty wraps the ae baseline and injects a numerical fault at one
// iteration: either NaN in the input batch, so the real loss of the real
// network becomes NaN, or an extra logged term with the given value.
type faulty struct {
	baselines.Baseline
	at        int
	poisonX   bool
	term      string
	termValue float64
}

func (f *faulty) TrainStep(s *torch.Scope, st baselines.Step) (baselines.Losses, error) {
	if st.Iter == f.at && f.poisonX {
		st.X = st.X.MulScalar(math.NaN())
	}
	l, err := f.Baseline.TrainStep(s, st)
	if err == nil && st.Iter == f.at && f.term != "" {
		l[f.term] = f.termValue
	}
	return l, err
}

func init() {
	register := func(name string, wrap func(b baselines.Baseline) *faulty) {
		baselines.Register(name, func(o baselines.Options) (baselines.Baseline, error) {
			b, err := baselines.New("ae", o)
			if err != nil {
				return nil, err
			}
			return wrap(b), nil
		})
	}
	register("test-nan-input-at-8", func(b baselines.Baseline) *faulty { return &faulty{Baseline: b, at: 8, poisonX: true} })
	register("test-inf-kl-at-8", func(b baselines.Baseline) *faulty {
		return &faulty{Baseline: b, at: 8, term: "kl", termValue: math.Inf(1)}
	})
}

// TestNonFiniteLossStopsTraining: a NaN or infinite loss at iteration 8 stops
// the run with a message naming the iteration, the term and the checkpoint;
// the checkpoint of iteration 5 stays byte for byte as it was, no model file
// is written, and the run can be resumed from it.
func TestNonFiniteLossStopsTraining(t *testing.T) {
	samples := smallPhantom(t)
	cases := []struct{ model, want string }{
		// Every term of the poisoned step is NaN; the first in name order is reported.
		{"test-nan-input-at-8", `iteration 8: loss term "center" is NaN`},
		{"test-inf-kl-at-8", `iteration 8: loss term "kl" is +Inf`},
	}
	for _, tc := range cases {
		t.Run(tc.model, func(t *testing.T) {
			dir := t.TempDir()
			cfg := tinyConfig(tc.model, `{"base_width":2,"hidden":16}`, 24, 12, 1)
			cfg.CheckpointEvery = 5
			ck := filepath.Join(dir, train.CheckpointFile)
			var saved []byte
			_, err := train.Run(context.Background(), cfg, dir, train.Options{Samples: samples, AfterStep: func(it int, _ baselines.Losses) {
				if it == 5 {
					saved, _ = os.ReadFile(ck)
				}
			}})
			if err == nil || !strings.Contains(err.Error(), tc.want) || !strings.Contains(err.Error(), ck) {
				t.Fatalf("error %v: want %q and the checkpoint's path", err, tc.want)
			}
			now, _ := os.ReadFile(ck)
			if len(saved) == 0 || !bytes.Equal(saved, now) {
				t.Fatalf("the checkpoint of iteration 5 changed (%d bytes then, %d now)", len(saved), len(now))
			}
			if _, err := os.Stat(filepath.Join(dir, train.ModelFile)); err == nil {
				t.Fatal("a model file was written after the fault")
			}
			c, err := nn.ReadCheckpoint(ck)
			if err != nil {
				t.Fatal(err)
			}
			var st struct{ Iter int }
			if json.Unmarshal(c.Config, &st); st.Iter != 5 {
				t.Fatalf("checkpoint records iteration %d, want 5", st.Iter)
			}
			// Resuming replays iterations 6..7 from the good checkpoint and meets
			// the same deterministic fault again, at the same iteration.
			_, err = train.Run(context.Background(), cfg, dir, train.Options{Samples: samples, Resume: true})
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("resumed: %v", err)
			}
		})
	}
}

// niftiFloat32 is a minimal NIfTI-1 file of float32 voxels.
func niftiFloat32(nx, ny, nz int, voxels []float32) []byte {
	h := make([]byte, 352)
	le := binary.LittleEndian
	le.PutUint32(h, 348)
	for i, d := range []int{3, nx, ny, nz} {
		le.PutUint16(h[40+2*i:], uint16(d))
	}
	le.PutUint16(h[70:], 16) // float32
	le.PutUint16(h[72:], 32)
	for i := 0; i < 4; i++ {
		le.PutUint32(h[76+4*i:], math.Float32bits(1)) // pixdim
	}
	le.PutUint32(h[108:], math.Float32bits(352))
	copy(h[344:], "n+1\x00")
	for _, v := range voxels {
		h = le.AppendUint32(h, math.Float32bits(v))
	}
	return h
}

// TestNaNImageIsRefusedAtLoad: an image holding NaN (possible only in float
// NIfTI) stops training before the first step with the file named, and
// --skip-bad trains without it.
func TestNaNImageIsRefusedAtLoad(t *testing.T) {
	dir := t.TempDir()
	csv := "path,organ,modality,split,label,slice\n"
	splits := []string{"train", "train", "train", "train", "train", "train", "val", "val", "test", "test"}
	for i, split := range splits {
		g := image.NewGray(image.Rect(0, 0, 32, 32))
		for k := range g.Pix {
			g.Pix[k] = uint8(7*i + k)
		}
		var b bytes.Buffer
		png.Encode(&b, g)
		name := fmt.Sprintf("n%d.png", i)
		if err := os.WriteFile(filepath.Join(dir, name), b.Bytes(), 0o644); err != nil {
			t.Fatal(err)
		}
		label := "normal"
		if split != "train" && i%2 == 1 {
			label = "abnormal"
		}
		csv += fmt.Sprintf("%s,lung,xray,%s,%s,0\n", name, split, label)
	}
	vox := make([]float32, 32*32*2)
	for k := range vox {
		vox[k] = float32(k % 13)
	}
	vox[32*32+100] = float32(math.NaN()) // in slice 1
	if err := os.WriteFile(filepath.Join(dir, "bad.nii"), niftiFloat32(32, 32, 2, vox), 0o644); err != nil {
		t.Fatal(err)
	}
	csv += "bad.nii,lung,xray,train,normal,0\nbad.nii,lung,xray,train,normal,1\n"
	manifest := filepath.Join(dir, "m.csv")
	if err := os.WriteFile(manifest, []byte(csv), 0o644); err != nil {
		t.Fatal(err)
	}
	cfg := tinyConfig("ae", `{"base_width":2,"hidden":16}`, 24, 3, 1)
	cfg.Sources = []dataset.Spec{{Kind: "manifest", Root: manifest}}
	_, err := train.Run(context.Background(), cfg, t.TempDir(), train.Options{})
	if err == nil || !strings.Contains(err.Error(), "bad.nii") || !strings.Contains(err.Error(), "non-finite") {
		t.Fatalf("training on a NaN image: %v, want an error naming bad.nii and the non-finite value", err)
	}
	t.Logf("refused: %v", err)
	cfg.SkipBad = true
	if _, err := train.Run(context.Background(), cfg, t.TempDir(), train.Options{}); err != nil {
		t.Fatalf("--skip-bad: %v", err)
	}
}
