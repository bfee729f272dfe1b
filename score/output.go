package score

import (
	"bufio"
	"bytes"
	"encoding/csv"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"strconv"
	"strings"
)

// OutputFormat is the version of the score output layout. Format 2 counts
// shards from 1 like every --shard flag (see package shard); format 1
// counted them from 0 and is read as if it had counted from 1.
const OutputFormat = 2

// Header describes a score output: which model produced it, with which
// rules, and which shard of a job it is. Merging checks it.
type Header struct {
	Format      int    `json:"format"`
	Version     string `json:"version,omitempty"`
	Model       string `json:"model"`
	ModelSHA256 string `json:"model_sha256"`
	// Settings are the rules every shard of a job must share.
	Settings Settings `json:"settings"`
	// Shard is set on a shard's output; nil for a whole run.
	Shard *Shard `json:"shard,omitempty"`
	// Merged counts the shards a merged output was made of.
	Merged int `json:"merged_shards,omitempty"`
}

// Settings are the choices that change results.
type Settings struct {
	Options
	Group string `json:"group,omitempty"`
	HU    bool   `json:"hu,omitempty"`
	// Precision is the arithmetic the scores came from ("fp32" or "bf16",
	// see modelfile.ParsePrecision): bf16 rounds them, so shards of one job
	// must share it and a reader must be able to tell. Empty in outputs
	// written before it was recorded (they were all fp32).
	Precision string `json:"precision,omitempty"`
}

// csvMarker starts the comment line holding the header in CSV output.
const csvMarker = "# maddr-score "

// Columns of the CSV output, in order.
var Columns = []string{"level", "path", "slice", "volume", "raw_score", "normalised_score", "decision", "group", "group_from",
	"organ", "organ_prob", "modality", "modality_prob", "threshold", "threshold_method", "slices", "abnormal_slices",
	"out_of_scope_slices", "heatmap", "notes"}

// noteSep joins notes in a CSV cell.
const noteSep = " | "

// Writer writes results one at a time.
type Writer interface {
	Write(Result) error
	// Close finishes the output (it does not close the underlying writer).
	Close() error
}

// NewWriter returns a writer of format "csv" or "json".
func NewWriter(w io.Writer, format string, h Header) (Writer, error) {
	switch format {
	case "csv":
		return newCSVWriter(w, h)
	case "json":
		return newJSONWriter(w, h)
	}
	return nil, fmt.Errorf("output format %q: want csv or json", format)
}

// FormatOf picks the output format from a file name (".json" or else CSV).
func FormatOf(path string) string {
	if strings.HasSuffix(strings.ToLower(path), ".json") {
		return "json"
	}
	return "csv"
}

type csvWriter struct {
	w *csv.Writer
}

func newCSVWriter(w io.Writer, h Header) (*csvWriter, error) {
	js, err := json.Marshal(h)
	if err != nil {
		return nil, err
	}
	if _, err := fmt.Fprintf(w, "%s%s\n", csvMarker, js); err != nil {
		return nil, err
	}
	c := &csvWriter{w: csv.NewWriter(w)}
	return c, c.w.Write(Columns)
}

func fmtFloat(p *float64) string {
	if p == nil {
		return ""
	}
	return strconv.FormatFloat(*p, 'g', -1, 64)
}

func fmtCount(n int) string {
	if n == 0 {
		return ""
	}
	return strconv.Itoa(n)
}

func (c *csvWriter) Write(r Result) error {
	return c.w.Write([]string{r.Level, r.Path, strconv.Itoa(r.Slice), r.Volume, fmtFloat(r.Raw), fmtFloat(r.Normalised), r.Decision,
		r.Group, r.GroupFrom, r.Organ, fmtFloat(r.OrganProb), r.Modality, fmtFloat(r.ModalityProb), fmtFloat(r.Threshold),
		r.ThresholdMethod, fmtCount(r.Slices), fmtCount(r.AbnormalSlices), fmtCount(r.OutOfScope), r.Heatmap,
		strings.Join(r.Notes, noteSep)})
}

func (c *csvWriter) Close() error {
	c.w.Flush()
	return c.w.Error()
}

type jsonWriter struct {
	w     io.Writer
	first bool
}

func newJSONWriter(w io.Writer, h Header) (*jsonWriter, error) {
	js, err := json.MarshalIndent(h, "", "  ")
	if err != nil {
		return nil, err
	}
	if _, err := fmt.Fprintf(w, "{\"header\": %s,\n\"results\": [", js); err != nil {
		return nil, err
	}
	return &jsonWriter{w: w, first: true}, nil
}

func (j *jsonWriter) Write(r Result) error {
	js, err := json.Marshal(r)
	if err != nil {
		return err
	}
	sep := ",\n"
	if j.first {
		sep, j.first = "\n", false
	}
	_, err = fmt.Fprintf(j.w, "%s%s", sep, js)
	return err
}

func (j *jsonWriter) Close() error {
	_, err := io.WriteString(j.w, "\n]}\n")
	return err
}

// ReadOutput reads a score output written as CSV or JSON.
func ReadOutput(path string) (Header, []Result, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return Header{}, nil, fmt.Errorf("reading score output: %w", err)
	}
	trimmed := bytes.TrimLeft(data, " \t\r\n")
	if len(trimmed) > 0 && trimmed[0] == '{' {
		var doc struct {
			Header  *Header  `json:"header"`
			Results []Result `json:"results"`
		}
		if err := json.Unmarshal(data, &doc); err != nil {
			return Header{}, nil, fmt.Errorf("%s: not a maddr score output: %w", path, err)
		}
		if doc.Header == nil {
			return Header{}, nil, fmt.Errorf("%s: not a maddr score output (no header)", path)
		}
		err := checkHeader(path, doc.Header)
		return *doc.Header, doc.Results, err
	}
	return readCSV(path, data)
}

// checkHeader refuses a header this build cannot read and brings an older
// one up to date (a format 1 shard counted from 0).
func checkHeader(path string, h *Header) error {
	if h.Format > OutputFormat {
		return fmt.Errorf("%s was written by a newer maddr (score output format %d; this build reads up to %d)", path, h.Format, OutputFormat)
	}
	if h.Format < 1 || h.ModelSHA256 == "" {
		return fmt.Errorf("%s: score output header lacks its format or model hash", path)
	}
	if h.Format == 1 && h.Shard != nil {
		h.Shard.Index++
	}
	return nil
}

func readCSV(path string, data []byte) (Header, []Result, error) {
	br := bufio.NewReader(bytes.NewReader(data))
	line, err := br.ReadString('\n')
	if err != nil && !errors.Is(err, io.EOF) || !strings.HasPrefix(line, csvMarker) {
		return Header{}, nil, fmt.Errorf("%s: not a maddr score output (the first line should start with %q)", path, strings.TrimSpace(csvMarker))
	}
	var h Header
	if err := json.Unmarshal([]byte(strings.TrimPrefix(strings.TrimSpace(line), strings.TrimSpace(csvMarker))), &h); err != nil {
		return h, nil, fmt.Errorf("%s: unreadable header: %w", path, err)
	}
	if err := checkHeader(path, &h); err != nil {
		return h, nil, err
	}
	cr := csv.NewReader(br)
	cr.FieldsPerRecord = len(Columns)
	head, err := cr.Read()
	if err != nil {
		return h, nil, fmt.Errorf("%s: %w", path, err)
	}
	if strings.Join(head, ",") != strings.Join(Columns, ",") {
		return h, nil, fmt.Errorf("%s: unexpected columns %v", path, head)
	}
	var out []Result
	for {
		rec, err := cr.Read()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			return h, nil, fmt.Errorf("%s: %w", path, err)
		}
		r, err := parseRecord(rec)
		if err != nil {
			line, _ := cr.FieldPos(0)
			return h, nil, fmt.Errorf("%s line %d: %w", path, line, err)
		}
		out = append(out, r)
	}
	return h, out, nil
}

func parseRecord(rec []string) (Result, error) {
	var firstErr error
	float := func(s string) *float64 {
		if s == "" {
			return nil
		}
		v, err := strconv.ParseFloat(s, 64)
		if err != nil && firstErr == nil {
			firstErr = err
		}
		return &v
	}
	count := func(s string) int {
		if s == "" {
			return 0
		}
		v, err := strconv.Atoi(s)
		if err != nil && firstErr == nil {
			firstErr = err
		}
		return v
	}
	r := Result{Level: rec[0], Path: rec[1], Slice: count(rec[2]), Volume: rec[3], Raw: float(rec[4]), Normalised: float(rec[5]),
		Decision: rec[6], Group: rec[7], GroupFrom: rec[8], Organ: rec[9], OrganProb: float(rec[10]), Modality: rec[11],
		ModalityProb: float(rec[12]), Threshold: float(rec[13]), ThresholdMethod: rec[14], Slices: count(rec[15]),
		AbnormalSlices: count(rec[16]), OutOfScope: count(rec[17]), Heatmap: rec[18]}
	if rec[19] != "" {
		r.Notes = strings.Split(rec[19], noteSep)
	}
	return r, firstErr
}
