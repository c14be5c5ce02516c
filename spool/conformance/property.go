package conformance

import (
	"errors"
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"

	"pgregory.net/rapid"

	"github.com/spoold/spoold/spool"
)

// modelMsg is what the property test expects of one message.
type modelMsg struct {
	id      string
	account string
	state   spool.State
	due     time.Time // NextAttempt
	owner   string
	lease   time.Time
}

type propMachine struct {
	suite Suite
	env   *env
	model map[string]*modelMsg
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
	if !legal && !(errors.Is(err, spool.ErrWrongState) || errors.Is(err, spool.ErrLeaseLost)) {
		t.Fatalf("%s: illegal op returned %v, want ErrWrongState/ErrLeaseLost", op, err)
	}
}

// testProperty drives random operations against the store and a model of
// the state machine, and checks after each that both agree: states,
// due times, claims in due order, bodies, counts.
func testProperty(t *testing.T, s Suite) {
	rapid.Check(t, func(rt *rapid.T) {
		clk := NewClock()
		e := &env{t: t, s: s, clk: clk, cfg: Config{Clock: clk.Now, RescueInterval: -1, DeliveredRetention: 100000 * time.Hour}}
		e.b = s.Open(t, e.cfg)
		defer func() { e.b.Close() }()
		p := &propMachine{suite: s, env: e, model: map[string]*modelMsg{}}
		owners := []string{"w1", "w2"}

		activeOp := func(name string, apply func(m *modelMsg, owner string, now time.Time) error, after func(m *modelMsg, now time.Time)) func(*rapid.T) {
			return func(t *rapid.T) {
				m := p.pick(t)
				owner := rapid.SampledFrom(owners).Draw(t, "owner")
				now := clk.Now()
				err := apply(m, owner, now)
				legal := m.state == spool.StateActive && m.owner == owner
				expect(t, name, legal, err)
				if legal {
					after(m, now)
				}
			}
		}
		adminOp := func(name string, from []spool.State, apply func(id string) error, after func(m *modelMsg, now time.Time)) func(*rapid.T) {
			return func(t *rapid.T) {
				m := p.pick(t)
				err := apply(m.id)
				legal := slices.Contains(from, m.state)
				expect(t, name, legal, err)
				if legal {
					after(m, clk.Now())
				}
			}
		}

		rt.Repeat(map[string]func(*rapid.T){
			"enqueue": func(t *rapid.T) {
				acct := rapid.SampledFrom([]string{"a", "b"}).Draw(t, "account")
				// Mostly small bodies, sometimes one past the inline limit.
				body := "body"
				if rapid.IntRange(0, 9).Draw(t, "large") == 0 {
					body = strings.Repeat("x", spool.MaxInlineBody+1)
				}
				id, err := e.b.Enqueue(ctx, req(acct), strings.NewReader(body))
				if err != nil {
					t.Fatal(err)
				}
				p.model[id] = &modelMsg{id: id, account: acct, state: spool.StateQueued, due: clk.Now()}
			},
			"advance": func(t *rapid.T) {
				clk.Add(time.Duration(rapid.IntRange(1, 400).Draw(t, "seconds")) * time.Second)
			},
			"claim": func(t *rapid.T) {
				limit := rapid.IntRange(1, 3).Draw(t, "limit")
				acct := rapid.SampledFrom([]string{"", "a", "b"}).Draw(t, "account")
				owner := rapid.SampledFrom(owners).Draw(t, "owner")
				now := clk.Now()
				var want []*modelMsg
				for _, m := range p.model {
					if spool.IsDue(m.state) && !m.due.After(now) && (acct == "" || m.account == acct) {
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
				var got []*spool.Message
				var err error
				start := false
				switch {
				case acct == "":
					got, err = e.b.Claim(ctx, now, limit, owner)
				case rapid.Bool().Draw(t, "start"):
					start = true
					got, err = e.b.ClaimAccountStart(ctx, acct, now, limit, owner,
						func(*spool.Message) time.Time { return now.Add(2 * time.Minute) })
				default:
					got, err = e.b.ClaimAccount(ctx, acct, now, limit, owner)
				}
				if err != nil {
					t.Fatal(err)
				}
				var wantIDs []string
				for _, m := range want {
					wantIDs = append(wantIDs, m.id)
					m.state, m.owner, m.lease = spool.StateActive, owner, now.Add(5*time.Minute)
					if start {
						m.due = now.Add(2 * time.Minute)
					}
				}
				if fmt.Sprint(ids(got)) != fmt.Sprint(wantIDs) {
					t.Fatalf("claim got %v, want %v", ids(got), wantIDs)
				}
			},
			"startAttempt": activeOp("startAttempt", func(m *modelMsg, owner string, now time.Time) error {
				return e.b.StartAttempt(ctx, m.id, owner, now, now.Add(2*time.Minute))
			}, func(m *modelMsg, now time.Time) { m.due = now.Add(2 * time.Minute) }),
			"delivered": activeOp("delivered", func(m *modelMsg, owner string, now time.Time) error {
				return e.b.Delivered(ctx, m.id, owner, spool.Result{})
			}, func(m *modelMsg, now time.Time) { m.state, m.owner = spool.StateDelivered, "" }),
			"defer": activeOp("defer", func(m *modelMsg, owner string, now time.Time) error {
				return e.b.Defer(ctx, m.id, owner, now.Add(time.Minute), spool.Result{})
			}, func(m *modelMsg, now time.Time) {
				m.state, m.owner, m.due = spool.StateDeferred, "", now.Add(time.Minute)
			}),
			"dead": activeOp("dead", func(m *modelMsg, owner string, now time.Time) error {
				return e.b.Dead(ctx, m.id, owner, spool.Result{Reason: "x"})
			}, func(m *modelMsg, now time.Time) { m.state, m.owner = spool.StateDead, "" }),
			"postpone": activeOp("postpone", func(m *modelMsg, owner string, now time.Time) error {
				return e.b.Postpone(ctx, m.id, owner, now.Add(30*time.Second), "wait")
			}, func(m *modelMsg, now time.Time) {
				m.state, m.owner, m.due = spool.StateDeferred, "", now.Add(30*time.Second)
			}),
			"hold": adminOp("hold", []spool.State{spool.StateQueued, spool.StateDeferred, spool.StateDead},
				func(id string) error { return e.b.Hold(ctx, id, "") },
				func(m *modelMsg, now time.Time) { m.state = spool.StateHeld }),
			"release": adminOp("release", []spool.State{spool.StateHeld}, func(id string) error { return e.b.Release(ctx, id) },
				func(m *modelMsg, now time.Time) { m.state, m.due = spool.StateQueued, now }),
			"requeue": adminOp("requeue", []spool.State{spool.StateHeld, spool.StateDead}, func(id string) error { return e.b.Requeue(ctx, id) },
				func(m *modelMsg, now time.Time) { m.state, m.due = spool.StateQueued, now }),
			"flush": adminOp("flush", []spool.State{spool.StateQueued, spool.StateDeferred}, func(id string) error { return e.b.Flush(ctx, id) },
				func(m *modelMsg, now time.Time) {
					if m.due.After(now) {
						m.due = now
					}
				}),
			"delete": adminOp("delete", []spool.State{spool.StateQueued, spool.StateDeferred, spool.StateHeld, spool.StateDead, spool.StateDelivered},
				func(id string) error { return e.b.Delete(ctx, id) },
				func(m *modelMsg, now time.Time) { delete(p.model, m.id) }),
			"purge": func(t *rapid.T) {
				st := rapid.SampledFrom([]spool.State{spool.StateDead, spool.StateDelivered}).Draw(t, "state")
				n, err := e.b.Purge(ctx, st, clk.Now().Add(time.Hour))
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
				clk.Add(5*time.Minute + time.Second)
				if _, err := e.b.Rescue(ctx); err != nil {
					t.Fatal(err)
				}
				p.rescueModel(false)
			},
			"reopen": func(t *rapid.T) {
				if err := e.b.Close(); err != nil {
					t.Fatal(err)
				}
				e.b = s.Reopen(e.t, e.b, e.cfg)
				if s.OpenRequeuesLeases {
					p.rescueModel(true)
				}
			},
			"": func(t *rapid.T) { p.checkInvariants(t) },
		})
	})
}

// rescueModel applies what the rescuer does to expired leases (all leases
// when the store's open proves their owners gone).
func (p *propMachine) rescueModel(all bool) {
	now := p.env.clk.Now()
	for _, m := range p.model {
		if m.state == spool.StateActive && (all || m.lease.Before(now)) {
			m.state, m.owner = spool.StateQueued, ""
			if m.due.Before(now) {
				m.due = now
			}
		}
	}
}

func (p *propMachine) checkInvariants(t *rapid.T) {
	b := p.env.b
	// Each message is in exactly the state the model says, once.
	seen := map[string]*spool.Message{}
	perState := map[spool.State]int{}
	for _, st := range spool.States {
		cursor := ""
		for {
			page, err := b.List(ctx, spool.Filter{State: st}, cursor, 7)
			if err != nil {
				t.Fatal(err)
			}
			for _, m := range page.Messages {
				if prev, dup := seen[m.ID]; dup {
					t.Fatalf("%s listed as both %s and %s", m.ID, prev.State, st)
				}
				if m.State != st {
					t.Fatalf("%s listed under %s but is %s", m.ID, st, m.State)
				}
				seen[m.ID] = m
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
	nextDue := map[string]time.Time{}
	undelivered := 0
	for id, m := range p.model {
		got := seen[id]
		if got == nil || got.State != m.state {
			t.Fatalf("%s: spool has %v, model %s", id, got, m.state)
		}
		if spool.IsDue(m.state) {
			if !got.NextAttempt.Equal(m.due) {
				t.Fatalf("%s: NextAttempt %v, model %v", id, got.NextAttempt, m.due)
			}
			for _, k := range []string{"", m.account} {
				if d, ok := nextDue[k]; !ok || m.due.Before(d) {
					nextDue[k] = m.due
				}
			}
		}
		if m.state == spool.StateActive && (got.LeaseOwner != m.owner || !got.LeaseUntil.Equal(m.lease)) {
			t.Fatalf("%s: lease %s/%v, model %s/%v", id, got.LeaseOwner, got.LeaseUntil, m.owner, m.lease)
		}
		stored, err := b.BodyStored(ctx, id)
		if err != nil {
			t.Fatal(err)
		}
		if stored != (m.state != spool.StateDelivered) {
			t.Fatalf("%s (%s): body stored %v", id, m.state, stored)
		}
		if m.state != spool.StateDelivered {
			undelivered++
		}
	}
	// No body outlives its message.
	if n, err := b.BodyCount(ctx); err != nil || n != undelivered {
		t.Fatalf("%d bodies stored (%v) for %d undelivered messages", n, err, undelivered)
	}
	for _, acct := range []string{"", "a", "b"} {
		due, ok, err := b.NextDue(ctx, acct)
		want, wantOK := nextDue[acct]
		if err != nil || ok != wantOK || (ok && !due.Equal(want)) {
			t.Fatalf("NextDue(%q) = %v %v %v, model %v %v", acct, due, ok, err, want, wantOK)
		}
	}
	stats, err := b.Stats(ctx)
	if err != nil {
		t.Fatal(err)
	}
	for _, st := range spool.States {
		if stats[st] != perState[st] {
			t.Fatalf("Stats[%s] = %d, List finds %d", st, stats[st], perState[st])
		}
	}
	if err := b.Check(ctx); err != nil {
		t.Fatal(err)
	}
}
