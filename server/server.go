// Package server serves one model over HTTP with net/http alone: a JSON
// scoring API (POST an image, get the score, decision, group and heat map),
// /healthz, /metrics in Prometheus text format, and a web page (embedded,
// plain HTML and JavaScript) to drop an image on and see the heat map over
// it, the score against the threshold and the recognised organ and modality.
//
// Safe to expose: requests can be required to carry HTTP Basic or bearer
// credentials (Config.Auth; /healthz stays open for probes), the listener
// can speak TLS (Config.TLSCert/TLSKey), and every request gets one
// structured access log line (log/slog JSON) with a request id, sizes,
// latency, status and decisions, never a file name, a query or anything
// read from an upload, so no patient-identifying attribute reaches the log.
//
// Work is bounded: uploads wait in a fixed-size queue for a fixed number of
// workers (a full queue answers 503 at once), bodies and decoded pixels have
// limits (413), every request has a deadline, and shutdown lets the uploads
// in flight finish.
package server

import (
	"context"
	"crypto/rand"
	"crypto/tls"
	"embed"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"mime"
	"mime/multipart"
	"net"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/maddr-project/maddr/httpauth"
	"github.com/maddr-project/maddr/score"
)

//go:embed web
var webFiles embed.FS

// Config holds the server's limits.
type Config struct {
	// MaxBodyBytes bounds an upload (413 beyond).
	MaxBodyBytes int64
	// MaxPixels bounds the decoded pixels of one upload, all slices together.
	MaxPixels int64
	// MaxSlices bounds the 2-D images in one upload (a volume's slices).
	MaxSlices int
	// Workers score uploads in parallel (forward passes still take turns).
	Workers int
	// QueueSize uploads may wait for a worker; more are refused with 503.
	QueueSize int
	// Timeout bounds one request, waiting included (503 when it expires).
	Timeout time.Duration
	// HU marks NIfTI uploads as CT in Hounsfield units.
	HU bool
	// MaxPictures bounds the slices of one upload returned with pictures;
	// beyond it only the most abnormal slice has them.
	MaxPictures int
	// Auth, when set, is required of every request but /healthz.
	Auth httpauth.Credentials
	// TLSCert and TLSKey (PEM files), when set, make Serve speak HTTPS.
	TLSCert, TLSKey string
	// Log receives the access log (nil: none).
	Log *slog.Logger
}

// DefaultConfig returns the limits used when a field is zero.
func DefaultConfig() Config {
	return Config{MaxBodyBytes: 64 << 20, MaxPixels: 128 << 20, MaxSlices: 1024, Workers: 2, QueueSize: 16,
		Timeout: 2 * time.Minute, MaxPictures: 32}
}

func (c Config) withDefaults() Config {
	d := DefaultConfig()
	if c.MaxBodyBytes <= 0 {
		c.MaxBodyBytes = d.MaxBodyBytes
	}
	if c.MaxPixels <= 0 {
		c.MaxPixels = d.MaxPixels
	}
	if c.MaxSlices <= 0 {
		c.MaxSlices = d.MaxSlices
	}
	if c.Workers <= 0 {
		c.Workers = d.Workers
	}
	if c.QueueSize <= 0 {
		c.QueueSize = d.QueueSize
	}
	if c.Timeout <= 0 {
		c.Timeout = d.Timeout
	}
	if c.MaxPictures <= 0 {
		c.MaxPictures = d.MaxPictures
	}
	return c
}

// Info names the model in answers and metrics.
type Info struct {
	ModelPath   string
	ModelSHA256 string
	Version     string
}

// Server scores uploads with one model.
type Server struct {
	sc      *score.Scorer
	cfg     Config
	info    Info
	queue   chan *job
	metrics *metrics
	busy    atomic.Int64
	mux     *http.ServeMux
	wg      sync.WaitGroup
	closing sync.Once
	// beforeHandle lets tests hold a worker.
	beforeHandle func()
}

// job is one upload waiting for a worker.
type job struct {
	ctx  context.Context
	data []byte
	name string
	req  score.Request
	maps bool
	done chan answer
}

type answer struct {
	code int
	body any
}

// New starts the workers; Close stops them.
func New(sc *score.Scorer, info Info, cfg Config) *Server {
	cfg = cfg.withDefaults()
	s := &Server{sc: sc, cfg: cfg, info: info, queue: make(chan *job, cfg.QueueSize), metrics: newMetrics(), mux: http.NewServeMux()}
	s.mux.HandleFunc("GET /{$}", func(w http.ResponseWriter, r *http.Request) {
		http.ServeFileFS(w, r, webFiles, "web/index.html")
	})
	s.mux.HandleFunc("GET /healthz", s.healthz)
	s.mux.HandleFunc("GET /metrics", s.metricsPage)
	s.mux.HandleFunc("GET /api/model", s.modelInfo)
	s.mux.HandleFunc("POST /api/score", s.score)
	for i := 0; i < cfg.Workers; i++ {
		s.wg.Add(1)
		go s.work()
	}
	return s
}

// Handler serves every endpoint, requires the credentials, counts requests
// by status and writes the access log.
func (s *Server) Handler() http.Handler {
	inner := httpauth.Require(s.cfg.Auth, s.mux, "/healthz")
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		start := time.Now()
		id := requestID()
		w.Header().Set("X-Request-Id", id)
		rec := &statusRecorder{ResponseWriter: w, code: http.StatusOK}
		info := &accessInfo{}
		inner.ServeHTTP(rec, r.WithContext(context.WithValue(r.Context(), accessKey{}, info)))
		path := r.URL.Path
		switch path {
		case "/healthz", "/metrics", "/api/model", "/api/score", "/":
		default:
			path = "other" // bounded label values whatever clients ask for
		}
		s.metrics.request(path, rec.code)
		if s.cfg.Log != nil {
			attrs := []slog.Attr{slog.String("id", id), slog.String("method", r.Method), slog.String("path", path),
				slog.Int("status", rec.code), slog.Int64("bytes_in", max(r.ContentLength, 0)),
				slog.Int64("bytes_out", rec.bytes), slog.Float64("latency_ms", float64(time.Since(start).Microseconds())/1000)}
			if info.result != "" {
				attrs = append(attrs, slog.String("result", info.result))
			}
			if info.problem != "" {
				attrs = append(attrs, slog.String("problem", info.problem))
			}
			level := slog.LevelInfo
			if rec.code >= 500 {
				level = slog.LevelError
			} else if rec.code >= 400 {
				level = slog.LevelWarn
			}
			s.cfg.Log.LogAttrs(r.Context(), level, "request", attrs...)
		}
	})
}

// accessInfo is what a handler adds to its access log line: decisions, or
// the kind of problem; never text taken from the upload.
type accessInfo struct{ result, problem string }

type accessKey struct{}

func setAccess(r *http.Request, f func(*accessInfo)) {
	if a, ok := r.Context().Value(accessKey{}).(*accessInfo); ok {
		f(a)
	}
}

// requestID returns 16 random hex digits.
func requestID() string {
	var b [8]byte
	rand.Read(b[:])
	return hex.EncodeToString(b[:])
}

type statusRecorder struct {
	http.ResponseWriter
	code  int
	bytes int64
}

func (r *statusRecorder) WriteHeader(code int) {
	r.code = code
	r.ResponseWriter.WriteHeader(code)
}

func (r *statusRecorder) Write(b []byte) (int, error) {
	n, err := r.ResponseWriter.Write(b)
	r.bytes += int64(n)
	return n, err
}

// Close stops the workers after the queued uploads are done.
func (s *Server) Close() {
	s.closing.Do(func() { close(s.queue) })
	s.wg.Wait()
}

// Serve answers on ln until ctx ends, then shuts down gracefully: no new
// connections, uploads in flight finish (within the request timeout).
func Serve(ctx context.Context, ln net.Listener, s *Server) error {
	srv := &http.Server{
		Handler:           s.Handler(),
		ReadHeaderTimeout: 10 * time.Second,
		ReadTimeout:       s.cfg.Timeout,
		WriteTimeout:      s.cfg.Timeout + 10*time.Second,
		IdleTimeout:       2 * time.Minute,
		MaxHeaderBytes:    64 << 10,
	}
	errc := make(chan error, 1)
	go func() {
		if s.cfg.TLSCert != "" || s.cfg.TLSKey != "" {
			srv.TLSConfig = &tls.Config{MinVersion: tls.VersionTLS12}
			errc <- srv.ServeTLS(ln, s.cfg.TLSCert, s.cfg.TLSKey)
			return
		}
		errc <- srv.Serve(ln)
	}()
	select {
	case err := <-errc:
		s.Close()
		return err
	case <-ctx.Done():
	}
	shutdown, cancel := context.WithTimeout(context.Background(), s.cfg.Timeout+10*time.Second)
	defer cancel()
	err := srv.Shutdown(shutdown)
	s.Close()
	if serr := <-errc; !errors.Is(serr, http.ErrServerClosed) && err == nil {
		err = serr
	}
	return err
}

func writeJSON(w http.ResponseWriter, code int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Cache-Control", "no-store")
	w.WriteHeader(code)
	enc := json.NewEncoder(w)
	enc.SetIndent("", " ")
	enc.SetEscapeHTML(false)
	enc.Encode(v)
}

// errorBody is every error answer.
type errorBody struct {
	Error  string `json:"error"`
	Status int    `json:"status"`
}

func writeError(w http.ResponseWriter, code int, msg string) {
	writeJSON(w, code, errorBody{Error: msg, Status: code})
}

func (s *Server) healthz(w http.ResponseWriter, r *http.Request) {
	writeJSON(w, http.StatusOK, map[string]any{"status": "ok", "model": s.sc.Model().Manifest.Model, "model_sha256": s.info.ModelSHA256,
		"precision": s.sc.Precision(), "queue_depth": len(s.queue), "queue_capacity": cap(s.queue), "workers": s.cfg.Workers})
}

func (s *Server) metricsPage(w http.ResponseWriter, r *http.Request) {
	w.Header().Set("Content-Type", "text/plain; version=0.0.4; charset=utf-8")
	s.metrics.write(w, gauges{queueDepth: len(s.queue), queueCapacity: cap(s.queue), busy: int(s.busy.Load()),
		workers: s.cfg.Workers, model: s.sc.Model().Manifest.Model, sha: s.info.ModelSHA256, precision: s.sc.Precision()})
}

// ModelInfo is the answer of GET /api/model, which the page uses.
type ModelInfo struct {
	Model   string `json:"model"`
	Path    string `json:"path"`
	SHA256  string `json:"model_sha256"`
	Version string `json:"version"`
	// Precision is the arithmetic of scoring, "fp32" or "bf16" (serve --precision).
	Precision  string                       `json:"precision"`
	Groups     []string                     `json:"groups"`
	CanRoute   bool                         `json:"can_route"`
	Organs     []string                     `json:"organs"`
	Modalities []string                     `json:"modalities"`
	Thresholds map[string]map[string]any    `json:"thresholds"`
	Options    score.Options                `json:"options"`
	Notes      []string                     `json:"notes,omitempty"`
	Limits     map[string]int64             `json:"limits"`
	Preprocess map[string]int               `json:"preprocess"`
	GroupPairs map[string]map[string]string `json:"group_pairs"`
}

func (s *Server) modelInfo(w http.ResponseWriter, r *http.Request) {
	man := s.sc.Model().Manifest
	th := map[string]map[string]any{}
	pairs := map[string]map[string]string{}
	for _, g := range s.sc.Groups() {
		if t, ok := man.Thresholds[g]; ok {
			th[g] = map[string]any{"value": t.Value, "method": t.Method, "scale": t.Scale}
		}
		if p, ok := man.PairOf(g); ok {
			pairs[g] = map[string]string{"organ": p.Organ, "modality": p.Modality}
		}
	}
	cls := s.sc.Classes()
	writeJSON(w, http.StatusOK, ModelInfo{
		Model: man.Model, Path: s.info.ModelPath, SHA256: s.info.ModelSHA256, Version: s.info.Version, Precision: s.sc.Precision(),
		Groups: s.sc.Groups(), CanRoute: s.sc.CanRoute(), Organs: cls.Organs, Modalities: cls.Modalities,
		Thresholds: th, Options: s.sc.Options(), Notes: man.Notes, GroupPairs: pairs,
		Limits:     map[string]int64{"max_body_bytes": s.cfg.MaxBodyBytes, "max_pixels": s.cfg.MaxPixels, "max_slices": int64(s.cfg.MaxSlices)},
		Preprocess: map[string]int{"resize": man.Preprocess.Resize, "crop": man.Preprocess.Crop, "size": man.Preprocess.Size},
	})
}

// uploadTypes are the content types an upload may declare; the bytes are
// then identified by their content (browsers send DICOM and NIfTI as
// application/octet-stream or with no type at all).
var uploadTypes = map[string]bool{
	"image/png": true, "image/jpeg": true, "image/jpg": true, "application/dicom": true, "application/octet-stream": true,
	"application/gzip": true, "application/x-gzip": true, "application/x-nifti": true, "image/x-nifti": true,
}

// ScoreAnswer is the answer of POST /api/score.
type ScoreAnswer struct {
	Model  string `json:"model"`
	SHA256 string `json:"model_sha256"`
	// Precision is the arithmetic the scores came from, "fp32" or "bf16".
	Precision string        `json:"precision"`
	Name      string        `json:"name"`
	Results   []ScoredImage `json:"results"`
	Summary   *score.Result `json:"summary,omitempty"`
	ElapsedMS float64       `json:"elapsed_ms"`
	Notes     []string      `json:"notes,omitempty"`
}

// ScoredImage is one image's result with its pictures (base64 PNG).
type ScoredImage struct {
	score.Result
	ImagePNG   string `json:"image_png,omitempty"`
	HeatmapPNG string `json:"heatmap_png,omitempty"`
}

func (s *Server) score(w http.ResponseWriter, r *http.Request) {
	start := time.Now()
	q := r.URL.Query()
	req := score.Request{Group: q.Get("group")}
	if err := s.sc.CheckRequest(req); err != nil {
		setAccess(r, func(a *accessInfo) { a.problem = "bad group" })
		writeError(w, http.StatusBadRequest, err.Error())
		return
	}
	maps := q.Get("heatmap") != "0" && q.Get("heatmap") != "false"
	if r.ContentLength > s.cfg.MaxBodyBytes {
		writeError(w, http.StatusRequestEntityTooLarge, fmt.Sprintf("upload of %d bytes is larger than this server's limit of %d", r.ContentLength, s.cfg.MaxBodyBytes))
		return
	}
	name := q.Get("name")
	data, fileName, err := s.readUpload(w, r)
	if err != nil {
		setAccess(r, func(a *accessInfo) { a.problem = "unreadable upload" })
		var he *httpError
		if errors.As(err, &he) {
			writeError(w, he.code, he.msg)
		} else {
			writeError(w, http.StatusBadRequest, err.Error())
		}
		return
	}
	if name == "" {
		name = fileName
	}
	if name == "" {
		name = "upload"
	}
	ctx, cancel := context.WithTimeout(r.Context(), s.cfg.Timeout)
	defer cancel()
	j := &job{ctx: ctx, data: data, name: name, req: req, maps: maps, done: make(chan answer, 1)}
	select {
	case s.queue <- j:
	default:
		w.Header().Set("Retry-After", "1")
		writeError(w, http.StatusServiceUnavailable, fmt.Sprintf("all %d workers are busy and %d uploads are waiting: try again shortly", s.cfg.Workers, cap(s.queue)))
		return
	}
	select {
	case a := <-j.done:
		if ans, ok := a.body.(*ScoreAnswer); ok {
			ans.ElapsedMS = float64(time.Since(start).Microseconds()) / 1000
			var ds []string
			for _, res := range ans.Results {
				ds = append(ds, res.Decision)
			}
			s.metrics.scored(ds, time.Since(start))
			setAccess(r, func(a *accessInfo) { a.result = strings.Join(ds, ",") })
		} else if a.code >= 400 {
			setAccess(r, func(a *accessInfo) { a.problem = "image not scored" })
		}
		writeJSON(w, a.code, a.body)
	case <-ctx.Done():
		writeError(w, http.StatusServiceUnavailable, fmt.Sprintf("no answer within %s (the server is busy): try again later", s.cfg.Timeout))
	}
}

// readUpload returns the uploaded bytes: the body itself, or the first file
// of a multipart form (curl -F image=@file.png).
func (s *Server) readUpload(w http.ResponseWriter, r *http.Request) ([]byte, string, error) {
	ct := r.Header.Get("Content-Type")
	mt, params, err := mime.ParseMediaType(ct)
	if ct == "" {
		mt = "application/octet-stream"
	} else if err != nil {
		return nil, "", fail(http.StatusUnsupportedMediaType, "unreadable Content-Type %q", ct)
	}
	body := http.MaxBytesReader(w, r.Body, s.cfg.MaxBodyBytes)
	readAll := func(rd io.Reader) ([]byte, error) {
		data, err := io.ReadAll(rd)
		var mbe *http.MaxBytesError
		if errors.As(err, &mbe) {
			return nil, fail(http.StatusRequestEntityTooLarge, "upload larger than this server's limit of %d bytes", s.cfg.MaxBodyBytes)
		}
		if err != nil {
			return nil, fail(http.StatusBadRequest, "reading the upload: %v", err)
		}
		if len(data) == 0 {
			return nil, fail(http.StatusBadRequest, "empty upload")
		}
		return data, nil
	}
	if mt == "multipart/form-data" {
		mr := multipart.NewReader(body, params["boundary"])
		for {
			part, err := mr.NextPart()
			if err == io.EOF {
				return nil, "", fail(http.StatusBadRequest, "the form holds no file")
			}
			if err != nil {
				var mbe *http.MaxBytesError
				if errors.As(err, &mbe) {
					return nil, "", fail(http.StatusRequestEntityTooLarge, "upload larger than this server's limit of %d bytes", s.cfg.MaxBodyBytes)
				}
				return nil, "", fail(http.StatusBadRequest, "reading the form: %v", err)
			}
			if part.FileName() == "" {
				continue
			}
			data, err := readAll(part)
			return data, part.FileName(), err
		}
	}
	if !uploadTypes[mt] {
		return nil, "", fail(http.StatusUnsupportedMediaType, "Content-Type %s is not an image: send PNG, JPEG, DICOM or NIfTI bytes as "+
			"image/png, image/jpeg, application/dicom or application/octet-stream, or a multipart form", mt)
	}
	data, err := readAll(body)
	return data, "", err
}

func (s *Server) work() {
	defer s.wg.Done()
	for j := range s.queue {
		if j.ctx.Err() != nil {
			continue // the client gave up while waiting
		}
		s.busy.Add(1)
		if s.beforeHandle != nil {
			s.beforeHandle()
		}
		code, body := s.handle(j)
		s.busy.Add(-1)
		j.done <- answer{code, body}
	}
}

// handle decodes and scores one upload.
func (s *Server) handle(j *job) (int, any) {
	imgs, err := decode(j.data, j.name, s.cfg.HU, s.cfg.MaxPixels, s.cfg.MaxSlices)
	if err != nil {
		var he *httpError
		if errors.As(err, &he) {
			return he.code, errorBody{Error: he.msg, Status: he.code}
		}
		return http.StatusBadRequest, errorBody{Error: err.Error(), Status: http.StatusBadRequest}
	}
	inputs := make([]score.Input, len(imgs))
	volume := ""
	if len(imgs) > 1 {
		volume = j.name
	}
	for i, img := range imgs {
		inputs[i] = score.Input{Image: img, Path: j.name, Slice: i, Volume: volume}
	}
	req := j.req
	req.Maps = j.maps
	results, err := s.sc.Score(j.ctx, inputs, req)
	if err != nil {
		if j.ctx.Err() != nil {
			return http.StatusServiceUnavailable, errorBody{Error: "the request timed out while scoring", Status: http.StatusServiceUnavailable}
		}
		return http.StatusInternalServerError, errorBody{Error: err.Error(), Status: http.StatusInternalServerError}
	}
	ans := &ScoreAnswer{Model: s.sc.Model().Manifest.Model, SHA256: s.info.ModelSHA256, Precision: s.sc.Precision(), Name: j.name}
	var withPictures map[int]bool
	if len(results) > 1 {
		sum := score.Summarise(j.name, results)
		ans.Summary = &sum
		if len(results) > s.cfg.MaxPictures {
			withPictures = map[int]bool{sum.Slice: true}
			ans.Notes = append(ans.Notes, fmt.Sprintf("pictures only for slice %d, the most abnormal of %d", sum.Slice, len(results)))
		}
	}
	for i, res := range results {
		si := ScoredImage{Result: res}
		if res.Decision != score.Failed && (withPictures == nil || withPictures[i]) {
			if b, err := score.EncodePNG(func(w io.Writer) error { return s.sc.ViewPNG(w, inputs[i], res) }); err == nil {
				si.ImagePNG = base64.StdEncoding.EncodeToString(b)
			}
			if j.maps && res.Map != nil {
				b, err := score.EncodePNG(func(w io.Writer) error { return s.sc.HeatmapPNG(w, inputs[i], res) })
				if err != nil {
					return http.StatusInternalServerError, errorBody{Error: err.Error(), Status: http.StatusInternalServerError}
				}
				si.HeatmapPNG = base64.StdEncoding.EncodeToString(b)
			}
		}
		si.Map = nil
		ans.Results = append(ans.Results, si)
	}
	return http.StatusOK, ans
}

// String describes the limits for logs.
func (c Config) String() string {
	c = c.withDefaults()
	return strings.Join([]string{
		"max body " + strconv.FormatInt(c.MaxBodyBytes>>20, 10) + " MiB",
		"max " + strconv.FormatInt(c.MaxPixels>>20, 10) + " Mpixel",
		"max " + strconv.Itoa(c.MaxSlices) + " slices",
		strconv.Itoa(c.Workers) + " workers",
		"queue " + strconv.Itoa(c.QueueSize),
		"timeout " + c.Timeout.String(),
	}, ", ")
}
