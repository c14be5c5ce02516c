package delivery

import (
	"context"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"sort"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/spoold/spoold/auth"
	"github.com/spoold/spoold/spool"
)

// fakeClock is a settable clock.
type fakeClock struct {
	mu sync.Mutex
	t  time.Time
}

func newClock() *fakeClock { return &fakeClock{t: time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)} }
func (c *fakeClock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.t
}
func (c *fakeClock) Add(d time.Duration) {
	c.mu.Lock()
	c.t = c.t.Add(d)
	c.mu.Unlock()
}

// fakeSpool is an in-memory Spool with the transition rules of spool.go.
type fakeSpool struct {
	t      testing.TB
	dir    string
	clock  func() time.Time
	mu     sync.Mutex
	msgs   map[string]*spool.Message
	keys   map[string]string
	seq    int
	notify chan struct{}
	defers []time.Time // next times passed to Defer, in order
	// onStart, if set, runs inside StartAttempt (panic injection etc.)
	onStart func(id string)
	passes  atomic.Int64 // DueAccounts calls: one per scheduler pass
	reasons []string     // Postpone reasons, in order
	// onPostpone, if set, runs at the start of Postpone (race injection).
	onPostpone func(id string)
	budget     map[string][]spool.BudgetEntry // recipient budget entries per account
}

func newFakeSpool(t testing.TB, clock func() time.Time) *fakeSpool {
	return &fakeSpool{t: t, dir: t.TempDir(), clock: clock, msgs: map[string]*spool.Message{},
		keys: map[string]string{}, notify: make(chan struct{}, 1)}
}

func (f *fakeSpool) signal() {
	select {
	case f.notify <- struct{}{}:
	default:
	}
}

func (f *fakeSpool) Enqueue(ctx context.Context, req spool.EnqueueRequest, body io.Reader) (string, error) {
	if len(req.To) == 0 || req.Account == "" {
		return "", spool.ErrInvalid
	}
	f.mu.Lock()
	if id, ok := f.keys[req.IdempotencyKey]; ok && req.IdempotencyKey != "" {
		f.mu.Unlock()
		return id, nil
	}
	f.seq++
	id := fmt.Sprintf("m%04d", f.seq)
	f.mu.Unlock()
	file, err := os.Create(filepath.Join(f.dir, id))
	if err != nil {
		return "", err
	}
	n, err := io.Copy(file, body)
	file.Close()
	if err != nil {
		return "", err
	}
	now := f.clock()
	m := &spool.Message{ID: id, State: spool.StateQueued, From: req.From, Account: req.Account, Source: req.Source,
		Size: n, Created: now, Updated: now, NextAttempt: now, NotifyOnFailure: req.NotifyOnFailure, IdempotencyKey: req.IdempotencyKey}
	for _, to := range req.To {
		m.Recipients = append(m.Recipients, spool.Recipient{Addr: to, State: spool.RcptPending})
	}
	f.mu.Lock()
	f.msgs[id] = m
	if req.IdempotencyKey != "" {
		f.keys[req.IdempotencyKey] = id
	}
	f.mu.Unlock()
	f.signal()
	return id, nil
}

// add enqueues a message with a body, failing the test on error.
func (f *fakeSpool) add(req spool.EnqueueRequest, body string) string {
	f.t.Helper()
	id, err := f.Enqueue(context.Background(), req, stringsReader(body))
	if err != nil {
		f.t.Fatalf("enqueue: %v", err)
	}
	return id
}

func (f *fakeSpool) Notify() <-chan struct{} { return f.notify }

func (f *fakeSpool) OpenBody(id string) (io.ReadCloser, error) {
	return os.Open(filepath.Join(f.dir, id))
}

func dueLocked(m *spool.Message, now time.Time) bool {
	return (m.State == spool.StateQueued || m.State == spool.StateDeferred) && !m.NextAttempt.After(now)
}

func (f *fakeSpool) ClaimAccount(ctx context.Context, account string, now time.Time, limit int, owner string) ([]*spool.Message, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	var due []*spool.Message
	for _, m := range f.msgs {
		if m.Account == account && dueLocked(m, now) {
			due = append(due, m)
		}
	}
	sort.Slice(due, func(i, j int) bool {
		if !due[i].NextAttempt.Equal(due[j].NextAttempt) {
			return due[i].NextAttempt.Before(due[j].NextAttempt)
		}
		return due[i].ID < due[j].ID
	})
	if len(due) > limit {
		due = due[:limit]
	}
	out := make([]*spool.Message, 0, len(due))
	for _, m := range due {
		m.State, m.LeaseOwner, m.LeaseUntil = spool.StateActive, owner, now.Add(5*time.Minute)
		out = append(out, copyMsg(m))
	}
	return out, nil
}

func (f *fakeSpool) ClaimAccountStart(ctx context.Context, account string, now time.Time, limit int, owner string, ifCrash func(m *spool.Message) time.Time) ([]*spool.Message, error) {
	out, err := f.ClaimAccount(ctx, account, now, limit, owner)
	for _, m := range out {
		if err == nil {
			err = f.StartAttempt(ctx, m.ID, owner, now, ifCrash(m))
		}
	}
	return out, err
}

func copyMsg(m *spool.Message) *spool.Message {
	c := *m
	c.Recipients = append([]spool.Recipient(nil), m.Recipients...)
	c.History = append([]spool.Attempt(nil), m.History...)
	return &c
}

func (f *fakeSpool) NextDue(ctx context.Context, account string) (time.Time, bool, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	var best time.Time
	ok := false
	for _, m := range f.msgs {
		if (m.State == spool.StateQueued || m.State == spool.StateDeferred) && (account == "" || m.Account == account) {
			if !ok || m.NextAttempt.Before(best) {
				best, ok = m.NextAttempt, true
			}
		}
	}
	return best, ok, nil
}

func (f *fakeSpool) DueAccounts(ctx context.Context, now time.Time) ([]string, error) {
	f.passes.Add(1)
	f.mu.Lock()
	defer f.mu.Unlock()
	set := map[string]bool{}
	for _, m := range f.msgs {
		if dueLocked(m, now) {
			set[m.Account] = true
		}
	}
	var out []string
	for a := range set {
		out = append(out, a)
	}
	sort.Strings(out)
	return out, nil
}

func (f *fakeSpool) active(id, owner string) (*spool.Message, error) {
	m := f.msgs[id]
	if m == nil {
		return nil, spool.ErrNotFound
	}
	if m.State != spool.StateActive {
		return nil, spool.ErrWrongState
	}
	if m.LeaseOwner != owner {
		return nil, spool.ErrLeaseLost
	}
	return m, nil
}

func (f *fakeSpool) StartAttempt(ctx context.Context, id, owner string, now, ifCrash time.Time) error {
	if f.onStart != nil {
		f.onStart(id)
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	m, err := f.active(id, owner)
	if err != nil {
		return err
	}
	m.Attempts++
	m.NextAttempt = ifCrash
	m.History = append(m.History, spool.Attempt{Start: now, Owner: owner})
	return nil
}

func (f *fakeSpool) RenewLease(ctx context.Context, id, owner string, until time.Time) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	m, err := f.active(id, owner)
	if err != nil {
		return err
	}
	m.LeaseUntil = until
	return nil
}

func (f *fakeSpool) closeAttempt(m *spool.Message, r spool.Result, result string) {
	if n := len(m.History); n > 0 && m.History[n-1].End.IsZero() {
		m.History[n-1].End, m.History[n-1].Result, m.History[n-1].Error = r.Now, result, r.Error
	}
	for _, rr := range r.Recipients {
		for i := range m.Recipients {
			if m.Recipients[i].Addr == rr.Addr {
				m.Recipients[i].State, m.Recipients[i].Error = rr.State, rr.Error
				if rr.State == spool.RcptDelivered {
					m.Recipients[i].DeliveredAt = r.Now
				}
			}
		}
	}
	if r.Error != nil {
		m.LastError = r.Error
	}
	m.LeaseOwner, m.LeaseUntil, m.Updated = "", time.Time{}, r.Now
}

func (f *fakeSpool) Delivered(ctx context.Context, id, owner string, r spool.Result) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	m, err := f.active(id, owner)
	if err != nil {
		return err
	}
	f.closeAttempt(m, r, "delivered")
	failed := false
	for i := range m.Recipients {
		if m.Recipients[i].State == spool.RcptPending {
			m.Recipients[i].State = spool.RcptDelivered
		}
		if m.Recipients[i].State == spool.RcptFailed {
			failed = true
		}
	}
	if failed {
		m.State, m.Reason = spool.StateDead, r.Reason
	} else {
		m.State, m.DeliveredAt = spool.StateDelivered, r.Now
	}
	return nil
}

func (f *fakeSpool) Defer(ctx context.Context, id, owner string, next time.Time, r spool.Result) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	m, err := f.active(id, owner)
	if err != nil {
		return err
	}
	f.closeAttempt(m, r, "deferred")
	m.State, m.NextAttempt = spool.StateDeferred, next
	f.defers = append(f.defers, next)
	return nil
}

func (f *fakeSpool) Dead(ctx context.Context, id, owner string, r spool.Result) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	m, err := f.active(id, owner)
	if err != nil {
		return err
	}
	f.closeAttempt(m, r, "dead")
	m.State, m.Reason = spool.StateDead, r.Reason
	return nil
}

func (f *fakeSpool) Postpone(ctx context.Context, id, owner string, next time.Time, reason string) error {
	if f.onPostpone != nil {
		f.onPostpone(id)
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	m, err := f.active(id, owner)
	if err != nil {
		return err
	}
	if n := len(m.History); n > 0 && m.History[n-1].End.IsZero() {
		m.History = m.History[:n-1]
		m.Attempts--
	}
	m.State, m.NextAttempt, m.Reason = spool.StateDeferred, next, reason
	m.LeaseOwner, m.LeaseUntil = "", time.Time{}
	f.reasons = append(f.reasons, reason)
	return nil
}

func (f *fakeSpool) Get(ctx context.Context, id string) (*spool.Message, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	m := f.msgs[id]
	if m == nil {
		return nil, spool.ErrNotFound
	}
	return copyMsg(m), nil
}

func (f *fakeSpool) FlushAll(ctx context.Context, account string) (int, error) {
	now := f.clock()
	f.mu.Lock()
	n := 0
	for _, m := range f.msgs {
		if (m.State == spool.StateQueued || m.State == spool.StateDeferred) && (account == "" || m.Account == account) {
			m.NextAttempt = now
			n++
		}
	}
	f.mu.Unlock()
	f.signal()
	return n, nil
}

func (f *fakeSpool) get(id string) *spool.Message {
	m, err := f.Get(context.Background(), id)
	if err != nil {
		f.t.Fatalf("get %s: %v", id, err)
	}
	return m
}

// all returns copies of all messages sorted by ID.
func (f *fakeSpool) all() []*spool.Message {
	f.mu.Lock()
	defer f.mu.Unlock()
	var out []*spool.Message
	for _, m := range f.msgs {
		out = append(out, copyMsg(m))
	}
	sort.Slice(out, func(i, j int) bool { return out[i].ID < out[j].ID })
	return out
}

// fakeTokens is a scripted token source.
type fakeTokens struct {
	mu            sync.Mutex
	token         string
	err           error
	refreshed     []string // tokens handed out by RefreshRejected, in order
	refreshErr    error
	refreshes     int
	needsReauth   []string
	misconfigured []string
	onRecovered   func(string)
	gate          chan struct{} // when set, AccessToken sends on it, then waits for a second message
}

func newTokens() *fakeTokens { return &fakeTokens{token: "tok-1"} }

func (f *fakeTokens) AccessToken(ctx context.Context, account string) (string, error) {
	f.mu.Lock()
	token, err, gate := f.token, f.err, f.gate
	f.mu.Unlock()
	if gate != nil {
		// The answer is made; hold it back as a slow caller would see it.
		gate <- struct{}{}
		<-gate
	}
	if err != nil {
		return "", fmt.Errorf("auth: account %s: %w", account, err)
	}
	return token, nil
}

func (f *fakeTokens) RefreshRejected(ctx context.Context, account, rejected string) (string, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.token != rejected && f.err == nil {
		return f.token, nil // already replaced: no second rotation
	}
	f.refreshes++
	if f.refreshErr != nil {
		return "", f.refreshErr
	}
	f.token = fmt.Sprintf("tok-%d", f.refreshes+1)
	f.refreshed = append(f.refreshed, f.token)
	return f.token, nil
}

func (f *fakeTokens) MarkNeedsReauth(ctx context.Context, account, reason string) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.needsReauth = append(f.needsReauth, account+": "+reason)
	f.err = auth.ErrNeedsReauth
	return nil
}

func (f *fakeTokens) MarkMisconfigured(ctx context.Context, account, reason string) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.misconfigured = append(f.misconfigured, account+": "+reason)
	f.err = auth.ErrMisconfigured
	return nil
}

func (f *fakeTokens) OnRecovered(fn func(string)) {
	f.mu.Lock()
	f.onRecovered = fn
	f.mu.Unlock()
}

// recover simulates a login: the account's error clears and the hook runs
// before the login would report success.
func (f *fakeTokens) recover(account string) {
	f.mu.Lock()
	f.err = nil
	fn := f.onRecovered
	f.mu.Unlock()
	if fn != nil {
		fn(account)
	}
}

func (f *fakeTokens) set(token string, err error) {
	f.mu.Lock()
	f.token, f.err = token, err
	f.mu.Unlock()
}

func (f *fakeTokens) snapshot() (refreshes int, reauth, misconf []string) {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.refreshes, append([]string(nil), f.needsReauth...), append([]string(nil), f.misconfigured...)
}

func (f *fakeSpool) Flush(ctx context.Context, id string) error {
	now := f.clock()
	f.mu.Lock()
	m := f.msgs[id]
	if m == nil {
		f.mu.Unlock()
		return spool.ErrNotFound
	}
	if m.State != spool.StateQueued && m.State != spool.StateDeferred {
		f.mu.Unlock()
		return spool.ErrWrongState
	}
	if m.NextAttempt.After(now) {
		m.NextAttempt = now
	}
	f.mu.Unlock()
	f.signal()
	return nil
}

// List pages by ID like the real spool (filters: state, account).
func (f *fakeSpool) List(ctx context.Context, flt spool.Filter, cursor string, limit int) (spool.Page, error) {
	var page spool.Page
	for _, m := range f.all() {
		if m.ID <= cursor || (flt.State != "" && m.State != flt.State) || (flt.Account != "" && m.Account != flt.Account) {
			continue
		}
		if len(page.Messages) == limit {
			page.Next = page.Messages[limit-1].ID
			break
		}
		page.Messages = append(page.Messages, m)
	}
	return page, nil
}

func (f *fakeSpool) BudgetRecord(ctx context.Context, account, id, own string, at time.Time, n int, forgetBefore time.Time) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.budget == nil {
		f.budget = map[string][]spool.BudgetEntry{}
	}
	var keep []spool.BudgetEntry
	for _, en := range f.budget[account] {
		if !en.At.Before(forgetBefore) {
			keep = append(keep, en)
		}
	}
	f.budget[account] = append(keep, spool.BudgetEntry{At: at, ID: id, Recipients: n})
	return nil
}

func (f *fakeSpool) BudgetEntries(ctx context.Context, account string, since time.Time) ([]spool.BudgetEntry, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	var out []spool.BudgetEntry
	for _, en := range f.budget[account] {
		if !en.At.Before(since) {
			out = append(out, en)
		}
	}
	return out, nil
}
