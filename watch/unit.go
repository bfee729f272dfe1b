package watch

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/json"
	"errors"
	"fmt"
	"image"
	"math/big"
	"os"
	"path/filepath"
	"strings"

	godicom "github.com/suyashkumar/dicom"
	"github.com/suyashkumar/dicom/pkg/tag"

	"github.com/maddr-project/maddr/dicomresult"
	mdicom "github.com/maddr-project/maddr/medimg/dicom"
	"github.com/maddr-project/maddr/score"
)

// singleImageModalities are modalities whose instances are each a whole
// image (projection radiography, mammography, ultrasound, photographs...):
// they are scored one instance at a time as they arrive. Any other modality
// (CT, MR, PT, ...) is a stack of slices, scored as one series once the
// archive declares the series stable.
var singleImageModalities = map[string]bool{
	"CR": true, "DX": true, "MG": true, "IO": true, "PX": true, "RF": true, "XA": true,
	"US": true, "OT": true, "XC": true, "ES": true, "GM": true, "SM": true, "DG": true,
}

// SingleImage tells whether instances of modality are scored one by one.
func SingleImage(modality string) bool {
	return singleImageModalities[strings.ToUpper(strings.TrimSpace(modality))]
}

// errNoImage: a unit whose files hold no image at all.
var errNoImage = errors.New("no image in the DICOM file(s)")

// instance is one DICOM instance to score.
type instance struct {
	// where names the instance in logs and result JSON: an Orthanc id path
	// ("instances/<id>") or a DICOMweb path with UIDs; never a patient
	// attribute.
	where string
	// orthancID is set in the Orthanc flow (for metadata and attachments).
	orthancID string
	data      []byte
	ids       identity
}

// identity are the UIDs of an instance.
type identity struct {
	SOPClassUID, SOPInstanceUID, SeriesInstanceUID, StudyInstanceUID string
	Manufacturer, SeriesDescription, Modality                        string
}

// readIdentity parses the identifying UIDs of a DICOM file without its
// pixel data.
func readIdentity(data []byte) (identity, error) {
	// Lengths are checked first so a corrupt file fails here instead of
	// making the parser allocate what the file claims.
	if _, err := mdicom.CheckStructure(data); err != nil {
		return identity{}, err
	}
	ds, err := godicom.Parse(bytes.NewReader(data), int64(len(data)), nil, godicom.SkipPixelData(),
		godicom.AllowUnknownSpecificCharacterSet())
	if err != nil {
		return identity{}, fmt.Errorf("not a readable DICOM file: %w", err)
	}
	get := func(t tag.Tag) string {
		e, err := ds.FindElementByTag(t)
		if err != nil {
			return ""
		}
		if v, ok := e.Value.GetValue().([]string); ok && len(v) > 0 {
			return strings.Trim(v[0], " \x00")
		}
		return ""
	}
	id := identity{SOPClassUID: get(tag.SOPClassUID), SOPInstanceUID: get(tag.SOPInstanceUID),
		SeriesInstanceUID: get(tag.SeriesInstanceUID), StudyInstanceUID: get(tag.StudyInstanceUID),
		Manufacturer: get(tag.Manufacturer), SeriesDescription: get(tag.SeriesDescription), Modality: get(tag.Modality)}
	if id.SOPInstanceUID == "" || id.StudyInstanceUID == "" {
		return id, fmt.Errorf("DICOM file without SOP Instance UID or Study Instance UID")
	}
	return id, nil
}

func (id identity) own() bool {
	return dicomresult.IsOwnOutput(id.SOPClassUID, id.Manufacturer, id.SeriesDescription)
}

// Outcome is what the watcher did with one unit (an instance or a series);
// it is also the JSON stored on the source instances.
type Outcome struct {
	// Source names the unit (Orthanc path or DICOMweb path of UIDs).
	Source string `json:"source"`
	// Result is the unit's verdict: the image's, or the series summary.
	Result score.Result `json:"result"`
	// Images are the per-image results of a series (in the JSON stored on
	// an instance, that instance's slices only).
	Images []score.Result `json:"images,omitempty"`
	// SecondaryCapture and Report are the SOP Instance UIDs written back
	// ("" when nothing could be scored).
	SecondaryCapture string            `json:"secondary_capture_uid,omitempty"`
	Report           string            `json:"report_uid,omitempty"`
	ResultSeries     []string          `json:"result_series_uids,omitempty"`
	Model            dicomresult.Model `json:"model"`
}

// scoreInstances scores the instances of one unit. A series (asSeries) is
// summarised with score.Summarise and its most anomalous slice gives the
// heat map; a single instance gives its own result and heat map (a
// multi-frame file is summarised like a series).
func (w *core) scoreInstances(ctx context.Context, key string, insts []instance, asSeries bool) (sum score.Result,
	images []score.Result, best int, overlay image.Image, err error) {
	dir, err := os.MkdirTemp(w.cfg.TempDir, "maddr-watch-")
	if err != nil {
		return sum, nil, -1, nil, err
	}
	defer os.RemoveAll(dir)
	unit := score.Unit{Key: key, Series: asSeries}
	owner := map[string]int{}
	for i, in := range insts {
		name := filepath.Join(dir, fmt.Sprintf("%06d.dcm", i))
		if err := os.WriteFile(name, in.data, 0o600); err != nil {
			return sum, nil, -1, nil, err
		}
		unit.Files = append(unit.Files, name)
		owner[name] = i
	}
	req := w.cfg.Request
	req.Maps = true
	var chunk []score.Input
	var bestIn score.Input
	var bestRes score.Result
	best = -1
	better := func(r score.Result) bool {
		if r.Raw == nil {
			return false
		}
		if best < 0 {
			return true
		}
		if r.Normalised != nil && bestRes.Normalised != nil {
			return *r.Normalised > *bestRes.Normalised
		}
		return *r.Raw > *bestRes.Raw
	}
	flush := func() error {
		if len(chunk) == 0 {
			return nil
		}
		rs, err := w.cfg.Scorer.Score(ctx, chunk, req)
		if err != nil {
			return err
		}
		for i, r := range rs {
			src := owner[chunk[i].Path]
			r.Path, r.Volume = insts[src].where, ""
			if asSeries {
				r.Volume = key
			}
			if r.Decision == score.Failed {
				// The reader's message names the temporary file; say which
				// instance instead.
				r.Notes = []string{strings.ReplaceAll(strings.Join(r.Notes, "; "), chunk[i].Path, insts[src].where)}
			}
			if better(r) {
				best, bestIn, bestRes = len(images), chunk[i], r
			}
			r.Map = nil
			images = append(images, r)
		}
		clear(chunk)
		chunk = chunk[:0]
		return nil
	}
	err = score.ReadUnit(unit, score.ReadOptions{}, func(in score.Input) error {
		chunk = append(chunk, in)
		if len(chunk) >= 4*w.cfg.Scorer.Options().BatchSize {
			return flush()
		}
		return nil
	})
	if err == nil {
		err = flush()
	}
	if err != nil {
		return sum, nil, -1, nil, err
	}
	if len(images) == 0 {
		return sum, nil, -1, nil, fmt.Errorf("%s: %w", key, errNoImage)
	}
	if len(images) == 1 {
		sum = images[0]
	} else {
		sum = score.Summarise(key, images)
	}
	if best >= 0 {
		src := owner[bestIn.Path]
		bestIn.Path = insts[src].where // errors name the instance, not the temporary file
		if overlay, err = dicomresult.HeatMap(w.cfg.Scorer, bestIn, bestRes); err != nil {
			return sum, nil, -1, nil, err
		}
		best = src
	}
	return sum, images, best, overlay, nil
}

// resultUID derives the UID of a result object from what it is about and the
// model's checksum: scoring the same source with the same model again (a
// restart after a crash) gives the same UIDs, so the archive keeps one copy
// instead of a duplicate.
func resultUID(parts ...string) string {
	h := sha256.Sum256([]byte(strings.Join(parts, "\x00")))
	b := h[:16]
	// Version 8 (custom) UUID layout, as "2.25." UIDs are UUIDs.
	b[6] = b[6]&0x0f | 0x80
	b[8] = b[8]&0x3f | 0x80
	return "2.25." + new(big.Int).SetBytes(b).String()
}

// results builds the Secondary Capture and the SR of a scored unit.
func (w *core) results(o *Outcome, insts []instance, best int, overlay image.Image, sum score.Result) ([][]byte, error) {
	src := insts[0]
	if best >= 0 {
		src = insts[best]
	}
	seriesKey := src.ids.SeriesInstanceUID
	scSeries := resultUID("sc-series", seriesKey, w.cfg.Model.SHA256)
	srSeries := resultUID("sr-series", seriesKey, w.cfg.Model.SHA256)
	scUID := resultUID("sc", o.Source, w.cfg.Model.SHA256)
	srUID := resultUID("sr", o.Source, w.cfg.Model.SHA256)
	var out [][]byte
	if overlay != nil {
		sc, err := dicomresult.SecondaryCapture(src.data, overlay, sum, w.cfg.Model,
			dicomresult.IDs{SeriesInstanceUID: scSeries, SOPInstanceUID: scUID})
		if err != nil {
			return nil, fmt.Errorf("secondary capture for %s: %w", o.Source, err)
		}
		out = append(out, sc)
		o.SecondaryCapture = scUID
		o.ResultSeries = append(o.ResultSeries, scSeries)
	}
	refs := make([]dicomresult.Ref, 0, len(insts))
	for _, in := range insts {
		refs = append(refs, dicomresult.Ref{SOPClassUID: in.ids.SOPClassUID, SOPInstanceUID: in.ids.SOPInstanceUID,
			SeriesInstanceUID: in.ids.SeriesInstanceUID})
	}
	sr, err := dicomresult.StructuredReport(src.data, sum, w.cfg.Model,
		dicomresult.IDs{SeriesInstanceUID: srSeries, SOPInstanceUID: srUID}, refs)
	if err != nil {
		return nil, fmt.Errorf("structured report for %s: %w", o.Source, err)
	}
	o.Report = srUID
	o.ResultSeries = append(o.ResultSeries, srSeries)
	return append(out, sr), nil
}

// process scores a unit and writes its results with put; annotate (may be
// nil) stores the outcome JSON on each source instance.
func (w *core) process(ctx context.Context, key string, insts []instance, asSeries bool,
	put func(context.Context, [][]byte) error, annotate func(context.Context, instance, []byte) error) (Outcome, error) {
	o := Outcome{Source: key, Model: w.cfg.Model}
	// A file the archive holds but nobody can read is this unit's problem,
	// reported in its result; only the archive or the model failing stops
	// the watcher.
	failed := func(why string) score.Result {
		return score.Result{Level: score.LevelImage, Path: key, Decision: score.Failed, Notes: []string{why}}
	}
	var sum score.Result
	var images []score.Result
	best := -1
	var overlay image.Image
	for i := range insts {
		id, err := readIdentity(insts[i].data)
		if err != nil {
			sum = failed(fmt.Sprintf("%s: %v", insts[i].where, err))
			break
		}
		insts[i].ids = id
	}
	if sum.Decision == "" {
		var err error
		sum, images, best, overlay, err = w.scoreInstances(ctx, key, insts, asSeries)
		if errors.Is(err, errNoImage) {
			sum = failed(err.Error())
		} else if err != nil {
			return o, err
		}
	}
	o.Result = sum
	if asSeries && len(images) > 1 {
		o.Images = images
	}
	if sum.Decision != score.Failed {
		objs, err := w.results(&o, insts, best, overlay, sum)
		if err != nil {
			return o, err
		}
		if err := put(ctx, objs); err != nil {
			return o, err
		}
	}
	if annotate != nil {
		// Each instance keeps the unit's verdict and its own slice results
		// only: a 300-slice series must not store 300 copies of everything.
		for _, in := range insts {
			mine := o
			mine.Images = nil
			for _, r := range o.Images {
				if r.Path == in.where {
					mine.Images = append(mine.Images, r)
				}
			}
			js, err := json.Marshal(mine)
			if err != nil {
				return o, err
			}
			if err := annotate(ctx, in, js); err != nil {
				return o, err
			}
		}
	}
	return o, nil
}
