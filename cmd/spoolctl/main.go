// Command spoolctl inspects and repairs spoold's queue. It talks to the
// running daemon over its admin socket through the admin API's client
// package (cmd/spoold/adminapi/wire), which links neither the spool nor
// bbolt. Only offline.go opens a stopped daemon's spool itself: --spool DIR
// (list, show and status, read-only), salvage, and the hidden verify-spool
// child (TestImportRule enforces this).
//
// Exit codes: 0 ok, 1 runtime failure (daemon down, not found, wrong
// state...), 2 usage error (bad flags or arguments).
package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"os/signal"
	"syscall"
	"time"

	"golang.org/x/term"
)

// Exit codes of the product contract (DESIGN.md section 1).
const (
	exitOK      = 0
	exitFailure = 1
	exitUsage   = 2
)

// defaultSocket is the embedded default config's admin socket.
const defaultSocket = "./data/spoold.sock"

// deps is everything spoolctl takes from its environment, so tests can drive
// the whole CLI in-process.
type deps struct {
	Stdin          io.Reader
	Stdout, Stderr io.Writer
	Getenv         func(string) string
	// StdinIsTTY reports whether stdin is an interactive terminal (delete
	// and purge confirmations).
	StdinIsTTY func() bool
	// OpenSpool opens a spool read-only for --spool.
	OpenSpool spoolOpener
	// Dial connects to the admin socket; nil = a plain unix dial.
	Dial func(ctx context.Context, socket string) (net.Conn, error)
	// Clock is the offline service's clock; nil = time.Now.
	Clock func() time.Time
	// Location is the zone times are shown in; nil = time.Local.
	Location *time.Location
	// ReadPassword reads a password without echo from the terminal
	// (hash-password); nil = term.ReadPassword on stdin.
	ReadPassword func() ([]byte, error)
	// Hostname names this host in the SSH tunnel hint of auth login; nil =
	// os.Hostname.
	Hostname func() (string, error)
}

func osDeps() *deps {
	return &deps{
		Stdin:        os.Stdin,
		Stdout:       os.Stdout,
		Stderr:       os.Stderr,
		Getenv:       os.Getenv,
		StdinIsTTY:   func() bool { return term.IsTerminal(int(os.Stdin.Fd())) },
		ReadPassword: func() ([]byte, error) { return term.ReadPassword(int(os.Stdin.Fd())) },
	}
}

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	code := Main(ctx, os.Args[1:], osDeps())
	stop()
	os.Exit(code)
}

// usageError marks an error as a usage error (exit 2).
type usageError struct{ err error }

func (e *usageError) Error() string { return e.err.Error() }
func (e *usageError) Unwrap() error { return e.err }

func usagef(format string, args ...any) error {
	return &usageError{fmt.Errorf(format, args...)}
}

// runtimeError marks an error raised while a command ran (exit 1). Errors
// cobra raises itself (unknown command or flag, bad arguments) are not
// marked and count as usage errors.
type runtimeError struct{ err error }

func (e *runtimeError) Error() string { return e.err.Error() }
func (e *runtimeError) Unwrap() error { return e.err }

// silentError is a runtime failure already reported on stderr.
var errReported = errors.New("reported")

// Main runs spoolctl with args and returns the exit code.
func Main(ctx context.Context, args []string, d *deps) int {
	if d.Getenv == nil {
		d.Getenv = func(string) string { return "" }
	}
	if d.StdinIsTTY == nil {
		d.StdinIsTTY = func() bool { return false }
	}
	if d.OpenSpool == nil {
		d.OpenSpool = openSpoolReadOnly
	}
	if d.Stdin == nil {
		d.Stdin = eofReader{}
	}
	if d.Location == nil {
		d.Location = time.Local
	}
	if d.Hostname == nil {
		d.Hostname = os.Hostname
	}
	root := newRootCmd(d)
	root.SetArgs(args)
	err := root.ExecuteContext(ctx)
	if err == nil {
		return exitOK
	}
	var rt *runtimeError
	var ue *usageError
	var ce *exitCodeError
	switch {
	case errors.As(err, &ce):
		fmt.Fprintf(d.Stderr, "spoolctl: %v\n", ce.err)
		return ce.code
	case errors.As(err, &ue):
		fmt.Fprintf(d.Stderr, "spoolctl: %v\n", err)
		fmt.Fprintln(d.Stderr, "Run 'spoolctl --help' for usage.")
		return exitUsage
	case errors.As(err, &rt):
		if !errors.Is(err, errReported) {
			fmt.Fprintf(d.Stderr, "spoolctl: %v\n", err)
		}
		return exitFailure
	default:
		fmt.Fprintf(d.Stderr, "spoolctl: %v\n", err)
		fmt.Fprintln(d.Stderr, "Run 'spoolctl --help' for usage.")
		return exitUsage
	}
}

// exitCodeError ends spoolctl with a code of its own (the verify-spool
// child's answer to its parent).
type exitCodeError struct {
	code int
	err  error
}

func (e *exitCodeError) Error() string { return e.err.Error() }

type eofReader struct{}

func (eofReader) Read([]byte) (int, error) { return 0, io.EOF }
