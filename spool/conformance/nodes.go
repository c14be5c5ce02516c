package conformance

import (
	"errors"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/spoold/spoold/spool"
)

// testNodes runs what a store shared by several nodes promises: one queue,
// wake-ups across nodes, each message claimed by one node, leases of a
// dead node returned by any other's rescuer, idempotency keys and account
// records shared.
func testNodes(t *testing.T, s Suite) {
	e := newEnv(t, s)
	peer := s.Peer(t, e.b, e.cfg)
	e.closeAtEnd(peer)

	t.Run("NotifyAcrossNodes", func(t *testing.T) {
		drain(peer.Notify())
		id := e.enqueue(req("a"), "x")
		select {
		case <-peer.Notify():
		case <-time.After(10 * time.Second):
			t.Fatal("an enqueue on one node did not wake the other")
		}
		if m := mustGet(t, peer, id); m.State != spool.StateQueued {
			t.Fatalf("peer sees %s", describe(m))
		}
		if err := peer.Delete(ctx, id); err != nil {
			t.Fatal(err)
		}
	})

	t.Run("ClaimsAcrossNodes", func(t *testing.T) {
		const n = 80
		for i := 0; i < n; i++ {
			e.enqueue(req([]string{"a", "b"}[i%2]), fmt.Sprint(i))
		}
		var mu sync.Mutex
		got := map[string]string{}
		var wg sync.WaitGroup
		for w, b := range []Target{e.b, peer, e.b, peer} {
			owner := fmt.Sprintf("node%d", w)
			wg.Add(1)
			go func() {
				defer wg.Done()
				for {
					ms, err := b.ClaimAccountStart(ctx, []string{"a", "b"}[w/2], e.clk.Now(), 3, owner,
						func(*spool.Message) time.Time { return e.clk.Now().Add(time.Minute) })
					if err != nil {
						t.Error(err)
						return
					}
					if len(ms) == 0 {
						return
					}
					mu.Lock()
					for _, m := range ms {
						if prev, dup := got[m.ID]; dup {
							t.Errorf("%s claimed by %s and %s", m.ID, prev, owner)
						}
						got[m.ID] = owner
					}
					mu.Unlock()
				}
			}()
		}
		wg.Wait()
		if len(got) != n {
			t.Fatalf("%d of %d claimed", len(got), n)
		}
		for id, owner := range got {
			if err := e.b.Delivered(ctx, id, owner, spool.Result{}); err != nil {
				t.Fatal(err)
			}
		}
	})

	t.Run("RescueOfAnotherNodesLease", func(t *testing.T) {
		id := e.enqueue(req("r"), "x")
		if ms, err := e.b.ClaimAccount(ctx, "r", e.clk.Now(), 1, "dead-node"); err != nil || len(ms) != 1 {
			t.Fatalf("claim: %v %v", ids(ms), err)
		}
		if n, err := peer.Rescue(ctx); err != nil || n != 0 {
			t.Fatalf("peer rescued a live lease: %d %v", n, err)
		}
		e.clk.Add(6 * time.Minute)
		if n, err := peer.Rescue(ctx); err != nil || n != 1 {
			t.Fatalf("peer Rescue = %d %v, want 1", n, err)
		}
		if err := e.b.Delivered(ctx, id, "dead-node", spool.Result{}); !errors.Is(err, spool.ErrLeaseLost) {
			t.Fatalf("the old owner's Delivered after a rescue: %v, want ErrLeaseLost", err)
		}
		if ms, err := peer.ClaimAccount(ctx, "r", e.clk.Now(), 1, "live-node"); err != nil || len(ms) != 1 {
			t.Fatalf("the rescued message is not claimable: %v %v", ids(ms), err)
		}
	})

	t.Run("IdempotencyKeyAcrossNodes", func(t *testing.T) {
		r := req("k")
		r.IdempotencyKey = "scan:shared/file.pdf"
		var wg sync.WaitGroup
		got := make([]string, 8)
		for i := range got {
			b := []Target{e.b, peer}[i%2]
			wg.Add(1)
			go func() {
				defer wg.Done()
				id, err := b.Enqueue(ctx, r, strings.NewReader("scan"))
				if err != nil {
					t.Error(err)
				}
				got[i] = id
			}()
		}
		wg.Wait()
		for _, id := range got {
			if id != got[0] {
				t.Fatalf("nodes enqueued one file as different messages: %v", got)
			}
		}
	})

	t.Run("AccountRecordsShared", func(t *testing.T) {
		if err := e.b.AccountPut(ctx, "m365", "auth.token", []byte("sealed")); err != nil {
			t.Fatal(err)
		}
		if v, ok, err := peer.AccountGet(ctx, "m365", "auth.token"); err != nil || !ok || string(v) != "sealed" {
			t.Fatalf("peer reads %q %v %v", v, ok, err)
		}
	})
}
