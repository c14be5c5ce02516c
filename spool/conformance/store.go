package conformance

import (
	"crypto/sha256"
	"errors"
	"fmt"
	"io"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/spoold/spoold/spool"
)

func testIdempotencyKey(t *testing.T, s Suite) {
	e := newEnv(t, s)
	r := req("acct")
	r.IdempotencyKey = "scan:alice/doc.pdf:sha256:abc"
	id1 := e.enqueue(r, "first")
	id2 := e.enqueue(r, "second")
	if id1 != id2 {
		t.Fatalf("second enqueue got %s, want %s", id2, id1)
	}
	if n := e.bodyCount(); n != 1 {
		t.Fatalf("%d bodies, want 1", n)
	}
	if got := readBody(t, e.b, id1); got != "first" {
		t.Fatalf("body = %q", got)
	}
	if m := e.get(id1); m.IdempotencyKey != r.IdempotencyKey {
		t.Fatalf("message key %q, want %q", m.IdempotencyKey, r.IdempotencyKey)
	}
	if id, ok, err := e.b.LookupKey(ctx, r.IdempotencyKey); err != nil || !ok || id != id1 {
		t.Fatalf("LookupKey = %s %v %v", id, ok, err)
	}
	if _, ok, _ := e.b.LookupKey(ctx, "other"); ok {
		t.Fatal("LookupKey(other) found")
	}
	if _, ok, err := e.b.LookupKey(ctx, ""); ok || err != nil {
		t.Fatalf("LookupKey(\"\") = %v %v, want not found", ok, err)
	}
	// Concurrent enqueues with one key: still exactly one message and one body.
	r.IdempotencyKey = "race"
	var wg sync.WaitGroup
	got := make([]string, 16)
	for i := range got {
		wg.Add(1)
		go func(i int) {
			defer wg.Done()
			id, err := e.b.Enqueue(ctx, r, strings.NewReader("race body"))
			if err != nil {
				t.Error(err)
			}
			got[i] = id
		}(i)
	}
	wg.Wait()
	for _, id := range got {
		if id != got[0] {
			t.Fatalf("racing enqueues returned different IDs: %v", got)
		}
	}
	if n := e.bodyCount(); n != 2 {
		t.Fatalf("%d bodies after key race, want 2", n)
	}
	st, _ := e.b.Stats(ctx)
	if st[spool.StateQueued] != 2 {
		t.Fatalf("queued = %d, want 2", st[spool.StateQueued])
	}
	// Deleting the message frees its key; so does purging it.
	if err := e.b.Delete(ctx, id1); err != nil {
		t.Fatal(err)
	}
	if _, ok, _ := e.b.LookupKey(ctx, "scan:alice/doc.pdf:sha256:abc"); ok {
		t.Fatal("key survives Delete")
	}
	if id3 := e.enqueue(r, "again"); id3 != got[0] {
		t.Fatalf("key of a live message: got %s, want %s", id3, got[0])
	}
	r.IdempotencyKey = "scan:alice/doc.pdf:sha256:abc"
	if id4 := e.enqueue(r, "new"); id4 == id1 {
		t.Fatal("a freed key returned the deleted message's ID")
	}
}

type errReader struct{ n int }

var errBoom = errors.New("client went away")

func (r *errReader) Read(p []byte) (int, error) {
	if r.n <= 0 {
		return 0, errBoom
	}
	n := min(len(p), r.n)
	r.n -= n
	return n, nil
}

func testBodyError(t *testing.T, s Suite) {
	e := newEnv(t, s)
	for _, size := range []int{10, 100000, 700 << 10} {
		_, err := e.b.Enqueue(ctx, req("a"), &errReader{n: size})
		if !errors.Is(err, errBoom) {
			t.Fatalf("err = %v, want wrapped errBoom", err)
		}
	}
	if n := e.bodyCount(); n != 0 {
		t.Fatalf("%d bodies left", n)
	}
	if st, _ := e.b.Stats(ctx); st[spool.StateQueued] != 0 {
		t.Fatalf("stats %v", st)
	}
}

type eofReader struct {
	r   io.Reader
	eof bool
}

func (e *eofReader) Read(p []byte) (int, error) {
	n, err := e.r.Read(p)
	if err == io.EOF {
		e.eof = true
	}
	return n, err
}

func testEnqueueVerify(t *testing.T, s Suite) {
	e := newEnv(t, s)
	for _, size := range []int{100, 200 << 10, 600 << 10} {
		body := strings.Repeat("x", size)
		r := &eofReader{r: strings.NewReader(body)}
		rq := req("a")
		rq.IdempotencyKey = fmt.Sprint("verify-", size)
		calls := 0
		rq.Verify = func() error {
			calls++
			if !r.eof {
				t.Error("Verify ran before the body was read to its end")
			}
			return errors.New("file changed")
		}
		if _, err := e.b.Enqueue(ctx, rq, r); err == nil || !strings.Contains(err.Error(), "file changed") {
			t.Fatalf("Enqueue: %v, want the Verify error", err)
		}
		if calls != 1 {
			t.Fatalf("Verify called %d times", calls)
		}
		if st, _ := e.b.Stats(ctx); st[spool.StateQueued] != 0 {
			t.Fatalf("a message was stored: %+v", st)
		}
		if n := e.bodyCount(); n != 0 {
			t.Fatalf("%d bodies left", n)
		}
		if _, ok, _ := e.b.LookupKey(ctx, rq.IdempotencyKey); ok {
			t.Fatal("a refused enqueue kept its idempotency key")
		}
		rq.Verify = func() error { return nil }
		id := e.enqueue(rq, body)
		if readBody(t, e.b, id) != body {
			t.Fatal("body differs")
		}
		if err := e.b.Delete(ctx, id); err != nil {
			t.Fatal(err)
		}
	}
}

// patterned is a reproducible body that is not all zeros, so a chunk
// stored twice or out of order changes the hash.
type patterned struct{ off, n int64 }

func (p *patterned) Read(b []byte) (int, error) {
	if p.off >= p.n {
		return 0, io.EOF
	}
	k := min(int64(len(b)), p.n-p.off)
	for i := int64(0); i < k; i++ {
		x := p.off + i
		b[i] = byte(x*7 + x>>13)
	}
	p.off += k
	return int(k), nil
}

func testLargeBody(t *testing.T, s Suite) {
	e := newEnv(t, s)
	const size = 9<<20 + 12345 // several chunks and a partial one
	want := sha256.New()
	io.Copy(want, &patterned{n: size})
	id, err := e.b.Enqueue(ctx, req("a"), &patterned{n: size})
	if err != nil {
		t.Fatal(err)
	}
	if m := e.get(id); m.Size != size {
		t.Fatalf("size %d, want %d", m.Size, size)
	}
	f, err := e.b.OpenBody(id)
	if err != nil {
		t.Fatal(err)
	}
	got := sha256.New()
	n, err := io.Copy(got, f)
	f.Close()
	if err != nil || n != size || fmt.Sprintf("%x", got.Sum(nil)) != fmt.Sprintf("%x", want.Sum(nil)) {
		t.Fatalf("read back %d bytes (%v), want %d with the same SHA-256", n, err, size)
	}
	// An empty body is a body too.
	empty := e.enqueue(req("a"), "")
	if got := readBody(t, e.b, empty); got != "" || e.get(empty).Size != 0 {
		t.Fatalf("empty body read back as %q", got)
	}
}

func testHeldEnqueue(t *testing.T, s Suite) {
	e := newEnv(t, s)
	r := req("a")
	r.Hold = "salvaged: may have been delivered"
	r.NotifyOnFailure = true
	id := e.enqueue(r, "x")
	m := e.get(id)
	if m.State != spool.StateHeld || m.Reason != r.Hold || !m.NotifyOnFailure {
		t.Fatalf("held enqueue: %s reason=%q", describe(m), m.Reason)
	}
	if ms, _ := e.b.Claim(ctx, e.clk.Now().Add(time.Hour), 10, "w"); len(ms) != 0 {
		t.Fatal("a held message was claimed")
	}
	if err := e.b.Release(ctx, id); err != nil {
		t.Fatal(err)
	}
	if ms, _ := e.b.Claim(ctx, e.clk.Now(), 10, "w"); len(ms) != 1 {
		t.Fatal("a released message is not claimable")
	}
}

func testClosed(t *testing.T, s Suite) {
	e := newEnv(t, s)
	cctx, cancel := contextCancelled()
	defer cancel()
	if _, err := e.b.Enqueue(cctx, req("a"), strings.NewReader("x")); !errors.Is(err, errCanceled) {
		t.Fatalf("Enqueue with cancelled ctx: %v", err)
	}
	if _, err := e.b.Claim(cctx, e.clk.Now(), 1, "w"); !errors.Is(err, errCanceled) {
		t.Fatalf("Claim with cancelled ctx: %v", err)
	}
	id := e.enqueue(req("a"), "x")
	if err := e.b.Close(); err != nil {
		t.Fatal(err)
	}
	b := e.b
	checks := map[string]error{
		"Close":     b.Close(),
		"Hold":      b.Hold(ctx, id, ""),
		"AcctPut":   b.AccountPut(ctx, "a", "k", nil),
		"OpenBody":  func() error { _, err := b.OpenBody(id); return err }(),
		"Get":       func() error { _, err := b.Get(ctx, id); return err }(),
		"Enqueue":   func() error { _, err := b.Enqueue(ctx, req("a"), strings.NewReader("x")); return err }(),
		"Stats":     func() error { _, err := b.Stats(ctx); return err }(),
		"List":      func() error { _, err := b.List(ctx, spool.Filter{}, "", 0); return err }(),
		"Rescue":    func() error { _, err := b.Rescue(ctx); return err }(),
		"NextDue":   func() error { _, _, err := b.NextDue(ctx, ""); return err }(),
		"LookupKey": func() error { _, _, err := b.LookupKey(ctx, "k"); return err }(),
		"Claim":     func() error { _, err := b.Claim(ctx, e.clk.Now(), 1, "w"); return err }(),
	}
	for name, err := range checks {
		if !errors.Is(err, spool.ErrClosed) {
			t.Errorf("%s after Close: %v, want ErrClosed", name, err)
		}
	}
}

func testListPagination(t *testing.T, s Suite) {
	e := newEnv(t, s)
	var all, heldA []string
	for i := 0; i < 25; i++ {
		acct := "a"
		if i%3 == 0 {
			acct = "b"
		}
		id := e.enqueue(req(acct), fmt.Sprint(i))
		all = append(all, id)
		if i%2 == 0 {
			if err := e.b.Hold(ctx, id, ""); err != nil {
				t.Fatal(err)
			}
			if acct == "a" {
				heldA = append(heldA, id)
			}
		}
		e.clk.Add(time.Millisecond)
	}
	collect := func(f spool.Filter, limit int) []string {
		var out []string
		cursor := ""
		for pages := 0; ; pages++ {
			if pages > 100 {
				t.Fatal("pagination does not terminate")
			}
			p, err := e.b.List(ctx, f, cursor, limit)
			if err != nil {
				t.Fatal(err)
			}
			if len(p.Messages) > limit {
				t.Fatalf("page of %d > limit %d", len(p.Messages), limit)
			}
			for _, m := range p.Messages {
				out = append(out, m.ID)
			}
			if p.Next == "" {
				return out
			}
			cursor = p.Next
		}
	}
	if got := collect(spool.Filter{}, 7); fmt.Sprint(got) != fmt.Sprint(all) {
		t.Fatalf("List all = %v\nwant %v", got, all)
	}
	if got := collect(spool.Filter{State: spool.StateHeld, Account: "a"}, 2); fmt.Sprint(got) != fmt.Sprint(heldA) {
		t.Fatalf("List held/a = %v\nwant %v", got, heldA)
	}
	if got := collect(spool.Filter{CreatedBefore: e.get(all[10]).Created}, 4); fmt.Sprint(got) != fmt.Sprint(all[:10]) {
		t.Fatalf("List created-before = %v\nwant %v", got, all[:10])
	}
	// A page exactly full with nothing after it has no Next.
	p, err := e.b.List(ctx, spool.Filter{}, all[19], 5)
	if err != nil || len(p.Messages) != 5 || p.Next != "" {
		t.Fatalf("last page: %d msgs next=%q err=%v", len(p.Messages), p.Next, err)
	}
	if p, err := e.b.List(ctx, spool.Filter{}, "", 0); err != nil || len(p.Messages) != 25 {
		t.Fatalf("List with the default limit: %d, %v", len(p.Messages), err)
	}
	if _, err := e.b.List(ctx, spool.Filter{State: "bogus"}, "", 1); !errors.Is(err, spool.ErrInvalid) {
		t.Fatalf("bogus state: %v", err)
	}
}

func testAccountStore(t *testing.T, s Suite) {
	e := newEnv(t, s)
	if _, ok, err := e.b.AccountGet(ctx, "m365", "token"); ok || err != nil {
		t.Fatalf("empty get: %v %v", ok, err)
	}
	if err := e.b.AccountPut(ctx, "m365", "token", []byte(`{"refresh":"r"}`)); err != nil {
		t.Fatal(err)
	}
	if err := e.b.AccountPut(ctx, "m365", "health", []byte("ok")); err != nil {
		t.Fatal(err)
	}
	if err := e.b.AccountPut(ctx, "m365", "empty", nil); err != nil {
		t.Fatal(err)
	}
	if err := e.b.AccountPut(ctx, "", "k", nil); !errors.Is(err, spool.ErrInvalid) {
		t.Fatalf("empty account: %v", err)
	}
	if _, _, err := e.b.AccountGet(ctx, "m365", strings.Repeat("k", 257)); !errors.Is(err, spool.ErrInvalid) {
		t.Fatalf("long key: %v", err)
	}
	e.reopen()
	v, ok, err := e.b.AccountGet(ctx, "m365", "token")
	if err != nil || !ok || string(v) != `{"refresh":"r"}` {
		t.Fatalf("after reopen: %q %v %v", v, ok, err)
	}
	if v, ok, err := e.b.AccountGet(ctx, "m365", "empty"); err != nil || !ok || len(v) != 0 {
		t.Fatalf("empty value: %q %v %v, want present and empty", v, ok, err)
	}
	if err := e.b.AccountPut(ctx, "m365", "token", []byte(`{"refresh":"r2"}`)); err != nil {
		t.Fatal(err)
	}
	if v, _, _ := e.b.AccountGet(ctx, "m365", "token"); string(v) != `{"refresh":"r2"}` {
		t.Fatalf("overwrite: %q", v)
	}
	if err := e.b.AccountDelete(ctx, "m365", "token"); err != nil {
		t.Fatal(err)
	}
	if _, ok, _ := e.b.AccountGet(ctx, "m365", "token"); ok {
		t.Fatal("deleted key still present")
	}
	if v, ok, _ := e.b.AccountGet(ctx, "m365", "health"); !ok || string(v) != "ok" {
		t.Fatal("sibling key lost")
	}
	if err := e.b.AccountDelete(ctx, "nobody", "k"); err != nil {
		t.Fatalf("delete of absent record: %v", err)
	}
}

func testAlertState(t *testing.T, s Suite) {
	e := newEnv(t, s)
	if st, err := e.b.AlertState(ctx); err != nil || len(st) != 0 {
		t.Fatalf("fresh spool: AlertState = %v, %v; want empty", st, err)
	}
	if err := e.b.AlertWrite(ctx, map[string][]byte{"active/a": []byte("1"), "active/b": []byte("2")}, nil); err != nil {
		t.Fatal(err)
	}
	if err := e.b.AlertWrite(ctx, map[string][]byte{"out/1": nil}, []string{"active/a", "never-written"}); err != nil {
		t.Fatal(err)
	}
	if err := e.b.AlertWrite(ctx, map[string][]byte{"": []byte("x")}, nil); !errors.Is(err, spool.ErrInvalid) {
		t.Fatalf("empty key: err = %v, want ErrInvalid", err)
	}
	if err := e.b.AlertWrite(ctx, nil, nil); err != nil {
		t.Fatalf("empty write: %v", err)
	}
	e.reopen()
	st, err := e.b.AlertState(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if len(st) != 2 || string(st["active/b"]) != "2" || st["out/1"] == nil {
		t.Fatalf("after reopen: %q", st)
	}
}

func testWaitingByAccount(t *testing.T, s Suite) {
	e := newEnv(t, s)
	e.enqueue(req("m365", "a@example.com"), "x")
	e.enqueue(req("m365", "b@example.com"), "x")
	id := e.enqueue(req("gmail", "c@example.com"), "x")
	if err := e.b.Hold(ctx, id, "test"); err != nil {
		t.Fatal(err)
	}
	got, err := e.b.WaitingByAccount(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if got["m365"] != 2 || got["gmail"] != 0 || len(got) != 1 {
		t.Fatalf("WaitingByAccount = %v, want m365:2 only (held is not waiting)", got)
	}
}

func testBudget(t *testing.T, s Suite) {
	e := newEnv(t, s)
	t0 := time.Date(2026, 1, 2, 9, 0, 0, 0, time.UTC)
	if es, err := e.b.BudgetEntries(ctx, "m365", time.Time{}); err != nil || len(es) != 0 {
		t.Fatalf("fresh spool: %v, %v; want none", es, err)
	}
	if err := e.b.BudgetRecord(ctx, "m365", "a", "m365", t0, 3, time.Time{}); err != nil {
		t.Fatal(err)
	}
	if err := e.b.BudgetRecord(ctx, "m365", "b", "relay", t0.Add(time.Hour), 2, time.Time{}); err != nil {
		t.Fatal(err)
	}
	if err := e.b.BudgetRecord(ctx, "m3650", "c", "m3650", t0, 7, time.Time{}); err != nil {
		t.Fatal(err)
	}
	if err := e.b.BudgetRecord(ctx, "", "d", "", t0, 1, time.Time{}); !errors.Is(err, spool.ErrInvalid) {
		t.Fatalf("empty account: %v, want ErrInvalid", err)
	}
	e.reopen()
	es, err := e.b.BudgetEntries(ctx, "m365", time.Time{})
	if err != nil {
		t.Fatal(err)
	}
	if len(es) != 2 || es[0].ID != "a" || es[0].Recipients != 3 || !es[0].At.Equal(t0) || es[1].ID != "b" || es[1].Recipients != 2 {
		t.Fatalf("after reopen: %+v", es)
	}
	if es, _ := e.b.BudgetEntries(ctx, "m365", t0.Add(time.Minute)); len(es) != 1 || es[0].ID != "b" {
		t.Fatalf("since: %+v", es)
	}
	if via, err := e.b.DeliveredVia(ctx, "b"); err != nil || via != "m365" {
		t.Fatalf("DeliveredVia(b) = %q, %v; want m365", via, err)
	}
	if via, _ := e.b.DeliveredVia(ctx, "a"); via != "" {
		t.Fatalf("DeliveredVia(a) = %q; want none (its own account)", via)
	}
	if err := e.b.BudgetRecord(ctx, "m365", "e", "m365", t0.Add(25*time.Hour), 1, t0.Add(30*time.Minute)); err != nil {
		t.Fatal(err)
	}
	if es, _ := e.b.BudgetEntries(ctx, "m365", time.Time{}); len(es) != 2 || es[0].ID != "b" || es[1].ID != "e" {
		t.Fatalf("after forgetting: %+v", es)
	}
	if es, _ := e.b.BudgetEntries(ctx, "m3650", time.Time{}); len(es) != 1 {
		t.Fatalf("other account touched: %+v", es)
	}
}

// testRouteGoesWithMessage: the fallback route of a delivered message
// (DeliveredVia) is removed with the message, by Delete and by Purge;
// before, it stayed for ever.
func testRouteGoesWithMessage(t *testing.T, s Suite) {
	e := newEnv(t, s)
	e.acct = "own"
	for _, remove := range []string{"delete", "purge"} {
		id := e.inState(spool.StateDelivered)
		if err := e.b.BudgetRecord(ctx, "fallback", id, "own", e.clk.Now(), 1, time.Time{}); err != nil {
			t.Fatal(err)
		}
		if via, err := e.b.DeliveredVia(ctx, id); err != nil || via != "fallback" {
			t.Fatalf("DeliveredVia = %q, %v; want fallback", via, err)
		}
		var err error
		if remove == "delete" {
			err = e.b.Delete(ctx, id)
		} else {
			_, err = e.b.Purge(ctx, spool.StateDelivered, e.clk.Now().Add(time.Hour))
		}
		if err != nil {
			t.Fatal(err)
		}
		if via, err := e.b.DeliveredVia(ctx, id); err != nil || via != "" {
			t.Errorf("after %s: DeliveredVia = %q, %v; want the route gone with the message", remove, via, err)
		}
	}
}

func testAccountUpdate(t *testing.T, s Suite) {
	e := newEnv(t, s)
	for _, a := range []string{"zeta", "alpha", "mid"} {
		if err := e.b.AccountPut(ctx, a, "auth.token", []byte("plain-"+a)); err != nil {
			t.Fatal(err)
		}
	}
	if err := e.b.AccountPut(ctx, "other", "auth.health", []byte("ok")); err != nil {
		t.Fatal(err)
	}
	got, err := e.b.AccountsWith(ctx, "auth.token")
	if err != nil || fmt.Sprint(got) != "[alpha mid zeta]" {
		t.Fatalf("AccountsWith = %v %v, want [alpha mid zeta]", got, err)
	}
	// Concurrent read-modify-writes never lose one another's change.
	var wg sync.WaitGroup
	for i := 0; i < 20; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			err := e.b.AccountUpdate(ctx, "alpha", "counter", func(old []byte) ([]byte, error) {
				return append(old, 'x'), nil
			})
			if err != nil {
				t.Error(err)
			}
		}()
	}
	wg.Wait()
	if v, _, _ := e.b.AccountGet(ctx, "alpha", "counter"); len(v) != 20 {
		t.Fatalf("after 20 concurrent updates: %q, want 20 x's", v)
	}
	var sawNil bool
	if err := e.b.AccountUpdate(ctx, "new", "k", func(old []byte) ([]byte, error) { sawNil = old == nil; return nil, nil }); err != nil || !sawNil {
		t.Fatalf("update of an absent record: %v, old nil %v", err, sawNil)
	}
	if _, ok, _ := e.b.AccountGet(ctx, "new", "k"); ok {
		t.Fatal("(nil, nil) from fn wrote a record")
	}
	boom := errors.New("cannot reseal")
	if err := e.b.AccountUpdate(ctx, "mid", "auth.token", func([]byte) ([]byte, error) { return nil, boom }); err != boom {
		t.Fatalf("fn's error: %v, want it unchanged", err)
	}
	if v, _, _ := e.b.AccountGet(ctx, "mid", "auth.token"); string(v) != "plain-mid" {
		t.Fatalf("a failed update changed the record to %q", v)
	}
	if err := e.b.AccountUpdate(ctx, "", "k", func([]byte) ([]byte, error) { return nil, nil }); !errors.Is(err, spool.ErrInvalid) {
		t.Fatalf("empty account: %v", err)
	}
}

func testAudit(t *testing.T, s Suite) {
	e := newEnv(t, s)
	t0 := time.Date(2026, 1, 2, 9, 0, 0, 0, time.UTC)
	if l, err := e.b.AuditList(ctx, time.Time{}, 0); err != nil || len(l) != 0 {
		t.Fatalf("fresh log: %v %v", l, err)
	}
	for i, action := range []string{"hold", "release", "delete", "purge"} {
		err := e.b.AuditAppend(ctx, spool.AuditEntry{Time: t0.Add(time.Duration(i) * time.Minute), Via: "socket", UID: 0,
			Action: action, Target: "01ABC", Result: "ok", Detail: strings.Repeat("d", 3000)})
		if err != nil {
			t.Fatal(err)
		}
	}
	// Same time twice: both kept, in the order written.
	if err := e.b.AuditAppend(ctx, spool.AuditEntry{Time: t0.Add(3 * time.Minute), Via: "console", UID: -1, Action: "flush", Result: "ok"}); err != nil {
		t.Fatal(err)
	}
	if err := e.b.AuditAppend(ctx, spool.AuditEntry{Action: "hold"}); !errors.Is(err, spool.ErrInvalid) {
		t.Fatalf("entry without a time: %v", err)
	}
	e.reopen()
	l, err := e.b.AuditList(ctx, time.Time{}, 0)
	if err != nil || len(l) != 5 {
		t.Fatalf("AuditList = %d %v", len(l), err)
	}
	var actions []string
	for _, a := range l {
		actions = append(actions, a.Action)
	}
	if fmt.Sprint(actions) != "[flush purge delete release hold]" {
		t.Fatalf("newest first: %v", actions)
	}
	if len(l[1].Detail) > 2003 || l[4].Via != "socket" || !l[4].Time.Equal(t0) {
		t.Fatalf("entry as stored: %+v", l[4])
	}
	if l, _ := e.b.AuditList(ctx, t0.Add(2*time.Minute), 2); len(l) != 2 || l[0].Action != "flush" {
		t.Fatalf("since and limit: %+v", l)
	}
	if n, err := e.b.AuditPrune(ctx, t0.Add(90*time.Second)); err != nil || n != 2 {
		t.Fatalf("AuditPrune = %d %v, want 2", n, err)
	}
	if l, _ := e.b.AuditList(ctx, time.Time{}, 0); len(l) != 3 {
		t.Fatalf("after prune: %d entries", len(l))
	}
}

func testListMatching(t *testing.T, s Suite) {
	e := newEnv(t, s)
	var all []string
	for i := 0; i < 30; i++ {
		r := req("a", fmt.Sprintf("user%d@example.com", i))
		all = append(all, e.enqueue(r, "x"))
		e.clk.Add(time.Millisecond)
	}
	rcpt7 := func(m *spool.Message) bool { return strings.HasSuffix(m.Recipients[0].Addr, "7@example.com") }
	// user7, user17, user27; newest first.
	p, err := e.b.ListMatching(ctx, spool.Filter{}, spool.ListOptions{Match: rcpt7, Newest: true}, "", 10)
	if err != nil || fmt.Sprint(ids(p.Messages)) != fmt.Sprint([]string{all[27], all[17], all[7]}) || p.Next != "" {
		t.Fatalf("newest matching = %v next=%q %v", ids(p.Messages), p.Next, err)
	}
	// A bound on the scan ends the page early with a cursor to go on from.
	p, err = e.b.ListMatching(ctx, spool.Filter{}, spool.ListOptions{Match: rcpt7, MaxScan: 10}, "", 10)
	if err != nil || fmt.Sprint(ids(p.Messages)) != fmt.Sprint([]string{all[7]}) || p.Next != all[9] {
		t.Fatalf("bounded scan = %v next=%q %v; want [user7] and next %s", ids(p.Messages), p.Next, err, all[9])
	}
	p, err = e.b.ListMatching(ctx, spool.Filter{}, spool.ListOptions{Match: rcpt7, MaxScan: 10}, p.Next, 10)
	if err != nil || fmt.Sprint(ids(p.Messages)) != fmt.Sprint([]string{all[17]}) || p.Next != all[19] {
		t.Fatalf("second bounded page = %v next=%q %v", ids(p.Messages), p.Next, err)
	}
	// Newest first from a cursor continues below it.
	p, err = e.b.ListMatching(ctx, spool.Filter{State: spool.StateQueued}, spool.ListOptions{Newest: true}, all[5], 3)
	if err != nil || fmt.Sprint(ids(p.Messages)) != fmt.Sprint([]string{all[4], all[3], all[2]}) || p.Next != all[2] {
		t.Fatalf("newest from a cursor = %v next=%q %v", ids(p.Messages), p.Next, err)
	}
}
