package spool

import (
	"context"
	"errors"
	"time"
)

// Limits shared by the nodes of a spool that several spoold processes use
// (spool/pgspool). The embedded spool has one node, whose engine counts
// them in memory, and does not implement these; delivery and auth
// type-assert the Backend and use them when present.

// ErrNoSlot says every connection slot of an account is taken, on some node.
var ErrNoSlot = errors.New("spool: every connection slot of the account is in use")

// ConnSlot is one of an account's connection slots, held for the life of
// one upstream connection.
type ConnSlot interface {
	// Held reports an error once the slot is no longer held (its database
	// session was lost): the connection it guards should close.
	Held(ctx context.Context) error
	// Lost is closed once the slot is lost (a database restart or
	// shutdown, the session terminated, a dead link): another node may
	// take it now, so the upstream connection it guards must close at
	// once, not at its next Held check.
	Lost() <-chan struct{}
	Release() error
}

// ClusterLimits counts an account's connections, rate and daily
// recipients across every node.
type ClusterLimits interface {
	// AcquireConnSlot takes one of limit slots or fails with ErrNoSlot.
	AcquireConnSlot(ctx context.Context, account string, limit int) (ConnSlot, error)
	// TakeRate returns 0 when a message may go now (and counts it), or
	// how long to wait.
	TakeRate(ctx context.Context, account string, perMinute float64, burst int, now time.Time) (time.Duration, error)
	// ReserveBudget counts n recipients under id if used+n <= limit in
	// the window ending now; CancelBudget gives them back.
	ReserveBudget(ctx context.Context, account, id string, n, limit int, window time.Duration, now time.Time) (ok bool, used int, err error)
	CancelBudget(ctx context.Context, account, id string) error
	// RecordReserved is BudgetRecord that also gives back the reservation
	// reservationID in the same transaction: between two commits the send
	// counted twice, as sent and as reserved, and another node's
	// ReserveBudget in that moment refused a message the budget had room for.
	RecordReserved(ctx context.Context, account, reservationID, id, own string, at time.Time, n int, forgetBefore time.Time) error
}

// GrantLocker runs a token refresh under a lock of the account's grant
// held by one node at a time, reading and writing the record key in the
// same transaction (see pgspool.Spool.RefreshLocked).
type GrantLocker interface {
	RefreshLocked(ctx context.Context, account, key string, refresh func(ctx context.Context, current []byte, found bool) (next []byte, err error)) ([]byte, error)
}
