package adminapi

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net/http/httptest"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/spoold/spoold/cmd/spoold/adminapi/peertest"
	"github.com/spoold/spoold/cmd/spoold/adminapi/wire"
	"github.com/spoold/spoold/spool"
	"github.com/spoold/spoold/spool/spooltest"
)

// fullInfo is a daemon that can reload and rotate keys.
type fullInfo struct {
	fakeInfo
	rotated int
}

func (fullInfo) Reload(context.Context) wire.ReloadInfo { return wire.ReloadInfo{Time: t0, OK: true} }
func (fullInfo) LastReload() *wire.ReloadInfo           { return nil }
func (f *fullInfo) Keys() wire.KeysInfo {
	return wire.KeysInfo{Keys: []wire.KeyInfo{{ID: "aaaaaaaaaaaa", Source: "file x", Primary: true}}}
}
func (f *fullInfo) RotateKeys(context.Context) (wire.KeysRotateResponse, error) {
	f.rotated++
	return wire.KeysRotateResponse{OldKeyID: "aaaaaaaaaaaa", NewKeyID: "bbbbbbbbbbbb", KeyFile: "x", Resealed: []string{"m365"}}, nil
}

// socketEnv serves the Service on a real socket through NewSocketServer,
// as the daemon does.
func socketEnv(t *testing.T, a Access, mode os.FileMode) (*env, *Service, string) {
	t.Helper()
	e := newEnv(t, Options{})
	info := &fullInfo{}
	svc := NewService(e.sp, &pausingAccounts{fakeAccounts: e.acc}, info, Options{Clock: e.clk.Now, Logger: slog.New(slog.DiscardHandler)})
	dir := shortTempDir(t)
	sock := filepath.Join(dir, "spoold.sock")
	ln, err := Listen(sock, mode, "")
	if err != nil {
		t.Fatal(err)
	}
	srv, err := NewSocketServer(svc.Handler(), a, slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan struct{})
	go func() { defer close(done); _ = srv.Serve(ln) }()
	e.c = wire.NewClient(sock)
	t.Cleanup(func() { e.c.CloseIdleConnections(); srv.Close(); <-done })
	return e, svc, sock
}

// TestAuditEveryActionViaSocket runs each state-changing action over the
// socket and finds it in the audit log with who (the peer's uid and name,
// from SO_PEERCRED), what, which message or account, and the result.
func TestAuditEveryActionViaSocket(t *testing.T) {
	e, _, _ := socketEnv(t, Access{}, 0)
	ctx := context.Background()
	me, err := user.Current()
	if err != nil {
		t.Fatal(err)
	}
	a := e.enqueue(t, "a@example.com", "x@example.com")
	b := e.enqueue(t, "b@example.com", "x@example.com")
	c := e.enqueue(t, "c@example.com", "x@example.com")
	must := func(what string, err error) {
		t.Helper()
		if err != nil {
			t.Fatalf("%s: %v", what, err)
		}
	}
	_, err = e.c.Hold(ctx, a, "printer jam")
	must("hold", err)
	_, err = e.c.Release(ctx, a)
	must("release", err)
	_, err = e.c.Flush(ctx, a)
	must("flush", err)
	_, err = e.c.FlushAll(ctx, "m365")
	must("flush all", err)
	e.kill(t, b)
	_, err = e.c.Requeue(ctx, b)
	must("requeue", err)
	_, err = e.c.Hold(ctx, c, "")
	must("hold c", err)
	_, err = e.c.RequeueAll(ctx, wire.StateHeld, "")
	must("requeue all", err)
	must("delete", e.c.Delete(ctx, a))
	_, err = e.c.Purge(ctx, wire.StateDead, 0)
	must("purge", err)
	_, err = e.c.SetDeliveryPaused(ctx, true)
	must("pause", err)
	_, err = e.c.SetDeliveryPaused(ctx, false)
	must("resume", err)
	_, err = e.c.StartLogin(ctx, "m365", wire.LoginPaste)
	must("login", err)
	must("logout", e.c.Logout(ctx, "m365"))
	_, err = e.c.TestSend(ctx, "m365", "to@example.com")
	must("test-send", err)
	_, err = e.c.Reload(ctx)
	must("reload", err)
	_, err = e.c.RotateKeys(ctx)
	must("keys rotate", err)
	_, err = e.c.Hold(ctx, "01NOSUCH", "")
	wantCode(t, err, wire.CodeNotFound, "not found")
	// Reads are not recorded.
	_, err = e.c.Status(ctx)
	must("status", err)

	res, err := e.c.Audit(ctx, wire.AuditRequest{Limit: -1})
	must("audit", err)
	want := []string{"hold " + "message " + a, "release message " + a, "flush message " + a, "flush account m365",
		"requeue message " + b, "hold message " + c, "requeue ", "delete message " + a, "purge ", "pause ", "resume ",
		"login account m365", "logout account m365", "test-send account m365", "reload ", "keys-rotate ", "hold message 01NOSUCH"}
	if len(res.Entries) != len(want) {
		for _, en := range res.Entries {
			t.Logf("%+v", en)
		}
		t.Fatalf("%d audit entries, want %d", len(res.Entries), len(want))
	}
	for i, w := range want {
		en := res.Entries[len(res.Entries)-1-i] // oldest last
		got := en.Action + " " + en.Target
		if !strings.HasPrefix(got, w) {
			t.Errorf("entry %d = %q, want %q", i, got, w)
		}
		if en.Via != "socket" || en.UID != os.Getuid() || en.User != me.Username || en.Time.IsZero() {
			t.Errorf("entry %d actor = %s/%d/%s", i, en.Via, en.UID, en.User)
		}
		wantResult := "ok"
		if i == len(want)-1 {
			wantResult = "message 01NOSUCH not found"
		}
		if en.Result != wantResult {
			t.Errorf("entry %d (%s) result %q, want %q", i, en.Action, en.Result, wantResult)
		}
	}
	first := res.Entries[len(res.Entries)-1]
	if first.Detail != "reason=printer jam" {
		t.Errorf("hold detail %q", first.Detail)
	}
	if purge := res.Entries[len(res.Entries)-1-8]; !strings.Contains(purge.Detail, "state=dead") || !strings.Contains(purge.Detail, "count=") {
		t.Errorf("purge detail %q", purge.Detail)
	}
	// --since and --limit.
	if r, _ := e.c.Audit(ctx, wire.AuditRequest{Limit: 3}); len(r.Entries) != 3 {
		t.Errorf("limit 3: %d", len(r.Entries))
	}
	if r, _ := e.c.Audit(ctx, wire.AuditRequest{Since: t0.Add(time.Minute)}); len(r.Entries) != 0 {
		t.Errorf("since after all: %d", len(r.Entries))
	}
}

// TestAuditConsolePath: the web console calls the same handler in-process
// with its user as the actor; the entry names that user.
func TestAuditConsolePath(t *testing.T) {
	e := newEnv(t, Options{})
	id := e.enqueue(t, "a@example.com", "x@example.com")
	svc := NewService(e.sp, e.acc, fakeInfo{}, Options{Clock: e.clk.Now, Logger: slog.New(slog.DiscardHandler)})
	ctx := WithActor(context.Background(), Actor{Via: "console", UID: -1, User: "helpdesk"})
	req := httptest.NewRequestWithContext(ctx, "POST", "/v1/messages/"+id+"/hold", strings.NewReader(`{"reason":"checking"}`))
	rec := httptest.NewRecorder()
	svc.Handler().ServeHTTP(rec, req)
	if rec.Code != 200 {
		t.Fatalf("hold: %d %s", rec.Code, rec.Body)
	}
	es, err := e.sp.AuditList(context.Background(), time.Time{}, 0)
	if err != nil || len(es) != 1 {
		t.Fatalf("audit: %v %v", es, err)
	}
	if en := es[0]; en.Via != "console" || en.User != "helpdesk" || en.UID != -1 || en.Action != "hold" || en.Target != "message "+id || en.Result != "ok" {
		t.Fatalf("entry %+v", en)
	}
	// A pasted redirect URL carries an authorization code: never recorded.
	req = httptest.NewRequestWithContext(ctx, "POST", "/v1/logins/L1/paste", strings.NewReader(`{"redirected_url":"http://localhost/cb?code=SECRETCODE"}`))
	svc.Handler().ServeHTTP(httptest.NewRecorder(), req)
	es, _ = e.sp.AuditList(context.Background(), time.Time{}, 0)
	b, _ := json.Marshal(es)
	if len(es) != 2 || bytes.Contains(b, []byte("SECRETCODE")) {
		t.Fatalf("paste entry: %s", b)
	}
}

func TestNeedsAdmin(t *testing.T) {
	for path, want := range map[string]bool{
		"GET /v1/status": false, "GET /v1/messages": false, "GET /v1/messages/01ABC": false, "GET /v1/accounts/m365": false,
		"GET /v1/alerts": false, "GET /v1/messages/01ABC/body": true, "GET /v1/audit": true, "GET /v1/keys": true,
		"POST /v1/messages/01ABC/hold": true, "GET /v1/logins/x/wait": true, "GET /v1/new-endpoint": true, "DELETE /v1/messages/x": true,
	} {
		m, p, _ := strings.Cut(path, " ")
		if got := needsAdmin(httptest.NewRequest(m, p, nil)); got != want {
			t.Errorf("needsAdmin(%s) = %t, want %t", path, got, want)
		}
	}
}

// TestPeerCredentialsRealUsers creates users and groups, runs a client as
// each (SysProcAttr.Credential) and checks what the socket lets them do.
func TestPeerCredentialsRealUsers(t *testing.T) {
	if req := os.Getenv("ADMINAPI_PEER_CHILD"); req != "" {
		peerChild(req)
		return
	}
	pu := peertest.Create(t, "spt")
	roGroup, admGroup, reader, admin, stranger := pu.ReadGroup, pu.AdminGroup, pu.Reader, pu.Admin, pu.Stranger

	e, _, sock := socketEnv(t, Access{ReadGroup: roGroup, AdminGroup: admGroup}, 0o666)
	id := e.enqueue(t, "a@example.com", "x@example.com")
	if err := os.Chmod(filepath.Dir(sock), 0o755); err != nil {
		t.Fatal(err)
	}
	// The test binary, where other users may run it.
	binDir := shortTempDir(t)
	os.Chmod(binDir, 0o755)
	bin := filepath.Join(binDir, "adminapi.test")
	src, err := os.ReadFile(os.Args[0])
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(bin, src, 0o755); err != nil {
		t.Fatal(err)
	}
	as := func(name, request string) string {
		t.Helper()
		u, err := user.Lookup(name)
		if err != nil {
			t.Fatal(err)
		}
		uid, _ := strconv.Atoi(u.Uid)
		gid, _ := strconv.Atoi(u.Gid)
		cmd := exec.Command(bin, "-test.run=^TestPeerCredentialsRealUsers$")
		cmd.Env = []string{"ADMINAPI_PEER_CHILD=" + request, "ADMINAPI_SOCK=" + sock}
		// Supplementary groups are left out on purpose: spoold must find
		// them in the group database, as for a login shell's process.
		cmd.SysProcAttr = &syscall.SysProcAttr{Credential: &syscall.Credential{Uid: uint32(uid), Gid: uint32(gid), Groups: []uint32{}}}
		out, err := cmd.CombinedOutput()
		if err != nil {
			t.Fatalf("client as %s: %v: %s", name, err, out)
		}
		return strings.TrimSpace(string(out))
	}
	cases := []struct{ user, req, want string }{
		{reader, "status", "ok"},
		{reader, "list", "ok"},
		{reader, "show " + id, "ok"},
		{reader, "hold " + id, "permission_denied: permission denied: " + reader + " is not in the admin group " + admGroup},
		{reader, "audit", "permission_denied"},
		{admin, "status", "ok"},
		{admin, "hold " + id, "ok"},
		{admin, "audit", "ok"},
		{stranger, "status", "permission_denied: permission denied: " + stranger + " is in neither group that may use spoold's admin socket: this needs " + roGroup + " (read-only, admin.read_group) or " + admGroup},
		{stranger, "hold " + id, "permission_denied"},
	}
	for _, c := range cases {
		if got := as(c.user, c.req); !strings.HasPrefix(got, c.want) {
			t.Errorf("%s: %s = %q, want %q", c.user, c.req, got, c.want)
		}
	}
	es, _ := e.sp.AuditList(context.Background(), time.Time{}, 0)
	if len(es) != 1 || es[0].User != admin || es[0].Action != "hold" || es[0].Result != "ok" {
		t.Fatalf("audit after the users' requests: %+v (want the admin's hold only: refusals change nothing)", es)
	}
	u, _ := user.Lookup(admin)
	if strconv.Itoa(es[0].UID) != u.Uid {
		t.Fatalf("audit uid %d, want %s", es[0].UID, u.Uid)
	}
}

// peerChild is the client side of TestPeerCredentialsRealUsers: one request,
// "ok" or "code: message" on stdout.
func peerChild(req string) {
	c := wire.NewClient(os.Getenv("ADMINAPI_SOCK"))
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	verb, arg, _ := strings.Cut(req, " ")
	var err error
	switch verb {
	case "status":
		_, err = c.Status(ctx)
	case "list":
		_, err = c.List(ctx, wire.ListRequest{})
	case "show":
		_, err = c.Get(ctx, arg)
	case "hold":
		_, err = c.Hold(ctx, arg, "by test")
	case "audit":
		_, err = c.Audit(ctx, wire.AuditRequest{})
	}
	var ae *wire.APIError
	switch {
	case err == nil:
		fmt.Println("ok")
	case errors.As(err, &ae):
		fmt.Printf("%s: %s\n", ae.Code, ae.Message)
	default:
		fmt.Println("error:", err)
	}
}

// TestAuditPrunerExpiresOldEntries runs the pruner on an injected clock:
// entries older than the retention go, newer ones stay.
func TestAuditPrunerExpiresOldEntries(t *testing.T) {
	e := newEnv(t, Options{})
	ctx := context.Background()
	for _, age := range []time.Duration{100 * 24 * time.Hour, 91 * 24 * time.Hour, 89 * 24 * time.Hour, time.Hour} {
		if err := e.sp.AuditAppend(ctx, spool.AuditEntry{Time: t0.Add(-age), Action: "hold", Result: "ok", UID: -1}); err != nil {
			t.Fatal(err)
		}
	}
	pctx, cancel := context.WithCancel(ctx)
	done := make(chan struct{})
	go func() {
		defer close(done)
		RunAuditPruner(pctx, e.sp, DefaultAuditRetention, time.Millisecond, func() time.Time { return t0 }, slog.New(slog.DiscardHandler))
	}()
	spooltest.WaitFor(t, "the 2 entries older than 90d pruned", 30*time.Second, func() bool {
		es, _ := e.sp.AuditList(ctx, time.Time{}, 0)
		return len(es) == 2
	})
	cancel()
	<-done
	es, _ := e.sp.AuditList(ctx, time.Time{}, 0)
	if !es[1].Time.Equal(t0.Add(-89 * 24 * time.Hour)) {
		t.Fatalf("kept %+v", es)
	}
}
