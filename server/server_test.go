package server

import (
	"bytes"
	"context"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"image"
	"image/png"
	"io"
	"mime/multipart"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/maddr-project/maddr/dataset"
	"github.com/maddr-project/maddr/medimg"
	"github.com/maddr-project/maddr/score"
	"github.com/maddr-project/maddr/score/scoretest"
)

var (
	once      sync.Once
	shared    scoretest.Model
	sharedDir string
)

func TestMain(m *testing.M) {
	code := m.Run()
	if sharedDir != "" {
		os.RemoveAll(sharedDir)
	}
	os.Exit(code)
}

// scorer returns a scorer of the package's shared test model.
func scorer(t *testing.T) (*score.Scorer, scoretest.Model) {
	t.Helper()
	once.Do(func() {
		var err error
		if sharedDir, err = os.MkdirTemp("", "server-test-"); err != nil {
			t.Fatal(err)
		}
		shared = scoretest.Train(t, sharedDir, false, "")
	})
	if shared.Path == "" {
		t.Fatal("training the shared model failed in an earlier test")
	}
	sc, err := score.New(scoretest.Load(t, shared.Path), score.DefaultOptions())
	if err != nil {
		t.Fatal(err)
	}
	return sc, shared
}

// samplePNG encodes a test image of the group as an 8-bit PNG.
func samplePNG(t *testing.T, m scoretest.Model, group string, label dataset.Label) []byte {
	t.Helper()
	for _, s := range m.Samples {
		if s.Group == group && s.Split == dataset.Test && s.Label == label {
			img := s.Image
			g := image.NewGray(image.Rect(0, 0, img.Width, img.Height))
			for i, v := range img.Pix {
				lo, hi := float64(img.Lo), float64(img.Hi)
				x := (float64(v) - lo) / (hi - lo) * 255
				g.Pix[i] = uint8(min(255, max(0, x+0.5)))
			}
			var b bytes.Buffer
			png.Encode(&b, g)
			return b.Bytes()
		}
	}
	t.Fatalf("no %s %s test image", group, label)
	return nil
}

func post(t *testing.T, url, ctype string, body []byte) (int, map[string]any) {
	t.Helper()
	resp, err := http.Post(url, ctype, bytes.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var out map[string]any
	if err := json.NewDecoder(resp.Body).Decode(&out); err != nil {
		t.Fatalf("POST %s: answer is not JSON: %v", url, err)
	}
	return resp.StatusCode, out
}

func TestScoreAPI(t *testing.T) {
	sc, mod := scorer(t)
	s := New(sc, Info{ModelSHA256: "abc"}, Config{})
	defer s.Close()
	ts := httptest.NewServer(s.Handler())
	defer ts.Close()
	xray := samplePNG(t, mod, "chest-xray", dataset.Normal)

	code, ans := post(t, ts.URL+"/api/score?name=cxr.png", "image/png", xray)
	if code != http.StatusOK {
		t.Fatalf("status %d: %v", code, ans)
	}
	if ans["precision"] != "fp32" {
		t.Errorf("answer's precision %v, want fp32 (the scorer's)", ans["precision"])
	}
	res := ans["results"].([]any)[0].(map[string]any)
	// The API gives what the library gives for the same bytes.
	imgs, err := medimg.Decode(xray, "cxr.png", medimg.Options{})
	if err != nil {
		t.Fatal(err)
	}
	want, err := sc.Score(context.Background(), []score.Input{{Image: imgs[0], Path: "cxr.png"}}, score.Request{})
	if err != nil {
		t.Fatal(err)
	}
	if res["raw_score"].(float64) != *want[0].Raw || res["decision"] != want[0].Decision || res["group"] != "chest-xray" ||
		res["organ"] != "lung" || res["modality"] != "xray" || res["path"] != "cxr.png" {
		t.Errorf("answer %v, library %+v", res, want[0])
	}
	for _, key := range []string{"heatmap_png", "image_png"} {
		b, err := base64.StdEncoding.DecodeString(res[key].(string))
		if err != nil {
			t.Fatal(err)
		}
		if _, err := png.Decode(bytes.NewReader(b)); err != nil {
			t.Errorf("%s is not a PNG: %v", key, err)
		}
	}

	// The same file as a multipart form, judged against a named group.
	var form bytes.Buffer
	mw := multipart.NewWriter(&form)
	fw, _ := mw.CreateFormFile("image", "form.png")
	fw.Write(xray)
	mw.Close()
	code, ans = post(t, ts.URL+"/api/score?group=liver-ct&heatmap=0", mw.FormDataContentType(), form.Bytes())
	if code != http.StatusOK {
		t.Fatalf("multipart: status %d: %v", code, ans)
	}
	res = ans["results"].([]any)[0].(map[string]any)
	if res["group"] != "liver-ct" || res["group_from"] != score.FromRequest || res["path"] != "form.png" || res["heatmap_png"] != nil {
		t.Errorf("multipart answer %v", res)
	}
	if !strings.Contains(fmt.Sprint(res["notes"]), "heads see") {
		t.Errorf("an X-ray judged as liver CT should say what the heads see: %v", res["notes"])
	}

	// A volume: one result per slice and a summary.
	var vol bytes.Buffer
	writeVolume(&vol, 40, 3)
	code, ans = post(t, ts.URL+"/api/score?name=v.nii&heatmap=0", "application/octet-stream", vol.Bytes())
	if code != http.StatusOK || len(ans["results"].([]any)) != 3 || ans["summary"] == nil {
		t.Errorf("volume: status %d, %v", code, ans)
	}

	// The model description the page reads.
	resp, err := http.Get(ts.URL + "/api/model")
	if err != nil {
		t.Fatal(err)
	}
	var info ModelInfo
	json.NewDecoder(resp.Body).Decode(&info)
	resp.Body.Close()
	if info.Model != "ae" || len(info.Groups) != 3 || !info.CanRoute || len(info.Thresholds) != 3 || info.Precision != "fp32" {
		t.Errorf("model info %+v", info)
	}
	resp, err = http.Get(ts.URL + "/")
	if err != nil {
		t.Fatal(err)
	}
	page, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != 200 || !bytes.Contains(page, []byte(`id="file"`)) {
		t.Errorf("page: status %d, %d bytes", resp.StatusCode, len(page))
	}
}

// writeVolume writes an uncompressed float32 NIfTI-1 volume.
func writeVolume(w io.Writer, n, nz int) {
	hdr := make([]byte, 352)
	put16 := func(off, v int) { hdr[off], hdr[off+1] = byte(v), byte(v>>8) }
	put32 := func(off int, v uint32) {
		for i := 0; i < 4; i++ {
			hdr[off+i] = byte(v >> (8 * i))
		}
	}
	put32(0, 348)
	for i, d := range []int{3, n, n, nz, 1, 1, 1, 1} {
		put16(40+2*i, d)
	}
	put16(70, 16)
	put16(72, 32)
	for i := 0; i < 8; i++ {
		put32(76+4*i, 0x3f800000)
	}
	put32(108, 0x43b00000) // 352.0
	copy(hdr[344:], "n+1\x00")
	w.Write(hdr)
	data := make([]byte, 4*n*n*nz)
	for i := 0; i < n*n*nz; i++ {
		put := uint32(0x3f800000) // 1.0 everywhere but a stripe
		if i%n < n/3 {
			put = 0
		}
		data[4*i], data[4*i+1], data[4*i+2], data[4*i+3] = byte(put), byte(put>>8), byte(put>>16), byte(put>>24)
	}
	w.Write(data)
}

func TestBadRequests(t *testing.T) {
	sc, mod := scorer(t)
	s := New(sc, Info{}, Config{MaxBodyBytes: 40 << 10, MaxPixels: 100 * 100})
	defer s.Close()
	ts := httptest.NewServer(s.Handler())
	defer ts.Close()
	big := image.NewGray(image.Rect(0, 0, 200, 200))
	var bigPNG bytes.Buffer
	png.Encode(&bigPNG, big)
	xray := samplePNG(t, mod, "chest-xray", dataset.Normal)
	for _, c := range []struct {
		name, url, ctype string
		body             []byte
		code             int
		msg              string
	}{
		{"text", "/api/score", "text/plain", []byte("hello"), 415, "not an image"},
		{"form-urlencoded", "/api/score", "application/x-www-form-urlencoded", xray, 415, "not an image"},
		{"unknown bytes", "/api/score", "application/octet-stream", []byte("just some text, not pixels"), 415, "not a PNG, JPEG, DICOM or NIfTI"},
		{"broken png", "/api/score", "image/png", append([]byte("\x89PNG\r\n\x1a\n"), make([]byte, 40)...), 400, "undecodable"},
		{"empty", "/api/score", "image/png", nil, 400, "empty upload"},
		{"too many bytes", "/api/score", "application/octet-stream", make([]byte, 50<<10), 413, "limit"},
		{"too many pixels", "/api/score", "image/png", bigPNG.Bytes(), 413, "pixels"},
		{"unknown group", "/api/score?group=brain-mr", "image/png", xray, 400, "not one this model was trained on"},
	} {
		code, ans := post(t, ts.URL+c.url, c.ctype, c.body)
		if code != c.code || !strings.Contains(fmt.Sprint(ans["error"]), c.msg) || int(ans["status"].(float64)) != c.code {
			t.Errorf("%s: status %d %v, want %d mentioning %q", c.name, code, ans, c.code, c.msg)
		}
	}
	resp, err := http.Get(ts.URL + "/api/score")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusMethodNotAllowed {
		t.Errorf("GET /api/score: %d", resp.StatusCode)
	}
}

// holdWorkers makes the workers of s signal started and then wait for a
// token on gate before each upload.
func holdWorkers(t *testing.T, s *Server) (started, gate chan struct{}) {
	started, gate = make(chan struct{}, 16), make(chan struct{}, 16)
	s.beforeHandle = func() {
		started <- struct{}{}
		<-gate
	}
	return started, gate
}

func TestQueueTimeoutAndMetrics(t *testing.T) {
	sc, mod := scorer(t)
	s := New(sc, Info{ModelSHA256: "abc"}, Config{Workers: 1, QueueSize: 1, Timeout: 6 * time.Second}) // long enough for a queued upload on a loaded machine
	started, gate := holdWorkers(t, s)
	defer s.Close()
	ts := httptest.NewServer(s.Handler())
	defer ts.Close()
	xray := samplePNG(t, mod, "chest-xray", dataset.Abnormal)
	send := func(codes chan int) { c, _ := post(t, ts.URL+"/api/score", "image/png", xray); codes <- c }

	codes := make(chan int, 2)
	go send(codes)
	<-started // the worker holds the first upload
	go send(codes)
	deadline := time.Now().Add(5 * time.Second)
	for len(s.queue) < 1 && time.Now().Before(deadline) {
		time.Sleep(5 * time.Millisecond)
	}
	// Worker busy, queue full: the third upload is refused at once.
	code, ans := post(t, ts.URL+"/api/score", "image/png", xray)
	if code != http.StatusServiceUnavailable || !strings.Contains(fmt.Sprint(ans["error"]), "busy") {
		t.Errorf("full queue: %d %v", code, ans)
	}
	gate <- struct{}{}
	<-started
	gate <- struct{}{}
	for i := 0; i < 2; i++ {
		if c := <-codes; c != http.StatusOK {
			t.Errorf("queued upload: %d", c)
		}
	}
	// An upload that gets no answer within the deadline gets 503.
	go send(codes)
	<-started
	if c := <-codes; c != http.StatusServiceUnavailable {
		t.Errorf("timed-out upload: %d", c)
	}
	gate <- struct{}{}

	resp, err := http.Get(ts.URL + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	text, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	for _, want := range []string{
		`maddr_http_requests_total{path="/api/score",code="200"} 2`,
		`maddr_http_requests_total{path="/api/score",code="503"} 2`,
		`maddr_score_duration_seconds_count 2`,
		`maddr_score_duration_seconds_bucket{le="+Inf"} 2`,
		`maddr_images_scored_total 2`,
		`maddr_queue_capacity 1`,
		`maddr_model_info{model="ae",sha256="abc",precision="fp32"} 1`,
	} {
		if !strings.Contains(string(text), want) {
			t.Errorf("/metrics lacks %s:\n%s", want, text)
		}
	}
	resp, err = http.Get(ts.URL + "/healthz")
	if err != nil {
		t.Fatal(err)
	}
	var h map[string]any
	json.NewDecoder(resp.Body).Decode(&h)
	resp.Body.Close()
	if resp.StatusCode != 200 || h["status"] != "ok" || h["precision"] != "fp32" {
		t.Errorf("/healthz: %d %v", resp.StatusCode, h)
	}
}

// TestGracefulShutdown: stopping the server lets an upload in flight finish.
func TestGracefulShutdown(t *testing.T) {
	sc, mod := scorer(t)
	s := New(sc, Info{}, Config{Workers: 1})
	started, gate := holdWorkers(t, s)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	served := make(chan error, 1)
	go func() { served <- Serve(ctx, ln, s) }()
	xray := samplePNG(t, mod, "chest-xray", dataset.Normal)
	codes := make(chan int, 1)
	go func() { c, _ := post(t, "http://"+ln.Addr().String()+"/api/score", "image/png", xray); codes <- c }()
	<-started
	cancel()
	time.Sleep(100 * time.Millisecond) // shutdown has begun: the listener is closed
	if _, err := net.DialTimeout("tcp", ln.Addr().String(), time.Second); err == nil {
		t.Error("new connections are still accepted during shutdown")
	}
	gate <- struct{}{}
	if c := <-codes; c != http.StatusOK {
		t.Errorf("upload in flight during shutdown: %d", c)
	}
	if err := <-served; err != nil {
		t.Errorf("Serve: %v", err)
	}
}
