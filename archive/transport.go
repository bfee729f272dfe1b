// Package archive talks to image archives over HTTP: Orthanc's REST API and
// DICOMweb (QIDO-RS find, WADO-RS retrieve, STOW-RS store). Both clients
// share one transport that authenticates (HTTP Basic or bearer token),
// trusts a custom CA when told to, and retries connection errors and 5xx
// answers with exponential backoff before giving up with an error that
// wraps ErrUnavailable.
//
// Errors and log lines name the server, the method, the path and the status,
// never a response body or a DICOM attribute: paths hold only Orthanc ids and
// DICOM UIDs, so nothing patient-identifying leaves through them.
package archive

import (
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/url"
	"os"
	"strings"
	"time"

	"github.com/maddr-project/maddr/httpauth"
)

// ErrUnavailable is wrapped by errors of requests that still failed (no
// connection, or a 5xx answer) after every retry.
var ErrUnavailable = errors.New("archive unavailable")

// ErrNotFound is wrapped by errors of 404 answers.
var ErrNotFound = errors.New("not found in the archive")

// Options configure a client.
type Options struct {
	Credentials httpauth.Credentials
	// CAFile is a PEM file of certificates to trust for https:// servers (in
	// addition to the system's).
	CAFile string
	// Attempts is how many times a request is tried (default 5).
	Attempts int
	// Backoff is the wait before the first retry; it doubles each time
	// (default 500 ms, so 5 attempts span about 7.5 s).
	Backoff time.Duration
	// Timeout bounds one attempt (default 2 minutes: a CT series can be big).
	Timeout time.Duration
	// Log receives one line per retry (nil: slog.Default()).
	Log *slog.Logger
}

// Defaults of Options.
const (
	DefaultAttempts = 5
	DefaultBackoff  = 500 * time.Millisecond
	DefaultTimeout  = 2 * time.Minute
)

type transport struct {
	base     *url.URL
	client   *http.Client
	creds    httpauth.Credentials
	attempts int
	backoff  time.Duration
	log      *slog.Logger
}

func newTransport(base string, o Options) (*transport, error) {
	u, err := url.Parse(base)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return nil, fmt.Errorf("archive URL %q: want http(s)://host[:port][/path]", base)
	}
	if u.User != nil {
		return nil, fmt.Errorf("archive URL %s: credentials in the URL are not accepted: use a credentials file or environment variable", u.Redacted())
	}
	u.Path = strings.TrimSuffix(u.Path, "/")
	tr := http.DefaultTransport.(*http.Transport).Clone()
	if o.CAFile != "" {
		pem, err := os.ReadFile(o.CAFile)
		if err != nil {
			return nil, fmt.Errorf("CA file: %w", err)
		}
		pool, err := x509.SystemCertPool()
		if err != nil || pool == nil {
			pool = x509.NewCertPool()
		}
		if !pool.AppendCertsFromPEM(pem) {
			return nil, fmt.Errorf("CA file %s holds no PEM certificate", o.CAFile)
		}
		tr.TLSClientConfig = &tls.Config{RootCAs: pool, MinVersion: tls.VersionTLS12}
	}
	if !o.Credentials.Empty() && u.Scheme == "http" && !isLoopbackHost(u.Hostname()) {
		// Allowed (inside a cluster network this is common) but worth a word.
		logger(o).Warn("archive credentials sent without TLS", "server", u.Host)
	}
	t := &transport{base: u, client: &http.Client{Transport: tr, Timeout: o.Timeout}, creds: o.Credentials,
		attempts: o.Attempts, backoff: o.Backoff, log: logger(o)}
	if t.attempts <= 0 {
		t.attempts = DefaultAttempts
	}
	if t.backoff <= 0 {
		t.backoff = DefaultBackoff
	}
	if t.client.Timeout <= 0 {
		t.client.Timeout = DefaultTimeout
	}
	return t, nil
}

func logger(o Options) *slog.Logger {
	if o.Log != nil {
		return o.Log
	}
	return slog.Default()
}

func isLoopbackHost(h string) bool {
	return h == "localhost" || strings.HasPrefix(h, "127.") || h == "::1"
}

// request is one HTTP exchange; the body is kept as bytes so that a retry
// can send it again.
type request struct {
	method, path string
	query        url.Values
	header       http.Header
	body         []byte
}

// URL resolves a path (or an absolute URL on the same server) against the base.
func (t *transport) url(path string, q url.Values) (string, error) {
	if strings.HasPrefix(path, "http://") || strings.HasPrefix(path, "https://") {
		u, err := url.Parse(path)
		if err != nil {
			return "", fmt.Errorf("URL %q: %w", path, err)
		}
		if u.Host != t.base.Host || u.Scheme != t.base.Scheme {
			// Credentials are for the configured server only.
			return "", fmt.Errorf("URL on %s is not on the configured server %s", u.Host, t.base.Host)
		}
		if q != nil {
			u.RawQuery = q.Encode()
		}
		return u.String(), nil
	}
	u := *t.base
	path, raw, _ := strings.Cut(path, "?")
	u.Path = t.base.Path + "/" + strings.TrimPrefix(path, "/")
	u.RawQuery = raw
	if q != nil {
		u.RawQuery = q.Encode()
	}
	return u.String(), nil
}

// do sends r, retrying connection errors and 5xx answers, and returns the
// body of a 2xx answer. Other answers become errors naming the status.
func (t *transport) do(ctx context.Context, r request) (body []byte, header http.Header, err error) {
	target, err := t.url(r.path, r.query)
	if err != nil {
		return nil, nil, err
	}
	what := fmt.Sprintf("%s %s%s", r.method, t.base.Host, pathOnly(target))
	wait := t.backoff
	var last error
	for attempt := 1; attempt <= t.attempts; attempt++ {
		if attempt > 1 {
			t.log.Warn("archive request failed, retrying", "request", what, "attempt", attempt-1,
				"of", t.attempts, "wait", wait.String(), "error", last.Error())
			select {
			case <-ctx.Done():
				return nil, nil, fmt.Errorf("%s: %w (last error: %v)", what, ctx.Err(), last)
			case <-time.After(wait):
			}
			wait *= 2
		}
		body, header, status, err := t.once(ctx, r, target)
		switch {
		case err != nil:
			if ctx.Err() != nil {
				return nil, nil, fmt.Errorf("%s: %w", what, ctx.Err())
			}
			last = err
			continue
		case status >= 500:
			last = fmt.Errorf("server answered %d %s", status, http.StatusText(status))
			continue
		case status == http.StatusNotFound:
			return nil, nil, fmt.Errorf("%s: %w (404)", what, ErrNotFound)
		case status == http.StatusUnauthorized || status == http.StatusForbidden:
			return nil, nil, fmt.Errorf("%s: %d %s: check the archive credentials (%s auth configured)",
				what, status, http.StatusText(status), t.creds.Kind())
		case status < 200 || status > 299:
			return nil, nil, fmt.Errorf("%s: server answered %d %s", what, status, http.StatusText(status))
		}
		return body, header, nil
	}
	return nil, nil, fmt.Errorf("%s: %w after %d attempts: %v", what, ErrUnavailable, t.attempts, last)
}

// pathOnly strips scheme, host and query: queries may carry search values
// (a QIDO PatientName search), which must not reach logs.
func pathOnly(target string) string {
	u, err := url.Parse(target)
	if err != nil {
		return ""
	}
	return u.Path
}

func (t *transport) once(ctx context.Context, r request, target string) ([]byte, http.Header, int, error) {
	var body io.Reader
	if r.body != nil {
		body = bytes.NewReader(r.body)
	}
	req, err := http.NewRequestWithContext(ctx, r.method, target, body)
	if err != nil {
		return nil, nil, 0, err
	}
	for k, v := range r.header {
		req.Header[k] = v
	}
	t.creds.Apply(req)
	resp, err := t.client.Do(req)
	if err != nil {
		return nil, nil, 0, scrubURL(err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		return nil, nil, 0, fmt.Errorf("reading the answer: %w", scrubURL(err))
	}
	return b, resp.Header, resp.StatusCode, nil
}

// scrubURL drops the URL (and so any query) from a net/http error, keeping
// the operation and cause.
func scrubURL(err error) error {
	var ue *url.Error
	if errors.As(err, &ue) {
		return ue.Err
	}
	return err
}
