// Command maddr trains, evaluates and serves universal anomaly detectors for
// multi-organ, multi-modal medical images (MICCAI 2023 MADDR).
//
// This file only dispatches sub-commands; each sub-command lives in its own
// file and is a thin layer of flag parsing over a library package.
package main

import (
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"sort"
	"strings"

	"github.com/maddr-project/maddr/progress"
	"github.com/maddr-project/maddr/torch"
)

// command is one sub-command. run receives the arguments after the command
// name and returns an error to be printed; errUsage makes main print the
// command's usage instead.
type command struct {
	summary string
	run     func(args []string, stdout, stderr io.Writer) error
}

var commands = map[string]command{}

// register is called from init functions of the files that implement the
// sub-commands, so adding a command never edits this file.
func register(name, summary string, run func(args []string, stdout, stderr io.Writer) error) {
	if _, dup := commands[name]; dup {
		panic("maddr: command registered twice: " + name)
	}
	commands[name] = command{summary: summary, run: run}
}

// errUsage signals a flag-parsing failure that the flag package already reported.
var errUsage = errors.New("usage")

func main() {
	// Returns only when the variable is set already or exec failed; either
	// way the command runs (at worst more slowly).
	_ = torch.ReexecWithPassiveOpenMP()
	os.Exit(runMain(os.Args[1:], os.Stdout, os.Stderr))
}

func runMain(args []string, stdout, stderr io.Writer) int {
	if len(args) == 0 || args[0] == "-h" || args[0] == "--help" || args[0] == "help" {
		printUsage(stderr)
		if len(args) == 0 {
			return 2
		}
		return 0
	}
	cmd, ok := commands[args[0]]
	if !ok {
		fmt.Fprintf(stderr, "maddr: unknown command %q\n\n", args[0])
		printUsage(stderr)
		return 2
	}
	// Every command writes its progress bars and its log lines through one
	// Board, so that on a terminal a log line never lands inside a bar.
	if err := cmd.run(args[1:], stdout, progress.NewBoard(stderr)); err != nil {
		if errors.Is(err, errUsage) || errors.Is(err, flag.ErrHelp) {
			return 2
		}
		if errors.Is(err, errConfigPrinted) {
			return 0
		}
		fmt.Fprintf(stderr, "maddr %s: %v\n", args[0], err)
		return 1
	}
	return 0
}

func printUsage(w io.Writer) {
	fmt.Fprintln(w, "usage: maddr <command> [flags]")
	fmt.Fprintln(w, "\ncommands:")
	names := make([]string, 0, len(commands))
	for n := range commands {
		names = append(names, n)
	}
	sort.Strings(names)
	width := 0
	for _, n := range names {
		width = max(width, len(n))
	}
	for _, n := range names {
		fmt.Fprintf(w, "  %s%s  %s\n", n, strings.Repeat(" ", width-len(n)), commands[n].summary)
	}
	fmt.Fprintln(w, "\nRun 'maddr <command> -h' for the flags of a command.")
}

// newFlagSet returns a FlagSet that reports errors to stderr and returns them
// instead of exiting, so commands stay testable.
func newFlagSet(name string, stderr io.Writer) *flag.FlagSet {
	fs := flag.NewFlagSet("maddr "+name, flag.ContinueOnError)
	fs.SetOutput(stderr)
	return fs
}

// parseFlags parses args and maps parse failures to errUsage.
func parseFlags(fs *flag.FlagSet, args []string) error {
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return flag.ErrHelp
		}
		return errUsage
	}
	return nil
}
