package adminapi

import (
	"context"
	"log/slog"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/spoold/spoold/cmd/spoold/adminapi/wire"
	"github.com/spoold/spoold/spool"
)

// An admin types the start of an ID from `spoolctl list`, in any case.
func TestMessageIDPrefixAndCase(t *testing.T) {
	e := newEnv(t, Options{})
	ctx := context.Background()
	var ids []string
	for range 12 {
		ids = append(ids, e.enqueue(t, "a@example.com", "b@example.com"))
	}
	// IDs 01TEST0001..01TEST0012: "01TEST001" starts 0010, 0011 and 0012.
	m, err := e.c.Get(ctx, strings.ToLower(ids[11]))
	if err != nil || m.ID != ids[11] {
		t.Fatalf("lower case: %+v %v", m.ID, err)
	}
	m, err = e.c.Get(ctx, "01test0005")
	if err != nil || m.ID != ids[4] {
		t.Fatalf("exact, other case: %q %v", m.ID, err)
	}
	_, err = e.c.Get(ctx, "01TEST001")
	wantCode(t, err, wire.CodeInvalidArgument, "message ID 01TEST001 is ambiguous: it starts 3 messages (01TEST0010, 01TEST0011, 01TEST0012)")
	_, err = e.c.Get(ctx, "01")
	wantCode(t, err, wire.CodeInvalidArgument, "and 2 more); give more of the ID")
	// With 0010 and 0012 gone, "01test001" is unique.
	for _, id := range []string{ids[9], ids[11]} {
		if err := e.sp.Delete(ctx, id); err != nil {
			t.Fatal(err)
		}
	}
	if m, err := e.c.Get(ctx, "01test001"); err != nil || m.ID != ids[10] {
		t.Fatalf("unique prefix: %q %v", m.ID, err)
	}
	_, err = e.c.Get(ctx, "01TESTX")
	wantCode(t, err, wire.CodeNotFound, "message 01TESTX not found")

	// Any case and a unique prefix work for hold, release, body and delete.
	if v, err := e.c.Hold(ctx, "01test0007", ""); err != nil || v.ID != ids[6] || v.State != wire.StateHeld {
		t.Fatalf("hold by prefix: %+v %v", v, err)
	}
	if v, err := e.c.Release(ctx, "01TEST0007"[:10]); err != nil || v.State != wire.StateQueued {
		t.Fatalf("release: %+v %v", v, err)
	}
	rc, err := e.c.Body(ctx, "01test0007")
	if err != nil {
		t.Fatal(err)
	}
	rc.Close()
	if err := e.c.Delete(ctx, "01test0007"); err != nil {
		t.Fatal(err)
	}
	if _, err := e.sp.Get(ctx, ids[6]); err == nil {
		t.Fatal("delete by lower-case ID left the message")
	}
}

func TestSubjectInViews(t *testing.T) {
	e := newEnv(t, Options{})
	ctx := context.Background()
	id, err := e.sp.Enqueue(ctx, spool.EnqueueRequest{From: "a@example.com", To: []string{"b@example.com"}, Account: "m365",
		Source: spool.Source{Kind: spool.SourceSMTP}},
		strings.NewReader("From: a@example.com\r\nSubject: =?UTF-8?Q?Scan_f=C3=BCr_Bob?=\r\n\r\nx\r\n"))
	if err != nil {
		t.Fatal(err)
	}
	e.enqueue(t, "a@example.com", "b@example.com") // Subject: hi
	m, err := e.c.Get(ctx, id)
	if err != nil || m.Subject != "Scan für Bob" {
		t.Fatalf("show subject %q %v", m.Subject, err)
	}
	l, err := e.c.List(ctx, wire.ListRequest{})
	if err != nil || len(l.Messages) != 2 || l.Messages[0].Subject != "Scan für Bob" || l.Messages[1].Subject != "hi" {
		t.Fatalf("list subjects: %+v %v", l.Messages, err)
	}
}

// A typo in --account is an error naming the accounts, not an empty
// result; a configured account without messages is an empty result.
func TestUnknownAccountFilters(t *testing.T) {
	e := newEnv(t, Options{})
	ctx := context.Background()
	e.enqueue(t, "a@example.com", "b@example.com")
	const want = `unknown account "m356": the configured accounts are m365, gmail`
	_, err := e.c.List(ctx, wire.ListRequest{Account: "m356"})
	wantCode(t, err, wire.CodeUnknownAccount, want)
	_, err = e.c.FlushAll(ctx, "m356")
	wantCode(t, err, wire.CodeUnknownAccount, want)
	_, err = e.c.RequeueAll(ctx, wire.StateDead, "m356")
	wantCode(t, err, wire.CodeUnknownAccount, want)
	if n, err := e.c.FlushAll(ctx, "gmail"); err != nil || n.Count != 0 {
		t.Fatalf("flush of a configured account: %+v %v", n, err)
	}
	if l, err := e.c.List(ctx, wire.ListRequest{Account: "m365"}); err != nil || len(l.Messages) != 1 {
		t.Fatalf("list m365: %+v %v", l, err)
	}
	// Messages of an account removed from the config still list.
	if _, err := e.sp.Enqueue(ctx, spool.EnqueueRequest{From: "a@example.com", To: []string{"b@example.com"}, Account: "old",
		Source: spool.Source{Kind: spool.SourceSMTP}}, strings.NewReader("Subject: x\r\n\r\nx\r\n")); err != nil {
		t.Fatal(err)
	}
	if l, err := e.c.List(ctx, wire.ListRequest{Account: "old"}); err != nil || len(l.Messages) != 1 {
		t.Fatalf("list old: %+v %v", l, err)
	}
}

func TestPurgeDryRun(t *testing.T) {
	e := newEnv(t, Options{})
	ctx := context.Background()
	a := e.enqueue(t, "a@example.com", "x@example.com")
	e.kill(t, a)
	e.clk.Add(8 * 24 * time.Hour)
	n, err := e.c.PurgeCount(ctx, wire.StateDead, 7*24*time.Hour)
	if err != nil || n.Count != 1 {
		t.Fatalf("dry run: %+v %v", n, err)
	}
	if n, err := e.c.PurgeCount(ctx, wire.StateDead, 9*24*time.Hour); err != nil || n.Count != 0 {
		t.Fatalf("dry run, younger: %+v %v", n, err)
	}
	if _, err := e.sp.Get(ctx, a); err != nil {
		t.Fatalf("dry run deleted: %v", err)
	}
	if n, err := e.c.Purge(ctx, wire.StateDead, 7*24*time.Hour); err != nil || n.Count != 1 {
		t.Fatalf("purge after the count: %+v %v", n, err)
	}
}

// reloadingInfo is a daemon that can reload: each Reload returns the next
// scripted outcome and becomes the last reload.
type reloadingInfo struct {
	fakeInfo
	mu   sync.Mutex
	next wire.ReloadInfo
	last *wire.ReloadInfo
}

func (r *reloadingInfo) Reload(context.Context) wire.ReloadInfo {
	r.mu.Lock()
	defer r.mu.Unlock()
	ri := r.next
	r.last = &ri
	return ri
}

func (r *reloadingInfo) LastReload() *wire.ReloadInfo {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.last
}

func TestReloadEndpoint(t *testing.T) {
	e := newEnv(t, Options{})
	ctx := context.Background()
	// fakeInfo cannot reload.
	_, err := e.c.Reload(ctx)
	wantCode(t, err, wire.CodeUnavailable, "cannot reload")
	if st, err := e.c.Status(ctx); err != nil || st.LastReload != nil {
		t.Fatalf("status before any reload: %+v %v", st.LastReload, err)
	}

	info := &reloadingInfo{next: wire.ReloadInfo{Time: t0, Config: "/etc/spoold/spoold.yaml",
		Problems: []string{"/etc/spoold/spoold.yaml:12: accounts[0].port: want 1-65535"}}}
	svc := NewService(e.sp, e.acc, info, Options{Clock: e.clk.Now, Logger: slog.New(slog.DiscardHandler)})
	c, stop := InProcess(svc.Handler(), "test")
	defer stop.Close()
	ri, err := c.Reload(ctx)
	if err != nil || ri.OK || len(ri.Problems) != 1 || !strings.Contains(ri.Problems[0], "spoold.yaml:12") {
		t.Fatalf("reload: %+v %v", ri, err)
	}
	st, err := c.Status(ctx)
	if err != nil || st.LastReload == nil || st.LastReload.OK || st.LastReload.Problems[0] != ri.Problems[0] {
		t.Fatalf("status after the reload: %+v %v", st.LastReload, err)
	}
	ro := NewService(e.sp, nil, nil, Options{ReadOnly: true, Logger: slog.New(slog.DiscardHandler)})
	rc, stopRO := InProcess(ro.Handler(), "ro")
	defer stopRO.Close()
	_, err = rc.Reload(ctx)
	wantCode(t, err, wire.CodeReadOnly, "needs the running daemon")
}
