package main

import (
	"fmt"
	"io"
	"runtime"
	"runtime/debug"

	"github.com/maddr-project/maddr/torch"
)

func init() {
	register("version", "print the maddr and libtorch versions", runVersion)
}

// buildVersion describes this binary from the module and VCS data Go embeds.
func buildVersion() string {
	info, ok := debug.ReadBuildInfo()
	if !ok {
		return "unknown"
	}
	v := info.Main.Version
	var rev, dirty string
	for _, s := range info.Settings {
		switch s.Key {
		case "vcs.revision":
			rev = s.Value
		case "vcs.modified":
			if s.Value == "true" {
				dirty = "+dirty"
			}
		}
	}
	if rev != "" {
		if len(rev) > 12 {
			rev = rev[:12]
		}
		return fmt.Sprintf("%s (%s%s)", v, rev, dirty)
	}
	return v
}

func runVersion(args []string, stdout, stderr io.Writer) error {
	fs := newFlagSet("version", stderr)
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	fmt.Fprintf(stdout, "maddr %s\nlibtorch %s\n%s %s/%s\n", buildVersion(), torch.Version(), runtime.Version(), runtime.GOOS, runtime.GOARCH)
	return nil
}
