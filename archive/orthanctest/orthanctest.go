// Package orthanctest runs Debian's Orthanc (/usr/sbin/Orthanc) for tests:
// its own JSON config, private loopback ports picked free at start, a
// temporary storage folder, the DICOMweb plugin and HTTP Basic
// authentication on. Tests skip with a clear message when Orthanc is not
// installed.
package orthanctest

import (
	"encoding/json"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"
)

// Paths of the Debian packages orthanc and orthanc-dicomweb.
const (
	Binary = "/usr/sbin/Orthanc"
	Plugin = "/usr/share/orthanc/plugins/libOrthancDicomWeb.so"
)

// Credentials of the test server's one user.
const (
	User     = "maddr"
	Password = "test-secret"
)

// MetadataName and AttachmentName are the user metadata and attachment
// types the config declares for results.
const (
	MetadataName   = "MaddrResult"
	AttachmentName = "maddr-result"
)

// Server is a running Orthanc.
type Server struct {
	// URL is the REST root, DICOMweb the DICOMweb root.
	URL, DICOMweb string
	Dir           string
	cmd           *exec.Cmd
	config        string
	logFile       *os.File
	t             testing.TB
}

// Config returns the JSON config of a test server (also the config docs
// recommend, with other ports and folders).
func Config(dir string, httpPort, dicomPort int) map[string]any {
	return map[string]any{
		"Name":                  "maddr-test",
		"StorageDirectory":      filepath.Join(dir, "db"),
		"IndexDirectory":        filepath.Join(dir, "db"),
		"HttpPort":              httpPort,
		"DicomPort":             dicomPort,
		"RemoteAccessAllowed":   false,
		"AuthenticationEnabled": true,
		"RegisteredUsers":       map[string]string{User: Password},
		"UserMetadata":          map[string]int{MetadataName: 1024},
		"UserContentType":       map[string]any{AttachmentName: []any{1025, "application/json"}},
		"StableAge":             2,
		"Plugins":               []string{Plugin},
		"DicomWeb":              map[string]any{"Enable": true, "Root": "/dicom-web/"},
	}
}

// Start runs Orthanc until the test ends, or skips the test when Orthanc or
// its DICOMweb plugin is not installed.
func Start(t testing.TB) *Server {
	t.Helper()
	for _, p := range []string{Binary, Plugin} {
		if _, err := os.Stat(p); err != nil {
			t.Skipf("%s is not installed (apt-get install -y orthanc orthanc-dicomweb): skipping the real-archive test", p)
		}
	}
	dir := t.TempDir()
	httpPort, dicomPort := FreePort(t), FreePort(t)
	cfg, err := json.MarshalIndent(Config(dir, httpPort, dicomPort), "", "  ")
	if err != nil {
		t.Fatal(err)
	}
	s := &Server{URL: fmt.Sprintf("http://127.0.0.1:%d", httpPort), Dir: dir, t: t,
		config: filepath.Join(dir, "orthanc.json")}
	s.DICOMweb = s.URL + "/dicom-web"
	if err := os.WriteFile(s.config, cfg, 0o600); err != nil {
		t.Fatal(err)
	}
	s.Restart()
	t.Cleanup(s.Kill)
	return s
}

// FreePort returns a loopback TCP port that was free a moment ago.
func FreePort(t testing.TB) int {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	return ln.Addr().(*net.TCPAddr).Port
}

// Restart starts Orthanc again (after Kill) on the same ports and storage
// and waits until it answers.
func (s *Server) Restart() {
	s.t.Helper()
	logf, err := os.OpenFile(filepath.Join(s.Dir, "orthanc.log"), os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		s.t.Fatal(err)
	}
	s.logFile = logf
	s.cmd = exec.Command(Binary, s.config)
	s.cmd.Stdout, s.cmd.Stderr = logf, logf
	s.cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	if err := s.cmd.Start(); err != nil {
		s.t.Fatalf("starting %s: %v", Binary, err)
	}
	deadline := time.Now().Add(60 * time.Second)
	for time.Now().Before(deadline) {
		req, _ := http.NewRequest(http.MethodGet, s.URL+"/system", nil)
		req.SetBasicAuth(User, Password)
		resp, err := http.DefaultClient.Do(req)
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return
			}
		}
		time.Sleep(100 * time.Millisecond)
	}
	s.Kill()
	s.t.Fatalf("Orthanc did not answer within 60 s; its log:\n%s", s.Log())
}

// Kill stops Orthanc at once (SIGKILL), as a crash would.
func (s *Server) Kill() {
	if s.cmd == nil || s.cmd.Process == nil {
		return
	}
	s.cmd.Process.Kill()
	s.cmd.Wait()
	s.cmd = nil
	s.logFile.Close()
}

// Log returns Orthanc's output so far.
func (s *Server) Log() string {
	b, _ := os.ReadFile(filepath.Join(s.Dir, "orthanc.log"))
	return string(b)
}

// BasicFile writes the test credentials to a file for httpauth.Sources.
func (s *Server) BasicFile() string {
	p := filepath.Join(s.Dir, "orthanc-credentials")
	if err := os.WriteFile(p, []byte(User+":"+Password+"\n"), 0o600); err != nil {
		s.t.Fatal(err)
	}
	return p
}

// Upload posts a DICOM file with the REST API and returns Orthanc's
// instance id.
func (s *Server) Upload(data []byte) string {
	s.t.Helper()
	req, _ := http.NewRequest(http.MethodPost, s.URL+"/instances", strings.NewReader(string(data)))
	req.SetBasicAuth(User, Password)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		s.t.Fatal(err)
	}
	defer resp.Body.Close()
	var st struct{ ID, Status string }
	if err := json.NewDecoder(resp.Body).Decode(&st); err != nil || resp.StatusCode != http.StatusOK {
		s.t.Fatalf("upload: status %d, %v", resp.StatusCode, err)
	}
	return st.ID
}
