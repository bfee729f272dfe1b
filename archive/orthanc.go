package archive

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"net/url"
	"strconv"
)

// Orthanc is a client of an Orthanc server's REST API (checked against
// Orthanc 1.10.1).
type Orthanc struct{ t *transport }

// NewOrthanc returns a client of the Orthanc server at base (e.g.
// http://orthanc:8042).
func NewOrthanc(base string, o Options) (*Orthanc, error) {
	t, err := newTransport(base, o)
	if err != nil {
		return nil, err
	}
	return &Orthanc{t: t}, nil
}

// Server returns the server's address for messages.
func (o *Orthanc) Server() string { return o.t.base.Host }

// Change is one entry of Orthanc's change log.
type Change struct {
	Seq          int64
	ChangeType   string
	ResourceType string
	ID           string
	Path         string
}

// Change types the watcher acts on.
const (
	NewInstance  = "NewInstance"
	StableSeries = "StableSeries"
)

// ChangePage is one answer of /changes.
type ChangePage struct {
	Changes []Change
	// Done: no change after Last yet.
	Done bool
	// Last is the sequence number to ask from next.
	Last int64
}

// Changes returns up to limit changes after sequence number since.
func (o *Orthanc) Changes(ctx context.Context, since int64, limit int) (ChangePage, error) {
	var p ChangePage
	q := url.Values{"since": {strconv.FormatInt(since, 10)}, "limit": {strconv.Itoa(limit)}}
	err := o.getJSON(ctx, "/changes", q, &p)
	return p, err
}

// LastChange returns the newest sequence number.
func (o *Orthanc) LastChange(ctx context.Context) (int64, error) {
	var p ChangePage
	// "last" is a flag without value in Orthanc's API.
	err := o.getJSON(ctx, "/changes?last", nil, &p)
	return p.Last, err
}

// Instance is what /instances/{id} says about an instance.
type Instance struct {
	ID            string
	ParentSeries  string
	IndexInSeries int
	MainDicomTags map[string]string
}

// Instance describes an instance.
func (o *Orthanc) Instance(ctx context.Context, id string) (Instance, error) {
	var in Instance
	err := o.getJSON(ctx, "/instances/"+url.PathEscape(id), nil, &in)
	return in, err
}

// Series is what /series/{id} says about a series.
type Series struct {
	ID            string
	ParentStudy   string
	Instances     []string
	IsStable      bool
	MainDicomTags map[string]string
}

// Series describes a series.
func (o *Orthanc) Series(ctx context.Context, id string) (Series, error) {
	var s Series
	err := o.getJSON(ctx, "/series/"+url.PathEscape(id), nil, &s)
	return s, err
}

// InstanceFile downloads an instance's DICOM file as stored.
func (o *Orthanc) InstanceFile(ctx context.Context, id string) ([]byte, error) {
	b, _, err := o.t.do(ctx, request{method: http.MethodGet, path: "/instances/" + url.PathEscape(id) + "/file"})
	return b, err
}

// SimplifiedTags returns an instance's top-level string attributes by
// keyword (sequences and other values are left out).
func (o *Orthanc) SimplifiedTags(ctx context.Context, id string) (map[string]string, error) {
	var raw map[string]any
	if err := o.getJSON(ctx, "/instances/"+url.PathEscape(id)+"/simplified-tags", nil, &raw); err != nil {
		return nil, err
	}
	tags := make(map[string]string, len(raw))
	for k, v := range raw {
		if s, ok := v.(string); ok {
			tags[k] = s
		}
	}
	return tags, nil
}

// Stored is Orthanc's answer to an upload.
type Stored struct {
	ID           string
	ParentSeries string
	ParentStudy  string
	// Status is "Success" or "AlreadyStored" (the SOP Instance UID was
	// there already).
	Status string
}

// Store uploads one DICOM file (POST /instances).
func (o *Orthanc) Store(ctx context.Context, dicom []byte) (Stored, error) {
	var s Stored
	b, _, err := o.t.do(ctx, request{method: http.MethodPost, path: "/instances",
		header: http.Header{"Content-Type": {"application/dicom"}}, body: dicom})
	if err != nil {
		return s, err
	}
	if err := json.Unmarshal(b, &s); err != nil {
		return s, fmt.Errorf("%s: answer to POST /instances is not the expected JSON: %w", o.Server(), err)
	}
	return s, nil
}

// Metadata reads an instance's metadata item; a missing item gives ErrNotFound.
func (o *Orthanc) Metadata(ctx context.Context, id, name string) ([]byte, error) {
	b, _, err := o.t.do(ctx, request{method: http.MethodGet,
		path: "/instances/" + url.PathEscape(id) + "/metadata/" + url.PathEscape(name)})
	return b, err
}

// SetMetadata sets an instance's metadata item (a name declared in the
// server's "UserMetadata").
func (o *Orthanc) SetMetadata(ctx context.Context, id, name string, value []byte) error {
	_, _, err := o.t.do(ctx, request{method: http.MethodPut,
		path:   "/instances/" + url.PathEscape(id) + "/metadata/" + url.PathEscape(name),
		header: http.Header{"Content-Type": {"text/plain"}}, body: value})
	return err
}

// PutAttachment stores an attachment on an instance (a name declared in the
// server's "UserContentType").
func (o *Orthanc) PutAttachment(ctx context.Context, id, name string, body []byte, contentType string) error {
	_, _, err := o.t.do(ctx, request{method: http.MethodPut,
		path:   "/instances/" + url.PathEscape(id) + "/attachments/" + url.PathEscape(name),
		header: http.Header{"Content-Type": {contentType}}, body: body})
	return err
}

// Attachment reads an attachment of an instance.
func (o *Orthanc) Attachment(ctx context.Context, id, name string) ([]byte, error) {
	b, _, err := o.t.do(ctx, request{method: http.MethodGet,
		path: "/instances/" + url.PathEscape(id) + "/attachments/" + url.PathEscape(name) + "/data"})
	return b, err
}

// DeleteSeries removes a series (used to undo results).
func (o *Orthanc) DeleteSeries(ctx context.Context, id string) error {
	_, _, err := o.t.do(ctx, request{method: http.MethodDelete, path: "/series/" + url.PathEscape(id)})
	return err
}

func (o *Orthanc) getJSON(ctx context.Context, path string, q url.Values, v any) error {
	b, _, err := o.t.do(ctx, request{method: http.MethodGet, path: path, query: q,
		header: http.Header{"Accept": {"application/json"}}})
	if err != nil {
		return err
	}
	if err := json.Unmarshal(b, v); err != nil {
		return fmt.Errorf("%s: answer to GET %s is not the expected JSON: %w", o.Server(), pathOnly("http://x"+path), err)
	}
	return nil
}
