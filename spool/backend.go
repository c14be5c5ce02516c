package spool

import (
	"context"
	"errors"
	"io"
	"time"
)

// Backend is the spool contract: every method of the queue that the rest of
// spoold calls (delivery, ingest, auth, the admin API, alerts, budgets,
// the daemon), so that the embedded bbolt spool (*Spool) and a database
// shared by several nodes (spool/pgspool) are interchangeable. The
// conformance suite in spool/conformance runs the same tests against each
// implementation.
//
// Promises every implementation keeps:
//
//   - Durable before return. Enqueue returns an ID only once body and
//     metadata survive a crash of this process, the machine or (for a
//     database) the server; every transition, AccountPut, AlertWrite and
//     BudgetRecord is committed when it returns nil. SMTP's 250 rests on it.
//   - The state machine of DESIGN.md section 3 and nothing else: queued ->
//     active (Claim*) -> delivered | deferred | dead; queued, deferred, dead
//     -> held (Hold); held -> queued (Release); dead, held -> queued
//     (Requeue, attempts reset); Delete from any state but active. Each
//     transition re-checks state (and lease owner) in the same transaction
//     as its write; a refused one changes nothing and returns an error
//     matching ErrWrongState or ErrLeaseLost (both for a lease operation on
//     a message that is not active), ErrNotFound for an unknown ID, and its
//     text names the message.
//   - Leases. A claim hands each message to one owner until LeaseUntil
//     (now + the lease duration). Only that owner's RenewLease, StartAttempt,
//     Delivered, Defer, Dead and Postpone succeed; a lease that expired but
//     was not yet rescued is still the owner's. The rescuer returns expired
//     leases to queued, due at max(NextAttempt, now), with the open attempt
//     ended as "interrupted": delivery is at least once, never lost.
//     StartAttempt and ClaimAccountStart commit the attempt count and the
//     next attempt time before the worker dials, so a crash mid-send cannot
//     cause a hot loop.
//   - Idempotency keys. An Enqueue whose IdempotencyKey is already
//     committed returns the first message's ID and stores nothing, also when
//     several race; Delete or Purge of the message frees the key.
//   - Bodies stream: neither Enqueue nor OpenBody holds a whole body in
//     memory. A delivered message's body is gone; a dead or held one's is
//     kept.
//   - Errors match the typed errors of this package with errors.Is:
//     ErrNotFound, ErrWrongState, ErrLeaseLost, ErrInvalid, ErrNoSpace,
//     ErrClosed, and ErrUnavailable for a store that cannot be reached for
//     now (ingest answers 4xx, the client retries).
//   - Notify's channel receives (capacity 1, never blocking the sender)
//     after any commit that may make a message due now, including commits
//     by other nodes sharing the store.
type Backend interface {
	// Ingest.
	Enqueue(ctx context.Context, req EnqueueRequest, body io.Reader) (string, error)
	LookupKey(ctx context.Context, key string) (id string, found bool, err error)

	// Reading the queue.
	Get(ctx context.Context, id string) (*Message, error)
	List(ctx context.Context, f Filter, cursor string, limit int) (Page, error)
	ListMatching(ctx context.Context, f Filter, opts ListOptions, cursor string, limit int) (Page, error)
	Stats(ctx context.Context) (map[State]int, error)
	OpenBody(id string) (io.ReadCloser, error)
	WaitingByAccount(ctx context.Context) (map[string]int, error)
	DeliveredVia(ctx context.Context, id string) (string, error)

	// Scheduling and claims.
	Notify() <-chan struct{}
	NextDue(ctx context.Context, account string) (due time.Time, ok bool, err error)
	DueAccounts(ctx context.Context, now time.Time) ([]string, error)
	Claim(ctx context.Context, now time.Time, limit int, owner string) ([]*Message, error)
	ClaimAccount(ctx context.Context, account string, now time.Time, limit int, owner string) ([]*Message, error)
	ClaimAccountStart(ctx context.Context, account string, now time.Time, limit int, owner string, ifCrash func(m *Message) time.Time) ([]*Message, error)

	// Transitions out of active (lease owner only).
	RenewLease(ctx context.Context, id, owner string, until time.Time) error
	StartAttempt(ctx context.Context, id, owner string, now, ifCrash time.Time) error
	Delivered(ctx context.Context, id, owner string, r Result) error
	Defer(ctx context.Context, id, owner string, next time.Time, r Result) error
	Dead(ctx context.Context, id, owner string, r Result) error
	Postpone(ctx context.Context, id, owner string, next time.Time, reason string) error

	// Admin transitions.
	Hold(ctx context.Context, id, reason string) error
	Release(ctx context.Context, id string) error
	Requeue(ctx context.Context, id string) error
	Flush(ctx context.Context, id string) error
	FlushAll(ctx context.Context, account string) (int, error)
	Delete(ctx context.Context, id string) error
	Purge(ctx context.Context, state State, olderThan time.Time) (int, error)

	// Per-account records (auth tokens and health), alert state and
	// recipient budgets.
	AccountGet(ctx context.Context, account, key string) (value []byte, ok bool, err error)
	AccountPut(ctx context.Context, account, key string, value []byte) error
	AccountDelete(ctx context.Context, account, key string) error
	// AccountUpdate reads, changes and writes one record atomically with
	// respect to every other writer (auth/seal re-sealing tokens).
	AccountUpdate(ctx context.Context, account, key string, fn func(old []byte) ([]byte, error)) error
	AccountsWith(ctx context.Context, key string) ([]string, error)
	AlertState(ctx context.Context) (map[string][]byte, error)
	AlertWrite(ctx context.Context, put map[string][]byte, del []string) error
	BudgetRecord(ctx context.Context, account, id, own string, at time.Time, n int, forgetBefore time.Time) error
	BudgetEntries(ctx context.Context, account string, since time.Time) ([]BudgetEntry, error)

	// The admin audit log.
	AuditAppend(ctx context.Context, e AuditEntry) error
	AuditList(ctx context.Context, since time.Time, limit int) ([]AuditEntry, error)
	AuditPrune(ctx context.Context, before time.Time) (int, error)

	// Close waits for in-flight work and releases the store; later calls
	// return ErrClosed.
	Close() error
}

// ErrUnavailable says the store cannot be reached for now (a database
// server down or restarting, a connection lost mid-commit): nothing was
// acknowledged, and the same call may succeed later. Ingest answers 4xx
// and the client retries. The embedded bbolt spool never returns it.
var ErrUnavailable = errors.New("spool: storage temporarily unavailable")

// The embedded spool keeps the contract; a signature drift fails the build here.
var _ Backend = (*Spool)(nil)
