package delivery

import (
	"context"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/spoold/spoold/spool"
)

// slotsSpool is the fake spool with connection slots shared by "nodes":
// free is how many other nodes leave to this one.
type slotsSpool struct {
	*fakeSpool
	mu    sync.Mutex
	free  int
	tries int // AcquireConnSlot calls
}

func (s *slotsSpool) AcquireConnSlot(ctx context.Context, account string, limit int) (spool.ConnSlot, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.tries++
	if s.free == 0 {
		return nil, fmt.Errorf("%w: %s has %d", spool.ErrNoSlot, account, limit)
	}
	s.free--
	return &fakeSlot{s: s, lost: make(chan struct{})}, nil
}

func (s *slotsSpool) TakeRate(ctx context.Context, account string, perMinute float64, burst int, now time.Time) (time.Duration, error) {
	return 0, nil
}

func (s *slotsSpool) ReserveBudget(ctx context.Context, account, id string, n, limit int, window time.Duration, now time.Time) (bool, int, error) {
	return true, 0, nil
}

func (s *slotsSpool) CancelBudget(ctx context.Context, account, id string) error { return nil }
func (s *slotsSpool) RecordReserved(ctx context.Context, account, reservationID, id, own string, at time.Time, n int, forgetBefore time.Time) error {
	return s.BudgetRecord(ctx, account, id, own, at, n, forgetBefore)
}

func (s *slotsSpool) counts() (free, tries int) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.free, s.tries
}

type fakeSlot struct {
	s    *slotsSpool
	once sync.Once
	lost chan struct{}
}

func (sl *fakeSlot) Held(ctx context.Context) error { return nil }
func (sl *fakeSlot) Lost() <-chan struct{}          { return sl.lost }
func (sl *fakeSlot) Release() error {
	sl.once.Do(func() {
		sl.s.mu.Lock()
		sl.s.free++
		sl.s.mu.Unlock()
	})
	return nil
}

var _ spool.ClusterLimits = (*slotsSpool)(nil)

// TestSlotsAllTakenPausesNewWorkers checks that an account whose slots
// the other nodes all hold does not try again on every scheduling pass
// (each try costs the database statements, and with a pooled look no
// more, but a pass comes with every commit on any node), and that its
// mail goes once slotRetry has passed and a slot is free.
func TestSlotsAllTakenPausesNewWorkers(t *testing.T) {
	h := newHarness(t, hopt{noStart: true})
	sp := &slotsSpool{fakeSpool: h.sp}
	opts := h.eng.opts
	opts.Registerer = prometheus.NewRegistry() // one engine per registry
	eng, err := New([]AccountConfig{testAccount(h.up)}, sp, h.tokens, opts)
	if err != nil {
		t.Fatal(err)
	}
	h.eng = eng
	h.start()
	id := h.enqueue()
	waitFor(t, "a slot tried", func() bool { _, n := sp.counts(); return n >= 1 })
	// Workers of the failed try end; then passes, each of which would
	// start a worker, come one after another (the clock stands still).
	waitFor(t, "the worker gone", func() bool {
		eng.mu.Lock()
		defer eng.mu.Unlock()
		return eng.accounts["m365"].conns == 0
	})
	_, tries := sp.counts()
	for i := 0; i < 5; i++ {
		p := sp.passes.Load()
		sp.signal()
		waitFor(t, "a scheduling pass", func() bool { return sp.passes.Load() > p })
	}
	if _, n := sp.counts(); n != tries {
		t.Fatalf("every slot taken: %d more tries in 5 passes within %s; want none until then", n-tries, slotRetry)
	}
	if st := sp.get(id).State; st != spool.StateQueued {
		t.Fatalf("message %s while no slot was free", st)
	}
	// Another node gives a slot back; within slotRetry this node takes it.
	sp.mu.Lock()
	sp.free = 1
	sp.mu.Unlock()
	h.clock.Add(slotRetry)
	sp.signal()
	h.waitState(id, spool.StateDelivered)
	waitFor(t, "the slot given back", func() bool { free, _ := sp.counts(); return free == 1 })
}

// TestSlotsPauseEndsWhenOwnSlotIsFreed checks that a worker of the
// account giving its slot back ends the pause at once: that slot is free
// for this node's next connection without waiting out slotRetry.
func TestSlotsPauseEndsWhenOwnSlotIsFreed(t *testing.T) {
	h := newHarness(t, hopt{noStart: true})
	sp := &slotsSpool{fakeSpool: h.sp, free: 1}
	opts := h.eng.opts
	opts.Registerer = prometheus.NewRegistry() // one engine per registry
	eng, err := New([]AccountConfig{testAccount(h.up)}, sp, h.tokens, opts)
	if err != nil {
		t.Fatal(err)
	}
	h.eng = eng
	a := eng.accounts["m365"]
	eng.mu.Lock()
	a.slotsFullAt = h.clock.Now()
	paused := eng.slotsPausedLocked(a, h.clock.Now(), func(time.Time) {})
	eng.mu.Unlock()
	if !paused {
		t.Fatal("no pause right after every slot was found taken")
	}
	g, ok := eng.takeSlot(a)
	if !ok {
		t.Fatal("a free slot was not taken")
	}
	eng.releaseSlot(a, g)
	eng.mu.Lock()
	paused = eng.slotsPausedLocked(a, h.clock.Now(), func(time.Time) {})
	eng.mu.Unlock()
	if paused {
		t.Fatal("still paused after this node gave a slot back")
	}
	// A clock set back never makes the pause longer than slotRetry.
	eng.mu.Lock()
	a.slotsFullAt = h.clock.Now().Add(time.Hour)
	var until time.Time
	eng.slotsPausedLocked(a, h.clock.Now(), func(t time.Time) { until = t })
	eng.mu.Unlock()
	if want := h.clock.Now().Add(slotRetry); !until.Equal(want) {
		t.Fatalf("pause after the clock went back ends %s; want %s", until, want)
	}
}
