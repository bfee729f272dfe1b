package dataset

import (
	"encoding/csv"
	"errors"
	"fmt"
	"io"
	"math"
	"os"
	"path/filepath"
	"strconv"
	"strings"
)

// Manifest reads a CSV file listing samples. The header names the columns
// (any order, case-insensitive); required are
//
//	path,organ,modality,split,label
//
// and optional are group, id, slice (image index in a volume or multi-frame
// file), hu (true when values are Hounsfield units the format cannot mark,
// e.g. NIfTI), lo and hi (nominal value range replacing the reader's).
// Relative paths are relative to the CSV's directory; label is normal,
// abnormal, 0 or 1; split is train, val or test. Abnormal training rows are
// rejected: the models learn normality only, so such a row is a labelling
// mistake.
type Manifest struct {
	Path  string
	Group string // overrides the group column and the organ-modality default
}

func (m *Manifest) Name() string { return "manifest:" + m.Path }

var manifestColumns = []string{"path", "organ", "modality", "split", "label", "group", "id", "slice", "hu", "lo", "hi"}

// manifestRequired is the number of leading manifestColumns every manifest has.
const manifestRequired = 5

func (m *Manifest) Samples(splits []Split) ([]Sample, []Problem, error) {
	f, err := os.Open(m.Path)
	if err != nil {
		return nil, nil, fmt.Errorf("manifest: %w", err)
	}
	defer f.Close()
	samples, probs, err := ReadManifest(f, m.Path)
	if err != nil {
		return nil, nil, err
	}
	var kept []Sample
	for _, s := range samples {
		if !wants(splits, s.Split) {
			continue
		}
		if m.Group != "" {
			s.Group = m.Group
		}
		if p, bad := checkFile(s.Path); bad {
			probs = append(probs, p)
			continue
		}
		kept = append(kept, s)
	}
	probs = append(probs, checkSplits(m.Name(), kept, splits)...)
	return kept, probs, nil
}

// ReadManifest parses a manifest; name is the CSV's path, used in messages
// and to resolve relative paths. Bad rows come back as problems naming the
// line and the field; a missing or malformed header is an error.
func ReadManifest(r io.Reader, name string) ([]Sample, []Problem, error) {
	cr := csv.NewReader(r)
	cr.FieldsPerRecord = -1
	cr.TrimLeadingSpace = true
	header, err := cr.Read()
	if errors.Is(err, io.EOF) {
		return nil, nil, fmt.Errorf("manifest %s: empty file, want header %s", name, strings.Join(manifestColumns[:manifestRequired], ","))
	}
	if err != nil {
		return nil, nil, fmt.Errorf("manifest %s: header: %w", name, err)
	}
	col := map[string]int{}
	for i, h := range header {
		h = strings.ToLower(strings.TrimSpace(strings.TrimPrefix(h, "\ufeff")))
		known := false
		for _, c := range manifestColumns {
			known = known || c == h
		}
		if !known {
			return nil, nil, fmt.Errorf("manifest %s: unknown column %q (known: %s)", name, h, strings.Join(manifestColumns, ","))
		}
		if _, dup := col[h]; dup {
			return nil, nil, fmt.Errorf("manifest %s: column %q appears twice", name, h)
		}
		col[h] = i
	}
	for _, c := range manifestColumns[:manifestRequired] {
		if _, ok := col[c]; !ok {
			return nil, nil, fmt.Errorf("manifest %s: header lacks column %q (want at least %s)", name, c, strings.Join(manifestColumns[:manifestRequired], ","))
		}
	}
	dir := filepath.Dir(name)
	var samples []Sample
	var probs []Problem
	for {
		rec, err := cr.Read()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			var perr *csv.ParseError
			if errors.As(err, &perr) {
				probs = append(probs, Problem{Path: fmt.Sprintf("%s line %d", name, perr.Line), Err: perr.Err})
				continue
			}
			return nil, nil, fmt.Errorf("manifest %s: %w", name, err)
		}
		// FieldPos panics after a failed Read, so it is asked only now.
		line, _ := cr.FieldPos(0)
		where := fmt.Sprintf("%s line %d", name, line)
		if len(rec) == 1 && strings.TrimSpace(rec[0]) == "" {
			continue
		}
		if len(rec) != len(header) {
			probs = append(probs, Problem{Path: where, Err: fmt.Errorf("%d fields, header has %d", len(rec), len(header))})
			continue
		}
		s, err := parseManifestRow(rec, col, dir)
		if err != nil {
			probs = append(probs, Problem{Path: where, Err: err})
			continue
		}
		if s.ID == "" {
			s.ID = fmt.Sprintf("%s:%d", filepath.Base(name), line)
		}
		samples = append(samples, s)
	}
	return samples, probs, nil
}

func parseManifestRow(rec []string, col map[string]int, dir string) (Sample, error) {
	field := func(c string) string {
		if i, ok := col[c]; ok {
			return strings.TrimSpace(rec[i])
		}
		return ""
	}
	var s Sample
	var err error
	s.Path = field("path")
	if s.Path == "" {
		return s, errors.New("field path is empty")
	}
	if !filepath.IsAbs(s.Path) {
		s.Path = filepath.Join(dir, filepath.FromSlash(s.Path))
	}
	if s.Organ = NormalizeOrgan(field("organ")); s.Organ == "" {
		return s, errors.New("field organ is empty")
	}
	if s.Modality = NormalizeModality(field("modality")); s.Modality == "" {
		return s, errors.New("field modality is empty")
	}
	if s.Split, err = ParseSplit(field("split")); err != nil {
		return s, fmt.Errorf("field split: %w", err)
	}
	if s.Label, err = ParseLabel(field("label")); err != nil {
		return s, fmt.Errorf("field label: %w", err)
	}
	if s.Split == Train && s.Label == Abnormal {
		return s, errors.New("field label: abnormal image in the train split (training uses normal images only)")
	}
	s.Group = orDefault(field("group"), groupName(s.Organ, s.Modality))
	s.ID = field("id")
	if v := field("slice"); v != "" {
		if s.Slice, err = strconv.Atoi(v); err != nil || s.Slice < 0 {
			return s, fmt.Errorf("field slice: %q is not a non-negative integer", v)
		}
	}
	if v := field("hu"); v != "" {
		if s.HU, err = strconv.ParseBool(v); err != nil {
			return s, fmt.Errorf("field hu: %q is not true or false", v)
		}
	}
	lo, hi := field("lo"), field("hi")
	if lo != "" || hi != "" {
		l, err1 := strconv.ParseFloat(lo, 32)
		h, err2 := strconv.ParseFloat(hi, 32)
		switch {
		case err1 != nil:
			return s, fmt.Errorf("field lo: %q is not a number", lo)
		case err2 != nil:
			return s, fmt.Errorf("field hi: %q is not a number", hi)
		case math.IsInf(l, 0) || math.IsInf(h, 0) || math.IsNaN(l) || math.IsNaN(h):
			return s, fmt.Errorf("fields lo/hi: range [%s, %s] must be finite", lo, hi)
		case !(h > l):
			return s, fmt.Errorf("fields lo/hi: range [%s, %s] is empty", lo, hi)
		}
		s.Lo, s.Hi = float32(l), float32(h)
	}
	return s, nil
}

// WriteManifest writes samples as a manifest whose paths are relative to
// dir (the directory the CSV will live in) where possible. Optional columns
// are written only when some sample needs them. In-memory samples cannot be
// listed.
func WriteManifest(w io.Writer, dir string, samples []Sample) error {
	var needSlice, needHU, needRange bool
	for _, s := range samples {
		if s.Path == "" {
			return fmt.Errorf("writing manifest: sample %s has no file", s.ID)
		}
		needSlice = needSlice || s.Slice != 0
		needHU = needHU || s.HU
		needRange = needRange || s.Hi > s.Lo
	}
	header := []string{"path", "organ", "modality", "split", "label", "group", "id"}
	if needSlice {
		header = append(header, "slice")
	}
	if needHU {
		header = append(header, "hu")
	}
	if needRange {
		header = append(header, "lo", "hi")
	}
	cw := csv.NewWriter(w)
	if err := cw.Write(header); err != nil {
		return fmt.Errorf("writing manifest: %w", err)
	}
	for _, s := range samples {
		p := s.Path
		if rel, err := filepath.Rel(dir, p); err == nil && !strings.HasPrefix(rel, "..") {
			p = filepath.ToSlash(rel)
		}
		row := []string{p, s.Organ, s.Modality, string(s.Split), s.Label.String(), s.Group, s.ID}
		if needSlice {
			row = append(row, strconv.Itoa(s.Slice))
		}
		if needHU {
			row = append(row, strconv.FormatBool(s.HU))
		}
		if needRange {
			if s.Hi > s.Lo {
				row = append(row, strconv.FormatFloat(float64(s.Lo), 'g', -1, 32), strconv.FormatFloat(float64(s.Hi), 'g', -1, 32))
			} else {
				row = append(row, "", "")
			}
		}
		if err := cw.Write(row); err != nil {
			return fmt.Errorf("writing manifest: %w", err)
		}
	}
	cw.Flush()
	if err := cw.Error(); err != nil {
		return fmt.Errorf("writing manifest: %w", err)
	}
	return nil
}
