package server

import (
	"bytes"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/binary"
	"encoding/json"
	"encoding/pem"
	"io"
	"log/slog"
	"math/big"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/maddr-project/maddr/dataset"
	"github.com/maddr-project/maddr/dicomresult"
	"github.com/maddr-project/maddr/httpauth"
)

// patientName is a distinctive PatientName that must appear in no log line
// and no error answer.
const patientName = "Quexbrandt^Ottoline"

type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// selfSigned writes a certificate for 127.0.0.1 and its key, and returns a
// pool trusting it.
func selfSigned(t *testing.T, dir string) (cert, key string, pool *x509.CertPool) {
	t.Helper()
	k, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "maddr test"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
		IPAddresses: []net.IP{net.ParseIP("127.0.0.1")}, KeyUsage: x509.KeyUsageDigitalSignature,
		ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &k.PublicKey, k)
	if err != nil {
		t.Fatal(err)
	}
	kb, err := x509.MarshalECPrivateKey(k)
	if err != nil {
		t.Fatal(err)
	}
	cert, key = filepath.Join(dir, "cert.pem"), filepath.Join(dir, "key.pem")
	os.WriteFile(cert, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), 0o600)
	os.WriteFile(key, pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: kb}), 0o600)
	c, _ := x509.ParseCertificate(der)
	pool = x509.NewCertPool()
	pool.AddCert(c)
	return cert, key, pool
}

// TestAuthTLSAndAccessLog serves over TLS with Basic auth and checks the
// access log: one JSON line per request with id, sizes, latency and result,
// and the patient name of the DICOM uploads in no line and no answer, also
// when the upload cannot be read.
func TestAuthTLSAndAccessLog(t *testing.T) {
	sc, m := scorer(t)
	var img dataset.Sample
	for _, s := range m.Samples {
		if s.Group == "chest-xray" && s.Split == dataset.Test {
			img = s
			break
		}
	}
	good, err := dicomresult.ImageToDICOM(*img.Image, dicomresult.PatientStudy{PatientName: patientName, PatientID: "Quexbrandt-1"})
	if err != nil {
		t.Fatal(err)
	}
	// Doubling Rows makes the pixel data too short: a failing upload.
	bad := append([]byte(nil), good...)
	rows := []byte{0x28, 0x00, 0x10, 0x00, 'U', 'S', 2, 0}
	i := bytes.Index(bad, rows)
	if i < 0 {
		t.Fatal("no Rows element")
	}
	binary.LittleEndian.PutUint16(bad[i+8:], 2*binary.LittleEndian.Uint16(bad[i+8:]))

	dir := t.TempDir()
	cert, key, pool := selfSigned(t, dir)
	var logs syncBuffer
	creds := httpauth.Credentials{User: "reader", Password: "s3cret"}
	srv := New(sc, Info{ModelPath: m.Path}, Config{Auth: creds, TLSCert: cert, TLSKey: key,
		Log: slog.New(slog.NewJSONHandler(&logs, nil))})
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- Serve(ctx, ln, srv) }()
	defer func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("serve: %v", err)
		}
	}()
	base := "https://" + ln.Addr().String()
	client := &http.Client{Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: pool}}}
	do := func(path string, body []byte, auth bool) (int, string) {
		t.Helper()
		method := http.MethodGet
		if body != nil {
			method = http.MethodPost
		}
		req, _ := http.NewRequest(method, base+path, bytes.NewReader(body))
		req.Header.Set("Content-Type", "application/dicom")
		if auth {
			creds.Apply(req)
		}
		resp, err := client.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		if resp.Header.Get("X-Request-Id") == "" {
			t.Errorf("%s: no X-Request-Id", path)
		}
		return resp.StatusCode, string(b)
	}
	if code, _ := do("/api/model", nil, false); code != http.StatusUnauthorized {
		t.Fatalf("no credentials: %d", code)
	}
	if code, _ := do("/healthz", nil, false); code != http.StatusOK {
		t.Fatalf("healthz without credentials: %d", code)
	}
	code, body := do("/api/score", good, true)
	if code != http.StatusOK {
		t.Fatalf("score: %d %s", code, body)
	}
	code, body = do("/api/score", bad, true)
	if code != http.StatusBadRequest || !strings.Contains(body, "error") {
		t.Fatalf("bad DICOM: %d %s", code, body)
	}
	for _, part := range strings.Split(patientName, "^") {
		if strings.Contains(body, part) {
			t.Fatalf("error answer names the patient: %s", body)
		}
	}

	cancel()
	<-done
	done <- nil
	lines := strings.Split(strings.TrimSpace(logs.String()), "\n")
	if len(lines) != 4 {
		t.Fatalf("%d access log lines, want 4:\n%s", len(lines), logs.String())
	}
	var scored bool
	for _, l := range lines {
		var e struct {
			Msg, ID, Path, Result, Problem string
			Status                         int
			BytesIn                        int64    `json:"bytes_in"`
			LatencyMS                      *float64 `json:"latency_ms"`
		}
		if err := json.Unmarshal([]byte(l), &e); err != nil {
			t.Fatalf("log line is not JSON: %s", l)
		}
		if e.Msg != "request" || len(e.ID) != 16 || e.Status == 0 || e.LatencyMS == nil {
			t.Fatalf("log line lacks fields: %s", l)
		}
		if e.Path == "/api/score" && e.Status == 200 {
			scored = e.Result != "" && e.BytesIn == int64(len(good))
		}
		if e.Path == "/api/score" && e.Status == 400 && e.Problem == "" {
			t.Fatalf("failed request without a problem: %s", l)
		}
		for _, part := range strings.Split(patientName, "^") {
			if strings.Contains(l, part) {
				t.Fatalf("log line names the patient: %s", l)
			}
		}
	}
	if !scored {
		t.Fatalf("no scored request with its result and size in the log:\n%s", logs.String())
	}
}
