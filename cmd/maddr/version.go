package main

import (
	"fmt"
	"io"
	"runtime"

	"github.com/maddr-project/maddr/torch"
	"github.com/maddr-project/maddr/version"
)

func init() {
	register("version", "print the maddr and libtorch versions", runVersion)
}

func runVersion(args []string, stdout, stderr io.Writer) error {
	fs := newFlagSet("version", stderr)
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	fmt.Fprintf(stdout, "maddr %s\nlibtorch %s\n%s %s/%s\n", version.String(), torch.Version(), runtime.Version(), runtime.GOOS, runtime.GOARCH)
	return nil
}
