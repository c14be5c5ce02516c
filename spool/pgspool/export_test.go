package pgspool

import "context"

// Hooks for the conformance suite (package pgspool_test).

// BodyStoredForTest reports whether any chunk of id's body is stored.
func (s *Spool) BodyStoredForTest(ctx context.Context, id string) (bool, error) {
	var ok bool
	err := s.pool.QueryRow(ctx, "SELECT EXISTS (SELECT 1 FROM spool_body_chunks WHERE id = $1) OR EXISTS (SELECT 1 FROM spool_messages WHERE id = $1 AND body_present)", id).Scan(&ok)
	return ok, err
}

// BodyCountForTest counts the messages that have body rows, and the
// messages that say they have a body: a body without its message (or
// chunks left behind) shows as a count above the undelivered messages.
func (s *Spool) BodyCountForTest(ctx context.Context) (int, error) {
	var n int
	err := s.pool.QueryRow(ctx, `SELECT count(*) FROM (SELECT id FROM spool_body_chunks UNION SELECT id FROM spool_messages WHERE body_present) b`).Scan(&n)
	return n, err
}

// PIDForTest returns the server process of the slot's session.
func (sl *Slot) PIDForTest() uint32 { return sl.conn.PgConn().PID() }

// DSNForTest returns a DSN of the slot's server.
func (sl *Slot) DSNForTest() string { return sl.conn.Config().ConnString() }
