// Package flagconfig keeps a command's settings in a YAML file. It works on
// any flag.FlagSet: a file's keys are the flag names, a flag given on the
// command line wins over the file, and Marshal writes every flag's current
// value (the effective configuration) in the same form, so that a printed
// configuration loads back into the same run.
//
// A repeatable flag whose flag.Value implements List is a YAML list; every
// other flag is one scalar that goes through the flag's own Set, so a file
// accepts exactly what the command line accepts.
package flagconfig

import (
	"bytes"
	"errors"
	"flag"
	"fmt"
	"os"
	"strconv"
	"strings"
	"time"

	"go.yaml.in/yaml/v3"
)

// Names of the flags Register adds.
const (
	ConfigFlag = "config"
	PrintFlag  = "print-config"
)

// List is implemented by the flag.Value of a repeatable flag: Values gives
// one string per occurrence, each accepted by Set.
type List interface {
	flag.Value
	Values() []string
}

// Hook holds the --config and --print-config flags of one FlagSet.
type Hook struct {
	fs    *flag.FlagSet
	path  *string
	print *bool
}

// Register adds --config FILE and --print-config to fs; call it once all
// the command's own flags are defined, and Apply after fs.Parse.
func Register(fs *flag.FlagSet) *Hook {
	return &Hook{
		fs:    fs,
		path:  fs.String(ConfigFlag, "", "read flag values from this YAML file (keys are flag names; flags on the command line win)"),
		print: fs.Bool(PrintFlag, false, "print the effective configuration (file, flags and defaults) as YAML and exit"),
	}
}

// Apply fills the flags not given on the command line from the --config
// file, if one was named.
func (h *Hook) Apply() error {
	if *h.path == "" {
		return nil
	}
	data, err := os.ReadFile(*h.path)
	if err != nil {
		return fmt.Errorf("--config: %w", err)
	}
	given := map[string]bool{}
	h.fs.Visit(func(f *flag.Flag) { given[f.Name] = true })
	return Load(h.fs, *h.path, data, given)
}

// PrintRequested reports whether --print-config was given.
func (h *Hook) PrintRequested() bool { return *h.print }

// Load sets fs's flags from a YAML mapping read from the file named file,
// skipping the flags in keep (those given on the command line). Errors name
// the file, the line and the key.
func Load(fs *flag.FlagSet, file string, data []byte, keep map[string]bool) error {
	var doc yaml.Node
	if err := yaml.Unmarshal(data, &doc); err != nil {
		return fmt.Errorf("%s: not valid YAML: %w", file, err)
	}
	if doc.Kind == 0 || len(doc.Content) == 0 {
		return nil // an empty file sets nothing
	}
	root := doc.Content[0]
	if root.Kind == yaml.ScalarNode && root.Tag == "!!null" {
		return nil
	}
	if root.Kind != yaml.MappingNode {
		return fmt.Errorf("%s:%d: want a mapping of flag names to values, e.g. \"iterations: 600\"", file, root.Line)
	}
	seen := map[string]int{}
	for i := 0; i+1 < len(root.Content); i += 2 {
		key, value := root.Content[i], root.Content[i+1]
		name := key.Value
		where := fmt.Sprintf("%s:%d", file, key.Line)
		if line, dup := seen[name]; dup {
			return fmt.Errorf("%s: key %q is already set on line %d", where, name, line)
		}
		seen[name] = key.Line
		f := fs.Lookup(name)
		if f == nil || name == ConfigFlag || name == PrintFlag {
			return unknownKey(fs, where, name)
		}
		if keep[name] {
			continue
		}
		if err := set(f, value); err != nil {
			return fmt.Errorf("%s: key %q: %w", where, name, err)
		}
	}
	return nil
}

// set passes a YAML value to the flag: each item of a list to a List flag,
// the scalar's text to any other.
func set(f *flag.Flag, value *yaml.Node) error {
	_, isList := f.Value.(List)
	var texts []string
	switch {
	case value.Kind == yaml.ScalarNode && value.Tag == "!!null":
		return fmt.Errorf("has no value; want %s", Expected(f))
	case value.Kind == yaml.ScalarNode:
		texts = []string{value.Value}
	case value.Kind == yaml.SequenceNode && isList:
		for _, item := range value.Content {
			if item.Kind != yaml.ScalarNode {
				return fmt.Errorf("line %d: a list item must be one value; want %s", item.Line, Expected(f))
			}
			texts = append(texts, item.Value)
		}
	default:
		return fmt.Errorf("want %s, not a YAML %s", Expected(f), kindName(value.Kind))
	}
	// Like repeated command-line flags, the items add to the flag's
	// default; the repeatable flags here default to empty.
	for _, text := range texts {
		if err := f.Value.Set(text); err != nil {
			if isList {
				return fmt.Errorf("list item %q is not a value --%s takes: %w", text, f.Name, err)
			}
			// The standard flag types only say "parse error"; the
			// expected type says more.
			if err.Error() == "parse error" || errors.Is(err, strconv.ErrSyntax) {
				return fmt.Errorf("%q is not %s", text, Expected(f))
			}
			return fmt.Errorf("%q is not %s: %w", text, Expected(f), err)
		}
	}
	return nil
}

func kindName(k yaml.Kind) string {
	switch k {
	case yaml.SequenceNode:
		return "list"
	case yaml.MappingNode:
		return "mapping"
	case yaml.AliasNode:
		return "alias"
	}
	return "value"
}

// Expected describes the values a flag accepts, from its type.
func Expected(f *flag.Flag) string {
	if _, ok := f.Value.(List); ok {
		return "a list of values, each as --" + f.Name + " takes it"
	}
	getter, ok := f.Value.(flag.Getter)
	if !ok {
		return "a value as --" + f.Name + " takes it (see -h)"
	}
	switch getter.Get().(type) {
	case bool:
		return "a boolean (true or false)"
	case int, int64:
		return "an integer"
	case uint, uint64:
		return "a non-negative integer"
	case float64:
		return "a number"
	case time.Duration:
		return "a duration such as 30s or 5m"
	case string:
		return "a string"
	}
	return "a value as --" + f.Name + " takes it (see -h)"
}

// unknownKey names the key, the file and the closest flag.
func unknownKey(fs *flag.FlagSet, where, name string) error {
	msg := fmt.Sprintf("%s: unknown key %q: %s has no flag --%s", where, name, fs.Name(), name)
	if name == ConfigFlag || name == PrintFlag {
		msg = fmt.Sprintf("%s: key %q belongs on the command line, not in a configuration file", where, name)
	} else if best := closest(fs, name); best != "" {
		msg += fmt.Sprintf(" (did you mean %q?)", best)
	}
	return errors.New(msg)
}

// closest is the flag name nearest to name by edit distance, if any is
// near enough to be a plausible typo.
func closest(fs *flag.FlagSet, name string) string {
	best, bestDist := "", len(name)/2+2
	fs.VisitAll(func(f *flag.Flag) {
		if f.Name == ConfigFlag || f.Name == PrintFlag {
			return
		}
		if d := editDistance(strings.ToLower(name), f.Name); d < bestDist {
			best, bestDist = f.Name, d
		}
	})
	return best
}

// editDistance is the Levenshtein distance between a and b.
func editDistance(a, b string) int {
	prev := make([]int, len(b)+1)
	cur := make([]int, len(b)+1)
	for j := range prev {
		prev[j] = j
	}
	for i := 1; i <= len(a); i++ {
		cur[0] = i
		for j := 1; j <= len(b); j++ {
			cost := 1
			if a[i-1] == b[j-1] {
				cost = 0
			}
			cur[j] = min(prev[j]+1, cur[j-1]+1, prev[j-1]+cost)
		}
		prev, cur = cur, prev
	}
	return prev[len(b)]
}

// Marshal writes every flag of fs except the hook's own, sorted by name,
// with its current value: after fs.Parse and Apply, that is the effective
// configuration. Loading the text into a fresh FlagSet of the same command
// and marshalling again gives the same text.
func Marshal(fs *flag.FlagSet) ([]byte, error) {
	root := &yaml.Node{Kind: yaml.MappingNode,
		HeadComment: fs.Name() + " configuration: load it with --config FILE; flags given on the command line win"}
	var failed error
	fs.VisitAll(func(f *flag.Flag) {
		if f.Name == ConfigFlag || f.Name == PrintFlag || failed != nil {
			return
		}
		value := &yaml.Node{}
		if err := value.Encode(plainValue(f)); err != nil {
			failed = fmt.Errorf("--%s: %w", f.Name, err)
			return
		}
		root.Content = append(root.Content, &yaml.Node{Kind: yaml.ScalarNode, Value: f.Name}, value)
	})
	if failed != nil {
		return nil, failed
	}
	var b bytes.Buffer
	enc := yaml.NewEncoder(&b)
	enc.SetIndent(2)
	if err := enc.Encode(root); err != nil {
		return nil, err
	}
	if err := enc.Close(); err != nil {
		return nil, err
	}
	return b.Bytes(), nil
}

// plainValue is what a flag's value looks like in YAML: a list for List
// flags, the typed value of the standard flag types (so numbers and
// booleans are not quoted), and the flag's own text otherwise. Durations use
// their text (90s), which Set reads back.
func plainValue(f *flag.Flag) any {
	if l, ok := f.Value.(List); ok {
		v := l.Values()
		if v == nil {
			v = []string{}
		}
		return v
	}
	if g, ok := f.Value.(flag.Getter); ok {
		switch v := g.Get().(type) {
		case bool, int, int64, uint, uint64, float64, string:
			return v
		}
	}
	return f.Value.String()
}
