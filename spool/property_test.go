package spool

import (
	"context"
	"errors"
	"fmt"
	"os"
	"slices"
	"strings"
	"testing"
	"time"

	bolt "go.etcd.io/bbolt"
	"pgregory.net/rapid"
)

// modelMsg is what the property test expects of one message.
type modelMsg struct {
	id      string
	account string
	state   State
	due     time.Time // NextAttempt
	owner   string
	lease   time.Time
}

type propMachine struct {
	t     *rapid.T
	dir   string
	clk   *fakeClock
	s     *Spool
	model map[string]*modelMsg
}

func (p *propMachine) opts() Options {
	o := testOpts(p.clk)
	o.DeliveredRetention = 100000 * time.Hour // retention is tested elsewhere
	return o
}

func (p *propMachine) pick(t *rapid.T) *modelMsg {
	if len(p.model) == 0 {
		t.Skip("no messages")
	}
	ids := make([]string, 0, len(p.model))
	for id := range p.model {
		ids = append(ids, id)
	}
	slices.Sort(ids)
	return p.model[rapid.SampledFrom(ids).Draw(t, "id")]
}

// expect checks err against the model's verdict on legality.
func expect(t *rapid.T, op string, legal bool, err error) {
	if legal && err != nil {
		t.Fatalf("%s: legal op failed: %v", op, err)
	}
	if !legal && !(errors.Is(err, ErrWrongState) || errors.Is(err, ErrLeaseLost)) {
		t.Fatalf("%s: illegal op returned %v, want ErrWrongState/ErrLeaseLost", op, err)
	}
}

func TestPropertyStateMachine(t *testing.T) {
	base := t.TempDir()
	n := 0
	rapid.Check(t, func(t *rapid.T) {
		n++
		dir, err := os.MkdirTemp(base, "run")
		if err != nil {
			t.Fatal(err)
		}
		defer os.RemoveAll(dir)
		p := &propMachine{t: t, dir: dir, clk: newFakeClock(), model: map[string]*modelMsg{}}
		p.s, err = Open(dir, p.opts())
		if err != nil {
			t.Fatal(err)
		}
		defer func() { p.s.Close() }()
		ctx := context.Background()
		owners := []string{"w1", "w2"}

		activeOp := func(name string, apply func(m *modelMsg, owner string, now time.Time) error, after func(m *modelMsg, now time.Time)) func(*rapid.T) {
			return func(t *rapid.T) {
				m := p.pick(t)
				owner := rapid.SampledFrom(owners).Draw(t, "owner")
				now := p.clk.Now()
				err := apply(m, owner, now)
				legal := m.state == StateActive && m.owner == owner
				expect(t, name, legal, err)
				if legal {
					after(m, now)
				}
			}
		}
		adminOp := func(name string, from []State, apply func(id string) error, after func(m *modelMsg, now time.Time)) func(*rapid.T) {
			return func(t *rapid.T) {
				m := p.pick(t)
				err := apply(m.id)
				legal := slices.Contains(from, m.state)
				expect(t, name, legal, err)
				if legal {
					after(m, p.clk.Now())
				}
			}
		}

		t.Repeat(map[string]func(*rapid.T){
			"enqueue": func(t *rapid.T) {
				acct := rapid.SampledFrom([]string{"a", "b"}).Draw(t, "account")
				// Mostly inline bodies, sometimes one too large for that.
				body := "body"
				if rapid.IntRange(0, 9).Draw(t, "large") == 0 {
					body = strings.Repeat("x", MaxInlineBody+1)
				}
				id, err := p.s.Enqueue(ctx, req(acct), strings.NewReader(body))
				if err != nil {
					t.Fatal(err)
				}
				p.model[id] = &modelMsg{id: id, account: acct, state: StateQueued, due: p.clk.Now()}
			},
			"advance": func(t *rapid.T) {
				p.clk.Add(time.Duration(rapid.IntRange(1, 400).Draw(t, "seconds")) * time.Second)
			},
			"claim": func(t *rapid.T) {
				limit := rapid.IntRange(1, 3).Draw(t, "limit")
				acct := rapid.SampledFrom([]string{"", "a", "b"}).Draw(t, "account")
				owner := rapid.SampledFrom(owners).Draw(t, "owner")
				now := p.clk.Now()
				var want []*modelMsg
				for _, m := range p.model {
					if isDueState(m.state) && !m.due.After(now) && (acct == "" || m.account == acct) {
						want = append(want, m)
					}
				}
				slices.SortFunc(want, func(a, b *modelMsg) int {
					if c := a.due.Compare(b.due); c != 0 {
						return c
					}
					return strings.Compare(a.id, b.id)
				})
				if len(want) > limit {
					want = want[:limit]
				}
				var got []*Message
				var err error
				start := false
				switch {
				case acct == "":
					got, err = p.s.Claim(ctx, now, limit, owner)
				case rapid.Bool().Draw(t, "start"):
					start = true
					got, err = p.s.ClaimAccountStart(ctx, acct, now, limit, owner,
						func(*Message) time.Time { return now.Add(2 * time.Minute) })
				default:
					got, err = p.s.ClaimAccount(ctx, acct, now, limit, owner)
				}
				if err != nil {
					t.Fatal(err)
				}
				var wantIDs []string
				for _, m := range want {
					wantIDs = append(wantIDs, m.id)
					m.state, m.owner, m.lease = StateActive, owner, now.Add(5*time.Minute)
					if start {
						m.due = now.Add(2 * time.Minute)
					}
				}
				if fmt.Sprint(ids(got)) != fmt.Sprint(wantIDs) {
					t.Fatalf("claim got %v, want %v", ids(got), wantIDs)
				}
			},
			"startAttempt": activeOp("startAttempt", func(m *modelMsg, owner string, now time.Time) error {
				return p.s.StartAttempt(ctx, m.id, owner, now, now.Add(2*time.Minute))
			}, func(m *modelMsg, now time.Time) { m.due = now.Add(2 * time.Minute) }),
			"delivered": activeOp("delivered", func(m *modelMsg, owner string, now time.Time) error {
				return p.s.Delivered(ctx, m.id, owner, Result{})
			}, func(m *modelMsg, now time.Time) { m.state, m.owner = StateDelivered, "" }),
			"defer": activeOp("defer", func(m *modelMsg, owner string, now time.Time) error {
				return p.s.Defer(ctx, m.id, owner, now.Add(time.Minute), Result{})
			}, func(m *modelMsg, now time.Time) { m.state, m.owner, m.due = StateDeferred, "", now.Add(time.Minute) }),
			"dead": activeOp("dead", func(m *modelMsg, owner string, now time.Time) error {
				return p.s.Dead(ctx, m.id, owner, Result{Reason: "x"})
			}, func(m *modelMsg, now time.Time) { m.state, m.owner = StateDead, "" }),
			"postpone": activeOp("postpone", func(m *modelMsg, owner string, now time.Time) error {
				return p.s.Postpone(ctx, m.id, owner, now.Add(30*time.Second), "wait")
			}, func(m *modelMsg, now time.Time) { m.state, m.owner, m.due = StateDeferred, "", now.Add(30*time.Second) }),
			"hold": adminOp("hold", []State{StateQueued, StateDeferred, StateDead}, func(id string) error { return p.s.Hold(ctx, id, "") },
				func(m *modelMsg, now time.Time) { m.state = StateHeld }),
			"release": adminOp("release", []State{StateHeld}, func(id string) error { return p.s.Release(ctx, id) },
				func(m *modelMsg, now time.Time) { m.state, m.due = StateQueued, now }),
			"requeue": adminOp("requeue", []State{StateHeld, StateDead}, func(id string) error { return p.s.Requeue(ctx, id) },
				func(m *modelMsg, now time.Time) { m.state, m.due = StateQueued, now }),
			"flush": adminOp("flush", []State{StateQueued, StateDeferred}, func(id string) error { return p.s.Flush(ctx, id) },
				func(m *modelMsg, now time.Time) {
					if m.due.After(now) {
						m.due = now
					}
				}),
			"delete": adminOp("delete", []State{StateQueued, StateDeferred, StateHeld, StateDead, StateDelivered},
				func(id string) error { return p.s.Delete(ctx, id) },
				func(m *modelMsg, now time.Time) { delete(p.model, m.id) }),
			"purge": func(t *rapid.T) {
				st := rapid.SampledFrom([]State{StateDead, StateDelivered}).Draw(t, "state")
				n, err := p.s.Purge(ctx, st, p.clk.Now().Add(time.Hour))
				if err != nil {
					t.Fatal(err)
				}
				want := 0
				for id, m := range p.model {
					if m.state == st {
						delete(p.model, id)
						want++
					}
				}
				if n != want {
					t.Fatalf("purge %s removed %d, want %d", st, n, want)
				}
			},
			"rescue": func(t *rapid.T) {
				p.clk.Add(5*time.Minute + time.Second)
				if _, err := p.s.rescueNow(); err != nil {
					t.Fatal(err)
				}
				p.rescueModel()
			},
			"reopen": func(t *rapid.T) {
				if err := p.s.Close(); err != nil {
					t.Fatal(err)
				}
				var err error
				if p.s, err = Open(p.dir, p.opts()); err != nil {
					t.Fatal(err)
				}
				p.reopenModel() // recovery requeues every lease: their owner is gone
			},
			"": func(t *rapid.T) { p.checkInvariants(t) },
		})
	})
}

// rescueModel applies what the rescuer does to expired leases.
// reopenModel: Open holds the exclusive lock, so every lease belongs to a
// process that is gone and is requeued.
func (p *propMachine) reopenModel() {
	now := p.clk.Now()
	for _, m := range p.model {
		if m.state == StateActive {
			m.state, m.owner = StateQueued, ""
			if m.due.Before(now) {
				m.due = now
			}
		}
	}
}

func (p *propMachine) rescueModel() {
	now := p.clk.Now()
	for _, m := range p.model {
		if m.state == StateActive && m.lease.Before(now) {
			m.state, m.owner = StateQueued, ""
			if m.due.Before(now) {
				m.due = now
			}
		}
	}
}

func (p *propMachine) checkInvariants(t *rapid.T) {
	ctx := context.Background()
	// Each message is in exactly the state the model says, once.
	seen := map[string]State{}
	perState := map[State]int{}
	for _, st := range States {
		cursor := ""
		for {
			page, err := p.s.List(ctx, Filter{State: st}, cursor, 7)
			if err != nil {
				t.Fatal(err)
			}
			for _, m := range page.Messages {
				if prev, dup := seen[m.ID]; dup {
					t.Fatalf("%s listed as both %s and %s", m.ID, prev, st)
				}
				if m.State != st {
					t.Fatalf("%s listed under %s but is %s", m.ID, st, m.State)
				}
				seen[m.ID] = st
				perState[st]++
			}
			if page.Next == "" {
				break
			}
			cursor = page.Next
		}
	}
	if len(seen) != len(p.model) {
		t.Fatalf("spool lists %d messages, model has %d", len(seen), len(p.model))
	}
	for id, m := range p.model {
		if seen[id] != m.state {
			t.Fatalf("%s: spool state %s, model %s", id, seen[id], m.state)
		}
		if stored := bodyStored(p.s, id); stored != (m.state != StateDelivered) {
			t.Fatalf("%s (%s): body stored %v", id, m.state, stored)
		}
	}
	// No body outlives its message.
	if n, want := countBodies(t, p.s), len(p.model)-perStateModel(p.model, StateDelivered); n != want {
		t.Fatalf("%d bodies stored for %d undelivered messages", n, want)
	}
	stats, err := p.s.Stats(ctx)
	if err != nil {
		t.Fatal(err)
	}
	for _, st := range States {
		if stats[st] != perState[st] {
			t.Fatalf("Stats[%s] = %d, List finds %d", st, stats[st], perState[st])
		}
	}
	// The due indexes hold exactly the queued and deferred messages, at
	// their NextAttempt; the lease index exactly the active ones.
	err = p.s.db.View(func(tx *bolt.Tx) error {
		wantDue, wantAcct, wantLease := map[string]bool{}, map[string]bool{}, map[string]bool{}
		for _, m := range p.model {
			full, err := getMsg(tx, m.id)
			if err != nil {
				return err
			}
			if !full.NextAttempt.Equal(m.due) && isDueState(m.state) {
				return fmt.Errorf("%s: NextAttempt %v, model %v", m.id, full.NextAttempt, m.due)
			}
			if isDueState(m.state) {
				wantDue[string(dueKey(full.NextAttempt, m.id))] = true
				wantAcct[string(acctDueKey(full.Account, full.NextAttempt, m.id))] = true
			}
			if m.state == StateActive {
				wantLease[string(leaseKey(full.LeaseUntil, m.id))] = true
			}
		}
		for name, want := range map[string]map[string]bool{"due": wantDue, "acctdue": wantAcct, "leases": wantLease} {
			got := 0
			err := tx.Bucket([]byte(name)).ForEach(func(k, _ []byte) error {
				if !want[string(k)] {
					return fmt.Errorf("index %s has unexpected key %x", name, k)
				}
				got++
				return nil
			})
			if err != nil {
				return err
			}
			if got != len(want) {
				return fmt.Errorf("index %s has %d keys, want %d", name, got, len(want))
			}
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if err := p.s.Check(); err != nil {
		t.Fatal(err)
	}
}

func perStateModel(model map[string]*modelMsg, st State) int {
	n := 0
	for _, m := range model {
		if m.state == st {
			n++
		}
	}
	return n
}
