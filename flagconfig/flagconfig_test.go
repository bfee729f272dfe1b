package flagconfig

import (
	"flag"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// repeated is a repeatable flag, like maddr's --data.
type repeated []string

func (r *repeated) String() string     { return strings.Join(*r, " ") }
func (r *repeated) Set(v string) error { *r = append(*r, v); return nil }
func (r *repeated) Values() []string   { return *r }

// settings is a small command with one flag of each kind.
type settings struct {
	fs         *flag.FlagSet
	hook       *Hook
	iterations *int
	seed       *uint64
	augment    *bool
	lambda     *float64
	windows    *string
	timeout    *time.Duration
	data       *repeated
}

func newSettings() *settings {
	fs := flag.NewFlagSet("maddr test", flag.ContinueOnError)
	fs.SetOutput(io.Discard)
	s := &settings{fs: fs, data: &repeated{}}
	s.iterations = fs.Int("iterations", 0, "optimizer steps")
	s.seed = fs.Uint64("seed", 8499, "random seed")
	s.augment = fs.Bool("augment", false, "augment")
	s.lambda = fs.Float64("lambda-center", 1, "weight")
	s.windows = fs.String("hu-windows", "", "windows")
	s.timeout = fs.Duration("timeout", 30*time.Second, "deadline")
	fs.Var(s.data, "data", "source (repeatable)")
	s.hook = Register(fs)
	return s
}

// parse parses args the way a command does: flags, then the file.
func (s *settings) parse(t *testing.T, args ...string) error {
	t.Helper()
	if err := s.fs.Parse(args); err != nil {
		t.Fatal(err)
	}
	return s.hook.Apply()
}

func writeFile(t *testing.T, text string) string {
	t.Helper()
	path := filepath.Join(t.TempDir(), "run.yaml")
	if err := os.WriteFile(path, []byte(text), 0o644); err != nil {
		t.Fatal(err)
	}
	return path
}

func TestConfigFileValuesAreApplied(t *testing.T) {
	path := writeFile(t, `# a run
iterations: 600
seed: 7
augment: true
lambda-center: 0.1
hu-windows: liver=60:160
timeout: 2m
data:
  - phantom,scale=0.1
  - folder:/data/x,organ=liver,modality=ct
`)
	s := newSettings()
	if err := s.parse(t, "--config", path); err != nil {
		t.Fatal(err)
	}
	if *s.iterations != 600 || *s.seed != 7 || !*s.augment || *s.lambda != 0.1 || *s.windows != "liver=60:160" || *s.timeout != 2*time.Minute {
		t.Errorf("got iterations %d seed %d augment %v lambda %v windows %q timeout %v",
			*s.iterations, *s.seed, *s.augment, *s.lambda, *s.windows, *s.timeout)
	}
	if got := strings.Join(*s.data, " | "); got != "phantom,scale=0.1 | folder:/data/x,organ=liver,modality=ct" {
		t.Errorf("data %q", got)
	}
}

func TestConfigCommandLineWins(t *testing.T) {
	path := writeFile(t, "iterations: 600\nseed: 7\ndata: [phantom]\n")
	s := newSettings()
	if err := s.parse(t, "--iterations", "5", "--config", path, "--data", "lits:/x"); err != nil {
		t.Fatal(err)
	}
	if *s.iterations != 5 || *s.seed != 7 {
		t.Errorf("iterations %d (want the flag's 5), seed %d (want the file's 7)", *s.iterations, *s.seed)
	}
	if got := strings.Join(*s.data, " "); got != "lits:/x" {
		t.Errorf("data %q: the command line's list must replace the file's", got)
	}
}

func TestConfigUnknownKeyNamesKeyFileAndSuggestion(t *testing.T) {
	path := writeFile(t, "seed: 1\niteration: 600\n")
	err := newSettings().parse(t, "--config", path)
	if err == nil {
		t.Fatal("an unknown key was accepted")
	}
	for _, want := range []string{path + ":2", `"iteration"`, `did you mean "iterations"`} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error %q lacks %q", err, want)
		}
	}
	err = newSettings().parse(t, "--config", writeFile(t, "zzzzzzzzzzzz: 1\n"))
	if err == nil || strings.Contains(err.Error(), "did you mean") {
		t.Errorf("a far-off key got a suggestion or no error: %v", err)
	}
	err = newSettings().parse(t, "--config", writeFile(t, "config: other.yaml\n"))
	if err == nil || !strings.Contains(err.Error(), "command line") {
		t.Errorf("a nested config was not refused clearly: %v", err)
	}
}

func TestConfigBadValueNamesKeyFileAndType(t *testing.T) {
	for text, want := range map[string]string{
		"iterations: many\n":       "an integer",
		"seed: -1\n":               "a non-negative integer",
		"augment: yes please\n":    "a boolean (true or false)",
		"lambda-center: [1, 2]\n":  "a number, not a YAML list",
		"timeout: soon\n":          "a duration",
		"data: {kind: phantom}\n":  "a list of values",
		"iterations:\n":            "has no value",
		"seed: 1\nseed: 2\n":       "already set on line 1",
		"- iterations\n":           "want a mapping",
		"iterations: [unclosed\n":  "not valid YAML",
		"hu-windows:\n  a: b\n":    "a string, not a YAML mapping",
		"data:\n  - [nested]\n":    "a list item must be one value",
		"augment: true\nseed: x\n": `key "seed"`,
	} {
		path := writeFile(t, text)
		err := newSettings().parse(t, "--config", path)
		if err == nil {
			t.Errorf("%q was accepted", text)
			continue
		}
		if !strings.Contains(err.Error(), path) || !strings.Contains(err.Error(), want) {
			t.Errorf("%q: error %q lacks the file or %q", text, err, want)
		}
	}
}

func TestConfigEmptyFileSetsNothing(t *testing.T) {
	for _, text := range []string{"", "# only a comment\n", "~\n"} {
		s := newSettings()
		if err := s.parse(t, "--config", writeFile(t, text)); err != nil {
			t.Errorf("%q: %v", text, err)
		}
		if *s.seed != 8499 {
			t.Errorf("%q changed the seed to %d", text, *s.seed)
		}
	}
}

// TestConfigPrintRoundTrip prints a configuration, loads it into a fresh
// FlagSet and prints again: the two texts must be the same, and the values
// the same as the first run's.
func TestConfigPrintRoundTrip(t *testing.T) {
	s := newSettings()
	if err := s.parse(t, "--iterations", "600", "--lambda-center", "1e-05", "--hu-windows", "true", "--data", "phantom,scale=0.1",
		"--data", "a: b", "--timeout", "90s", "--augment"); err != nil {
		t.Fatal(err)
	}
	first, err := Marshal(s.fs)
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"iterations: 600\n", "augment: true\n", "hu-windows: \"true\"\n", "timeout: 1m30s\n", "seed: 8499\n",
		"data:\n  - phantom,scale=0.1\n  - 'a: b'\n"} {
		if !strings.Contains(string(first), want) {
			t.Errorf("printed configuration lacks %q:\n%s", want, first)
		}
	}
	if strings.Contains(string(first), ConfigFlag+":") || strings.Contains(string(first), PrintFlag) {
		t.Errorf("the hook's own flags were printed:\n%s", first)
	}
	again := newSettings()
	if err := again.parse(t, "--config", writeFile(t, string(first))); err != nil {
		t.Fatal(err)
	}
	second, err := Marshal(again.fs)
	if err != nil {
		t.Fatal(err)
	}
	if string(first) != string(second) {
		t.Errorf("print, load, print differs:\n%s\n---\n%s", first, second)
	}
	if *again.lambda != 1e-05 || *again.windows != "true" || len(*again.data) != 2 {
		t.Errorf("reloaded values differ: lambda %v windows %q data %v", *again.lambda, *again.windows, *again.data)
	}
	empty, err := Marshal(newSettings().fs)
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(string(empty), "data: []\n") {
		t.Errorf("an empty list flag is not printed as []:\n%s", empty)
	}
}

func TestConfigPrintRequested(t *testing.T) {
	s := newSettings()
	if err := s.parse(t, "--print-config"); err != nil {
		t.Fatal(err)
	}
	if !s.hook.PrintRequested() {
		t.Error("--print-config not seen")
	}
}

func TestConfigMissingFile(t *testing.T) {
	err := newSettings().parse(t, "--config", filepath.Join(t.TempDir(), "nope.yaml"))
	if err == nil || !strings.Contains(err.Error(), "nope.yaml") {
		t.Errorf("missing file: %v", err)
	}
}

func TestEditDistance(t *testing.T) {
	for _, c := range []struct {
		a, b string
		want int
	}{{"", "", 0}, {"abc", "", 3}, {"iteration", "iterations", 1}, {"hu-window", "hu-windows", 1}, {"kitten", "sitting", 3}} {
		if got := editDistance(c.a, c.b); got != c.want {
			t.Errorf("editDistance(%q, %q) = %d, want %d", c.a, c.b, got, c.want)
		}
	}
}

// FuzzLoad feeds arbitrary files to Load: it may refuse them, never panic,
// and whatever it accepts must print and load back to the same text.
func FuzzLoad(f *testing.F) {
	for _, seed := range []string{"iterations: 600\n", "data: [a, b]\n", "seed: -1\n", "- x\n", "a: &x 1\nb: *x\n", "augment: true\ntimeout: 2m\n"} {
		f.Add([]byte(seed))
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		s := newSettings()
		if err := Load(s.fs, "fuzz.yaml", data, nil); err != nil {
			return
		}
		first, err := Marshal(s.fs)
		if err != nil {
			t.Fatal(err)
		}
		again := newSettings()
		if err := Load(again.fs, "printed.yaml", first, nil); err != nil {
			t.Fatalf("the printed configuration does not load: %v\n%s", err, first)
		}
		if second, _ := Marshal(again.fs); string(second) != string(first) {
			t.Fatalf("print, load, print differs:\n%s\n---\n%s", first, second)
		}
	})
}
