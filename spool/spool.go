package spool

// API SKELETON: the signatures below are the contract other packages code
// against. The bodies are being implemented; do not change signatures.

import (
	"context"
	"io"
	"log/slog"
	"os"
	"time"
)

// Options configures Open. Zero values take the defaults noted.
type Options struct {
	Clock              func() time.Time         // default time.Now
	NewID              func(t time.Time) string // default: time-sortable ID (ms timestamp + random)
	Rand               io.Reader                // randomness for IDs; default crypto/rand
	Logger             *slog.Logger             // default slog.Default()
	LockTimeout        time.Duration            // bbolt file-lock wait; default 2s
	LeaseDuration      time.Duration            // Claim lease; default 5m
	DeliveredRetention time.Duration            // how long delivered records are kept; default 24h
	RescueInterval     time.Duration            // rescuer period for expired leases/retention; default 30s; <0 disables
	HistoryLimit       int                      // attempts kept per message; default 20
	ReadOnly           bool                     // open read-only (spoolctl --spool); every write returns ErrReadOnly
}

// Spool is the durable queue. Safe for concurrent use.
type Spool struct{}

// Open opens (creating if needed, dirs 0700, db 0600) the spool in dir:
// dir/spool.db and dir/messages/. It runs recovery (orphan bodies removed,
// missing bodies dead-lettered, expired leases requeued) and starts the rescuer.
// A second process gets ErrInUse ("spool <path> is in use by another process");
// a corrupt database gets ErrCorrupt and is left untouched.
func Open(dir string, opts Options) (*Spool, error) { panic("unimplemented") }

// Close stops the rescuer, waits for in-flight commits and closes the database.
func (s *Spool) Close() error { panic("unimplemented") }

// Dir returns the spool directory.
func (s *Spool) Dir() string { panic("unimplemented") }

// Check runs bbolt's consistency check (tx.Check) and returns the first problem.
func (s *Spool) Check() error { panic("unimplemented") }

// Enqueue streams body into a new message and returns its ID once body and
// metadata are durable (temp file, fsync, rename, fsync dir, group-committed
// bbolt transaction). Memory use is constant in the body size. If body returns
// an error, nothing is stored and the error is returned wrapped (errors.Is
// works). Disk full returns an error matching ErrNoSpace. With an
// IdempotencyKey already committed, it returns the existing ID and writes nothing.
func (s *Spool) Enqueue(ctx context.Context, req EnqueueRequest, body io.Reader) (string, error) {
	panic("unimplemented")
}

// LookupKey returns the message ID committed with an idempotency key.
func (s *Spool) LookupKey(ctx context.Context, key string) (id string, found bool, err error) {
	panic("unimplemented")
}

// Notify returns a channel that receives (non-blocking, capacity 1) after a
// commit that may make a message due now: Enqueue, Release, Requeue, Flush,
// lease rescue.
func (s *Spool) Notify() <-chan struct{} { panic("unimplemented") }

// OpenBody opens a message's body for reading.
func (s *Spool) OpenBody(id string) (*os.File, error) { panic("unimplemented") }

// Claim leases up to limit due messages (queued/deferred with NextAttempt <= now)
// in due-time order, read from the due index, and moves them to StateActive
// with LeaseOwner = owner and LeaseUntil = now + LeaseDuration.
func (s *Spool) Claim(ctx context.Context, now time.Time, limit int, owner string) ([]*Message, error) {
	panic("unimplemented")
}

// ClaimAccount is Claim restricted to one account (per-account due index).
func (s *Spool) ClaimAccount(ctx context.Context, account string, now time.Time, limit int, owner string) ([]*Message, error) {
	panic("unimplemented")
}

// NextDue returns the earliest due time among queued and deferred messages
// (optionally of one account; "" = all). ok is false when none wait.
func (s *Spool) NextDue(ctx context.Context, account string) (due time.Time, ok bool, err error) {
	panic("unimplemented")
}

// DueAccounts returns the accounts that have at least one message due at now.
func (s *Spool) DueAccounts(ctx context.Context, now time.Time) ([]string, error) {
	panic("unimplemented")
}

// RenewLease extends an active message's lease.
func (s *Spool) RenewLease(ctx context.Context, id, owner string, until time.Time) error {
	panic("unimplemented")
}

// StartAttempt counts an attempt and commits its start and the next attempt
// time to use if the worker crashes (ifCrash) before dialing.
func (s *Spool) StartAttempt(ctx context.Context, id, owner string, now, ifCrash time.Time) error {
	panic("unimplemented")
}

// Delivered completes an attempt. Recipients not named in r.Recipients that are
// pending become delivered. If any recipient ends failed the message goes to
// StateDead (reason names the failed recipients) with the body kept; otherwise
// to StateDelivered and the body file is removed.
func (s *Spool) Delivered(ctx context.Context, id, owner string, r Result) error {
	panic("unimplemented")
}

// Defer completes an attempt with a transient failure: StateDeferred until next.
func (s *Spool) Defer(ctx context.Context, id, owner string, next time.Time, r Result) error {
	panic("unimplemented")
}

// Dead completes an attempt with a permanent failure: StateDead with r.Reason.
func (s *Spool) Dead(ctx context.Context, id, owner string, r Result) error {
	panic("unimplemented")
}

// Postpone returns an active message to StateDeferred until next without using
// an attempt (an open attempt started by StartAttempt is uncounted and removed
// from the history): for messages whose account waits (needs_reauth,
// misconfigured, token endpoint down) or on shutdown (next = now).
func (s *Spool) Postpone(ctx context.Context, id, owner string, next time.Time, reason string) error {
	panic("unimplemented")
}

// Hold moves a queued, deferred or dead message to StateHeld.
func (s *Spool) Hold(ctx context.Context, id, reason string) error { panic("unimplemented") }

// Release moves a held message to StateQueued, due now.
func (s *Spool) Release(ctx context.Context, id string) error { panic("unimplemented") }

// Requeue moves a dead or held message to StateQueued, due now, with attempts
// reset and failed recipients made pending again.
func (s *Spool) Requeue(ctx context.Context, id string) error { panic("unimplemented") }

// Flush makes a queued or deferred message due now.
func (s *Spool) Flush(ctx context.Context, id string) error { panic("unimplemented") }

// FlushAll makes every queued/deferred message (of one account; "" = all) due
// now and returns how many it changed.
func (s *Spool) FlushAll(ctx context.Context, account string) (int, error) { panic("unimplemented") }

// Delete removes a message in any state but active, with its body.
func (s *Spool) Delete(ctx context.Context, id string) error { panic("unimplemented") }

// Purge deletes messages in state (dead or delivered) last updated before olderThan.
func (s *Spool) Purge(ctx context.Context, state State, olderThan time.Time) (int, error) {
	panic("unimplemented")
}

// Get returns one message.
func (s *Spool) Get(ctx context.Context, id string) (*Message, error) { panic("unimplemented") }

// List returns up to limit messages matching f in ID order, starting after
// cursor ("" = from the start).
func (s *Spool) List(ctx context.Context, f Filter, cursor string, limit int) (Page, error) {
	panic("unimplemented")
}

// Stats returns the count of messages per state, kept in the database.
func (s *Spool) Stats(ctx context.Context) (map[State]int, error) { panic("unimplemented") }

// AccountGet reads a per-account record (auth tokens, health). ok is false if absent.
func (s *Spool) AccountGet(ctx context.Context, account, key string) (value []byte, ok bool, err error) {
	panic("unimplemented")
}

// AccountPut durably writes a per-account record (committed and fsync'd on return).
func (s *Spool) AccountPut(ctx context.Context, account, key string, value []byte) error {
	panic("unimplemented")
}

// AccountDelete removes a per-account record.
func (s *Spool) AccountDelete(ctx context.Context, account, key string) error {
	panic("unimplemented")
}
