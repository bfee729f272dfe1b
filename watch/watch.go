// Package watch scores what arrives in an image archive and writes the
// results back into it, next to the images: a Secondary Capture with the
// heat map burned in and a Structured Report, each in a new series of the
// scored study, plus (Orthanc) the JSON result as metadata and an attachment
// of every scored instance.
//
// Two sources: an Orthanc server followed through its /changes log, and any
// DICOMweb service polled with QIDO-RS (retrieved with WADO-RS, results
// stored with STOW-RS). Progress is kept in a state file, replaced
// atomically after every unit, so a restart neither skips nor repeats work;
// result UIDs are derived from the source and the model, so even a unit
// repeated after a crash between storing and saving the state is stored once.
//
// What is scored as what: instances of single-image modalities (CR, DX, MG,
// US, ... see SingleImage) one by one as they arrive; other modalities (CT,
// MR, ...) as a whole series once the archive says the series is stable
// (Orthanc's StableSeries; for DICOMweb, an unchanged instance count over two
// polls). A series of one single-frame instance is reported like an image.
// Images are routed by the model's heads exactly as 'maddr score' routes
// them (score.Scorer). Objects maddr wrote (dicomresult.IsOwnOutput) are
// never scored.
//
// Logs are JSON (log/slog) and name units by archive ids and UIDs only, never
// a patient attribute.
package watch

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"time"

	"github.com/maddr-project/maddr/atomicfile"
	"github.com/maddr-project/maddr/dicomresult"
	"github.com/maddr-project/maddr/score"
)

// Config is shared by both watchers.
type Config struct {
	Scorer  *score.Scorer
	Request score.Request
	Model   dicomresult.Model
	// StateFile keeps progress between runs (required).
	StateFile string
	// FromNow: without a state file, start after what the archive holds
	// now instead of scoring everything already there.
	FromNow bool
	// Once processes what is pending and returns.
	Once bool
	// Poll is the wait between polls when nothing is pending (default 5 s).
	Poll time.Duration
	// MetadataName and AttachmentName (Orthanc) name the user metadata and
	// attachment that receive the JSON result on each scored instance; ""
	// skips either. They must be declared in Orthanc's configuration.
	MetadataName, AttachmentName string
	// TempDir holds the files of the unit being scored ("" : os.TempDir()).
	TempDir string
	Log     *slog.Logger
}

// Stats count what a run did.
type Stats struct {
	Units, Images, Skipped, Own, Failed int
	Written                             int
}

type core struct {
	cfg   Config
	log   *slog.Logger
	stats Stats
}

func newCore(cfg Config) (*core, error) {
	if cfg.Scorer == nil {
		return nil, errors.New("watch: no scorer")
	}
	if cfg.StateFile == "" {
		return nil, errors.New("watch: a state file is required (it keeps progress between runs)")
	}
	if err := cfg.Scorer.CheckRequest(cfg.Request); err != nil {
		return nil, err
	}
	if cfg.Poll <= 0 {
		cfg.Poll = 5 * time.Second
	}
	log := cfg.Log
	if log == nil {
		log = slog.New(slog.NewJSONHandler(os.Stderr, nil))
	}
	return &core{cfg: cfg, log: log}, nil
}

// logOutcome reports a processed unit: ids, decision and numbers only.
func (w *core) logOutcome(o Outcome, took time.Duration) {
	w.stats.Units++
	r := o.Result
	n := max(1, len(o.Images))
	w.stats.Images += n
	attrs := []any{"source", o.Source, "decision", r.Decision, "group", r.Group, "organ", r.Organ,
		"modality", r.Modality, "images", n, "took_ms", took.Milliseconds()}
	if r.Normalised != nil {
		attrs = append(attrs, "score", *r.Normalised)
	}
	if o.Report != "" {
		w.stats.Written += len(o.ResultSeries)
		attrs = append(attrs, "result_series", o.ResultSeries)
	}
	if r.Decision == score.Failed {
		w.stats.Failed++
		attrs = append(attrs, "problem", r.Notes)
		w.log.Warn("could not score", attrs...)
		return
	}
	w.log.Info("scored", attrs...)
}

// loadState reads the state file into v; a missing file leaves v as is and
// returns false.
func loadState(path string, v any) (bool, error) {
	b, err := os.ReadFile(path)
	if errors.Is(err, os.ErrNotExist) {
		return false, nil
	}
	if err != nil {
		return false, fmt.Errorf("state file: %w", err)
	}
	if err := json.Unmarshal(b, v); err != nil {
		return false, fmt.Errorf("state file %s is not valid JSON (%v): fix or remove it", path, err)
	}
	return true, nil
}

// saveState replaces the state file atomically (temp file, fsync, rename).
func saveState(path string, v any) error {
	if dir := filepath.Dir(path); dir != "" {
		if err := os.MkdirAll(dir, 0o755); err != nil {
			return fmt.Errorf("state file: %w", err)
		}
	}
	err := atomicfile.Write(path, func(w io.Writer) error {
		enc := json.NewEncoder(w)
		enc.SetIndent("", "  ")
		return enc.Encode(v)
	})
	return err
}

// sleep waits d or until ctx ends.
func sleep(ctx context.Context, d time.Duration) error {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return ctx.Err()
	case <-t.C:
		return nil
	}
}
