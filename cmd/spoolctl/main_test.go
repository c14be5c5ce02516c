package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/spoold/spoold/cmd/spoold/adminapi"
	"github.com/spoold/spoold/cmd/spoold/adminapi/wire"
	"github.com/spoold/spoold/spool"
	"github.com/spoold/spoold/spool/spooltest"
)

var update = flag.Bool("update", false, "rewrite the golden files in testdata/spoolctl")

var t0 = time.Date(2026, 3, 2, 10, 0, 0, 0, time.UTC)

// tEnd is the clock after populate; the fake daemon's data is relative to it.
var tEnd = t0.Add(134 * time.Minute)

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

// fakeAccounts is the daemon's account backend, scripted.
type fakeAccounts struct {
	mu       sync.Mutex
	accounts []wire.AccountInfo
	logins   map[string]chan wire.AccountInfo
	pasted   []string
	started  chan string
	paused   bool
}

func (f *fakeAccounts) SetDeliveryPaused(_ context.Context, p bool) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.paused = p
	return nil
}

func (f *fakeAccounts) DeliveryPaused() bool {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.paused
}

func (f *fakeAccounts) Accounts(context.Context) ([]wire.AccountInfo, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	return append([]wire.AccountInfo(nil), f.accounts...), nil
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
		return wire.LoginStart{}, fmt.Errorf("daemon: %w", adminapi.ErrUnknownAccount)
	}
	id := "login-" + account
	f.logins[id] = make(chan wire.AccountInfo, 1)
	ls := wire.LoginStart{LoginID: id, Account: account, Mode: mode}
	if mode == wire.LoginDevice {
		ls.UserCode, ls.VerificationURI = "ABCD-EFGH", "https://microsoft.com/devicelogin"
	} else {
		ls.URL = "https://login.example.com/authorize?client_id=app&redirect_uri=http%3A%2F%2Flocalhost%3A8025%2Foauth2%2Fcallback&state=xyz"
	}
	select {
	case f.started <- id:
	default:
	}
	return ls, nil
}

func (f *fakeAccounts) CompletePaste(_ context.Context, loginID, u string) (wire.AccountInfo, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if _, ok := f.logins[loginID]; !ok {
		return wire.AccountInfo{}, fmt.Errorf("daemon: %w", adminapi.ErrNotFound)
	}
	f.pasted = append(f.pasted, u)
	return wire.AccountInfo{Name: "m365", Status: "ok", Identity: "scanner@example.com"}, nil
}

func (f *fakeAccounts) WaitLogin(ctx context.Context, loginID string) (wire.AccountInfo, error) {
	f.mu.Lock()
	ch, ok := f.logins[loginID]
	f.mu.Unlock()
	if !ok {
		return wire.AccountInfo{}, fmt.Errorf("daemon: %w", adminapi.ErrNotFound)
	}
	select {
	case ai := <-ch:
		return ai, nil
	case <-ctx.Done():
		return wire.AccountInfo{}, ctx.Err()
	}
}

func (f *fakeAccounts) Logout(_ context.Context, account string) error {
	if _, ok := f.find(account); !ok {
		return fmt.Errorf("daemon: %w", adminapi.ErrUnknownAccount)
	}
	return nil
}

func (f *fakeAccounts) TestSend(_ context.Context, account, to string) (wire.TestSendResult, error) {
	a, ok := f.find(account)
	if !ok {
		return wire.TestSendResult{}, fmt.Errorf("daemon: %w", adminapi.ErrUnknownAccount)
	}
	if a.Status != "ok" {
		return wire.TestSendResult{}, fmt.Errorf("daemon: %w: run spoolctl auth login %s", adminapi.ErrNeedsReauth, account)
	}
	return wire.TestSendResult{Account: account, To: to, Code: 250, Enhanced: "2.0.0", Text: "OK <abc@example.com> [Hostname=X]", DurationMS: 1234}, nil
}

type fakeInfo struct{}

func (fakeInfo) Version() string    { return "1.2.3" }
func (fakeInfo) Started() time.Time { return tEnd.Add(-26 * time.Hour) }
func (fakeInfo) Listeners() []wire.ListenerInfo {
	return []wire.ListenerInfo{
		{Name: "submission", Kind: "smtp", Addr: "127.0.0.1:2525", TLS: "none"},
		{Name: "http", Kind: "http", Addr: "127.0.0.1:9191"},
	}
}
func (fakeInfo) ScanFolders() []wire.FolderInfo {
	return []wire.FolderInfo{{Name: "scans", Path: "./scans", Mode: "watch", Pending: 2, LastScan: tEnd.Add(-30 * time.Second)}}
}

// env is an in-process daemon: a real spool and the admin Service on a unix socket.
type env struct {
	sp   *spool.Spool
	clk  *clock
	acc  *fakeAccounts
	sock string
}

func shortTempDir(t *testing.T) string {
	t.Helper()
	// Unix socket paths are limited to ~108 bytes; t.TempDir() can exceed it.
	d, err := os.MkdirTemp("", "sctl")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(d) })
	return d
}

func testSpoolOptions(clk *clock) spool.Options {
	n := 0
	var mu sync.Mutex
	return spool.Options{
		Clock: clk.Now, RescueInterval: -1, Logger: slog.New(slog.DiscardHandler),
		NewID: func(time.Time) string {
			mu.Lock()
			defer mu.Unlock()
			n++
			return fmt.Sprintf("01JQ%06d", n)
		},
	}
}

func newEnv(t *testing.T) *env {
	t.Helper()
	return newEnvInfo(t, fakeInfo{})
}

// newEnvInfo is newEnv with the daemon's self-description (and so its
// reload abilities) given.
func newEnvInfo(t *testing.T, info adminapi.Info) *env {
	t.Helper()
	clk := &clock{now: t0}
	sp := spooltest.OpenTemp(t, testSpoolOptions(clk))
	acc := &fakeAccounts{
		logins:  map[string]chan wire.AccountInfo{},
		started: make(chan string, 4),
		accounts: []wire.AccountInfo{
			{Name: "m365", Transport: "smtp", Provider: "microsoft", Flow: "authcode", Mailbox: "scanner@example.com",
				Status: "ok", Identity: "scanner@example.com", TokenExpiry: tEnd.Add(40 * time.Minute),
				GrantedAt: tEnd.Add(-10 * 24 * time.Hour), LastRefresh: tEnd.Add(-20 * time.Minute), LastDelivery: tEnd.Add(-5 * time.Minute)},
			{Name: "gmail", Transport: "smtp", Provider: "google", Flow: "authcode", Mailbox: "office@gmail.com",
				Status: "needs_reauth", Reason: "refresh token expired (invalid_grant): run spoolctl auth login gmail",
				TokenExpiry: tEnd.Add(-2 * time.Hour), LastError: "invalid_grant", LastErrorTime: tEnd.Add(-2 * time.Hour)},
			{Name: "outbox", Transport: "file", Status: "ok"},
		},
	}
	svc := adminapi.NewService(sp, acc, info, adminapi.Options{Clock: clk.Now, Logger: slog.New(slog.DiscardHandler)})
	sock := filepath.Join(shortTempDir(t), "spoold.sock")
	ln, err := adminapi.Listen(sock, 0, "")
	if err != nil {
		t.Fatal(err)
	}
	srv := &http.Server{Handler: svc.Handler()}
	done := make(chan struct{})
	go func() { defer close(done); _ = srv.Serve(ln) }()
	t.Cleanup(func() { srv.Close(); <-done })
	return &env{sp: sp, clk: clk, acc: acc, sock: sock}
}

type result struct {
	code           int
	stdout, stderr string
}

// runCLI runs spoolctl against the socket with stdin and a TTY setting.
func runCLI(t *testing.T, d *deps, args ...string) result {
	t.Helper()
	var out, errb bytes.Buffer
	d.Stdout, d.Stderr = &out, &errb
	if d.Location == nil {
		// Times are shown in local time with the zone; a fixed zone keeps
		// the golden files independent of the machine's.
		d.Location = time.FixedZone("CET", 3600)
	}
	if d.Hostname == nil {
		d.Hostname = func() (string, error) { return "spool-host", nil }
	}
	code := Main(context.Background(), args, d)
	return result{code, out.String(), errb.String()}
}

func (e *env) run(t *testing.T, args ...string) result {
	t.Helper()
	return runCLI(t, &deps{}, append([]string{"--socket", e.sock}, args...)...)
}

func (e *env) runIn(t *testing.T, stdin string, tty bool, args ...string) result {
	t.Helper()
	d := &deps{Stdin: strings.NewReader(stdin), StdinIsTTY: func() bool { return tty }}
	return runCLI(t, d, append([]string{"--socket", e.sock}, args...)...)
}

func (e *env) enqueue(t *testing.T, from string, to ...string) string {
	t.Helper()
	return enqueueTo(t, e.sp, from, to...)
}

func enqueueTo(t *testing.T, sp *spool.Spool, from string, to ...string) string {
	t.Helper()
	id, err := sp.Enqueue(context.Background(), spool.EnqueueRequest{
		From: from, To: to, Account: "m365",
		Source: spool.Source{Kind: spool.SourceSMTP, Listener: "submission", PeerIP: "192.0.2.7", HELO: "mfd-2f"},
	}, strings.NewReader("From: Alice <alice@example.com>\r\nTo: bob@example.com\r\nSubject: Scan 42\r\n\r\nHello Bob,\r\nthe scan.\r\n"))
	if err != nil {
		t.Fatal(err)
	}
	return id
}

// populate builds one message in each interesting state, with history.
func (e *env) populate(t *testing.T) (queued, deferred, dead, held string) {
	t.Helper()
	ctx := context.Background()
	queued = e.enqueue(t, "alice@example.com", "bob@example.com")
	e.clk.Add(10 * time.Minute)
	deferred = e.enqueue(t, "scanner@example.com", "carol@example.com", "dave@example.com", "erin@example.com")
	dead = e.enqueue(t, "", "frank@example.com")
	held = e.enqueue(t, "mfd@example.com", "gina@example.com")
	if err := e.sp.Hold(ctx, held, "suspicious size"); err != nil {
		t.Fatal(err)
	}
	e.clk.Add(time.Minute)
	ms, err := e.sp.Claim(ctx, e.clk.Now(), 10, "worker-1")
	if err != nil {
		t.Fatal(err)
	}
	for _, m := range ms {
		now := e.clk.Now()
		if err := e.sp.StartAttempt(ctx, m.ID, "worker-1", now, now.Add(time.Minute)); err != nil {
			t.Fatal(err)
		}
		r := spool.Result{Now: now.Add(1500 * time.Millisecond)}
		switch m.ID {
		case queued:
			r.Error = &spool.ErrorRecord{Time: r.Now, Class: "transient", Code: 421, Enhanced: "4.3.2", Command: "MAIL", Text: "Service not available"}
			err = e.sp.Defer(ctx, m.ID, "worker-1", now, r) // due again right away
		case deferred:
			r.Error = &spool.ErrorRecord{Time: r.Now, Class: "throttled", Code: 432, Enhanced: "4.3.2", Command: "DATA",
				Text: "STOREDRV.ClientSubmit; sender thread limit exceeded [Hostname=AM0PR01MB1234]"}
			err = e.sp.Defer(ctx, m.ID, "worker-1", now.Add(4*time.Hour), r)
		case dead:
			r.Error = &spool.ErrorRecord{Time: r.Now, Class: "permanent", Code: 550, Enhanced: "5.7.60", Command: "MAIL", Text: "SendAsDenied"}
			r.Reason = "From not permitted: use sender rewrite"
			r.Recipients = []spool.RecipientResult{{Addr: "frank@example.com", State: spool.RcptFailed, Error: r.Error}}
			err = e.sp.Dead(ctx, m.ID, "worker-1", r)
		}
		if err != nil {
			t.Fatal(err)
		}
	}
	e.clk.Add(2*time.Hour + 3*time.Minute)
	return queued, deferred, dead, held
}

func golden(t *testing.T, name, got string) {
	t.Helper()
	path := filepath.Join("..", "..", "testdata", "spoolctl", name+".golden")
	if *update {
		if err := os.WriteFile(path, []byte(got), 0o644); err != nil {
			t.Fatal(err)
		}
		return
	}
	want, err := os.ReadFile(path)
	if err != nil {
		t.Fatalf("reading golden file (run go test -update): %v", err)
	}
	if got != string(want) {
		t.Errorf("%s differs from %s:\n--- got ---\n%s\n--- want ---\n%s", name, path, got, want)
	}
}

func wantExit(t *testing.T, r result, code int, stderrPart string) {
	t.Helper()
	if r.code != code {
		t.Fatalf("exit %d, want %d\nstdout: %s\nstderr: %s", r.code, code, r.stdout, r.stderr)
	}
	if !strings.Contains(r.stderr, stderrPart) {
		t.Fatalf("stderr %q does not contain %q", r.stderr, stderrPart)
	}
}

func TestGoldenTables(t *testing.T) {
	e := newEnv(t)
	_, _, dead, _ := e.populate(t)
	cases := []struct {
		name string
		args []string
	}{
		{"list", []string{"list"}},
		{"list-dead", []string{"list", "--state", "dead"}},
		{"list-limit", []string{"list", "--limit", "2"}},
		{"list-empty", []string{"list", "--account", "gmail"}},
		{"show-dead", []string{"show", dead}},
		{"status", []string{"status"}},
		{"accounts", []string{"accounts"}},
		{"auth-status", []string{"auth", "status", "gmail"}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			r := e.run(t, c.args...)
			wantExit(t, r, 0, "")
			if r.stderr != "" {
				t.Fatalf("stderr: %s", r.stderr)
			}
			golden(t, c.name, r.stdout)
		})
	}
}

func TestShowBody(t *testing.T) {
	e := newEnv(t)
	id := e.enqueue(t, "alice@example.com", "bob@example.com")
	r := e.run(t, "show", id, "--headers")
	wantExit(t, r, 0, "")
	if r.stdout != "From: Alice <alice@example.com>\nTo: bob@example.com\nSubject: Scan 42\n" {
		t.Fatalf("headers %q", r.stdout)
	}
	r = e.run(t, "show", id, "--body")
	if r.code != 0 || r.stdout != "Hello Bob,\r\nthe scan.\r\n" {
		t.Fatalf("body %q (%d)", r.stdout, r.code)
	}
	r = e.run(t, "show", id, "--raw")
	if r.code != 0 || !strings.HasPrefix(r.stdout, "From: Alice") || !strings.HasSuffix(r.stdout, "the scan.\r\n") {
		t.Fatalf("raw %q", r.stdout)
	}
	r = e.run(t, "show", id, "--headers", "--json")
	var hj struct {
		Headers map[string][]string `json:"headers"`
	}
	if r.code != 0 || json.Unmarshal([]byte(r.stdout), &hj) != nil || hj.Headers["Subject"][0] != "Scan 42" {
		t.Fatalf("headers json %q", r.stdout)
	}
	r = e.run(t, "show", id, "--json")
	var mv wire.MessageView
	if r.code != 0 || json.Unmarshal([]byte(r.stdout), &mv) != nil || mv.ID != id || mv.Recipients[0].Addr != "bob@example.com" {
		t.Fatalf("show json %q", r.stdout)
	}
	wantExit(t, e.run(t, "show", id, "--headers", "--raw"), 2, "none of the others can be")
	wantExit(t, e.run(t, "show", id, "--raw", "--json"), 2, "--json cannot be combined")
}

func TestJSONOutputs(t *testing.T) {
	e := newEnv(t)
	e.populate(t)
	for _, args := range [][]string{{"list"}, {"status"}, {"accounts"}, {"auth", "status", "m365"}, {"version"}, {"flush"},
		{"test-send", "m365", "--to", "x@example.com"}} {
		r := e.run(t, append(args, "--json")...)
		if r.code != 0 || !json.Valid([]byte(r.stdout)) {
			t.Fatalf("%v: exit %d, stdout %q stderr %q", args, r.code, r.stdout, r.stderr)
		}
	}
	var l wire.ListResponse
	r := e.run(t, "list", "--json", "--state", "deferred")
	if err := json.Unmarshal([]byte(r.stdout), &l); err != nil || len(l.Messages) != 2 {
		t.Fatalf("list json: %v %+v", err, l)
	}
}

func TestActions(t *testing.T) {
	e := newEnv(t)
	ctx := context.Background()
	queued, deferred, dead, held := e.populate(t)
	state := func(id string) spool.State {
		m, err := e.sp.Get(ctx, id)
		if err != nil {
			t.Fatal(err)
		}
		return m.State
	}

	r := e.run(t, "flush", deferred)
	if r.code != 0 || r.stdout != "flushed "+deferred+" (now deferred)\n" {
		t.Fatalf("flush id: %+v", r)
	}
	if m, _ := e.sp.Get(ctx, deferred); m.NextAttempt.After(e.clk.Now()) {
		t.Fatal("flush did not make the message due")
	}
	r = e.run(t, "flush")
	if r.code != 0 || r.stdout != "flushed 0 messages (due now)\n" {
		t.Fatalf("flush all: %+v", r)
	}

	r = e.run(t, "hold", queued, "--reason", "check")
	if r.code != 0 || state(queued) != spool.StateHeld {
		t.Fatalf("hold: %+v", r)
	}
	r = e.run(t, "release", queued, held)
	if r.code != 0 || state(queued) != spool.StateQueued || state(held) != spool.StateQueued ||
		!strings.Contains(r.stdout, "released "+held+" (now queued)") {
		t.Fatalf("release: %+v", r)
	}
	r = e.run(t, "requeue", "--state", "dead")
	if r.code != 0 || r.stdout != "requeued 1 dead message\n" || state(dead) != spool.StateQueued {
		t.Fatalf("requeue --state: %+v", r)
	}
	wantExit(t, e.run(t, "requeue", dead), 1, "cannot requeue message "+dead+": it is queued (requeue needs dead or held)")

	r = e.runIn(t, "", false, "delete", queued)
	if r.code != 0 || r.stdout != "deleted "+queued+"\n" {
		t.Fatalf("delete: %+v", r)
	}
	if _, err := e.sp.Get(ctx, queued); !errors.Is(err, spool.ErrNotFound) {
		t.Fatalf("deleted message still there: %v", err)
	}
	// One bad ID among good ones: the others still happen, exit 1.
	r = e.run(t, "hold", "01NOPE", held)
	wantExit(t, r, 1, "message 01NOPE not found")
	if state(held) != spool.StateHeld || !strings.Contains(r.stderr, "1 of 2 messages failed") {
		t.Fatalf("partial hold: %+v", r)
	}

	r = e.run(t, "test-send", "m365", "--to", "x@example.com")
	if r.code != 0 || r.stdout != "m365 answered: 250 2.0.0 OK <abc@example.com> [Hostname=X] (in 1.234s)\n" {
		t.Fatalf("test-send: %+v", r)
	}
	wantExit(t, e.run(t, "test-send", "gmail", "--to", "x@example.com"), 1, "needs re-authorization")
	r = e.run(t, "auth", "logout", "m365")
	if r.code != 0 || !strings.Contains(r.stdout, "account m365 logged out") {
		t.Fatalf("logout: %+v", r)
	}
	wantExit(t, e.run(t, "auth", "logout", "nope"), 1, `unknown account "nope"`)
}

func TestPurge(t *testing.T) {
	e := newEnv(t)
	_, _, dead, _ := e.populate(t)
	r := e.run(t, "purge", "--state", "dead", "--older-than", "7d")
	if r.code != 0 || r.stdout != "purged 0 dead messages\n" {
		t.Fatalf("purge young: %+v", r)
	}
	e.clk.Add(8 * 24 * time.Hour)
	r = e.runIn(t, "n\n", true, "purge", "--state", "dead", "--older-than", "7d")
	wantExit(t, r, 1, "aborted: nothing changed")
	if !strings.Contains(r.stderr, "Purge 1 dead message older than 7d? This cannot be undone. [y/N]") {
		t.Fatalf("no question: %q", r.stderr)
	}
	r = e.run(t, "purge", "--state", "dead", "--older-than", "7d", "--json")
	if r.code != 0 || !strings.Contains(r.stdout, `"count": 1`) {
		t.Fatalf("purge: %+v", r)
	}
	if _, err := e.sp.Get(context.Background(), dead); !errors.Is(err, spool.ErrNotFound) {
		t.Fatalf("purged message still there: %v", err)
	}
}

func TestDeleteConfirmation(t *testing.T) {
	e := newEnv(t)
	ctx := context.Background()
	id := e.enqueue(t, "a@example.com", "b@example.com")
	r := e.runIn(t, "n\n", true, "delete", id)
	wantExit(t, r, 1, "aborted: nothing changed")
	if !strings.Contains(r.stderr, "Delete 1 message ("+id+")? This cannot be undone. [y/N]") {
		t.Fatalf("question: %q", r.stderr)
	}
	if _, err := e.sp.Get(ctx, id); err != nil {
		t.Fatalf("message gone after refusing: %v", err)
	}
	wantExit(t, e.runIn(t, "", true, "delete", id), 1, "aborted")
	r = e.runIn(t, "yes\n", true, "delete", id)
	if r.code != 0 || r.stdout != "deleted "+id+"\n" {
		t.Fatalf("delete after yes: %+v", r)
	}
	id2 := e.enqueue(t, "a@example.com", "b@example.com")
	r = e.runIn(t, "", true, "delete", "--yes", id2)
	if r.code != 0 || strings.Contains(r.stderr, "[y/N]") {
		t.Fatalf("--yes asked anyway: %+v", r)
	}
	if _, err := e.sp.Get(ctx, id2); !errors.Is(err, spool.ErrNotFound) {
		t.Fatal("--yes did not delete")
	}
}

func TestRuntimeErrors(t *testing.T) {
	e := newEnv(t)
	queued, _, _, _ := e.populate(t)
	ctx := context.Background()
	if _, err := e.sp.Claim(ctx, e.clk.Now(), 10, "w9"); err != nil {
		t.Fatal(err)
	}
	wantExit(t, e.run(t, "show", "01JQMISSING"), 1, "spoolctl: message 01JQMISSING not found")
	wantExit(t, e.run(t, "release", queued), 1, "cannot release message "+queued+": it is active (release needs held)")
	wantExit(t, e.run(t, "delete", "--yes", queued), 1, "it is active")
	wantExit(t, e.run(t, "auth", "status", "nope"), 1, `unknown account "nope"`)
	wantExit(t, e.run(t, "auth", "login", "nope"), 1, `unknown account "nope"`)
	r := e.run(t, "hold", "--json", "01JQMISSING")
	var res []opResult
	if r.code != 1 || json.Unmarshal([]byte(r.stdout), &res) != nil || res[0].Error.Code != wire.CodeNotFound {
		t.Fatalf("hold --json: %+v", r)
	}
}

func TestDaemonDown(t *testing.T) {
	sock := filepath.Join(shortTempDir(t), "spoold.sock")
	for _, args := range [][]string{{"status"}, {"list"}, {"show", "X"}, {"flush"}, {"hold", "X"}, {"accounts"}, {"purge", "--state", "dead", "--older-than", "1d"}} {
		r := runCLI(t, &deps{}, append([]string{"--socket", sock}, args...)...)
		wantExit(t, r, 1, "cannot reach spoold: no spoold answers at "+sock+" (--socket). Is it running? "+
			"If it is, point spoolctl at its socket (admin.socket in its config) with --socket PATH or SPOOLD_SOCKET=PATH")
	}
	// The socket comes from SPOOLD_SOCKET when --socket is not given.
	r := runCLI(t, &deps{Getenv: func(k string) string {
		if k == "SPOOLD_SOCKET" {
			return sock
		}
		return ""
	}}, "status")
	wantExit(t, r, 1, "no spoold answers at "+sock+" (SPOOLD_SOCKET)")
	// Neither default exists: both paths are named, in the order looked at.
	t.Chdir(t.TempDir())
	r = runCLI(t, &deps{}, "status")
	if _, err := os.Lstat(systemSocket); err == nil {
		t.Skip(systemSocket + " exists on this machine")
	}
	wantExit(t, r, 1, "no spoold socket at ./data/spoold.sock or /run/spoold/spoold.sock (looked in that order)")
}

func TestPermissionDenied(t *testing.T) {
	// Root ignores socket permissions, so the refusal is injected at the dialer.
	d := &deps{Dial: func(context.Context, string) (net.Conn, error) {
		return nil, &net.OpError{Op: "dial", Net: "unix", Err: os.NewSyscallError("connect", syscall.EACCES)}
	}}
	r := runCLI(t, d, "--socket", "/run/spoold/spoold.sock", "list")
	wantExit(t, r, 1, "permission denied on /run/spoold/spoold.sock: run spoolctl as root or as a member of spoold's admin group")
	if !strings.Contains(r.stderr, "--socket PATH or SPOOLD_SOCKET=PATH") {
		t.Fatalf("no way to point spoolctl elsewhere: %q", r.stderr)
	}
	if os.Geteuid() == 0 {
		return
	}
	e := newEnv(t)
	if err := os.Chmod(e.sock, 0); err != nil {
		t.Fatal(err)
	}
	wantExit(t, e.run(t, "list"), 1, "permission denied on "+e.sock)
}

func TestUsageErrors(t *testing.T) {
	e := newEnv(t)
	cases := []struct {
		args []string
		msg  string
	}{
		{[]string{"frobnicate"}, `unknown command "frobnicate"`},
		{[]string{"list", "--bogus"}, "unknown flag: --bogus"},
		{[]string{"list", "--state", "lost"}, `unknown state "lost"`},
		{[]string{"list", "--older-than", "soon"}, `duration "soon": want a number and a unit`},
		{[]string{"--timeout", "soon", "status"}, `duration "soon": want a number and a unit`},
		{[]string{"list", "--limit", "-1"}, "--limit must not be negative"},
		{[]string{"list", "extra"}, `unknown command "extra"`},
		{[]string{"show"}, "needs a message ID"},
		{[]string{"hold"}, "needs at least one message ID"},
		{[]string{"release"}, "needs at least one message ID"},
		{[]string{"delete"}, "needs at least one message ID"},
		{[]string{"requeue"}, "requeue needs message IDs or --state dead"},
		{[]string{"requeue", "X", "--state", "dead"}, "not both"},
		{[]string{"requeue", "--state", "queued"}, "--state must be dead or held"},
		{[]string{"flush", "X", "--account", "m365"}, "--account cannot be combined"},
		{[]string{"purge", "--older-than", "7d"}, `required flag(s) "state" not set`},
		{[]string{"purge", "--state", "queued", "--older-than", "7d"}, "--state must be dead or delivered"},
		{[]string{"test-send", "m365"}, `required flag(s) "to" not set`},
		{[]string{"test-send", "m365", "--to", "nobody"}, "is not an e-mail address"},
		{[]string{"auth", "login"}, "needs an account name"},
		{[]string{"auth", "bogus"}, `unknown command "bogus" for "spoolctl auth"`},
		{[]string{"auth", "login", "m365", "--device", "--paste"}, "none of the others can be"},
		{[]string{"--timeout", "x", "status"}, "invalid argument"},
	}
	for _, c := range cases {
		r := e.run(t, c.args...)
		if r.code != 2 || !strings.Contains(r.stderr, c.msg) {
			t.Errorf("%v: exit %d, stderr %q; want 2 and %q", c.args, r.code, r.stderr, c.msg)
		}
	}
}

func TestOfflineSpool(t *testing.T) {
	clk := &clock{now: t0}
	dir := t.TempDir()
	sp, err := spool.Open(dir, testSpoolOptions(clk))
	if err != nil {
		t.Fatal(err)
	}
	id := enqueueTo(t, sp, "alice@example.com", "bob@example.com")

	// While the "daemon" holds the spool, --spool says to use the socket.
	d := &deps{Clock: clk.Now}
	r := runCLI(t, d, "--spool", dir, "list")
	wantExit(t, r, 1, "the daemon is running: use the socket (--socket PATH)")
	if err := sp.Close(); err != nil {
		t.Fatal(err)
	}
	clk.Add(3 * time.Hour)

	r = runCLI(t, d, "--spool", dir, "list")
	if r.code != 0 || !strings.Contains(r.stdout, id+"  queued  3h") {
		t.Fatalf("offline list: %+v", r)
	}
	r = runCLI(t, d, "--spool", dir, "show", id)
	if r.code != 0 || !strings.Contains(r.stdout, "Message:       "+id) {
		t.Fatalf("offline show: %+v", r)
	}
	r = runCLI(t, d, "--spool", dir, "show", id, "--headers")
	if r.code != 0 || !strings.Contains(r.stdout, "Subject: Scan 42") {
		t.Fatalf("offline headers: %+v", r)
	}
	r = runCLI(t, d, "--spool", dir, "status")
	if r.code != 0 {
		t.Fatalf("offline status: %+v", r)
	}
	golden(t, "status-offline", strings.ReplaceAll(r.stdout, dir, "DIR"))
	for _, args := range [][]string{{"hold", id}, {"delete", "--yes", id}, {"flush"}, {"accounts"}, {"purge", "--state", "dead", "--older-than", "0"}} {
		r = runCLI(t, d, append([]string{"--spool", dir}, args...)...)
		wantExit(t, r, 2, "--spool is read-only and only supports list, show and status")
	}
	wantExit(t, runCLI(t, d, "--spool", dir, "show", "01NOPE"), 1, "message 01NOPE not found")
	wantExit(t, runCLI(t, d, "--spool", t.TempDir(), "list"), 1, "no spool in")

	// Nothing was written: the spool opens and still holds the message as queued.
	sp, err = spool.Open(dir, testSpoolOptions(clk))
	if err != nil {
		t.Fatal(err)
	}
	defer sp.Close()
	if m, err := sp.Get(context.Background(), id); err != nil || m.State != spool.StateQueued {
		t.Fatalf("after offline use: %+v %v", m, err)
	}
}

func TestAuthLogin(t *testing.T) {
	e := newEnv(t)
	// Browser: the URL is printed, then the command waits for the daemon.
	done := make(chan result, 1)
	go func() { done <- e.run(t, "auth", "login", "m365") }()
	var id string
	select {
	case id = <-e.acc.started:
	case <-time.After(30 * time.Second):
		t.Fatal("login not started")
	}
	e.acc.mu.Lock()
	e.acc.logins[id] <- wire.AccountInfo{Name: "m365", Status: "ok", Identity: "scanner@example.com"}
	e.acc.mu.Unlock()
	var r result
	select {
	case r = <-done:
	case <-time.After(30 * time.Second):
		t.Fatal("login did not finish")
	}
	if r.code != 0 || !strings.Contains(r.stdout, "https://login.example.com/authorize?client_id=app&redirect_uri=http%3A%2F%2Flocalhost%3A8025%2Foauth2%2Fcallback&state=xyz") ||
		!strings.HasSuffix(r.stdout, "account m365 signed in as scanner@example.com; status ok\n") {
		t.Fatalf("browser login: %+v", r)
	}

	// Paste: the redirected URL (with its one-time code) is read from stdin and never echoed.
	r = e.runIn(t, "http://localhost:9191/oauth2/callback?code=SECRETCODE&state=xyz\n", false, "auth", "login", "m365", "--paste")
	if r.code != 0 || strings.Contains(r.stdout+r.stderr, "SECRETCODE") || !strings.Contains(r.stdout, "signed in as scanner@example.com") {
		t.Fatalf("paste login: %+v", r)
	}
	if len(e.acc.pasted) != 1 || !strings.Contains(e.acc.pasted[0], "code=SECRETCODE") {
		t.Fatalf("pasted %v", e.acc.pasted)
	}
	<-e.acc.started
	wantExit(t, e.runIn(t, "", false, "auth", "login", "m365", "--paste"), 1, "no URL pasted")
	<-e.acc.started

	// Device: code and URL, then a wait that gives up after --wait.
	r = e.run(t, "auth", "login", "m365", "--device", "--wait", "200ms")
	wantExit(t, r, 1, "gave up waiting for the sign-in after 200ms")
	if !strings.Contains(r.stdout, "open https://microsoft.com/devicelogin on any device, enter the code ABCD-EFGH and sign in as scanner@example.com") {
		t.Fatalf("device login: %+v", r)
	}
}

func TestVersion(t *testing.T) {
	r := runCLI(t, &deps{}, "version")
	if r.code != 0 || !strings.HasPrefix(r.stdout, "spoolctl ") {
		t.Fatalf("version: %+v", r)
	}
	r = runCLI(t, &deps{}, "completion", "bash")
	if r.code != 0 || !strings.Contains(r.stdout, "spoolctl") {
		t.Fatalf("completion: exit %d", r.code)
	}
}
