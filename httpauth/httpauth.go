// Package httpauth reads HTTP credentials (Basic or bearer token) from a file
// or an environment variable, never from a command line where every user of
// the machine can read them in the process list, and applies or checks them.
// The archive client sends them; 'maddr serve' requires them.
package httpauth

import (
	"crypto/sha256"
	"crypto/subtle"
	"errors"
	"fmt"
	"net/http"
	"os"
	"strings"
)

// Credentials are either a user and password (HTTP Basic) or a bearer token.
// The zero value means no authentication.
type Credentials struct {
	User, Password string
	Token          string
}

// Empty tells whether no credentials are set.
func (c Credentials) Empty() bool { return c.User == "" && c.Token == "" }

// Kind names the scheme for messages ("basic", "bearer" or "none"); it never
// includes a secret.
func (c Credentials) Kind() string {
	switch {
	case c.Token != "":
		return "bearer"
	case c.User != "":
		return "basic"
	}
	return "none"
}

// Sources say where credentials may come from. Files win over environment
// variables; giving both a Basic and a token source is an error.
type Sources struct {
	// BasicFile holds "user:password" (one line).
	BasicFile string
	// TokenFile holds a bearer token (one line).
	TokenFile string
	// EnvPrefix names the variables PREFIX_BASIC ("user:password") and
	// PREFIX_TOKEN; "" looks at no variable.
	EnvPrefix string
}

// Read loads credentials from the sources. No source set gives empty
// credentials and no error.
func Read(s Sources) (Credentials, error) {
	basic, token, err := s.values()
	if err != nil {
		return Credentials{}, err
	}
	switch {
	case basic != "" && token != "":
		return Credentials{}, errors.New("both a Basic credential and a bearer token are configured: keep one")
	case token != "":
		return Credentials{Token: token}, nil
	case basic != "":
		user, password, ok := strings.Cut(basic, ":")
		if !ok || user == "" {
			return Credentials{}, errors.New("the Basic credential must read user:password")
		}
		return Credentials{User: user, Password: password}, nil
	}
	return Credentials{}, nil
}

func (s Sources) values() (basic, token string, err error) {
	if s.BasicFile != "" {
		if basic, err = readSecret(s.BasicFile); err != nil {
			return "", "", err
		}
	} else if s.EnvPrefix != "" {
		basic = strings.TrimSpace(os.Getenv(s.EnvPrefix + "_BASIC"))
	}
	if s.TokenFile != "" {
		if token, err = readSecret(s.TokenFile); err != nil {
			return "", "", err
		}
	} else if s.EnvPrefix != "" {
		token = strings.TrimSpace(os.Getenv(s.EnvPrefix + "_TOKEN"))
	}
	return basic, token, nil
}

// readSecret reads the first line of a credentials file; the error names the
// file, never its content.
func readSecret(path string) (string, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return "", fmt.Errorf("credentials file: %w", err)
	}
	line, _, _ := strings.Cut(string(b), "\n")
	line = strings.TrimSpace(line)
	if line == "" {
		return "", fmt.Errorf("credentials file %s is empty", path)
	}
	return line, nil
}

// Apply adds the credentials to an outgoing request.
func (c Credentials) Apply(r *http.Request) {
	switch {
	case c.Token != "":
		r.Header.Set("Authorization", "Bearer "+c.Token)
	case c.User != "":
		r.SetBasicAuth(c.User, c.Password)
	}
}

// Allows tells whether an incoming request carries these credentials. The
// comparison takes the same time whatever part differs. Empty credentials
// allow every request.
func (c Credentials) Allows(r *http.Request) bool {
	switch {
	case c.Token != "":
		h := r.Header.Get("Authorization")
		scheme, tok, ok := strings.Cut(h, " ")
		return ok && strings.EqualFold(scheme, "Bearer") && equal(strings.TrimSpace(tok), c.Token)
	case c.User != "":
		u, p, ok := r.BasicAuth()
		// Both compared so that a wrong user takes as long as a wrong password.
		userOK, passOK := equal(u, c.User), equal(p, c.Password)
		return ok && userOK && passOK
	}
	return true
}

// equal compares digests so the time does not depend on the lengths either.
func equal(a, b string) bool {
	ha, hb := sha256.Sum256([]byte(a)), sha256.Sum256([]byte(b))
	return subtle.ConstantTimeCompare(ha[:], hb[:]) == 1
}

// Require wraps h so that requests without the credentials get 401 with a
// challenge for the scheme in use. Paths in open (e.g. "/healthz" for a
// load balancer's probe) pass without.
func Require(c Credentials, h http.Handler, open ...string) http.Handler {
	if c.Empty() {
		return h
	}
	challenge := `Basic realm="maddr", charset="UTF-8"`
	if c.Token != "" {
		challenge = `Bearer realm="maddr"`
	}
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		for _, p := range open {
			if r.URL.Path == p {
				h.ServeHTTP(w, r)
				return
			}
		}
		if !c.Allows(r) {
			w.Header().Set("WWW-Authenticate", challenge)
			http.Error(w, "authentication required", http.StatusUnauthorized)
			return
		}
		h.ServeHTTP(w, r)
	})
}
