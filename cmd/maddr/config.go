package main

import (
	"errors"
	"flag"
	"fmt"
	"io"

	"github.com/maddr-project/maddr/flagconfig"
	"github.com/maddr-project/maddr/modelfile"
)

func init() {
	register("config", "print the configuration a model file, run or experiment cell was trained with (YAML for --config)", runConfigCommand)
}

// errConfigPrinted ends a command after --print-config wrote its
// configuration; main exits 0 on it.
var errConfigPrinted = errors.New("configuration printed")

// parseConfigured is parseFlags for the commands that read a configuration
// file: it adds --config FILE and --print-config to fs, parses args, fills
// the flags not given on the command line from the file, and for
// --print-config writes the effective configuration to stdout and returns
// errConfigPrinted.
func parseConfigured(fs *flag.FlagSet, args []string, stdout io.Writer) error {
	hook := flagconfig.Register(fs)
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	if err := hook.Apply(); err != nil {
		return err
	}
	if !hook.PrintRequested() {
		return nil
	}
	text, err := flagconfig.Marshal(fs)
	if err != nil {
		return err
	}
	if _, err := stdout.Write(text); err != nil {
		return err
	}
	return errConfigPrinted
}

// recordedConfig returns fs's effective configuration, which a run records
// so that it can be read back and repeated with --config.
func recordedConfig(fs *flag.FlagSet) (string, error) {
	text, err := flagconfig.Marshal(fs)
	return string(text), err
}

// runConfigCommand prints the configuration recorded in a model file (or
// a run directory's model file).
func runConfigCommand(args []string, stdout, stderr io.Writer) error {
	fs := newFlagSet("config", stderr)
	fs.Usage = func() {
		fmt.Fprintln(stderr, "usage: maddr config MODEL|RUN_DIR\n\nPrints the configuration of the command that trained the model, "+
			"as YAML that 'maddr train --config FILE' (or 'maddr experiment ... --config FILE') reads.")
	}
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	if fs.NArg() != 1 {
		fs.Usage()
		return errUsage
	}
	path := resolveModel(fs.Arg(0))
	m, _, err := modelfile.ReadManifest(path)
	if err != nil {
		return err
	}
	if m.RunConfig == "" {
		return fmt.Errorf("%s records no configuration (trained before configurations were recorded, or through the library)", path)
	}
	_, err = io.WriteString(stdout, m.RunConfig)
	return err
}
