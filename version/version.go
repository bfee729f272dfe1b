// Package version tells which maddr build is running, for model files,
// result headers, reports and `maddr version`. The value is fixed when the
// binary is built: the Makefile links it in with
//
//	-ldflags "-X github.com/maddr-project/maddr/version.linked=..."
//
// and a plain `go build` or `go test` falls back on the module version and
// VCS revision Go embeds. Nothing can change it at run time.
package version

import (
	"fmt"
	"runtime/debug"
)

// linked is set only by the linker (-X); see the package comment.
var linked string

// String describes this build: the linked version when the Makefile built
// it, else "<module version> (<revision>[+dirty])" from the build info, else
// "dev" (e.g. a test binary built without VCS data).
func String() string {
	if linked != "" {
		return linked
	}
	info, ok := debug.ReadBuildInfo()
	if !ok {
		return "dev"
	}
	return fromBuildInfo(info)
}

func fromBuildInfo(info *debug.BuildInfo) string {
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
	if v == "" {
		return "dev"
	}
	return v
}
