package main

// This and migrate.go are the only files of spoolctl that link the spool (and so bbolt) or
// the admin API's server side: the modes that work without the daemon. Every
// other file talks to spoold through package wire only (TestImportRule).
//
//   - --spool DIR: list, show and status read a stopped daemon's spool
//     read-only, served in-process by the daemon's own admin API service;
//   - salvage: re-queues the bodies of a lost or damaged spool database;
//   - verify-spool (hidden): the child process that checks a database
//     before spoolctl opens it.

import (
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/spoold/spoold/cmd/spoold/adminapi"
	"github.com/spoold/spoold/cmd/spoold/adminapi/wire"
	"github.com/spoold/spoold/spool"
)

// spoolOpener opens a spool read-only for --spool (deps.OpenSpool).
type spoolOpener func(dir string) (adminapi.Queue, io.Closer, error)

// openSpoolReadOnly is the default deps.OpenSpool.
func openSpoolReadOnly(dir string) (adminapi.Queue, io.Closer, error) {
	s, err := spool.Open(dir, spool.Options{ReadOnly: true, RescueInterval: -1, LockTimeout: time.Second, Verify: spoolVerifier()})
	if err != nil {
		return nil, nil, err
	}
	return s, s, nil
}

// offlineClient opens the --spool directory read-only and serves the admin
// API over it in-process, so the offline commands print exactly what the
// daemon would.
func (a *app) offlineClient() (*wire.Client, error) {
	q, closer, err := a.d.OpenSpool(a.spoolDir)
	if errors.Is(err, spool.ErrInUse) {
		return nil, fmt.Errorf("spool %s is locked: the daemon is running: use the socket (--socket PATH)", a.spoolDir)
	}
	if errors.Is(err, os.ErrNotExist) {
		return nil, fmt.Errorf("no spool in %s (%s not found): give the daemon's data directory", a.spoolDir, spool.DBFile)
	}
	if err != nil {
		return nil, fmt.Errorf("opening spool %s: %w", a.spoolDir, err)
	}
	svc := adminapi.NewService(q, nil, nil, adminapi.Options{ReadOnly: true, Clock: a.d.Clock, Logger: discardLogger()})
	c, stop := adminapi.InProcess(svc.Handler(), "spool "+a.spoolDir)
	// Stop serving before closing the spool.
	a.closers = append(a.closers, stop, closer)
	return c, nil
}

// salvageCmd re-queues the bodies of a spool whose database was lost or
// damaged. It works on the data directory itself, so spoold must be stopped
// (the database lock enforces that).
func (a *app) salvageCmd() *cobra.Command {
	var dataDir, account string
	var dryRun, asJSON bool
	cmd := &cobra.Command{
		Use:   "salvage --data-dir DIR --account NAME",
		Short: "Re-queue the message bodies of a lost or damaged spool database (spoold stopped)",
		Long: "salvage is for a data directory that spoold refuses to start with because spool.db is missing,\n" +
			"empty or damaged, and for bodies that start-up moved to orphaned/. It moves an unusable spool.db\n" +
			"aside (spool.db.damaged-TIME, never deleted), creates a new database and re-queues every body file\n" +
			"as a held message routed to --account, with the sender and recipients read from its header (From;\n" +
			"To, Cc and spoold's Received line; Bcc recipients cannot be recovered). Bodies stored inside the\n" +
			"lost database are gone with it. Check the held messages (spoolctl list --state held, show) and\n" +
			"release them; some may already have been delivered before the loss.\n\n" +
			"  systemctl stop spoold\n" +
			"  spoolctl salvage --data-dir /var/lib/spoold --account office --dry-run\n" +
			"  spoolctl salvage --data-dir /var/lib/spoold --account office\n" +
			"  systemctl start spoold",
		Args: cobra.NoArgs,
	}
	f := cmd.Flags()
	f.StringVar(&dataDir, "data-dir", "", "spoold's data directory (data_dir in the config)")
	f.StringVar(&account, "account", "", "account to route the re-queued messages to")
	f.BoolVar(&dryRun, "dry-run", false, "list what would be re-queued and change nothing")
	f.BoolVar(&asJSON, "json", false, "print the report as JSON")
	cmd.RunE = a.run(func(cmd *cobra.Command, _ []string) error {
		if dataDir == "" || account == "" {
			return usagef("salvage needs --data-dir and --account")
		}
		rep, err := spool.Salvage(dataDir, spool.SalvageOptions{
			Account: account,
			DryRun:  dryRun,
			Spool: spool.Options{
				Logger: slog.New(slog.NewTextHandler(a.d.Stderr, &slog.HandlerOptions{Level: slog.LevelWarn})),
				Verify: spoolVerifier(),
			},
		})
		if err != nil {
			return err
		}
		if asJSON {
			if err := printJSON(cmd.OutOrStdout(), rep); err != nil {
				return err
			}
		} else {
			printSalvage(cmd.OutOrStdout(), rep, dryRun)
		}
		for _, b := range rep.Bodies {
			if b.Problem != "" {
				return fmt.Errorf("some bodies were not re-queued; they are kept in %s", rep.KeptIn)
			}
		}
		return nil
	})
	return cmd
}

func printSalvage(w io.Writer, rep *spool.SalvageReport, dryRun bool) {
	if rep.DamagedDB != "" {
		fmt.Fprintf(w, "damaged database kept as %s\n", rep.DamagedDB)
	}
	done, skipped := 0, 0
	for _, b := range rep.Bodies {
		switch {
		case b.Problem != "":
			skipped++
			fmt.Fprintf(w, "skipped %s: %s\n", b.File, b.Problem)
		case dryRun:
			done++
			fmt.Fprintf(w, "would re-queue %s: from <%s> to %s\n", b.File, b.From, strings.Join(b.To, ", "))
		default:
			done++
			fmt.Fprintf(w, "re-queued %s as %s (held): from <%s> to %s\n", b.File, b.ID, b.From, strings.Join(b.To, ", "))
		}
	}
	verb := "re-queued (held)"
	if dryRun {
		verb = "would be re-queued"
	}
	fmt.Fprintf(w, "%d bodies %s, %d skipped\n", done, verb, skipped)
	if !dryRun && done > 0 {
		fmt.Fprintln(w, "check them with 'spoolctl list --state held', then 'spoolctl release ID'")
	}
}

// verifySpoolCmd is the child process that spoolVerifier runs: bbolt may
// panic on a damaged file in a goroutine of its own, which would otherwise
// take spoolctl down with it. Hidden: admins use spoold -verify-spool.
func (a *app) verifySpoolCmd() *cobra.Command {
	return &cobra.Command{
		Use:    "verify-spool FILE",
		Hidden: true,
		Args:   cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			if err := spool.VerifyFile(args[0]); err != nil {
				code := spool.VerifyExitCorrupt
				if errors.Is(err, spool.ErrInUse) {
					code = spool.VerifyExitInUse
				}
				return &exitCodeError{code: code, err: err}
			}
			return nil
		},
	}
}

// spoolVerifier checks a spool database in a child process of this binary
// before spoolctl opens it (see verifySpoolCmd).
func spoolVerifier() func(string) error {
	exe, err := os.Executable()
	if err != nil {
		return func(string) error {
			return fmt.Errorf("cannot find the spoolctl binary to check the database: %w", err)
		}
	}
	return spool.ChildVerifier(exe, "verify-spool")
}
