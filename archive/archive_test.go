package archive

import (
	"bytes"
	"context"
	"errors"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/maddr-project/maddr/archive/orthanctest"
	"github.com/maddr-project/maddr/httpauth"
)

func quiet() *slog.Logger { return slog.New(slog.NewTextHandler(io.Discard, nil)) }

func TestRetriesServerErrorsThenSucceeds(t *testing.T) {
	var calls atomic.Int32
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if u, p, ok := r.BasicAuth(); !ok || u != "u" || p != "p" {
			w.WriteHeader(http.StatusUnauthorized)
			return
		}
		body, _ := io.ReadAll(r.Body)
		if calls.Add(1) < 3 {
			w.WriteHeader(http.StatusServiceUnavailable)
			return
		}
		if string(body) != "DICM" {
			t.Errorf("retry sent body %q", body)
		}
		w.Write([]byte(`{"ID":"abc","Status":"Success"}`))
	}))
	defer srv.Close()
	o, err := NewOrthanc(srv.URL, Options{Credentials: httpauth.Credentials{User: "u", Password: "p"},
		Backoff: time.Millisecond, Log: quiet()})
	if err != nil {
		t.Fatal(err)
	}
	st, err := o.Store(context.Background(), []byte("DICM"))
	if err != nil || st.ID != "abc" || calls.Load() != 3 {
		t.Fatalf("store: %+v, %v after %d calls", st, err, calls.Load())
	}
}

func TestGivesUpWithClearError(t *testing.T) {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {}))
	addr := srv.URL
	srv.Close() // nothing listens any more
	var logs bytes.Buffer
	o, err := NewOrthanc(addr, Options{Attempts: 3, Backoff: time.Millisecond, Log: slog.New(slog.NewJSONHandler(&logs, nil))})
	if err != nil {
		t.Fatal(err)
	}
	_, err = o.Changes(context.Background(), 0, 10)
	if !errors.Is(err, ErrUnavailable) || !strings.Contains(err.Error(), "after 3 attempts") || !strings.Contains(err.Error(), "GET") {
		t.Fatalf("error %v", err)
	}
	if n := strings.Count(logs.String(), "retrying"); n != 2 {
		t.Fatalf("%d retry log lines, want 2:\n%s", n, logs.String())
	}
}

func TestUnauthorisedIsNotRetried(t *testing.T) {
	var calls atomic.Int32
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		calls.Add(1)
		w.WriteHeader(http.StatusUnauthorized)
	}))
	defer srv.Close()
	d, _ := NewDICOMweb(srv.URL+"/dicom-web", Options{Backoff: time.Millisecond, Log: quiet()})
	_, err := d.Search(context.Background(), "studies", url.Values{"PatientName": {"Secret^Name"}})
	if err == nil || calls.Load() != 1 || !strings.Contains(err.Error(), "credentials") || strings.Contains(err.Error(), "Secret") {
		t.Fatalf("error %v after %d calls", err, calls.Load())
	}
}

func TestURLCredentialsRefused(t *testing.T) {
	if _, err := NewOrthanc("http://u:pw@localhost:8042", Options{}); err == nil || strings.Contains(err.Error(), "pw") {
		t.Fatalf("error %v", err)
	}
}

func TestMultipartRoundTrip(t *testing.T) {
	files := [][]byte{[]byte("one\r\n--x"), {}, bytes.Repeat([]byte{0, 1, 2}, 1000)}
	body, ct, err := BuildMultipartRelated(files)
	if err != nil {
		t.Fatal(err)
	}
	if !strings.HasPrefix(ct, `multipart/related; type="application/dicom"; boundary=`) {
		t.Fatalf("content type %s", ct)
	}
	got, err := ParseMultipartRelated(ct, body)
	if err != nil || len(got) != 3 || !bytes.Equal(got[0], files[0]) || len(got[1]) != 0 || !bytes.Equal(got[2], files[2]) {
		t.Fatalf("round trip: %d parts, %v", len(got), err)
	}
	if _, err := ParseMultipartRelated("application/json", body); err == nil {
		t.Fatal("JSON accepted as multipart")
	}
}

func TestParseURL(t *testing.T) {
	root, ref, err := ParseURL("https://pacs.example/dicom-web/studies/1.2.3/series/4.5?x=1")
	if err != nil || root != "https://pacs.example/dicom-web" || ref != (SeriesRef{"1.2.3", "4.5"}) {
		t.Fatalf("%s %+v %v", root, ref, err)
	}
	if _, _, err := ParseURL("https://pacs.example/dicom-web/studies/1.2.3/series/4.5/instances/6"); err == nil {
		t.Fatal("instance URL accepted")
	}
	if _, _, err := ParseURL("https://pacs.example/dicom-web/"); err == nil {
		t.Fatal("root accepted")
	}
}

// TestRealOrthanc runs every call against Debian's Orthanc.
func TestRealOrthanc(t *testing.T) {
	srv := orthanctest.Start(t)
	ctx := context.Background()
	creds := httpauth.Credentials{User: orthanctest.User, Password: orthanctest.Password}
	opts := Options{Credentials: creds, Backoff: 50 * time.Millisecond, Attempts: 3, Log: quiet()}
	o, err := NewOrthanc(srv.URL, opts)
	if err != nil {
		t.Fatal(err)
	}
	ct, err := os.ReadFile("../testdata/real/pydicom/CT_small.dcm")
	if err != nil {
		t.Skipf("fixture missing (bash tools/fetch-fixtures.sh): %v", err)
	}
	st, err := o.Store(ctx, ct)
	if err != nil || st.Status != "Success" {
		t.Fatalf("store: %+v %v", st, err)
	}
	if again, err := o.Store(ctx, ct); err != nil || again.Status != "AlreadyStored" || again.ID != st.ID {
		t.Fatalf("second store: %+v %v", again, err)
	}
	page, err := o.Changes(ctx, 0, 100)
	if err != nil || len(page.Changes) == 0 || page.Changes[0].ChangeType == "" {
		t.Fatalf("changes: %+v %v", page, err)
	}
	var sawInstance bool
	for _, c := range page.Changes {
		sawInstance = sawInstance || c.ChangeType == NewInstance && c.ID == st.ID
	}
	if !sawInstance {
		t.Fatalf("no NewInstance for %s in %+v", st.ID, page.Changes)
	}
	if last, err := o.LastChange(ctx); err != nil || last != page.Last {
		t.Fatalf("last %d %v, want %d", last, err, page.Last)
	}
	file, err := o.InstanceFile(ctx, st.ID)
	if err != nil || !bytes.Equal(file, ct) {
		t.Fatalf("file: %d bytes, %v", len(file), err)
	}
	tags, err := o.SimplifiedTags(ctx, st.ID)
	if err != nil || tags["Modality"] != "CT" || tags["SOPClassUID"] != "1.2.840.10008.5.1.4.1.1.2" {
		t.Fatalf("tags: %v %v", tags["Modality"], err)
	}
	se, err := o.Series(ctx, st.ParentSeries)
	if err != nil || len(se.Instances) != 1 || se.Instances[0] != st.ID || se.ParentStudy != st.ParentStudy {
		t.Fatalf("series %+v %v", se, err)
	}
	if _, err := o.Metadata(ctx, st.ID, orthanctest.MetadataName); !errors.Is(err, ErrNotFound) {
		t.Fatalf("metadata before set: %v", err)
	}
	if err := o.SetMetadata(ctx, st.ID, orthanctest.MetadataName, []byte(`{"decision":"normal"}`)); err != nil {
		t.Fatal(err)
	}
	if v, err := o.Metadata(ctx, st.ID, orthanctest.MetadataName); err != nil || string(v) != `{"decision":"normal"}` {
		t.Fatalf("metadata %q %v", v, err)
	}
	if err := o.PutAttachment(ctx, st.ID, orthanctest.AttachmentName, []byte(`{"a":1}`), "application/json"); err != nil {
		t.Fatal(err)
	}
	if v, err := o.Attachment(ctx, st.ID, orthanctest.AttachmentName); err != nil || string(v) != `{"a":1}` {
		t.Fatalf("attachment %q %v", v, err)
	}

	d, err := NewDICOMweb(srv.DICOMweb, opts)
	if err != nil {
		t.Fatal(err)
	}
	studies, err := d.Search(ctx, "studies", nil)
	if err != nil || len(studies) != 1 || studies[0].String(TagStudyInstanceUID) != tags["StudyInstanceUID"] {
		t.Fatalf("QIDO studies: %v %v", studies, err)
	}
	series, err := d.SearchAll(ctx, "series", url.Values{"includefield": {TagSeriesInstances}}, 1)
	if err != nil || len(series) != 1 || series[0].String(TagSeriesInstances) != "1" {
		t.Fatalf("QIDO series: %v %v", series, err)
	}
	ref := SeriesRef{Study: tags["StudyInstanceUID"], Series: tags["SeriesInstanceUID"]}
	files, err := d.Retrieve(ctx, ref.Path())
	if err != nil || len(files) != 1 || !bytes.Contains(files[0], []byte("DICM")) {
		t.Fatalf("WADO: %d files, %v", len(files), err)
	}
	xray, err := os.ReadFile("../testdata/real/godicom/4.dcm")
	if err != nil {
		t.Skipf("fixture missing: %v", err)
	}
	if err := d.Store(ctx, [][]byte{xray}); err != nil {
		t.Fatalf("STOW: %v", err)
	}
	if studies, err = d.Search(ctx, "studies", nil); err != nil || len(studies) != 2 {
		t.Fatalf("after STOW %d studies, %v", len(studies), err)
	}

	// A dead server: retries, then an error wrapping ErrUnavailable.
	srv.Kill()
	var logs bytes.Buffer
	opts.Log = slog.New(slog.NewJSONHandler(&logs, nil))
	o, _ = NewOrthanc(srv.URL, opts)
	_, err = o.Changes(ctx, 0, 10)
	if !errors.Is(err, ErrUnavailable) || strings.Count(logs.String(), "retrying") != 2 {
		t.Fatalf("dead server: %v; log:\n%s", err, logs.String())
	}
}
