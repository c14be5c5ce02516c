package pgspool_test

import (
	"context"
	"io"
	"log/slog"
	"testing"
	"time"

	"github.com/spoold/spoold/spool/conformance"
	"github.com/spoold/spoold/spool/pgspool"
	"github.com/spoold/spoold/spool/pgspool/pgtest"
)

var quiet = slog.New(slog.NewTextHandler(io.Discard, nil))

type pgTarget struct {
	*pgspool.Spool
	dsn string
}

func (p *pgTarget) BodyStored(ctx context.Context, id string) (bool, error) {
	return p.BodyStoredForTest(ctx, id)
}
func (p *pgTarget) BodyCount(ctx context.Context) (int, error) { return p.BodyCountForTest(ctx) }

func openPG(t *testing.T, dsn string, c conformance.Config) *pgTarget {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	s, err := pgspool.Open(ctx, pgspool.Options{
		DSN:                dsn,
		Clock:              c.Clock,
		LeaseDuration:      c.LeaseDuration,
		DeliveredRetention: c.DeliveredRetention,
		HistoryLimit:       c.HistoryLimit,
		RescueInterval:     c.RescueInterval,
		Logger:             quiet,
		MaxConns:           8,
	})
	if err != nil {
		t.Fatalf("pgspool.Open: %v", err)
	}
	t.Cleanup(func() { s.Close() })
	return &pgTarget{Spool: s, dsn: dsn}
}

// TestConformance runs the spool contract's suite (the same as the
// embedded spool's) against PostgreSQL, on a throwaway cluster.
func TestConformance(t *testing.T) {
	cluster := pgtest.Start(t)
	t.Logf("PostgreSQL cluster started in %v", cluster.StartTook)
	conformance.Run(t, conformance.Suite{
		Open: func(t *testing.T, c conformance.Config) conformance.Target {
			return openPG(t, cluster.NewSchema(t), c)
		},
		Reopen: func(t *testing.T, tgt conformance.Target, c conformance.Config) conformance.Target {
			return openPG(t, tgt.(*pgTarget).dsn, c)
		},
		Peer: func(t *testing.T, tgt conformance.Target, c conformance.Config) conformance.Target {
			return openPG(t, tgt.(*pgTarget).dsn, c)
		},
	})
}
