package main

import (
	"flag"
	"fmt"
	"io"
)

// Exit codes of the product contract (DESIGN.md section 1).
const (
	exitOK      = 0
	exitFailure = 1
	exitUsage   = 2
)

func run(args []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("spoold", flag.ContinueOnError)
	fs.SetOutput(stderr)
	configPath := fs.String("config", "", "YAML config file (default: the embedded default configuration)")
	check := fs.Bool("check", false, "validate the config, list every problem and exit (0 ok, 2 problems)")
	showVersion := fs.Bool("version", false, "print the version and exit")
	if err := fs.Parse(args); err != nil {
		return exitUsage
	}
	if fs.NArg() > 0 {
		fmt.Fprintf(stderr, "spoold: unexpected argument %q\n", fs.Arg(0))
		return exitUsage
	}
	if *showVersion {
		fmt.Fprintln(stdout, "spoold", version())
		return exitOK
	}
	_ = configPath
	_ = check
	return exitOK
}
