package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"runtime/debug"
	"strings"
	"syscall"

	"github.com/spoold/spoold/auth/seal"
	"github.com/spoold/spoold/configs"
	"github.com/spoold/spoold/spool"
)

// Exit codes of the product contract (DESIGN.md section 1).
const (
	exitOK      = 0
	exitFailure = 1
	exitUsage   = 2
)

// crashBySignal makes a Go runtime crash (an unrecovered panic in any
// goroutine, a fatal runtime error) end the process with SIGABRT instead of
// exit status 2. Status 2 is the contract's config error, which the systemd
// unit does not restart (RestartPreventExitStatus=2); a crash must be
// restarted (Restart=on-failure restarts after SIGABRT). The unit sets
// LimitCORE=0, so no core file carries tokens to disk.
func crashBySignal() { debug.SetTraceback("crash") }

func run(args []string, stdout, stderr io.Writer) (code int) {
	fs := flag.NewFlagSet("spoold", flag.ContinueOnError)
	fs.SetOutput(stderr)
	configPath := fs.String("config", "", "YAML config file (default: the embedded default configuration)")
	check := fs.Bool("check", false, "validate the config, list every problem and exit (0 ok, 2 problems)")
	showVersion := fs.Bool("version", false, "print the version and exit")
	printDefault := fs.Bool("print-default-config", false, "print the embedded default configuration and exit")
	printConfig := fs.Bool("print-config", false, "print the effective configuration (the config, or the embedded default, with every default\napplied; secrets as [redacted]) and exit")
	verifySpool := fs.String("verify-spool", "", "check the spool database `FILE` of a stopped spoold with bbolt's consistency check and exit\n(0 sound, 1 damaged, 3 in use); spoold runs it in a child process before every start")
	forgetTokens := fs.String("forget-tokens", "", "delete the stored OAuth tokens of the comma-separated `ACCOUNTS` from the spool of a stopped spoold\n(for records no key opens: sign those accounts in again afterwards) and exit")
	fs.Usage = func() {
		fmt.Fprintf(fs.Output(), `spoold is a durable mail spooler: it accepts mail from scanners and office devices
(SMTP, and files dropped into scan folders), keeps it on disk, and delivers it through
Microsoft 365, Gmail (OAuth2) or any relay. spoolctl administers a running spoold.

Usage: spoold [-config FILE] [-check | -print-config]
       spoold -version | -print-default-config | -verify-spool FILE
       spoold [-config FILE] -forget-tokens ACCOUNTS

Without -config, spoold runs its embedded default: SMTP on 127.0.0.1:2525 and the scan
folder ./scans, delivered as .eml files into ./data/outbox.
Documentation: man spoold (installed with the package) and the README of the source.

Flags:
`)
		fs.PrintDefaults()
	}
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return exitOK
		}
		return exitUsage
	}
	// "spoold version", as other daemons' admins type it.
	if fs.NArg() == 1 && fs.Arg(0) == "version" {
		*showVersion = true
	} else if fs.NArg() > 0 {
		fmt.Fprintf(stderr, "spoold: unexpected argument %q\n", fs.Arg(0))
		return exitUsage
	}
	switch {
	case *showVersion:
		fmt.Fprintln(stdout, "spoold", version())
		return exitOK
	case *printDefault:
		_, _ = stdout.Write(configs.Default())
		return exitOK
	case *verifySpool != "":
		if err := spool.VerifyFile(*verifySpool); err != nil {
			fmt.Fprintf(stderr, "spoold: %v\n", err)
			if errors.Is(err, spool.ErrInUse) {
				return spool.VerifyExitInUse
			}
			return spool.VerifyExitCorrupt
		}
		fmt.Fprintf(stdout, "%s: sound\n", *verifySpool)
		return exitOK
	}

	p, err := loadPlan(*configPath)
	if err != nil {
		fmt.Fprintf(stderr, "spoold: the configuration has problems:\n%s\n", err)
		return exitUsage
	}
	if *printConfig {
		if err := configs.Print(stdout, p.effective()); err != nil {
			fmt.Fprintf(stderr, "spoold: %v\n", err)
			return exitFailure
		}
		return exitOK
	}
	cfg := p.cfg
	if *forgetTokens != "" {
		if err := forgetStoredTokens(p, strings.Split(*forgetTokens, ","), stdout); err != nil {
			fmt.Fprintf(stderr, "spoold: %v\n", err)
			return exitFailure
		}
		return exitOK
	}
	if *check {
		name := *configPath
		if name == "" {
			name = "embedded default"
		}
		for _, w := range p.warnings {
			fmt.Fprintf(stdout, "%s: warning: %s\n", name, w)
		}
		fmt.Fprintf(stdout, "%s: ok\n", name)
		return exitOK
	}

	log, level, err := newLogger(stderr, string(cfg.Log.Level), string(cfg.Log.Format), os.Getenv("NO_COLOR") != "")
	if err != nil {
		fmt.Fprintf(stderr, "spoold: %v\n", err)
		return exitUsage
	}
	if *configPath == "" {
		log.Info("running the embedded default configuration (spoold -print-default-config shows it)")
	}
	for _, w := range p.warnings {
		log.Warn("configuration warning", "warning", w)
	}

	crashBySignal()
	if err := noCoreDumps(); err != nil {
		log.Warn("could not turn off core dumps; a crash may write tokens to a core file", "err", err)
	}
	// A panic on this goroutine (start-up, reload, shutdown) is a runtime
	// failure: exit 1, which the unit restarts.
	defer func() {
		if r := recover(); r != nil {
			log.Error("spoold: internal error", "panic", fmt.Sprint(r), "stack", string(debug.Stack()))
			fmt.Fprintf(stderr, "spoold: internal error: %v\n", r)
			code = exitFailure
		}
	}()

	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, syscall.SIGINT)
	defer stop()
	d, err := startDaemon(ctx, p, *configPath, log, level)
	if err != nil {
		log.Error("spoold could not start", "err", err)
		hint := ""
		if errors.Is(err, spool.ErrInUse) {
			hint = " (is another spoold running?)"
		}
		code := exitFailure
		if fix := adminMustFix(err); fix != "" {
			// Starting again fails the same way: the config-error status,
			// which the systemd unit does not restart.
			hint, code = "\nrestarting will not help: "+fix+", then start spoold", exitUsage
		}
		// Also as a plain line: with JSON logs this is what an admin reads.
		fmt.Fprintf(stderr, "spoold: could not start: %v%s\n", err, hint)
		return code
	}
	hup := make(chan os.Signal, 1)
	signal.Notify(hup, syscall.SIGHUP)
	defer signal.Stop(hup)
	for {
		select {
		case <-hup:
			log.Info("SIGHUP: reloading configuration")
			d.reload()
		case <-ctx.Done():
			log.Info("shutting down")
			d.shutdown()
			log.Info("spoold stopped")
			return exitOK
		}
	}
}

// adminMustFix says what a person must do when err is a start-up refusal
// that starting again cannot cure: a token key that is missing or wrong, a
// spool.db that is damaged or gone while mail remains, a spool a newer
// spoold wrote. A restart loop would
// only repeat the error (and, for a damaged spool, its full consistency
// check) every few seconds. "" for everything else.
func adminMustFix(err error) string {
	switch {
	case seal.NeedsAdmin(err):
		return "fix the key as above"
	case errors.Is(err, spool.ErrNewerSchema):
		return "install the newer spoold as above"
	case errors.Is(err, spool.ErrCorrupt), errors.Is(err, spool.ErrNoDatabase):
		return "restore or salvage the spool as above"
	}
	return ""
}
