package pgspool_test

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/spoold/spoold/spool"
	"github.com/spoold/spoold/spool/conformance"
	"github.com/spoold/spoold/spool/pgspool"
	"github.com/spoold/spoold/spool/pgspool/pgtest"
	"github.com/spoold/spoold/spool/spooltest"
)

// TestClusterLimits runs three nodes on one spool and checks the limits
// they share: connection slots, rate, recipient budget, and one refresh at
// a time per grant.
func TestClusterLimits(t *testing.T) {
	cluster := pgtest.Start(t)
	ctx := context.Background()
	nodes := func(t *testing.T) []*pgTarget {
		dsn := cluster.NewSchema(t)
		var out []*pgTarget
		for i := 0; i < 3; i++ {
			out = append(out, openPG(t, dsn, conformance.Config{RescueInterval: -1}))
		}
		return out
	}

	t.Run("ConnectionSlots", func(t *testing.T) {
		ns := nodes(t)
		var mu sync.Mutex
		var held []*pgspool.Slot
		refused := 0
		var wg sync.WaitGroup
		for i := 0; i < 9; i++ {
			wg.Add(1)
			go func() {
				defer wg.Done()
				sl, err := ns[i%3].AcquireSlot(ctx, "m365", 3)
				mu.Lock()
				defer mu.Unlock()
				switch {
				case errors.Is(err, pgspool.ErrNoSlot):
					refused++
				case err != nil:
					t.Error(err)
				default:
					held = append(held, sl)
				}
			}()
		}
		wg.Wait()
		if len(held) != 3 || refused != 6 {
			t.Fatalf("%d slots taken, %d refused; want 3 and 6 (3 connections per mailbox, all nodes together)", len(held), refused)
		}
		if _, err := ns[0].AcquireSlot(ctx, "gmail", 1); err != nil {
			t.Fatalf("another account's slot: %v", err)
		}
		// A released slot is free for any node.
		if err := held[0].Release(); err != nil {
			t.Fatal(err)
		}
		again, err := ns[2].AcquireSlot(ctx, "m365", 3)
		if err != nil || again.Index() != held[0].Index() {
			t.Fatalf("after a release: %v, %v; want slot %d", again, err, held[0].Index())
		}
		// A node whose session dies gives its slot back at once.
		conn, err := pgx.Connect(ctx, strings.Split(again.DSNForTest(), " search_path=")[0])
		if err != nil {
			t.Fatal(err)
		}
		defer conn.Close(ctx)
		if _, err := conn.Exec(ctx, "SELECT pg_terminate_backend($1)", again.PIDForTest()); err != nil {
			t.Fatal(err)
		}
		// The slot says so at once, not at its next keep-alive ping: the
		// upstream connection it guards must close before another node
		// takes it.
		start := time.Now()
		select {
		case <-again.Lost():
			if took := time.Since(start); took >= pgspool.SlotKeepAlive {
				t.Errorf("a terminated slot session was noticed after %s, as late as a keep-alive ping", took)
			}
		case <-time.After(pgspool.SlotKeepAlive + pgspool.SlotPingTimeout + 5*time.Second):
			t.Fatal("a slot whose session was terminated is not reported lost")
		}
		if err := again.Held(ctx); err == nil {
			t.Fatal("Held reports a slot whose session was terminated")
		}
		if err := again.Release(); err != nil {
			t.Errorf("releasing a lost slot: %v; want nothing to do", err)
		}
		// The client sees the session end (its FATAL and EOF) a moment
		// before the server process exits and drops its locks: the slot
		// is free soon after, not necessarily at once.
		var sl *pgspool.Slot
		var lastErr error
		spooltest.WaitFor(t, "the slot of the dead session to be free", 10*time.Second, func() bool {
			sl, lastErr = ns[1].AcquireSlot(ctx, "m365", 3)
			if lastErr != nil && !errors.Is(lastErr, spool.ErrNoSlot) {
				t.Fatalf("taking the slot of a dead session: %v", lastErr)
			}
			return lastErr == nil
		})
		for _, h := range append(held[1:], sl) {
			if err := h.Held(ctx); err != nil {
				t.Fatal(err)
			}
			h.Release()
		}
	})

	t.Run("QuietSlotStaysHeld", func(t *testing.T) {
		ns := nodes(t)
		sl, err := ns[0].AcquireSlot(ctx, "m365", 1)
		if err != nil {
			t.Fatal(err)
		}
		// Past a keep-alive ping, a healthy slot is still held, and only by us.
		select {
		case <-sl.Lost():
			t.Fatalf("a healthy slot reported lost: %v", sl.Held(ctx))
		case <-time.After(pgspool.SlotKeepAlive + 2*time.Second):
		}
		if _, err := ns[1].AcquireSlot(ctx, "m365", 1); !errors.Is(err, pgspool.ErrNoSlot) {
			t.Fatalf("another node took a held slot: %v", err)
		}
		if err := sl.Release(); err != nil {
			t.Fatalf("releasing after a ping: %v", err)
		}
		again, err := ns[1].AcquireSlot(ctx, "m365", 1)
		if err != nil {
			t.Fatalf("a released slot is not free: %v", err)
		}
		again.Release()
	})

	t.Run("Rate", func(t *testing.T) {
		ns := nodes(t)
		now := time.Date(2026, 1, 1, 12, 0, 0, 0, time.UTC)
		// 60/min with bursts of 2, shared: two go at once, from any nodes.
		for i, want := range []time.Duration{0, 0, time.Second} {
			wait, err := ns[i].TakeRate(ctx, "m365", 60, 2, now)
			if err != nil || wait != want {
				t.Fatalf("message %d on node %d: wait %v, %v; want %v", i+1, i, wait, err, want)
			}
		}
		if wait, _ := ns[0].TakeRate(ctx, "m365", 60, 2, now.Add(time.Second)); wait != 0 {
			t.Fatalf("a second later: wait %v, want 0", wait)
		}
		if wait, _ := ns[1].TakeRate(ctx, "m365", 60, 2, now.Add(time.Second)); wait != time.Second {
			t.Fatalf("then at once: wait %v, want 1s", wait)
		}
		if wait, _ := ns[1].TakeRate(ctx, "other", 60, 2, now); wait != 0 {
			t.Fatalf("another account waits %v", wait)
		}
	})

	t.Run("BudgetNeverOvershoots", func(t *testing.T) {
		ns := nodes(t)
		now := time.Date(2026, 1, 1, 12, 0, 0, 0, time.UTC)
		var mu sync.Mutex
		granted := 0
		var wg sync.WaitGroup
		for i := 0; i < 30; i++ {
			wg.Add(1)
			go func() {
				defer wg.Done()
				ok, used, err := ns[i%3].ReserveBudget(ctx, "m365", fmt.Sprint("msg", i), 3, 50, 24*time.Hour, now)
				if err != nil {
					t.Error(err)
					return
				}
				if used > 50 {
					t.Errorf("budget used %d of 50", used)
				}
				if ok {
					mu.Lock()
					granted++
					mu.Unlock()
				}
			}()
		}
		wg.Wait()
		if granted != 16 {
			t.Fatalf("%d reservations of 3 granted against 50; want 16", granted)
		}
		es, err := ns[0].BudgetEntries(ctx, "m365", now.Add(-time.Hour))
		if err != nil || len(es) != 16 {
			t.Fatalf("entries: %d, %v", len(es), err)
		}
		if err := ns[1].CancelBudget(ctx, "m365", es[0].ID); err != nil {
			t.Fatal(err)
		}
		if ok, used, _ := ns[2].ReserveBudget(ctx, "m365", "late", 2, 50, 24*time.Hour, now); !ok || used != 47 {
			t.Fatalf("after giving 3 back: ok=%v used=%d; want true, 47", ok, used)
		}
		// A day later the window is empty again.
		if ok, used, _ := ns[0].ReserveBudget(ctx, "m365", "tomorrow", 3, 50, 24*time.Hour, now.Add(25*time.Hour)); !ok || used != 3 {
			t.Fatalf("next day: ok=%v used=%d", ok, used)
		}
	})

	t.Run("OneRefreshPerGrant", func(t *testing.T) {
		ns := nodes(t)
		// The token server rotates the refresh token on every use and
		// counts a token presented twice, as providers do before they
		// revoke the grant.
		var mu sync.Mutex
		used := map[string]bool{}
		reuse, issued := 0, 0
		exchange := func(rt string) string {
			mu.Lock()
			defer mu.Unlock()
			if used[rt] {
				reuse++
			}
			used[rt] = true
			issued++
			return fmt.Sprint("rt-", issued)
		}
		if err := ns[0].AccountPut(ctx, "m365", "auth.token", []byte("rt-0")); err != nil {
			t.Fatal(err)
		}
		var wg sync.WaitGroup
		for i := 0; i < 15; i++ {
			wg.Add(1)
			go func() {
				defer wg.Done()
				_, err := ns[i%3].RefreshLocked(ctx, "m365", "auth.token", func(ctx context.Context, cur []byte, found bool) ([]byte, error) {
					if !found {
						return nil, errors.New("no grant")
					}
					next := exchange(string(cur))
					time.Sleep(2 * time.Millisecond) // the token endpoint's response time: widens the race a missing lock would lose
					return []byte(next), nil
				})
				if err != nil {
					t.Error(err)
				}
			}()
		}
		wg.Wait()
		if reuse != 0 || issued != 15 {
			t.Fatalf("%d refresh tokens presented twice in %d refreshes; want none", reuse, issued)
		}
		v, _, _ := ns[2].AccountGet(ctx, "m365", "auth.token")
		if string(v) != "rt-15" {
			t.Fatalf("stored grant %q, want the last rotation rt-15", v)
		}
		// The callback's own error comes back unchanged and stores nothing.
		boom := errors.New("invalid_grant")
		if _, err := ns[0].RefreshLocked(ctx, "m365", "auth.token", func(context.Context, []byte, bool) ([]byte, error) { return nil, boom }); err != boom {
			t.Fatalf("callback error: %v", err)
		}
		if v, _, _ := ns[0].AccountGet(ctx, "m365", "auth.token"); string(v) != "rt-15" {
			t.Fatalf("a failed refresh changed the grant to %q", v)
		}
	})
}

// A link to the database that dies without a word (a partition: no FIN,
// no reset, the bytes just vanish) is noticed by the slot's keep-alive
// within SlotKeepAlive+SlotPingTimeout, the bound the README gives for
// the upstream connection it guards.
func TestSlotLostOnASilentLink(t *testing.T) {
	cluster := pgtest.Start(t)
	dsn := cluster.NewSchema(t)
	var sockDir string
	for _, kv := range strings.Fields(dsn) {
		if v, ok := strings.CutPrefix(kv, "host="); ok {
			sockDir = v
		}
	}
	if sockDir == "" {
		t.Fatalf("no host in %q", dsn)
	}
	// A relay on a socket of our own that can turn into a black hole.
	proxyDir := t.TempDir()
	ln, err := net.Listen("unix", filepath.Join(proxyDir, ".s.PGSQL.5432"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	var silent atomic.Bool
	pipe := func(dst, src net.Conn) {
		defer dst.Close()
		defer src.Close()
		b := make([]byte, 32<<10)
		for {
			n, err := src.Read(b)
			if err != nil {
				return
			}
			if silent.Load() {
				continue // lost on the way
			}
			if _, err := dst.Write(b[:n]); err != nil {
				return
			}
		}
	}
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			s, err := net.Dial("unix", filepath.Join(sockDir, ".s.PGSQL.5432"))
			if err != nil {
				c.Close()
				continue
			}
			go pipe(s, c)
			go pipe(c, s)
		}
	}()
	node := openPG(t, strings.Replace(dsn, "host="+sockDir, "host="+proxyDir, 1), conformance.Config{RescueInterval: -1})
	t.Cleanup(func() { silent.Store(false) }) // before the spool closes
	ctx := context.Background()
	sl, err := node.AcquireSlot(ctx, "m365", 1)
	if err != nil {
		t.Fatal(err)
	}
	silent.Store(true)
	start := time.Now()
	bound := pgspool.SlotKeepAlive + pgspool.SlotPingTimeout
	select {
	case <-sl.Lost():
		took := time.Since(start)
		t.Logf("a slot on a silent link was reported lost after %s (bound %s)", took.Round(time.Millisecond), bound)
		if took > bound+2*time.Second {
			t.Errorf("a slot on a silent link was reported lost after %s; the bound is %s", took, bound)
		}
	case <-time.After(bound + 10*time.Second):
		t.Fatalf("a slot on a silent link is not reported lost %s later", bound+10*time.Second)
	}
	if err := sl.Held(ctx); err == nil || !strings.Contains(err.Error(), "lost") {
		t.Errorf("Held on a lost slot: %v", err)
	}
	if err := sl.Release(); err != nil {
		t.Errorf("releasing a lost slot: %v", err)
	}
}

// dialCounter forwards connections to a PostgreSQL unix socket through a
// socket of its own and counts them: each is a session the server forks
// a backend for.
type dialCounter struct {
	dir   string
	dials atomic.Int64
}

// countDials serves the socket of dsn's host from a new directory and
// returns the counter and dsn pointing there.
func countDials(t *testing.T, dsn string) (*dialCounter, string) {
	t.Helper()
	var host string
	for _, f := range strings.Fields(dsn) {
		if h, ok := strings.CutPrefix(f, "host="); ok {
			host = h
		}
	}
	socks, _ := filepath.Glob(filepath.Join(host, ".s.PGSQL.*"))
	var sock string
	for _, s := range socks {
		if !strings.HasSuffix(s, ".lock") {
			sock = s
		}
	}
	if sock == "" {
		t.Fatalf("no PostgreSQL socket in %q (DSN %q)", host, dsn)
	}
	d := &dialCounter{dir: t.TempDir()}
	ln, err := net.Listen("unix", filepath.Join(d.dir, filepath.Base(sock)))
	if err != nil {
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	t.Cleanup(func() { ln.Close(); wg.Wait() })
	wg.Add(1)
	go func() {
		defer wg.Done()
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			d.dials.Add(1)
			up, err := net.Dial("unix", sock)
			if err != nil {
				c.Close()
				continue
			}
			wg.Add(1)
			go func() {
				defer wg.Done()
				go func() { io.Copy(up, c); up.Close() }()
				io.Copy(c, up)
				c.Close()
			}()
		}
	}()
	return d, strings.Replace(dsn, "host="+host, "host="+d.dir, 1)
}

// TestSlotRefusedWithoutASession checks that a node finding every slot of
// an account held by other nodes says so without opening a session (a
// backend forked for each refusal was most of what three nodes spent on
// slots), and that it takes a freed slot at its index.
func TestSlotRefusedWithoutASession(t *testing.T) {
	cluster := pgtest.Start(t)
	ctx := context.Background()
	dsn := cluster.NewSchema(t)
	other := openPG(t, dsn, conformance.Config{RescueInterval: -1})
	counter, proxied := countDials(t, dsn)
	node := openPG(t, proxied, conformance.Config{RescueInterval: -1})
	// Accounts of both signs of the first advisory key (pg_locks shows it
	// as an unsigned oid): with four, one of each is all but certain, and
	// each must be read right.
	for _, account := range []string{"m365", "gmail", "scan@example.com", "relay"} {
		var held []*pgspool.Slot
		for i := 0; i < 3; i++ {
			sl, err := other.AcquireSlot(ctx, account, 3)
			if err != nil {
				t.Fatal(err)
			}
			held = append(held, sl)
		}
		before := counter.dials.Load()
		for i := 0; i < 10; i++ {
			if _, err := node.AcquireSlot(ctx, account, 3); !errors.Is(err, pgspool.ErrNoSlot) {
				t.Fatalf("%s: every slot held by another node, AcquireSlot: %v; want ErrNoSlot", account, err)
			}
		}
		if n := counter.dials.Load() - before; n != 0 {
			t.Errorf("%s: 10 refusals opened %d database sessions; want none (the held slots are read on a pooled connection)", account, n)
		}
		if err := held[1].Release(); err != nil {
			t.Fatal(err)
		}
		sl, err := node.AcquireSlot(ctx, account, 3)
		if err != nil || sl.Index() != held[1].Index() {
			t.Fatalf("%s: after slot %d was released: %v, %v; want that slot", account, held[1].Index(), sl, err)
		}
		if n := counter.dials.Load() - before; n != 1 {
			t.Errorf("%s: taking a free slot opened %d sessions; want 1 (the slot's own)", account, n)
		}
		// The slot taken is held: the other node is refused it now.
		if _, err := other.AcquireSlot(ctx, account, 3); !errors.Is(err, pgspool.ErrNoSlot) {
			t.Fatalf("%s: a slot taken after the look is not held: %v", account, err)
		}
		sl.Release()
		held[0].Release()
		held[2].Release()
	}
}
