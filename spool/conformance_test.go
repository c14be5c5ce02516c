package spool_test

import (
	"context"
	"io"
	"log/slog"
	"testing"
	"time"

	"github.com/spoold/spoold/spool"
	"github.com/spoold/spoold/spool/conformance"
)

// boltTarget is the embedded spool under the conformance suite.
type boltTarget struct {
	*spool.Spool
	dir  string
	opts spool.Options
}

func (b *boltTarget) Rescue(ctx context.Context) (int, error) { return b.RescueNow(ctx) }
func (b *boltTarget) BodyStored(_ context.Context, id string) (bool, error) {
	return b.BodyStoredForTest(id), nil
}
func (b *boltTarget) BodyCount(context.Context) (int, error) { return b.BodyCountForTest() }

// Check adds bbolt's own bucket layout (the indexes) to its page check.
func (b *boltTarget) Check(context.Context) error {
	if err := b.Spool.Check(); err != nil {
		return err
	}
	return b.CheckIndexesForTest()
}

func boltOptions(c conformance.Config) spool.Options {
	return spool.Options{
		Clock:              c.Clock,
		LeaseDuration:      c.LeaseDuration,
		DeliveredRetention: c.DeliveredRetention,
		HistoryLimit:       c.HistoryLimit,
		RescueInterval:     c.RescueInterval,
		Logger:             slog.New(slog.NewTextHandler(io.Discard, nil)),
		LockTimeout:        200 * time.Millisecond,
	}
}

func openBolt(t *testing.T, dir string, c conformance.Config) conformance.Target {
	t.Helper()
	opts := boltOptions(c)
	s, err := spool.Open(dir, opts)
	if err != nil {
		t.Fatalf("Open(%s): %v", dir, err)
	}
	t.Cleanup(func() { s.Close() })
	return &boltTarget{Spool: s, dir: dir, opts: opts}
}

// TestConformance runs the spool contract's suite against the embedded
// bbolt spool (the PostgreSQL backend runs the same suite in spool/pgspool).
func TestConformance(t *testing.T) {
	conformance.Run(t, conformance.Suite{
		Open: func(t *testing.T, c conformance.Config) conformance.Target { return openBolt(t, t.TempDir(), c) },
		Reopen: func(t *testing.T, tgt conformance.Target, c conformance.Config) conformance.Target {
			return openBolt(t, tgt.(*boltTarget).dir, c)
		},
		OpenRequeuesLeases: true, // the exclusive file lock proves every lease's owner gone
	})
}
