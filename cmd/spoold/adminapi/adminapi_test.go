package adminapi

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/spoold/spoold/cmd/spoold/adminapi/wire"
	"github.com/spoold/spoold/spool"
	"github.com/spoold/spoold/spool/spooltest"
)

var t0 = time.Date(2026, 3, 2, 10, 0, 0, 0, time.UTC)

// clock is a settable test clock.
type clock struct {
	mu  sync.Mutex
	now time.Time
}

func (c *clock) Now() time.Time { c.mu.Lock(); defer c.mu.Unlock(); return c.now }
func (c *clock) Add(d time.Duration) {
	c.mu.Lock()
	c.now = c.now.Add(d)
	c.mu.Unlock()
}

// fakeAccounts implements Accounts with scripted answers.
type fakeAccounts struct {
	mu        sync.Mutex
	accounts  []wire.AccountInfo
	err       error
	logins    map[string]chan wire.AccountInfo
	pasted    []string
	loggedOut []string
}

func (f *fakeAccounts) Accounts(context.Context) ([]wire.AccountInfo, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	return append([]wire.AccountInfo(nil), f.accounts...), f.err
}

func (f *fakeAccounts) find(name string) (wire.AccountInfo, bool) {
	for _, a := range f.accounts {
		if a.Name == name {
			return a, true
		}
	}
	return wire.AccountInfo{}, false
}

func (f *fakeAccounts) StartLogin(_ context.Context, account, mode string) (wire.LoginStart, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if _, ok := f.find(account); !ok {
		return wire.LoginStart{}, fmt.Errorf("daemon: %w: %s", ErrUnknownAccount, account)
	}
	id := "login-" + account
	if f.logins == nil {
		f.logins = map[string]chan wire.AccountInfo{}
	}
	f.logins[id] = make(chan wire.AccountInfo, 1)
	ls := wire.LoginStart{LoginID: id, Account: account, Mode: mode}
	if mode == wire.LoginDevice {
		ls.UserCode, ls.VerificationURI = "ABCD-EFGH", "https://microsoft.com/devicelogin"
	} else {
		ls.URL = "https://login.example.com/authorize?state=xyz"
	}
	return ls, nil
}

func (f *fakeAccounts) finish(id string, ai wire.AccountInfo) {
	f.mu.Lock()
	ch := f.logins[id]
	f.mu.Unlock()
	ch <- ai
}

func (f *fakeAccounts) CompletePaste(_ context.Context, loginID, u string) (wire.AccountInfo, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if _, ok := f.logins[loginID]; !ok {
		return wire.AccountInfo{}, fmt.Errorf("daemon: login %s: %w", loginID, ErrNotFound)
	}
	f.pasted = append(f.pasted, u)
	a, _ := f.find(strings.TrimPrefix(loginID, "login-"))
	a.Status = "ok"
	return a, nil
}

func (f *fakeAccounts) WaitLogin(ctx context.Context, loginID string) (wire.AccountInfo, error) {
	f.mu.Lock()
	ch, ok := f.logins[loginID]
	f.mu.Unlock()
	if !ok {
		return wire.AccountInfo{}, fmt.Errorf("daemon: login %s: %w", loginID, ErrNotFound)
	}
	select {
	case ai := <-ch:
		return ai, nil
	case <-ctx.Done():
		return wire.AccountInfo{}, ctx.Err()
	}
}

func (f *fakeAccounts) Logout(_ context.Context, account string) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	if _, ok := f.find(account); !ok {
		return fmt.Errorf("daemon: %w", ErrUnknownAccount)
	}
	f.loggedOut = append(f.loggedOut, account)
	return nil
}

func (f *fakeAccounts) TestSend(_ context.Context, account, to string) (wire.TestSendResult, error) {
	a, ok := f.find(account)
	if !ok {
		return wire.TestSendResult{}, fmt.Errorf("daemon: %w", ErrUnknownAccount)
	}
	if a.Status == "needs_reauth" {
		return wire.TestSendResult{}, fmt.Errorf("daemon: %w: run spoolctl auth login %s", ErrNeedsReauth, account)
	}
	return wire.TestSendResult{Account: account, To: to, Code: 250, Enhanced: "2.0.0", Text: "OK queued", DurationMS: 1200}, nil
}

type fakeInfo struct{}

func (fakeInfo) Version() string    { return "1.2.3" }
func (fakeInfo) Started() time.Time { return t0.Add(-90 * time.Minute) }
func (fakeInfo) Listeners() []wire.ListenerInfo {
	return []wire.ListenerInfo{{Name: "smtp", Kind: "smtp", Addr: "127.0.0.1:2525", TLS: "none"}}
}
func (fakeInfo) ScanFolders() []wire.FolderInfo {
	return []wire.FolderInfo{{Name: "scans", Path: "./scans", Mode: "watch", Pending: 1, LastScan: t0.Add(-time.Minute)}}
}

// env is a Service over a real spool, served on a unix socket.
type env struct {
	sp  *spool.Spool
	clk *clock
	acc *fakeAccounts
	c   *wire.Client
	h   http.Handler
	dir string
}

// call sends a raw request to the handler, for requests the typed Client
// cannot make; a non-2xx answer is returned as the decoded *wire.APIError.
func (e *env) call(ctx context.Context, method, path string, in, out any) error {
	var body io.Reader
	if in != nil {
		b, err := json.Marshal(in)
		if err != nil {
			return err
		}
		body = bytes.NewReader(b)
	}
	rec := httptest.NewRecorder()
	e.h.ServeHTTP(rec, httptest.NewRequestWithContext(ctx, method, path, body))
	if rec.Code/100 != 2 {
		var eb wire.ErrorBody
		if err := json.Unmarshal(rec.Body.Bytes(), &eb); err != nil || eb.Error == nil {
			return fmt.Errorf("status %d, body %q", rec.Code, rec.Body.String())
		}
		eb.Error.Status = rec.Code
		return eb.Error
	}
	if out == nil {
		return nil
	}
	return json.Unmarshal(rec.Body.Bytes(), out)
}

func shortTempDir(t *testing.T) string {
	t.Helper()
	// Unix socket paths are limited to ~108 bytes; t.TempDir() can exceed it.
	d, err := os.MkdirTemp("", "adm")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(d) })
	return d
}

func newEnv(t *testing.T, opts Options) *env {
	t.Helper()
	clk := &clock{now: t0}
	n := 0
	var idmu sync.Mutex
	sp := spooltest.OpenTemp(t, spool.Options{
		Clock: clk.Now, RescueInterval: -1, Logger: slog.New(slog.DiscardHandler),
		NewID: func(time.Time) string {
			idmu.Lock()
			defer idmu.Unlock()
			n++
			return fmt.Sprintf("01TEST%04d", n)
		},
	})
	acc := &fakeAccounts{accounts: []wire.AccountInfo{
		{Name: "m365", Transport: "smtp", Provider: "microsoft", Flow: "authcode", Mailbox: "scanner@example.com", Status: "ok"},
		{Name: "gmail", Transport: "smtp", Provider: "google", Mailbox: "x@gmail.com", Status: "needs_reauth", Reason: "run spoolctl auth login gmail"},
	}}
	opts.Clock = clk.Now
	opts.Logger = slog.New(slog.DiscardHandler)
	var a Accounts = acc
	var info Info = fakeInfo{}
	if opts.ReadOnly {
		a, info = nil, nil
	}
	svc := NewService(sp, a, info, opts)
	dir := shortTempDir(t)
	sock := filepath.Join(dir, "spoold.sock")
	ln, err := Listen(sock, 0, "")
	if err != nil {
		t.Fatal(err)
	}
	srv := &http.Server{Handler: svc.Handler()}
	done := make(chan struct{})
	go func() { defer close(done); _ = srv.Serve(ln) }()
	c := wire.NewClient(sock)
	t.Cleanup(func() {
		c.CloseIdleConnections()
		srv.Close()
		<-done
	})
	return &env{sp: sp, clk: clk, acc: acc, c: c, h: svc.Handler(), dir: dir}
}

func (e *env) enqueue(t *testing.T, from string, to ...string) string {
	t.Helper()
	id, err := e.sp.Enqueue(context.Background(), spool.EnqueueRequest{
		From: from, To: to, Account: "m365", Source: spool.Source{Kind: spool.SourceSMTP, PeerIP: "192.0.2.7"},
	}, strings.NewReader("From: a@example.com\r\nSubject: hi\r\n\r\nbody line\r\n"))
	if err != nil {
		t.Fatal(err)
	}
	return id
}

// kill claims id and dead-letters it.
func (e *env) kill(t *testing.T, id string) {
	t.Helper()
	ctx := context.Background()
	ms, err := e.sp.Claim(ctx, e.clk.Now(), 100, "w1")
	if err != nil {
		t.Fatal(err)
	}
	for _, m := range ms {
		if m.ID != id {
			if err := e.sp.Defer(ctx, m.ID, "w1", e.clk.Now().Add(time.Hour), spool.Result{}); err != nil {
				t.Fatal(err)
			}
			continue
		}
		if err := e.sp.StartAttempt(ctx, id, "w1", e.clk.Now(), e.clk.Now().Add(time.Minute)); err != nil {
			t.Fatal(err)
		}
		if err := e.sp.Dead(ctx, id, "w1", spool.Result{Error: &spool.ErrorRecord{Code: 550, Enhanced: "5.7.60", Text: "SendAsDenied"}}); err != nil {
			t.Fatal(err)
		}
	}
}

func wantCode(t *testing.T, err error, code string, msgPart string) {
	t.Helper()
	var ae *wire.APIError
	if !errors.As(err, &ae) {
		t.Fatalf("error %v (%T), want wire.APIError %s", err, err, code)
	}
	if ae.Code != code {
		t.Fatalf("code %s (%q), want %s", ae.Code, ae.Message, code)
	}
	if !strings.Contains(ae.Message, msgPart) {
		t.Fatalf("message %q does not contain %q", ae.Message, msgPart)
	}
	if ae.Status != httpStatus(code) {
		t.Fatalf("status %d, want %d", ae.Status, httpStatus(code))
	}
}

func TestMessageLifecycleOverSocket(t *testing.T) {
	e := newEnv(t, Options{})
	ctx := context.Background()
	id := e.enqueue(t, "alice@example.com", "bob@example.com", "carol@example.com")
	e.clk.Add(2 * time.Hour)

	m, err := e.c.Get(ctx, id)
	if err != nil {
		t.Fatal(err)
	}
	if m.State != wire.StateQueued || m.AgeSeconds != 7200 || len(m.Recipients) != 2 || m.Source.PeerIP != "192.0.2.7" {
		t.Fatalf("view %+v", m)
	}
	rc, err := e.c.Body(ctx, id)
	if err != nil {
		t.Fatal(err)
	}
	b, _ := io.ReadAll(rc)
	rc.Close()
	if !strings.Contains(string(b), "Subject: hi") {
		t.Fatalf("body %q", b)
	}

	if _, err := e.c.Release(ctx, id); err == nil {
		t.Fatal("release of a queued message succeeded")
	} else {
		wantCode(t, err, wire.CodeWrongState, "cannot release message "+id+": it is queued (release needs held)")
	}
	hv, err := e.c.Hold(ctx, id, "checking")
	if err != nil || hv.State != wire.StateHeld || hv.Reason != "checking" {
		t.Fatalf("hold: %+v %v", hv, err)
	}
	rv, err := e.c.Release(ctx, id)
	if err != nil || rv.State != wire.StateQueued {
		t.Fatalf("release: %+v %v", rv, err)
	}
	if _, err := e.c.Requeue(ctx, id); err == nil {
		t.Fatal("requeue of queued succeeded")
	} else {
		wantCode(t, err, wire.CodeWrongState, "requeue needs dead or held")
	}
	e.kill(t, id)
	qv, err := e.c.Requeue(ctx, id)
	if err != nil || qv.State != wire.StateQueued || qv.Attempts != 0 {
		t.Fatalf("requeue: %+v %v", qv, err)
	}
	if err := e.c.Delete(ctx, id); err != nil {
		t.Fatal(err)
	}
	_, err = e.c.Get(ctx, id)
	wantCode(t, err, wire.CodeNotFound, "message "+id+" not found")
	_, err = e.c.Body(ctx, id)
	wantCode(t, err, wire.CodeNotFound, "message "+id+" not found")
	err = e.c.Delete(ctx, id)
	wantCode(t, err, wire.CodeNotFound, "message "+id+" not found")
	_, err = e.c.Hold(ctx, "nope", "")
	wantCode(t, err, wire.CodeNotFound, "message nope not found")
}

func TestActiveMessageRefusals(t *testing.T) {
	e := newEnv(t, Options{})
	ctx := context.Background()
	id := e.enqueue(t, "a@example.com", "b@example.com")
	if _, err := e.sp.Claim(ctx, e.clk.Now(), 1, "w1"); err != nil {
		t.Fatal(err)
	}
	err := e.c.Delete(ctx, id)
	wantCode(t, err, wire.CodeWrongState, "it is active")
	_, err = e.c.Flush(ctx, id)
	wantCode(t, err, wire.CodeWrongState, "flush needs queued or deferred")
}

func TestListPagingAndFilters(t *testing.T) {
	e := newEnv(t, Options{})
	ctx := context.Background()
	var ids []string
	for i := 0; i < 5; i++ {
		ids = append(ids, e.enqueue(t, "a@example.com", "b@example.com"))
		e.clk.Add(time.Hour)
	}
	var got []string
	req := wire.ListRequest{Limit: 2}
	for pages := 0; ; pages++ {
		if pages > 5 {
			t.Fatal("paging does not end")
		}
		resp, err := e.c.List(ctx, req)
		if err != nil {
			t.Fatal(err)
		}
		if !resp.Now.Equal(e.clk.Now()) {
			t.Fatalf("now %v", resp.Now)
		}
		for _, m := range resp.Messages {
			got = append(got, m.ID)
		}
		if resp.Next == "" {
			break
		}
		req.Cursor = resp.Next
	}
	if strings.Join(got, ",") != strings.Join(ids, ",") {
		t.Fatalf("paged %v, want %v", got, ids)
	}
	// Created at t0..t0+4h, now t0+5h: older than 2h30m keeps the first three.
	resp, err := e.c.List(ctx, wire.ListRequest{OlderThan: 150 * time.Minute})
	if err != nil || len(resp.Messages) != 3 {
		t.Fatalf("older-than: %d %v", len(resp.Messages), err)
	}
	e.kill(t, ids[1])
	resp, err = e.c.List(ctx, wire.ListRequest{State: wire.StateDead})
	if err != nil || len(resp.Messages) != 1 || resp.Messages[0].ID != ids[1] || resp.Messages[0].LastError.Enhanced != "5.7.60" {
		t.Fatalf("dead: %+v %v", resp.Messages, err)
	}
	resp, err = e.c.List(ctx, wire.ListRequest{Account: "gmail"})
	if err != nil || len(resp.Messages) != 0 || resp.Messages == nil {
		t.Fatalf("account filter: %+v %v", resp, err)
	}
	_, err = e.c.List(ctx, wire.ListRequest{State: "bogus"})
	wantCode(t, err, wire.CodeInvalidArgument, `unknown state "bogus"`)
}

func TestBulkOperations(t *testing.T) {
	e := newEnv(t, Options{})
	ctx := context.Background()
	a := e.enqueue(t, "a@example.com", "x@example.com")
	b := e.enqueue(t, "a@example.com", "y@example.com")
	e.kill(t, a) // b is deferred by an hour
	if m, _ := e.c.Get(ctx, b); m.State != wire.StateDeferred {
		t.Fatalf("b is %s", m.State)
	}
	n, err := e.c.FlushAll(ctx, "")
	if err != nil || n.Count != 1 {
		t.Fatalf("flush all: %+v %v", n, err)
	}
	if m, _ := e.c.Get(ctx, b); m.NextAttempt.After(e.clk.Now()) {
		t.Fatalf("b not due after flush: %v", m.NextAttempt)
	}
	n, err = e.c.RequeueAll(ctx, wire.StateDead, "")
	if err != nil || n.Count != 1 {
		t.Fatalf("requeue all: %+v %v", n, err)
	}
	_, err = e.c.RequeueAll(ctx, wire.StateQueued, "")
	wantCode(t, err, wire.CodeInvalidArgument, "requeue needs state dead or held")

	e.kill(t, a)
	e.clk.Add(8 * 24 * time.Hour)
	n, err = e.c.Purge(ctx, wire.StateDead, 7*24*time.Hour)
	if err != nil || n.Count != 1 {
		t.Fatalf("purge: %+v %v", n, err)
	}
	_, err = e.c.Purge(ctx, wire.StateQueued, 0)
	wantCode(t, err, wire.CodeInvalidArgument, "purge needs state dead or delivered")
}

func TestStatusAndAccounts(t *testing.T) {
	e := newEnv(t, Options{})
	ctx := context.Background()
	e.enqueue(t, "a@example.com", "b@example.com")
	st, err := e.c.Status(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if st.Version != "1.2.3" || st.UptimeSeconds != 5400 || st.Queue[wire.StateQueued] != 1 || len(st.Queue) != len(wire.States) ||
		len(st.Accounts) != 2 || len(st.Listeners) != 1 || len(st.ScanFolders) != 1 || st.Offline {
		t.Fatalf("status %+v", st)
	}
	e.acc.mu.Lock()
	e.acc.err = errors.New("auth manager stopped")
	e.acc.mu.Unlock()
	st, err = e.c.Status(ctx)
	if err != nil || st.AccountsError != "auth manager stopped" || st.Queue[wire.StateQueued] != 1 {
		t.Fatalf("status with failing accounts: %+v %v", st, err)
	}
	e.acc.mu.Lock()
	e.acc.err = nil
	e.acc.mu.Unlock()

	ai, err := e.c.Account(ctx, "gmail")
	if err != nil || ai.Status != "needs_reauth" {
		t.Fatalf("account: %+v %v", ai, err)
	}
	_, err = e.c.Account(ctx, "nope")
	wantCode(t, err, wire.CodeUnknownAccount, `unknown account "nope"`)
	_, err = e.c.TestSend(ctx, "gmail", "x@example.com")
	wantCode(t, err, wire.CodeNeedsReauth, "test-send through account gmail")
	_, err = e.c.TestSend(ctx, "m365", "not-an-address")
	wantCode(t, err, wire.CodeInvalidArgument, "bad recipient")
	res, err := e.c.TestSend(ctx, "m365", "x@example.com")
	if err != nil || res.Code != 250 {
		t.Fatalf("test-send %+v %v", res, err)
	}
	err = e.c.Logout(ctx, "nope")
	wantCode(t, err, wire.CodeUnknownAccount, `unknown account "nope"`)
	if err := e.c.Logout(ctx, "m365"); err != nil || len(e.acc.loggedOut) != 1 {
		t.Fatalf("logout %v", err)
	}
}

func TestLoginFlows(t *testing.T) {
	e := newEnv(t, Options{})
	ctx := context.Background()
	_, err := e.c.StartLogin(ctx, "m365", "carrier-pigeon")
	wantCode(t, err, wire.CodeInvalidArgument, "unknown login mode")
	_, err = e.c.StartLogin(ctx, "nope", wire.LoginBrowser)
	wantCode(t, err, wire.CodeUnknownAccount, `unknown account "nope"`)

	// No mode: the account's configured flow decides, so the API passes
	// the empty mode on rather than choosing the browser.
	if ls, err := e.c.StartLogin(ctx, "m365", ""); err != nil || ls.Mode != "" {
		t.Fatalf("start without a mode: %+v %v", ls, err)
	}
	ls, err := e.c.StartLogin(ctx, "m365", wire.LoginBrowser)
	if err != nil || ls.URL == "" {
		t.Fatalf("start %+v %v", ls, err)
	}
	got := make(chan wire.AccountInfo, 1)
	errc := make(chan error, 1)
	go func() {
		ai, err := e.c.WaitLogin(ctx, ls.LoginID)
		got <- ai
		errc <- err
	}()
	e.acc.finish(ls.LoginID, wire.AccountInfo{Name: "m365", Status: "ok", Identity: "scanner@example.com"})
	select {
	case ai := <-got:
		if err := <-errc; err != nil || ai.Identity != "scanner@example.com" {
			t.Fatalf("wait: %+v %v", ai, err)
		}
	case <-time.After(30 * time.Second):
		t.Fatal("wait did not return")
	}

	_, err = e.c.CompletePaste(ctx, "login-unknown", "http://localhost/cb?code=x")
	wantCode(t, err, wire.CodeNotFound, "login login-unknown not found")
	ls, _ = e.c.StartLogin(ctx, "m365", wire.LoginPaste)
	ai, err := e.c.CompletePaste(ctx, ls.LoginID, " http://localhost/cb?code=secret\n")
	if err != nil || ai.Status != "ok" || e.acc.pasted[0] != "http://localhost/cb?code=secret" {
		t.Fatalf("paste %+v %v %v", ai, err, e.acc.pasted)
	}
}

func TestReadOnlyOffline(t *testing.T) {
	e := newEnv(t, Options{ReadOnly: true})
	ctx := context.Background()
	id := e.enqueue(t, "a@example.com", "b@example.com")
	if _, err := e.c.Get(ctx, id); err != nil {
		t.Fatal(err)
	}
	st, err := e.c.Status(ctx)
	if err != nil || !st.Offline || !st.ReadOnly {
		t.Fatalf("status %+v %v", st, err)
	}
	_, err = e.c.Hold(ctx, id, "")
	wantCode(t, err, wire.CodeReadOnly, "needs the running daemon")
	_, err = e.c.Purge(ctx, wire.StateDead, 0)
	wantCode(t, err, wire.CodeReadOnly, "read-only")
	_, err = e.c.Accounts(ctx)
	wantCode(t, err, wire.CodeUnavailable, "only available from the running daemon")
	if m, _ := e.sp.Get(ctx, id); m.State != spool.StateQueued {
		t.Fatalf("read-only hold changed state to %s", m.State)
	}
}

func TestBadRequests(t *testing.T) {
	e := newEnv(t, Options{})
	ctx := context.Background()
	// Strict JSON: unknown fields are refused.
	var out wire.CountResponse
	err := e.call(ctx, http.MethodPost, "/v1/purge", map[string]any{"state": "dead", "older": 1}, &out)
	wantCode(t, err, wire.CodeInvalidArgument, "bad request body")
	err = e.call(ctx, http.MethodGet, "/v1/nothing", nil, nil)
	wantCode(t, err, wire.CodeNotFound, "no endpoint GET /v1/nothing")
	err = e.call(ctx, http.MethodGet, "/v1/messages?limit=-1", nil, nil)
	wantCode(t, err, wire.CodeInvalidArgument, "bad limit")
	err = e.call(ctx, http.MethodGet, "/v1/messages?older_than=soon", nil, nil)
	wantCode(t, err, wire.CodeInvalidArgument, "bad older_than")
}

func TestDaemonDown(t *testing.T) {
	dir := shortTempDir(t)
	c := wire.NewClient(filepath.Join(dir, "missing.sock"))
	_, err := c.Status(context.Background())
	var de *wire.DialError
	if !errors.As(err, &de) || err.Error() != "cannot reach spoold at "+filepath.Join(dir, "missing.sock")+": is it running?" {
		t.Fatalf("err %v", err)
	}
	// Permission denied (simulated: root ignores socket permissions).
	c = wire.NewClientDialer("/run/spoold.sock", func(context.Context, string) (net.Conn, error) {
		return nil, &net.OpError{Op: "dial", Net: "unix", Err: os.NewSyscallError("connect", syscall.EACCES)}
	})
	_, err = c.Status(context.Background())
	if err == nil || !strings.Contains(err.Error(), "permission denied on /run/spoold.sock") {
		t.Fatalf("err %v", err)
	}
}

func TestPermissionDeniedReal(t *testing.T) {
	if os.Geteuid() == 0 {
		t.Skip("root bypasses socket permissions")
	}
	dir := shortTempDir(t)
	sock := filepath.Join(dir, "s.sock")
	ln, err := Listen(sock, 0o600, "")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	if err := os.Chmod(sock, 0); err != nil {
		t.Fatal(err)
	}
	_, err = wire.NewClient(sock).Status(context.Background())
	if err == nil || !strings.Contains(err.Error(), "permission denied on "+sock) {
		t.Fatalf("err %v", err)
	}
}

func TestListen(t *testing.T) {
	dir := shortTempDir(t)
	sock := filepath.Join(dir, "a.sock")
	ln, err := Listen(sock, 0, fmt.Sprint(os.Getgid()))
	if err != nil {
		t.Fatal(err)
	}
	fi, err := os.Stat(sock)
	if err != nil || fi.Mode().Perm() != 0o660 {
		t.Fatalf("mode %v %v", fi.Mode(), err)
	}
	// A live socket is never taken over.
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			c.Close()
		}
	}()
	if _, err := Listen(sock, 0, ""); err == nil || !strings.Contains(err.Error(), "another process is serving") {
		t.Fatalf("second listen: %v", err)
	}
	ln.Close()

	// A stale socket (nothing answers) is replaced.
	stale := filepath.Join(dir, "stale.sock")
	l2, err := net.Listen("unix", stale)
	if err != nil {
		t.Fatal(err)
	}
	l2.(*net.UnixListener).SetUnlinkOnClose(false)
	l2.Close()
	ln3, err := Listen(stale, 0o600, "")
	if err != nil {
		t.Fatalf("stale: %v", err)
	}
	if fi, _ := os.Stat(stale); fi.Mode().Perm() != 0o600 {
		t.Fatalf("mode %v", fi.Mode())
	}
	ln3.Close()

	// A regular file is never removed.
	plain := filepath.Join(dir, "plain")
	os.WriteFile(plain, []byte("x"), 0o600)
	if _, err := Listen(plain, 0, ""); err == nil || !strings.Contains(err.Error(), "not a socket") {
		t.Fatalf("plain: %v", err)
	}
	if _, err := os.Stat(plain); err != nil {
		t.Fatal("regular file removed")
	}
	if _, err := Listen(filepath.Join(dir, "g.sock"), 0, "no-such-group-xyz"); err == nil {
		t.Fatal("unknown group accepted")
	}
}

func TestErrorMapping(t *testing.T) {
	cases := []struct {
		err  error
		code string
	}{
		{fmt.Errorf("x: %w", spool.ErrNotFound), wire.CodeNotFound},
		{fmt.Errorf("x: %w: %w", spool.ErrLeaseLost, spool.ErrWrongState), wire.CodeLeaseLost},
		{fmt.Errorf("x: %w", spool.ErrWrongState), wire.CodeWrongState},
		{fmt.Errorf("x: %w", spool.ErrReadOnly), wire.CodeReadOnly},
		{fmt.Errorf("x: %w", spool.ErrInvalid), wire.CodeInvalidArgument},
		{fmt.Errorf("x: %w", spool.ErrClosed), wire.CodeUnavailable},
		{fmt.Errorf("x: %w", ErrUnavailable), wire.CodeUnavailable},
		{fmt.Errorf("x: %w", ErrUnknownAccount), wire.CodeUnknownAccount},
		{fmt.Errorf("x: %w", ErrNeedsReauth), wire.CodeNeedsReauth},
		{context.DeadlineExceeded, wire.CodeUnavailable},
		{errors.New("boom"), wire.CodeInternal},
		{fmt.Errorf("wrapped: %w", &wire.APIError{Code: wire.CodeReadOnly, Message: "m"}), wire.CodeReadOnly},
	}
	for _, c := range cases {
		if got := toAPIError(c.err); got.Code != c.code {
			t.Errorf("%v: code %s, want %s", c.err, got.Code, c.code)
		}
	}
	if !errors.Is(&wire.APIError{Code: wire.CodeNotFound, Message: "x"}, &wire.APIError{Code: wire.CodeNotFound}) || !wire.HasCode(fmt.Errorf("w: %w", &wire.APIError{Code: wire.CodeLeaseLost}), wire.CodeLeaseLost) {
		t.Fatal("APIError matching")
	}
}

func TestInProcess(t *testing.T) {
	clk := &clock{now: t0}
	sp := spooltest.OpenTemp(t, spool.Options{Clock: clk.Now, RescueInterval: -1, Logger: slog.New(slog.DiscardHandler)})
	id, err := sp.Enqueue(context.Background(), spool.EnqueueRequest{From: "a@example.com", To: []string{"b@example.com"}, Account: "x"},
		strings.NewReader(strings.Repeat("0123456789abcde\n", 1<<16))) // 1 MiB streams through the pipe
	if err != nil {
		t.Fatal(err)
	}
	c, stop := InProcess(NewService(sp, nil, nil, Options{ReadOnly: true, Clock: clk.Now}).Handler(), "spool test")
	defer stop.Close()
	rc, err := c.Body(context.Background(), id)
	if err != nil {
		t.Fatal(err)
	}
	n, err := io.Copy(io.Discard, rc)
	rc.Close()
	if err != nil || n != 1<<20 {
		t.Fatalf("read %d %v", n, err)
	}
	stop.Close()
	if _, err := c.Status(context.Background()); err == nil {
		t.Fatal("status after close succeeded")
	}
}

// BenchmarkListPage measures one 500-message page of GET /v1/messages over
// the unix socket (what spoolctl list asks per round trip).
func BenchmarkListPage(b *testing.B) {
	clk := &clock{now: t0}
	sp := spooltest.OpenTemp(b, spool.Options{Clock: clk.Now, RescueInterval: -1, Logger: slog.New(slog.DiscardHandler)})
	ctx := context.Background()
	for i := 0; i < 500; i++ {
		if _, err := sp.Enqueue(ctx, spool.EnqueueRequest{From: "a@example.com", To: []string{"b@example.com", "c@example.com"}, Account: "m365"},
			strings.NewReader("Subject: x\r\n\r\nhi\r\n")); err != nil {
			b.Fatal(err)
		}
	}
	svc := NewService(sp, nil, nil, Options{Clock: clk.Now, Logger: slog.New(slog.DiscardHandler)})
	dir, err := os.MkdirTemp("", "admb")
	if err != nil {
		b.Fatal(err)
	}
	defer os.RemoveAll(dir)
	ln, err := Listen(filepath.Join(dir, "s.sock"), 0, "")
	if err != nil {
		b.Fatal(err)
	}
	srv := &http.Server{Handler: svc.Handler()}
	go srv.Serve(ln)
	defer srv.Close()
	c := wire.NewClient(filepath.Join(dir, "s.sock"))
	b.ResetTimer()
	for b.Loop() {
		resp, err := c.List(ctx, wire.ListRequest{Limit: 500})
		if err != nil || len(resp.Messages) != 500 {
			b.Fatalf("%d %v", len(resp.Messages), err)
		}
	}
}

// pausingAccounts adds DeliveryControl to the fake daemon.
type pausingAccounts struct {
	*fakeAccounts
	paused bool
}

func (p *pausingAccounts) SetDeliveryPaused(_ context.Context, v bool) error {
	p.paused = v
	return nil
}
func (p *pausingAccounts) DeliveryPaused() bool { return p.paused }

func TestDeliveryPauseEndpoints(t *testing.T) {
	ctx := context.Background()
	// A daemon without the control answers unavailable; read-only refuses.
	e := newEnv(t, Options{})
	_, err := e.c.SetDeliveryPaused(ctx, true)
	wantCode(t, err, wire.CodeUnavailable, "cannot pause")
	ro := newEnv(t, Options{ReadOnly: true})
	_, err = ro.c.SetDeliveryPaused(ctx, true)
	wantCode(t, err, wire.CodeReadOnly, "read-only")

	pa := &pausingAccounts{fakeAccounts: e.acc}
	svc := NewService(e.sp, pa, fakeInfo{}, Options{Logger: slog.New(slog.DiscardHandler)})
	c, closer := InProcess(svc.Handler(), "pause-test")
	defer closer.Close()
	st, err := c.SetDeliveryPaused(ctx, true)
	if err != nil || !st.Paused || !pa.paused {
		t.Fatalf("pause: %+v %v (daemon paused=%t)", st, err, pa.paused)
	}
	status, err := c.Status(ctx)
	if err != nil || !status.DeliveryPaused {
		t.Errorf("status after pause: delivery_paused=%t err=%v", status.DeliveryPaused, err)
	}
	if st, err = c.SetDeliveryPaused(ctx, false); err != nil || st.Paused || pa.paused {
		t.Errorf("resume: %+v %v (daemon paused=%t)", st, err, pa.paused)
	}
}
