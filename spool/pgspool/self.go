package pgspool

import (
	"context"
	"fmt"
)

// Node is the name this node records its heartbeat under (Options.Node):
// spoolctl status marks it among the nodes sharing the spool.
func (s *Spool) Node() string { return s.opts.Node }

// Leave removes this node from the node table, for a process that used
// the spool briefly (spoolctl migrate) and should not be listed as a
// node that stopped sending heartbeats.
func (s *Spool) Leave(ctx context.Context) error {
	if err := s.begin(ctx, true); err != nil {
		return fmt.Errorf("pgspool: leaving the node table: %w", err)
	}
	defer s.end()
	if _, err := s.pool.Exec(ctx, "DELETE FROM spool_nodes WHERE node = $1", s.opts.Node); err != nil {
		return fmt.Errorf("pgspool: leaving the node table: %w", dbErr(err))
	}
	return nil
}
