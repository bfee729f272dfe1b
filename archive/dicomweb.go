package archive

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"mime"
	"mime/multipart"
	"net/http"
	"net/textproto"
	"net/url"
	"strings"
)

// DICOMweb is a client of a DICOMweb service (QIDO-RS, WADO-RS, STOW-RS),
// checked against Orthanc's DICOMweb plugin 1.7.
type DICOMweb struct{ t *transport }

// NewDICOMweb returns a client of the DICOMweb service whose root is base
// (e.g. http://orthanc:8042/dicom-web).
func NewDICOMweb(base string, o Options) (*DICOMweb, error) {
	t, err := newTransport(base, o)
	if err != nil {
		return nil, err
	}
	return &DICOMweb{t: t}, nil
}

// Server returns the server's address for messages.
func (d *DICOMweb) Server() string { return d.t.base.Host }

// Root returns the service root URL.
func (d *DICOMweb) Root() string { return d.t.base.String() }

// Dataset is one result of a QIDO search in the DICOM JSON model: attributes
// by tag ("0020000D").
type Dataset map[string]Attribute

// Attribute is a DICOM JSON attribute.
type Attribute struct {
	VR    string            `json:"vr"`
	Value []json.RawMessage `json:"Value,omitempty"`
}

// Tags used by the clients.
const (
	TagSOPClassUID       = "00080016"
	TagSOPInstanceUID    = "00080018"
	TagModality          = "00080060"
	TagManufacturer      = "00080070"
	TagSeriesDescription = "0008103E"
	TagStudyInstanceUID  = "0020000D"
	TagSeriesInstanceUID = "0020000E"
	TagSeriesInstances   = "00201209" // NumberOfSeriesRelatedInstances
)

// String returns the first value of tag as text ("" when absent): strings as
// they are, numbers in decimal, person names by their Alphabetic component.
func (d Dataset) String(tag string) string {
	a, ok := d[tag]
	if !ok || len(a.Value) == 0 {
		return ""
	}
	var s string
	if json.Unmarshal(a.Value[0], &s) == nil {
		return s
	}
	var n json.Number
	if json.Unmarshal(a.Value[0], &n) == nil {
		return n.String()
	}
	var pn struct{ Alphabetic string }
	if json.Unmarshal(a.Value[0], &pn) == nil {
		return pn.Alphabetic
	}
	return ""
}

// Search runs a QIDO-RS query: path is "studies", "series", "instances" or
// a narrower form such as "studies/{uid}/series"; query holds matching keys
// and includefield, limit and offset.
func (d *DICOMweb) Search(ctx context.Context, path string, query url.Values) ([]Dataset, error) {
	b, _, err := d.t.do(ctx, request{method: http.MethodGet, path: path, query: query,
		header: http.Header{"Accept": {"application/dicom+json"}}})
	if err != nil {
		return nil, err
	}
	if len(bytes.TrimSpace(b)) == 0 {
		return nil, nil // 204 No Content: nothing matched
	}
	var out []Dataset
	if err := json.Unmarshal(b, &out); err != nil {
		return nil, fmt.Errorf("%s: QIDO answer to %s is not DICOM JSON: %w", d.Server(), path, err)
	}
	return out, nil
}

// SearchAll pages through a QIDO-RS query (limit per page) until a page
// comes back short.
func (d *DICOMweb) SearchAll(ctx context.Context, path string, query url.Values, limit int) ([]Dataset, error) {
	var all []Dataset
	for offset := 0; ; offset += limit {
		q := url.Values{}
		for k, v := range query {
			q[k] = v
		}
		q.Set("limit", fmt.Sprint(limit))
		q.Set("offset", fmt.Sprint(offset))
		page, err := d.Search(ctx, path, q)
		if err != nil {
			return nil, err
		}
		all = append(all, page...)
		if len(page) < limit {
			return all, nil
		}
	}
}

// Retrieve fetches the DICOM instances under a WADO-RS path
// ("studies/{s}", "studies/{s}/series/{se}" or ".../instances/{i}", or a full
// URL on the same server), in the server's stored transfer syntax when it
// can send it.
func (d *DICOMweb) Retrieve(ctx context.Context, path string) ([][]byte, error) {
	b, h, err := d.t.do(ctx, request{method: http.MethodGet, path: path,
		header: http.Header{"Accept": {`multipart/related; type="application/dicom"; transfer-syntax=*`}}})
	if err != nil {
		return nil, err
	}
	parts, err := ParseMultipartRelated(h.Get("Content-Type"), b)
	if err != nil {
		return nil, fmt.Errorf("%s: WADO answer to %s: %w", d.Server(), pathOnly("http://x/"+path), err)
	}
	return parts, nil
}

// ParseMultipartRelated splits a multipart/related body into its parts.
func ParseMultipartRelated(contentType string, body []byte) ([][]byte, error) {
	mt, params, err := mime.ParseMediaType(contentType)
	if err != nil {
		return nil, fmt.Errorf("content type %q: %w", contentType, err)
	}
	if mt != "multipart/related" {
		return nil, fmt.Errorf("content type %s, want multipart/related", mt)
	}
	boundary := params["boundary"]
	if boundary == "" {
		return nil, errors.New("multipart/related without boundary")
	}
	r := multipart.NewReader(bytes.NewReader(body), boundary)
	var parts [][]byte
	for {
		p, err := r.NextPart()
		if err == io.EOF {
			return parts, nil
		}
		if err != nil {
			return nil, fmt.Errorf("part %d: %w", len(parts)+1, err)
		}
		b, err := io.ReadAll(p)
		if err != nil {
			return nil, fmt.Errorf("part %d: %w", len(parts)+1, err)
		}
		parts = append(parts, b)
	}
}

// BuildMultipartRelated builds a multipart/related body of DICOM files and
// its Content-Type (with type="application/dicom", as STOW-RS requires).
func BuildMultipartRelated(files [][]byte) (body []byte, contentType string, err error) {
	var buf bytes.Buffer
	w := multipart.NewWriter(&buf)
	var rnd [16]byte
	if _, err := rand.Read(rnd[:]); err != nil {
		return nil, "", err
	}
	if err := w.SetBoundary("maddr-" + hex.EncodeToString(rnd[:])); err != nil {
		return nil, "", err
	}
	for _, f := range files {
		pw, err := w.CreatePart(textproto.MIMEHeader{"Content-Type": {"application/dicom"}})
		if err != nil {
			return nil, "", err
		}
		if _, err := pw.Write(f); err != nil {
			return nil, "", err
		}
	}
	if err := w.Close(); err != nil {
		return nil, "", err
	}
	ct := fmt.Sprintf(`multipart/related; type="application/dicom"; boundary=%s`, w.Boundary())
	return buf.Bytes(), ct, nil
}

// Store sends DICOM files with STOW-RS (POST {root}/studies). Any instance
// the server did not store makes it an error.
func (d *DICOMweb) Store(ctx context.Context, files [][]byte) error {
	if len(files) == 0 {
		return nil
	}
	body, ct, err := BuildMultipartRelated(files)
	if err != nil {
		return err
	}
	b, _, err := d.t.do(ctx, request{method: http.MethodPost, path: "studies",
		header: http.Header{"Content-Type": {ct}, "Accept": {"application/dicom+json"}}, body: body})
	if err != nil {
		return err
	}
	// 200 means all stored, but some servers answer 202 with a failure list.
	var resp Dataset
	if len(bytes.TrimSpace(b)) > 0 && json.Unmarshal(b, &resp) == nil {
		if failed, ok := resp["00081198"]; ok && len(failed.Value) > 0 {
			return fmt.Errorf("%s: STOW-RS refused %d of %d instance(s)", d.Server(), len(failed.Value), len(files))
		}
	}
	return nil
}

// SeriesRef names a series found by QIDO.
type SeriesRef struct{ Study, Series string }

// ParseURL splits a DICOMweb study or series URL
// (ROOT/studies/{s}[/series/{se}]) into the service root and the UIDs.
func ParseURL(raw string) (root string, ref SeriesRef, err error) {
	u, err := url.Parse(raw)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") {
		return "", ref, fmt.Errorf("DICOMweb URL %q: want http(s)://host/ROOT/studies/UID[/series/UID]", raw)
	}
	parts := strings.Split(strings.Trim(u.Path, "/"), "/")
	for i := len(parts) - 2; i >= 0; i-- {
		if parts[i] != "studies" {
			continue
		}
		ref.Study = parts[i+1]
		rest := parts[i+2:]
		switch {
		case len(rest) == 0:
		case len(rest) == 2 && rest[0] == "series":
			ref.Series = rest[1]
		default:
			return "", ref, fmt.Errorf("DICOMweb URL %s: only study and series URLs are accepted", u.Redacted())
		}
		u.Path = "/" + strings.Join(parts[:i], "/")
		u.RawQuery = ""
		return u.String(), ref, nil
	}
	return "", ref, fmt.Errorf("DICOMweb URL %s has no /studies/UID", u.Redacted())
}

// Path returns the WADO-RS path of the reference.
func (r SeriesRef) Path() string {
	if r.Series == "" {
		return "studies/" + url.PathEscape(r.Study)
	}
	return "studies/" + url.PathEscape(r.Study) + "/series/" + url.PathEscape(r.Series)
}
