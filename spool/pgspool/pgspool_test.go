package pgspool_test

import (
	"context"
	"errors"
	"fmt"
	"io"
	"runtime"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/spoold/spoold/spool"
	"github.com/spoold/spoold/spool/conformance"
	"github.com/spoold/spoold/spool/pgspool"
	"github.com/spoold/spoold/spool/pgspool/pgtest"
	"github.com/spoold/spoold/spool/spooltest"
)

// zeros is an endless body of zero bytes.
type zeros struct{}

func (zeros) Read(p []byte) (int, error) { clear(p); return len(p), nil }

// peakHeap samples the heap while f runs and returns the highest value
// above the heap before f.
func peakHeap(f func()) uint64 {
	runtime.GC()
	var ms runtime.MemStats
	runtime.ReadMemStats(&ms)
	base := ms.HeapAlloc
	var peak atomic.Uint64
	stop := make(chan struct{})
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		t := time.NewTicker(2 * time.Millisecond)
		defer t.Stop()
		for {
			var ms runtime.MemStats
			runtime.ReadMemStats(&ms)
			if ms.HeapAlloc > base && ms.HeapAlloc-base > peak.Load() {
				peak.Store(ms.HeapAlloc - base)
			}
			select {
			case <-stop:
				return
			case <-t.C:
			}
		}
	}()
	f()
	close(stop)
	wg.Wait()
	return peak.Load()
}

func TestOnPostgres(t *testing.T) {
	cluster := pgtest.Start(t)
	ctx := context.Background()

	// A 35 MB scan goes in and out chunk by chunk: the heap never holds it.
	t.Run("LargeBodyConstantMemory", func(t *testing.T) {
		s := openPG(t, cluster.NewSchema(t), conformance.Config{RescueInterval: -1})
		const size = 35 << 20
		var id string
		var err error
		in := peakHeap(func() {
			id, err = s.Enqueue(ctx, spool.EnqueueRequest{From: "scanner@example.com", To: []string{"a@example.com"}, Account: "a",
				Source: spool.Source{Kind: spool.SourceScan}}, io.LimitReader(zeros{}, size))
		})
		if err != nil {
			t.Fatal(err)
		}
		var n int64
		out := peakHeap(func() {
			f, err := s.OpenBody(id)
			if err != nil {
				t.Fatal(err)
			}
			defer f.Close()
			n, err = io.Copy(io.Discard, f)
			if err != nil {
				t.Fatal(err)
			}
		})
		if n != size {
			t.Fatalf("read %d bytes, want %d", n, size)
		}
		t.Logf("peak heap growth: enqueue %d KiB, read %d KiB for a %d KiB body", in>>10, out>>10, size>>10)
		if in > 12<<20 || out > 12<<20 {
			t.Fatalf("peak heap growth enqueue %d MiB, read %d MiB: a 35 MiB body must stream", in>>20, out>>20)
		}
	})

	t.Run("MigrationsOnceAcrossNodes", func(t *testing.T) {
		dsn := cluster.NewSchema(t)
		var wg sync.WaitGroup
		for i := 0; i < 4; i++ {
			wg.Add(1)
			go func() {
				defer wg.Done()
				s, err := pgspool.Open(ctx, pgspool.Options{DSN: dsn, RescueInterval: -1, Node: fmt.Sprint("n", i), Logger: quiet})
				if err != nil {
					t.Error(err)
					return
				}
				s.Close()
			}()
		}
		wg.Wait()
		s := openPG(t, dsn, conformance.Config{RescueInterval: -1})
		nodes, err := s.Nodes(ctx)
		if err != nil || len(nodes) != 5 {
			t.Fatalf("Nodes = %d, %v; want the 4 starters and this one", len(nodes), err)
		}
	})

	t.Run("BadDSN", func(t *testing.T) {
		_, err := pgspool.Open(ctx, pgspool.Options{DSN: "host=/nonexistent password=s3cret-pw port=notaport"})
		if !errors.Is(err, spool.ErrInvalid) || strings.Contains(err.Error(), "s3cret-pw") {
			t.Fatalf("bad DSN: %v; want ErrInvalid without the password", err)
		}
		_, err = pgspool.Open(ctx, pgspool.Options{DSN: "host=/nonexistent password=s3cret-pw", ConnectTimeout: time.Second})
		if !errors.Is(err, spool.ErrUnavailable) || strings.Contains(err.Error(), "s3cret-pw") {
			t.Fatalf("unreachable server: %v; want ErrUnavailable without the password", err)
		}
	})

	// Last: it stops the server. While it is down, writes fail with
	// ErrUnavailable (ingest answers 4xx); what was committed before is
	// there after the restart, and the same spool works again.
	t.Run("DatabaseDownIsUnavailable", func(t *testing.T) {
		dsn := cluster.NewSchema(t)
		s := openPG(t, dsn, conformance.Config{RescueInterval: -1})
		r := spool.EnqueueRequest{From: "a@example.com", To: []string{"b@example.com"}, Account: "a"}
		before, err := s.Enqueue(ctx, r, strings.NewReader("before"))
		if err != nil {
			t.Fatal(err)
		}
		cluster.Stop(t)
		_, err = s.Enqueue(ctx, r, strings.NewReader("during"))
		if !errors.Is(err, spool.ErrUnavailable) {
			t.Fatalf("Enqueue with the database down: %v; want ErrUnavailable", err)
		}
		if _, err := s.Claim(ctx, time.Now(), 1, "w"); !errors.Is(err, spool.ErrUnavailable) {
			t.Fatalf("Claim with the database down: %v; want ErrUnavailable", err)
		}
		cluster.Restart(t)
		var after string
		// The pool reconnects on the next use once the server is back.
		spooltest.WaitFor(t, "an enqueue to succeed after the restart", 30*time.Second, func() bool {
			after, err = s.Enqueue(ctx, r, strings.NewReader("after"))
			if err != nil && !errors.Is(err, spool.ErrUnavailable) {
				t.Fatalf("Enqueue after the restart: %v", err)
			}
			return err == nil
		})
		for id, body := range map[string]string{before: "before", after: "after"} {
			f, err := s.OpenBody(id)
			if err != nil {
				t.Fatal(err)
			}
			got, _ := io.ReadAll(f)
			f.Close()
			if string(got) != body {
				t.Fatalf("%s: body %q, want %q", id, got, body)
			}
		}
		if st, err := s.Stats(ctx); err != nil || st[spool.StateQueued] != 2 {
			t.Fatalf("Stats after the restart: %v %v; want 2 queued", st, err)
		}
		// The listener reconnected: another node's enqueue wakes this one.
		// Three in a row, so that a wake-up the reconnecting listener
		// sends on its own cannot pass for one.
		peer := openPG(t, dsn, conformance.Config{RescueInterval: -1})
		for i := 0; i < 3; i++ {
			spooltest.WaitFor(t, "a wake-up from the other node after the restart", 30*time.Second, func() bool {
				for len(s.Notify()) > 0 {
					<-s.Notify()
				}
				if _, err := peer.Enqueue(ctx, r, strings.NewReader("wake")); err != nil {
					t.Fatal(err)
				}
				select {
				case <-s.Notify():
					return true
				case <-time.After(time.Second):
					return false
				}
			})
		}
	})
}

// TestPeerWakeUps checks how a node is woken by commits: by its own at
// once (locally, not a second time when LISTEN hands its own NOTIFY
// back), by another node's after PeerWakeDelay, the ones arriving
// meanwhile merged into one. Each node waking for every other node's
// commit doubled the database statements per message with three nodes.
func TestPeerWakeUps(t *testing.T) {
	cluster := pgtest.Start(t)
	dsn := cluster.NewSchema(t)
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	// Long enough that a burst of commits, and their notifications, fit
	// well inside it on a loaded machine.
	const delay = time.Second
	open := func() *pgspool.Spool {
		s, err := pgspool.Open(ctx, pgspool.Options{DSN: dsn, RescueInterval: -1, Logger: quiet, MaxConns: 4, PeerWakeDelay: delay})
		if err != nil {
			t.Fatalf("pgspool.Open: %v", err)
		}
		t.Cleanup(func() { s.Close() })
		return s
	}
	a, b := open(), open()
	drain := func(s *pgspool.Spool) {
		for len(s.Notify()) > 0 {
			<-s.Notify()
		}
	}
	r := spool.EnqueueRequest{From: "a@example.com", To: []string{"b@example.com"}, Account: "a"}
	enqueue := func(s *pgspool.Spool) {
		t.Helper()
		if _, err := s.Enqueue(ctx, r, strings.NewReader("x")); err != nil {
			t.Fatal(err)
		}
	}
	// waitWake returns how long after start s was woken.
	waitWake := func(s *pgspool.Spool, start time.Time) time.Duration {
		t.Helper()
		select {
		case <-s.Notify():
			return time.Since(start)
		case <-time.After(30 * time.Second):
			t.Fatal("no wake-up within 30 s")
			return 0
		}
	}

	drain(a)
	drain(b)
	start := time.Now()
	enqueue(a)
	if len(a.Notify()) != 1 {
		t.Fatal("the committing node was not woken by the time Enqueue returned")
	}
	drain(a)
	// b's wake-up for this commit is waited for here: its notification
	// can reach b's listener hundreds of milliseconds late on a loaded
	// machine, and a wake-up still pending would land in the burst below
	// and pass for an early one.
	if d := waitWake(b, start); d < delay {
		t.Fatalf("b woken %v after a's commit, before the peer delay %v", d, delay)
	}
	// b's commit reaches a's listener after a's own, on the same
	// connection: were a's own NOTIFY passed on, a would wake before b's
	// delay ran out.
	start = time.Now()
	enqueue(b)
	drain(b)
	if d := waitWake(a, start); d < delay {
		t.Fatalf("a woken %v after b's commit, before the peer delay %v: its own commit's NOTIFY woke it again", d, delay)
	}
	// The first of a burst of another node's commits starts the delay,
	// which the rest do not extend: one wake-up, within the delay of the
	// first (plus the machine's slack).
	drain(b)
	start = time.Now()
	for range 5 {
		enqueue(a)
	}
	took := time.Since(start)
	d := waitWake(b, start)
	if d < delay {
		t.Fatalf("b woken %v after a's first commit, before the delay %v", d, delay)
	}
	if took < delay/3 {
		// Only when the burst (and the delivery of its notifications)
		// fitted in the delay is one wake-up all of it.
		select {
		case <-b.Notify():
			t.Fatal("b woken twice for a burst of commits within the delay")
		case <-time.After(delay + delay/2):
		}
	}
}
