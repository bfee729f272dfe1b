package httpauth

import (
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestReadSources(t *testing.T) {
	dir := t.TempDir()
	basic := filepath.Join(dir, "basic")
	os.WriteFile(basic, []byte("alice:pa:ss\n"), 0o600)
	c, err := Read(Sources{BasicFile: basic})
	if err != nil || c.User != "alice" || c.Password != "pa:ss" || c.Kind() != "basic" {
		t.Fatalf("%+v %v", c, err)
	}
	t.Setenv("MADDR_T_TOKEN", " tok123 ")
	c, err = Read(Sources{EnvPrefix: "MADDR_T"})
	if err != nil || c.Token != "tok123" || c.Kind() != "bearer" {
		t.Fatalf("%+v %v", c, err)
	}
	if _, err := Read(Sources{BasicFile: basic, EnvPrefix: "MADDR_T"}); err == nil {
		t.Fatal("Basic and token together accepted")
	}
	os.WriteFile(basic, []byte("no-colon-secret\n"), 0o600)
	if _, err := Read(Sources{BasicFile: basic}); err == nil || strings.Contains(err.Error(), "no-colon-secret") {
		t.Fatalf("bad file: %v", err)
	}
	if c, err := Read(Sources{}); err != nil || !c.Empty() {
		t.Fatalf("no source: %+v %v", c, err)
	}
}

func TestRequire(t *testing.T) {
	ok := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { w.WriteHeader(http.StatusTeapot) })
	for _, c := range []Credentials{{User: "u", Password: "p"}, {Token: "t0k"}} {
		h := Require(c, ok, "/healthz")
		cases := []struct {
			path string
			set  func(*http.Request)
			want int
		}{
			{"/", func(*http.Request) {}, http.StatusUnauthorized},
			{"/healthz", func(*http.Request) {}, http.StatusTeapot},
			{"/", c.Apply, http.StatusTeapot},
			{"/", func(r *http.Request) { r.SetBasicAuth("u", "wrong") }, http.StatusUnauthorized},
			{"/", func(r *http.Request) { r.Header.Set("Authorization", "Bearer wrong") }, http.StatusUnauthorized},
		}
		for _, tc := range cases {
			req := httptest.NewRequest(http.MethodGet, tc.path, nil)
			tc.set(req)
			rec := httptest.NewRecorder()
			h.ServeHTTP(rec, req)
			if rec.Code != tc.want {
				t.Errorf("%s auth, %s: %d, want %d", c.Kind(), tc.path, rec.Code, tc.want)
			}
		}
	}
}
