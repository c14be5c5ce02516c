package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/spoold/spoold/spool"
	"github.com/spoold/spoold/spool/pgspool"
)

// migrateNode is the name spoolctl migrate records in a PostgreSQL
// spool's node table while it copies.
const migrateNode = "spoolctl-migrate"

// liveHeartbeat is how recent a node's heartbeat (every 30 s) must be for
// migrate to take it as running.
const liveHeartbeat = 90 * time.Second

func (a *app) migrateCmd() *cobra.Command {
	var from, to string
	cmd := &cobra.Command{
		Use:   "migrate --from DIR|DSN --to DSN|DIR",
		Short: "Copy a stopped spool between the embedded database and PostgreSQL",
		Long: "migrate copies every message (state, recipients, history, body), idempotency key, account\n" +
			"record (sealed tokens as they are: keep the same secrets.key), alert state, audit entry and the\n" +
			"last 24 hours of recipient budgets from one spool into an empty one: a data directory (spool.db of\n" +
			"spool.backend bbolt) into a PostgreSQL database (spool.backend postgres), or back. Every spoold\n" +
			"using either must be stopped: a running daemon's spool.db is locked and refused, and so is a\n" +
			"database with a node that sent a heartbeat in the last 90 seconds. A message that was being sent\n" +
			"when its daemon stopped arrives queued (it may be delivered twice, never lost). The source is not\n" +
			"changed. Give the database password in PGPASSWORD or ~/.pgpass, not in the DSN on the command line.\n\n" +
			"  systemctl stop spoold\n" +
			"  spoolctl migrate --from /var/lib/spoold --to 'host=db.example.org dbname=spoold user=spoold'\n" +
			"  (set spool.backend: postgres and spool.dsn in the config of every node)\n" +
			"  systemctl start spoold",
		Args: cobra.NoArgs,
	}
	f := cmd.Flags()
	f.StringVar(&from, "from", "", "the spool to copy: a data directory or a PostgreSQL connection string")
	f.StringVar(&to, "to", "", "the empty spool to copy into: a PostgreSQL connection string or a data directory")
	cmd.RunE = a.run(func(cmd *cobra.Command, _ []string) error {
		if from == "" || to == "" {
			return usagef("migrate needs --from and --to")
		}
		if isDSN(from) == isDSN(to) {
			return usagef("migrate copies between a data directory and a PostgreSQL database: one of --from and --to must be each")
		}
		ctx := cmd.Context()
		if ctx == nil {
			ctx = context.Background()
		}
		src, err := openMigrateSpool(ctx, from, true)
		if err != nil {
			return err
		}
		defer src.Close()
		dst, err := openMigrateSpool(ctx, to, false)
		if err != nil {
			return err
		}
		out := cmd.OutOrStdout()
		start := time.Now()
		cs, err := spool.Copy(ctx, src, dst, func(n int) {
			if n%1000 == 0 {
				fmt.Fprintf(out, "%d messages copied\n", n)
			}
		})
		cerr := dst.Close()
		if err != nil {
			return fmt.Errorf("migrate: %w (the source is unchanged; empty the target before trying again)", err)
		}
		if cerr != nil {
			return fmt.Errorf("migrate: closing the target: %w", cerr)
		}
		fmt.Fprintf(out, "copied %d messages (%d bodies), %d account records, %d alert records, %d audit entries, %d budget entries in %s\n",
			cs.Messages, cs.Bodies, cs.Records, cs.Alerts, cs.Audit, cs.Budget, time.Since(start).Round(time.Millisecond))
		return nil
	})
	return cmd
}

// isDSN tells a PostgreSQL connection string from a directory.
func isDSN(s string) bool {
	return strings.HasPrefix(s, "postgres://") || strings.HasPrefix(s, "postgresql://") || strings.Contains(s, "=")
}

// openMigrateSpool opens one side of a migration. A source bbolt spool is
// opened read-only (and refused while a daemon holds it); a source
// database is refused while nodes run on it.
func openMigrateSpool(ctx context.Context, where string, source bool) (spool.Migratable, error) {
	quiet := slog.New(slog.NewTextHandler(io.Discard, nil))
	if !isDSN(where) {
		if source {
			if _, err := os.Stat(where + "/" + spool.DBFile); err != nil {
				return nil, fmt.Errorf("migrate: no spool in %s (%s not found): give spoold's data directory", where, spool.DBFile)
			}
		} else if err := os.MkdirAll(where, 0o700); err != nil {
			return nil, fmt.Errorf("migrate: creating %s: %w", where, err)
		}
		sp, err := spool.Open(where, spool.Options{ReadOnly: source, RescueInterval: -1, LockTimeout: time.Second, Logger: quiet})
		if errors.Is(err, spool.ErrInUse) {
			return nil, fmt.Errorf("migrate: spool %s is locked: spoold is running on it: stop it first (systemctl stop spoold)", where)
		}
		if err != nil {
			return nil, fmt.Errorf("migrate: opening spool %s: %w", where, err)
		}
		return sp, nil
	}
	sp, err := pgspool.Open(ctx, pgspool.Options{DSN: where, Node: migrateNode, RescueInterval: -1, Logger: quiet})
	if err != nil {
		// pgspool's errors never quote the DSN (it may hold a password).
		return nil, fmt.Errorf("migrate: opening the PostgreSQL spool: %w", err)
	}
	nodes, err := sp.Nodes(ctx)
	if err != nil {
		sp.Close()
		return nil, fmt.Errorf("migrate: %w", err)
	}
	for _, n := range nodes {
		if n.Name != migrateNode && time.Since(n.Heartbeat) < liveHeartbeat {
			sp.Close()
			return nil, fmt.Errorf("migrate: node %s of the PostgreSQL spool sent a heartbeat %s ago: stop every spoold using the database first (a node stopped just now: try again in a minute)",
				n.Name, time.Since(n.Heartbeat).Round(time.Second))
		}
	}
	return pgMigrate{sp}, nil
}

// pgMigrate leaves the node table when migrate is done with the database.
type pgMigrate struct{ *pgspool.Spool }

func (p pgMigrate) Close() error {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	_ = p.Leave(ctx) // a leftover row only shows as a node not seen since
	return p.Spool.Close()
}
