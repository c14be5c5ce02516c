// Package conformance is the spool contract's test suite: the transition
// table, the rapid state-machine property test, idempotency keys, bodies,
// the account store, alerts and budgets, claims, leases and the rescuer,
// run against any spool.Backend. The embedded bbolt spool and the
// PostgreSQL backend (spool/pgspool) both run it, so that the daemon
// behaves the same on either; a backend shared by several nodes also runs
// the cross-node tests (Suite.Peer).
package conformance

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"sync"
	"testing"
	"time"

	"github.com/spoold/spoold/spool"
)

// Config is what the suite sets on each store it opens. Zero fields take
// the spool's defaults; RescueInterval < 0 (the suite's usual value)
// leaves the rescuer to Target.Rescue, so tests decide when it runs.
type Config struct {
	Clock              func() time.Time
	LeaseDuration      time.Duration
	DeliveredRetention time.Duration
	HistoryLimit       int
	RescueInterval     time.Duration
}

// Target is a backend under test: the contract plus the few hooks the
// suite needs to look inside.
type Target interface {
	spool.Backend
	// Rescue runs one rescuer pass now (expired leases requeued, delivered
	// records past retention purged) and returns how many it requeued.
	Rescue(ctx context.Context) (int, error)
	// BodyStored reports whether the body of id is still stored.
	BodyStored(ctx context.Context, id string) (bool, error)
	// BodyCount counts stored bodies, to find any that outlived their message.
	BodyCount(ctx context.Context) (int, error)
	// Check runs the backend's own consistency check (indexes, counts).
	Check(ctx context.Context) error
}

// Suite describes a backend to Run.
type Suite struct {
	// Open opens a new, empty store with cfg. The suite closes it; the
	// implementation should also close it in t.Cleanup (ErrClosed ignored).
	Open func(t *testing.T, cfg Config) Target
	// Reopen opens the store of tgt again after the suite closed tgt: a
	// restarted daemon (or node).
	Reopen func(t *testing.T, tgt Target, cfg Config) Target
	// Peer opens a second node on tgt's store while tgt stays open; nil
	// for a store one process owns (bbolt's file lock).
	Peer func(t *testing.T, tgt Target, cfg Config) Target
	// OpenRequeuesLeases: opening the store proves every lease's owner is
	// gone (bbolt's exclusive lock), so every active message is queued
	// again. A shared store keeps leases until they expire and the
	// rescuer returns them.
	OpenRequeuesLeases bool
}

// Run runs the whole suite as subtests of t.
func Run(t *testing.T, s Suite) {
	t.Run("Lifecycle", func(t *testing.T) { testLifecycle(t, s) })
	t.Run("EnqueueValidation", func(t *testing.T) { testEnqueueValidation(t, s) })
	t.Run("TransitionsTable", func(t *testing.T) { testTransitionsTable(t, s) })
	t.Run("ActiveTransitionErrorsMentionLease", func(t *testing.T) { testActiveErrors(t, s) })
	t.Run("RecipientsAndHistory", func(t *testing.T) { testRecipientsAndHistory(t, s) })
	t.Run("PostponeUncountsAttempt", func(t *testing.T) { testPostpone(t, s) })
	t.Run("ClaimOrderAndDueQueries", func(t *testing.T) { testClaimOrder(t, s) })
	t.Run("FlushAndFlushAll", func(t *testing.T) { testFlush(t, s) })
	t.Run("Purge", func(t *testing.T) { testPurge(t, s) })
	t.Run("DeliveredRetentionByRescuer", func(t *testing.T) { testRetention(t, s) })
	t.Run("LeaseExpiryAndRescue", func(t *testing.T) { testLeaseRescue(t, s) })
	t.Run("RescuerRunsInBackground", func(t *testing.T) { testRescuerBackground(t, s) })
	t.Run("ClaimAccountStart", func(t *testing.T) { testClaimAccountStart(t, s) })
	t.Run("LeasesAcrossRestart", func(t *testing.T) { testLeasesAcrossRestart(t, s) })
	t.Run("ConcurrentClaimsTakeEachMessageOnce", func(t *testing.T) { testConcurrentClaims(t, s) })
	t.Run("IdempotencyKey", func(t *testing.T) { testIdempotencyKey(t, s) })
	t.Run("EnqueueBodyErrorStoresNothing", func(t *testing.T) { testBodyError(t, s) })
	t.Run("EnqueueVerify", func(t *testing.T) { testEnqueueVerify(t, s) })
	t.Run("LargeBodyRoundTrip", func(t *testing.T) { testLargeBody(t, s) })
	t.Run("HeldEnqueue", func(t *testing.T) { testHeldEnqueue(t, s) })
	t.Run("ClosedAndCancelled", func(t *testing.T) { testClosed(t, s) })
	t.Run("ListPagination", func(t *testing.T) { testListPagination(t, s) })
	t.Run("AccountStore", func(t *testing.T) { testAccountStore(t, s) })
	t.Run("AccountUpdate", func(t *testing.T) { testAccountUpdate(t, s) })
	t.Run("AuditLog", func(t *testing.T) { testAudit(t, s) })
	t.Run("ListMatching", func(t *testing.T) { testListMatching(t, s) })
	t.Run("AlertState", func(t *testing.T) { testAlertState(t, s) })
	t.Run("WaitingByAccount", func(t *testing.T) { testWaitingByAccount(t, s) })
	t.Run("Budget", func(t *testing.T) { testBudget(t, s) })
	t.Run("RouteGoesWithMessage", func(t *testing.T) { testRouteGoesWithMessage(t, s) })
	t.Run("PropertyStateMachine", func(t *testing.T) { testProperty(t, s) })
	if s.Peer != nil {
		t.Run("Nodes", func(t *testing.T) { testNodes(t, s) })
	}
}

// Clock is a settable clock shared by a test and the store.
type Clock struct {
	mu sync.Mutex
	t  time.Time
}

// NewClock returns a clock at a fixed, whole-second time.
func NewClock() *Clock { return &Clock{t: time.Date(2025, 3, 1, 9, 0, 0, 0, time.UTC)} }

// Now reads the clock.
func (c *Clock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.t
}

// Add moves the clock on by d and returns the new time.
func (c *Clock) Add(d time.Duration) time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.t = c.t.Add(d)
	return c.t
}

// env is one test's store and clock.
type env struct {
	t   *testing.T
	s   Suite
	clk *Clock
	cfg Config
	b   Target
	// acct is the account inState uses ("" = "acct"): tests sharing one
	// store keep their messages apart with accounts of their own.
	acct string
}

func newEnv(t *testing.T, s Suite) *env {
	clk := NewClock()
	e := &env{t: t, s: s, clk: clk, cfg: Config{Clock: clk.Now, RescueInterval: -1}}
	e.b = e.open()
	return e
}

func newEnvCfg(t *testing.T, s Suite, mod func(*Config)) *env {
	clk := NewClock()
	e := &env{t: t, s: s, clk: clk, cfg: Config{Clock: clk.Now, RescueInterval: -1}}
	mod(&e.cfg)
	e.b = e.open()
	return e
}

func (e *env) open() Target {
	e.t.Helper()
	b := e.s.Open(e.t, e.cfg)
	e.closeAtEnd(b)
	return b
}

func (e *env) closeAtEnd(b Target) {
	e.t.Cleanup(func() {
		if err := b.Check(context.Background()); err != nil && !errors.Is(err, spool.ErrClosed) {
			e.t.Errorf("cleanup Check: %v", err)
		}
		if err := b.Close(); err != nil && !errors.Is(err, spool.ErrClosed) {
			e.t.Errorf("cleanup Close: %v", err)
		}
	})
}

// reopen closes the store and opens it again, as a restart would.
func (e *env) reopen() {
	e.t.Helper()
	if err := e.b.Close(); err != nil {
		e.t.Fatalf("Close: %v", err)
	}
	b := e.s.Reopen(e.t, e.b, e.cfg)
	e.closeAtEnd(b)
	e.b = b
}

var ctx = context.Background()

func req(account string, to ...string) spool.EnqueueRequest {
	if len(to) == 0 {
		to = []string{"bob@example.com"}
	}
	return spool.EnqueueRequest{From: "scanner@example.com", To: to, Account: account,
		Source: spool.Source{Kind: spool.SourceSMTP, PeerIP: "127.0.0.1"}}
}

func (e *env) enqueue(r spool.EnqueueRequest, body string) string {
	e.t.Helper()
	id, err := e.b.Enqueue(ctx, r, bytes.NewReader([]byte(body)))
	if err != nil {
		e.t.Fatalf("Enqueue: %v", err)
	}
	return id
}

func mustGet(t testing.TB, b spool.Backend, id string) *spool.Message {
	t.Helper()
	m, err := b.Get(ctx, id)
	if err != nil {
		t.Fatalf("Get(%s): %v", id, err)
	}
	return m
}

func (e *env) get(id string) *spool.Message { e.t.Helper(); return mustGet(e.t, e.b, id) }

func readBody(t testing.TB, b spool.Backend, id string) string {
	t.Helper()
	f, err := b.OpenBody(id)
	if err != nil {
		t.Fatalf("OpenBody(%s): %v", id, err)
	}
	defer f.Close()
	data, err := io.ReadAll(f)
	if err != nil {
		t.Fatalf("reading body %s: %v", id, err)
	}
	return string(data)
}

func (e *env) bodyStored(id string) bool {
	e.t.Helper()
	ok, err := e.b.BodyStored(ctx, id)
	if err != nil {
		e.t.Fatalf("BodyStored(%s): %v", id, err)
	}
	return ok
}

func (e *env) bodyCount() int {
	e.t.Helper()
	n, err := e.b.BodyCount(ctx)
	if err != nil {
		e.t.Fatalf("BodyCount: %v", err)
	}
	return n
}

func describe(m *spool.Message) string {
	return fmt.Sprintf("%s state=%s attempts=%d next=%v lease=%s/%v", m.ID, m.State, m.Attempts, m.NextAttempt, m.LeaseOwner, m.LeaseUntil)
}

func ids(ms []*spool.Message) []string {
	var out []string
	for _, m := range ms {
		out = append(out, m.ID)
	}
	return out
}

// inState returns the ID of a fresh message brought into st by the legal
// path; active messages are leased by "w1".
func (e *env) inState(st spool.State) string {
	t := e.t
	t.Helper()
	acct := e.acct
	if acct == "" {
		acct = "acct"
	}
	id := e.enqueue(req(acct, "a@example.com", "b@example.com"), "body of "+string(st))
	switch st {
	case spool.StateQueued:
		return id
	case spool.StateHeld:
		if err := e.b.Hold(ctx, id, "admin"); err != nil {
			t.Fatal(err)
		}
		return id
	}
	ms, err := e.b.ClaimAccount(ctx, acct, e.clk.Now(), 1, "w1")
	if err != nil || len(ms) != 1 || ms[0].ID != id {
		t.Fatalf("claim for setup: %v %v", ids(ms), err)
	}
	switch st {
	case spool.StateDeferred:
		err = e.b.Defer(ctx, id, "w1", e.clk.Now().Add(time.Hour), spool.Result{Error: &spool.ErrorRecord{Code: 451, Text: "try later"}})
	case spool.StateDead:
		err = e.b.Dead(ctx, id, "w1", spool.Result{Reason: "550 no such user"})
	case spool.StateDelivered:
		err = e.b.Delivered(ctx, id, "w1", spool.Result{})
	}
	if err != nil {
		t.Fatalf("setup %s: %v", st, err)
	}
	if m := e.get(id); m.State != st {
		t.Fatalf("setup: got %s want %s", m.State, st)
	}
	return id
}

// waitFor polls cond until it holds (tests wait on conditions, not sleeps).
func waitFor(t testing.TB, what string, d time.Duration, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(d)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %v waiting for %s", d, what)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// drain empties a Notify channel.
func drain(c <-chan struct{}) {
	for {
		select {
		case <-c:
		default:
			return
		}
	}
}

var errCanceled = context.Canceled

// contextCancelled returns a context that is already cancelled.
func contextCancelled() (context.Context, context.CancelFunc) {
	c, cancel := context.WithCancel(context.Background())
	cancel()
	return c, cancel
}
