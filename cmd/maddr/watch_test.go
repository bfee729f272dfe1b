package main

import (
	"bytes"
	"encoding/json"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/maddr-project/maddr/archive/orthanctest"
)

// TestWatchAndScoreAgainstOrthanc runs 'maddr watch --once' against a real
// Orthanc until the uploaded CT and radiograph are scored, then 'maddr
// score' on the CT's DICOMweb study URL (whose result series it must pass
// over).
func TestWatchAndScoreAgainstOrthanc(t *testing.T) {
	srv := orthanctest.Start(t)
	ct, err := os.ReadFile("../../testdata/real/pydicom/CT_small.dcm")
	if err != nil {
		t.Skipf("fixture missing (bash tools/fetch-fixtures.sh): %v", err)
	}
	cr, err := os.ReadFile("../../testdata/real/godicom/4.dcm")
	if err != nil {
		t.Skipf("fixture missing: %v", err)
	}
	ctID := srv.Upload(ct)
	srv.Upload(cr)
	mod := sharedModel(t)
	runDir := filepath.Dir(mod.Path)
	creds := srv.BasicFile()
	state := filepath.Join(t.TempDir(), "state.json")
	run := func(args ...string) (int, string, string) {
		var o, e bytes.Buffer
		code := runMain(args, &o, &e)
		return code, o.String(), e.String()
	}
	scored := 0
	var logs strings.Builder
	for deadline := time.Now().Add(90 * time.Second); scored < 2 && time.Now().Before(deadline); {
		code, _, stderr := run("watch", "--model", runDir, "--orthanc", srv.URL, "--archive-basic-file", creds,
			"--state", state, "--once", "--attachment", orthanctest.AttachmentName)
		if code != 0 {
			t.Fatalf("watch: exit %d:\n%s", code, stderr)
		}
		logs.WriteString(stderr)
		scored += strings.Count(stderr, `"msg":"scored"`)
		time.Sleep(300 * time.Millisecond)
	}
	if scored != 2 {
		t.Fatalf("watch scored %d units, want 2:\n%s", scored, logs.String())
	}
	for _, name := range []string{"CompressedSamples", "COVID-19-AR"} { // the fixtures' PatientNames
		if strings.Contains(logs.String(), name) {
			t.Fatalf("watch log shows the patient name %q", name)
		}
	}
	// Without credentials the archive refuses, and the command says so.
	if code, _, stderr := run("watch", "--model", runDir, "--orthanc", srv.URL, "--state", state, "--once"); code == 0 ||
		!strings.Contains(stderr, "credentials") {
		t.Fatalf("watch without credentials: exit %d:\n%s", code, stderr)
	}

	var tags struct{ StudyInstanceUID string }
	req, _ := newAuthedGet(srv.URL+"/instances/"+ctID+"/simplified-tags", creds)
	if err := getJSON(req, &tags); err != nil || tags.StudyInstanceUID == "" {
		t.Fatalf("tags: %v", err)
	}
	out := filepath.Join(t.TempDir(), "scores.json")
	url := srv.DICOMweb + "/studies/" + tags.StudyInstanceUID
	if code, _, stderr := run("score", "--model", runDir, "--quiet", "--archive-basic-file", creds, "--out", out, url); code != 0 {
		t.Fatalf("score %s: exit %d:\n%s", url, code, stderr)
	}
	b, err := os.ReadFile(out)
	if err != nil {
		t.Fatal(err)
	}
	var doc struct {
		Results []struct {
			Level, Decision string
		}
	}
	if err := json.Unmarshal(b, &doc); err != nil {
		t.Fatalf("score JSON: %v\n%s", err, b)
	}
	// The study holds the CT and now maddr's SC and SR: only the CT is
	// scored (one image, and the summary of its series).
	images := 0
	for _, r := range doc.Results {
		if r.Level == "image" {
			images++
			if r.Decision == "" || r.Decision == "error" {
				t.Fatalf("the CT was not scored: %+v", r)
			}
		}
	}
	if images != 1 {
		t.Fatalf("scoring the study URL gave %+v (want the one CT image, not the results)", doc.Results)
	}
}

func newAuthedGet(url, basicFile string) (*http.Request, error) {
	b, err := os.ReadFile(basicFile)
	if err != nil {
		return nil, err
	}
	user, pass, _ := strings.Cut(strings.TrimSpace(string(b)), ":")
	req, err := http.NewRequest(http.MethodGet, url, nil)
	if err != nil {
		return nil, err
	}
	req.SetBasicAuth(user, pass)
	return req, nil
}

func getJSON(req *http.Request, v any) error {
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	return json.NewDecoder(resp.Body).Decode(v)
}
