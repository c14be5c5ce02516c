package pgtest

import (
	"context"
	"fmt"
	"log/slog"
	"testing"

	"github.com/spoold/spoold/spool/pgspool"
)

// Nodes opens n spool nodes, node-0 to node-(n-1), on the database at dsn
// (a NewSchema), with quiet logs and no rescuer, as the cluster tests of
// several packages need them; each is closed when the test ends. tune, if
// set, adjusts node i's options before it opens.
func Nodes(t testing.TB, dsn string, n int, tune func(i int, o *pgspool.Options)) []*pgspool.Spool {
	t.Helper()
	sps := make([]*pgspool.Spool, 0, n)
	for i := range n {
		o := pgspool.Options{DSN: dsn, Node: fmt.Sprintf("node-%d", i), Logger: slog.New(slog.DiscardHandler), RescueInterval: -1}
		if tune != nil {
			tune(i, &o)
		}
		sp, err := pgspool.Open(context.Background(), o)
		if err != nil {
			t.Fatalf("opening spool node %s: %v", o.Node, err)
		}
		t.Cleanup(func() { sp.Close() })
		sps = append(sps, sp)
	}
	return sps
}
