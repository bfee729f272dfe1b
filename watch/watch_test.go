package watch

import (
	"bytes"
	"context"
	"encoding/binary"
	"encoding/json"
	"errors"
	"log/slog"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/maddr-project/maddr/archive"
	"github.com/maddr-project/maddr/archive/orthanctest"
	"github.com/maddr-project/maddr/dataset"
	"github.com/maddr-project/maddr/dicomresult"
	"github.com/maddr-project/maddr/httpauth"
	"github.com/maddr-project/maddr/score"
	"github.com/maddr-project/maddr/score/scoretest"
)

// secretName is the PatientName of the phantom images; it must never show
// in a log line or an error.
const secretName = "Zyxquorth^Wilhelmina"

// logBuffer collects JSON log lines and calls onLine for each message.
type logBuffer struct {
	mu     sync.Mutex
	buf    bytes.Buffer
	onLine func(msg string)
}

func (b *logBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	b.buf.Write(p)
	f := b.onLine
	b.mu.Unlock()
	if f != nil {
		var m struct{ Msg string }
		json.Unmarshal(p, &m)
		f(m.Msg)
	}
	return len(p), nil
}

func (b *logBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

// fixture is what the test puts into the archive.
type fixture struct {
	files [][]byte
	// units: how many scoring units the files form (instances of
	// single-image modalities, series of others).
	units int
	// failing: units whose image cannot be decoded.
	failing int
	// extra are two more X-rays, uploaded later.
	extra [][]byte
}

func readFixture(t *testing.T, path string) []byte {
	t.Helper()
	b, err := os.ReadFile(filepath.Join("..", "testdata", "real", path))
	if err != nil {
		t.Skipf("real DICOM fixture missing (bash tools/fetch-fixtures.sh): %v", err)
	}
	return b
}

// phantomFiles writes phantom slices as DICOM: a 3-slice liver CT series and
// a chest X-ray, both under secretName, plus an X-ray whose Rows were
// doubled so that its pixel data no longer fits (a failing case).
func phantomFiles(t *testing.T, samples []dataset.Sample) [][]byte {
	t.Helper()
	study := dicomresult.NewUID()
	series := dicomresult.NewUID()
	var out [][]byte
	ct := 0
	for _, s := range samples {
		if s.Group != "liver-ct" || s.Split != dataset.Test || ct == 3 {
			continue
		}
		ct++
		b, err := dicomresult.ImageToDICOM(*s.Image, dicomresult.PatientStudy{PatientName: secretName, PatientID: "P-77",
			StudyInstanceUID: study, SeriesInstanceUID: series, InstanceNumber: ct, BodyPart: "LIVER"})
		if err != nil {
			t.Fatal(err)
		}
		out = append(out, b)
	}
	xr := 0
	for _, s := range samples {
		if s.Group != "chest-xray" || s.Split != dataset.Test || xr == 4 {
			continue
		}
		xr++
		b, err := dicomresult.ImageToDICOM(*s.Image, dicomresult.PatientStudy{PatientName: secretName, PatientID: "P-77",
			StudyInstanceUID: study, BodyPart: "CHEST"})
		if err != nil {
			t.Fatal(err)
		}
		if xr == 2 {
			rows := []byte{0x28, 0x00, 0x10, 0x00, 'U', 'S', 2, 0}
			i := bytes.Index(b, rows)
			if i < 0 {
				t.Fatal("no Rows element in the phantom X-ray")
			}
			v := binary.LittleEndian.Uint16(b[i+8:])
			binary.LittleEndian.PutUint16(b[i+8:], 2*v)
		}
		out = append(out, b)
	}
	if ct != 3 || xr != 4 {
		t.Fatalf("phantom gave %d CT and %d X-ray test images", ct, xr)
	}
	return out
}

type env struct {
	srv    *orthanctest.Server
	scorer *score.Scorer
	model  dicomresult.Model
	creds  httpauth.Credentials
	dir    string
}

// The tests share one trained model (scoretest.Shared).
func TestMain(m *testing.M) {
	code := m.Run()
	scoretest.RemoveShared()
	os.Exit(code)
}

func setup(t *testing.T) (*env, fixture) {
	srv := orthanctest.Start(t)
	dir := t.TempDir()
	tm := scoretest.Shared(t)
	sc, err := score.New(scoretest.Load(t, tm.Path), score.DefaultOptions())
	if err != nil {
		t.Fatal(err)
	}
	e := &env{srv: srv, scorer: sc, dir: dir,
		model: dicomresult.Model{Name: "test-model", Version: "1", SHA256: strings.Repeat("ab", 32), Software: "maddr test"},
		creds: httpauth.Credentials{User: orthanctest.User, Password: orthanctest.Password}}
	fx := fixture{files: [][]byte{readFixture(t, "pydicom/CT_small.dcm"), readFixture(t, "godicom/4.dcm")}}
	ph := phantomFiles(t, tm.Samples)
	fx.files = append(fx.files, ph[:len(ph)-2]...)
	fx.extra = ph[len(ph)-2:]
	// CT_small (a CT series of one), the CR, the phantom CT series, two
	// phantom X-rays of which one fails.
	fx.units, fx.failing = 5, 1
	return e, fx
}

func (e *env) config(state string, log *logBuffer) Config {
	return Config{Scorer: e.scorer, Model: e.model, StateFile: state, Once: true,
		MetadataName: orthanctest.MetadataName, AttachmentName: orthanctest.AttachmentName,
		Log: slog.New(slog.NewJSONHandler(log, nil))}
}

func (e *env) orthanc(t *testing.T, attempts int) *archive.Orthanc {
	o, err := archive.NewOrthanc(e.srv.URL, archive.Options{Credentials: e.creds, Attempts: attempts,
		Backoff: 50 * time.Millisecond, Log: slog.New(slog.NewJSONHandler(&bytes.Buffer{}, nil))})
	if err != nil {
		t.Fatal(err)
	}
	return o
}

func (e *env) dicomweb(t *testing.T) *archive.DICOMweb {
	d, err := archive.NewDICOMweb(e.srv.DICOMweb, archive.Options{Credentials: e.creds})
	if err != nil {
		t.Fatal(err)
	}
	return d
}

// resultSeries lists the result series maddr wrote, by QIDO.
func resultSeries(t *testing.T, d *archive.DICOMweb) []archive.Dataset {
	t.Helper()
	all, err := d.SearchAll(context.Background(), "series",
		url.Values{"includefield": {archive.TagSeriesDescription, archive.TagSeriesInstances}}, 100)
	if err != nil {
		t.Fatal(err)
	}
	var own []archive.Dataset
	for _, s := range all {
		if strings.HasPrefix(s.String(archive.TagSeriesDescription), dicomresult.SeriesDescriptionPrefix) {
			own = append(own, s)
		}
	}
	return own
}

// resultObjects reads every result object back with WADO-RS (found by
// QIDO) and returns their identities.
func resultObjects(t *testing.T, d *archive.DICOMweb) []identity {
	t.Helper()
	var ids []identity
	for _, s := range resultSeries(t, d) {
		ref := archive.SeriesRef{Study: s.String(archive.TagStudyInstanceUID), Series: s.String(archive.TagSeriesInstanceUID)}
		insts, err := d.Search(context.Background(), ref.Path()+"/instances", nil)
		if err != nil {
			t.Fatal(err)
		}
		files, err := d.Retrieve(context.Background(), ref.Path())
		if err != nil {
			t.Fatal(err)
		}
		if len(files) != len(insts) {
			t.Fatalf("series %s: QIDO lists %d instances, WADO returned %d", ref.Series, len(insts), len(files))
		}
		for _, f := range files {
			id, err := readIdentity(f)
			if err != nil {
				t.Fatalf("result object of series %s unreadable: %v", ref.Series, err)
			}
			if !id.own() {
				t.Fatalf("result object %s not recognised as maddr output: %+v", id.SOPInstanceUID, id)
			}
			ids = append(ids, id)
		}
	}
	return ids
}

// runUntil runs the watcher with Once until want units were processed in
// total (series become stable StableAge seconds after their last instance).
func runUntil(t *testing.T, e *env, state string, log *logBuffer, want int) int {
	t.Helper()
	got := 0
	deadline := time.Now().Add(90 * time.Second)
	for got < want && time.Now().Before(deadline) {
		w, err := NewOrthanc(e.orthanc(t, 3), e.config(state, log))
		if err != nil {
			t.Fatal(err)
		}
		if err := w.Run(context.Background()); err != nil {
			t.Fatalf("watch: %v", err)
		}
		got += w.Stats().Units
		if got < want {
			time.Sleep(500 * time.Millisecond)
		}
	}
	if got != want {
		t.Fatalf("watch processed %d units, want %d; log:\n%s", got, want, log.String())
	}
	return got
}

func checkNoPatientName(t *testing.T, where, text string) {
	t.Helper()
	for _, part := range strings.Split(secretName, "^") {
		if strings.Contains(text, part) {
			t.Errorf("%s contains the patient name part %q:\n%s", where, part, text)
		}
	}
}

// TestWatchOrthanc runs the whole flow against a real Orthanc: upload, a
// watcher stopped mid-run and restarted, results found again by QIDO and
// read back, JSON metadata on every source, and the server killed mid-run.
func TestWatchOrthanc(t *testing.T) {
	e, fx := setup(t)
	ctx := context.Background()
	o := e.orthanc(t, 3)
	var sources []string
	for _, f := range fx.files {
		st, err := o.Store(ctx, f)
		if err != nil {
			t.Fatal(err)
		}
		sources = append(sources, st.ID)
	}
	state := filepath.Join(e.dir, "watch-state.json")

	// First run: stopped right after the first unit is written.
	var log logBuffer
	runCtx, stop := context.WithCancel(ctx)
	log.onLine = func(msg string) {
		if msg == "scored" || msg == "could not score" {
			stop()
		}
	}
	w, err := NewOrthanc(o, e.config(state, &log))
	if err != nil {
		t.Fatal(err)
	}
	err = w.Run(runCtx)
	first := w.Stats().Units
	if first != 1 || err == nil && !errors.Is(runCtx.Err(), context.Canceled) {
		t.Fatalf("interrupted run: %d units, %v", first, err)
	}
	log.onLine = nil
	// Restart: processes the rest, resuming from the saved sequence number.
	rest := runUntil(t, e, state, &log, fx.units-first)
	if first+rest != fx.units {
		t.Fatalf("%d + %d units", first, rest)
	}

	// Every scored unit has one SC and one SR, found by QIDO and read back.
	d := e.dicomweb(t)
	objs := resultObjects(t, d)
	scored := fx.units - fx.failing
	var sc, sr int
	uids := map[string]bool{}
	for _, id := range objs {
		if uids[id.SOPInstanceUID] {
			t.Fatalf("result %s stored twice", id.SOPInstanceUID)
		}
		uids[id.SOPInstanceUID] = true
		switch id.SOPClassUID {
		case dicomresult.SecondaryCaptureSOPClass:
			sc++
		case dicomresult.ComprehensiveSRSOPClass:
			sr++
		}
	}
	if sc != scored || sr != scored {
		t.Fatalf("%d Secondary Captures and %d reports, want %d of each", sc, sr, scored)
	}
	// The JSON result is on every source instance, as metadata and attachment.
	decisions := map[string]int{}
	for _, id := range sources {
		js, err := o.Metadata(ctx, id, orthanctest.MetadataName)
		if err != nil {
			t.Fatalf("metadata of %s: %v", id, err)
		}
		att, err := o.Attachment(ctx, id, orthanctest.AttachmentName)
		if err != nil || !bytes.Equal(att, js) {
			t.Fatalf("attachment of %s: %v", id, err)
		}
		var out Outcome
		if err := json.Unmarshal(js, &out); err != nil {
			t.Fatal(err)
		}
		decisions[out.Result.Decision]++
		if out.Result.Decision != score.Failed && (out.Report == "" || !uids[out.Report]) {
			t.Fatalf("%s: report %q not among the stored results", id, out.Report)
		}
		checkNoPatientName(t, "result JSON", string(js))
	}
	if decisions[score.Failed] != fx.failing {
		t.Fatalf("decisions %v, want %d failure(s)", decisions, fx.failing)
	}

	// A run with nothing new writes nothing.
	again, err := NewOrthanc(o, e.config(state, &log))
	if err != nil {
		t.Fatal(err)
	}
	if err := again.Run(ctx); err != nil || again.Stats().Units != 0 {
		t.Fatalf("idle run: %+v %v", again.Stats(), err)
	}

	// Orthanc dies mid-run, right after the first of two new images is
	// written: retries, then a clear error; the second image is scored once
	// the server is back, and the first is not written twice.
	for _, f := range fx.extra {
		if _, err := o.Store(ctx, f); err != nil {
			t.Fatal(err)
		}
	}
	log.onLine = func(msg string) {
		if msg == "scored" {
			e.srv.Kill()
		}
	}
	dead, err := NewOrthanc(e.orthanc(t, 3), e.config(state, &log))
	if err != nil {
		t.Fatal(err)
	}
	err = dead.Run(ctx)
	log.onLine = nil
	if !errors.Is(err, archive.ErrUnavailable) || !strings.Contains(err.Error(), "after 3 attempts") || dead.Stats().Units != 1 {
		t.Fatalf("server killed mid-run: %d units, %v", dead.Stats().Units, err)
	}
	checkNoPatientName(t, "error", err.Error())
	e.srv.Restart()
	runUntil(t, e, state, &log, 1)
	if n := len(resultObjects(t, d)); n != 2*scored+4 {
		t.Fatalf("%d result objects after the outage, want %d", n, 2*scored+4)
	}
	checkNoPatientName(t, "watch log", log.String())
}

// TestWatchDICOMweb runs the DICOMweb-only flow against a real Orthanc:
// uploads by STOW-RS, polls QIDO-RS, retrieves by WADO-RS, stores results by
// STOW-RS, and a second pass repeats nothing.
func TestWatchDICOMweb(t *testing.T) {
	e, fx := setup(t)
	ctx := context.Background()
	d := e.dicomweb(t)
	var log logBuffer
	if err := d.Store(ctx, fx.files); err != nil {
		t.Fatal(err)
	}
	state := filepath.Join(e.dir, "dicomweb-state.json")
	cfg := e.config(state, &log)
	cfg.Once = false
	cfg.Poll = 200 * time.Millisecond
	// Without --once a series is scored when its count held still over two
	// polls: stop after all units are done.
	want := fx.units
	runCtx, stop := context.WithTimeout(ctx, 2*time.Minute)
	defer stop()
	done := 0
	log.onLine = func(msg string) {
		if msg == "scored" || msg == "could not score" {
			done++
			if done == want {
				stop()
			}
		}
	}
	w, err := NewDICOMweb(d, cfg)
	if err != nil {
		t.Fatal(err)
	}
	if err := w.Run(runCtx); err != nil {
		t.Fatalf("watch: %v", err)
	}
	if w.Stats().Units != want {
		t.Fatalf("%d units scored, want %d; log:\n%s", w.Stats().Units, want, log.String())
	}
	objs := resultObjects(t, d)
	if len(objs) != 2*(fx.units-fx.failing) {
		t.Fatalf("%d result objects, want %d", len(objs), 2*(fx.units-fx.failing))
	}
	// A second pass (as after a restart) repeats nothing and never scores
	// the results.
	cfg.Once = true
	again, err := NewDICOMweb(d, cfg)
	if err != nil {
		t.Fatal(err)
	}
	if err := again.Run(ctx); err != nil || again.Stats().Units != 0 {
		t.Fatalf("second pass: %+v %v", again.Stats(), err)
	}
	if n := len(resultObjects(t, d)); n != len(objs) {
		t.Fatalf("second pass changed the result count from %d to %d", len(objs), n)
	}
	checkNoPatientName(t, "watch log", log.String())
}
