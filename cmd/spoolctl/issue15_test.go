package main

import (
	"context"
	"errors"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/spoold/spoold/cmd/spoold/adminapi/wire"
)

func TestAccountFilterTypos(t *testing.T) {
	e := newEnv(t)
	r := e.run(t, "list")
	if r.code != 0 || r.stdout != "Mail queue is empty\n" {
		t.Fatalf("empty queue: %+v", r)
	}
	e.populate(t)
	const want = `unknown account "m356": the configured accounts are m365, gmail, outbox`
	for _, args := range [][]string{{"list", "--account", "m356"}, {"flush", "--account", "m356"},
		{"requeue", "--state", "dead", "--account", "m356"}} {
		wantExit(t, e.run(t, args...), 1, want)
	}
	r = e.run(t, "list", "--state", "delivered")
	if r.code != 0 || r.stdout != "no messages match\n" {
		t.Fatalf("filtered empty: %+v", r)
	}
}

func TestIDsByPrefixAndCase(t *testing.T) {
	e := newEnv(t)
	_, _, dead, held := e.populate(t)
	r := e.run(t, "show", strings.ToLower(dead))
	if r.code != 0 || !strings.Contains(r.stdout, "Message:     "+dead) || !strings.Contains(r.stdout, "Subject:     Scan 42") {
		t.Fatalf("show lower case: %+v", r)
	}
	wantExit(t, e.run(t, "show", "01jq"), 1, "message ID 01jq is ambiguous: it starts 4 messages (01JQ000001, 01JQ000002, 01JQ000003, 01JQ000004); give more of the ID")
	r = e.run(t, "release", strings.ToLower(held))
	if r.code != 0 || !strings.Contains(r.stdout, "(now queued)") {
		t.Fatalf("release lower case: %+v", r)
	}
}

func TestCompletion(t *testing.T) {
	e := newEnv(t)
	_, _, dead, held := e.populate(t)
	r := e.run(t, "__complete", "show", "01jq00000")
	for _, id := range []string{dead, held} {
		if !strings.Contains(r.stdout, id+"\t") {
			t.Fatalf("show completion lacks %s: %+v", id, r)
		}
	}
	r = e.run(t, "__complete", "release", "")
	if !strings.Contains(r.stdout, held+"\theld") || strings.Contains(r.stdout, dead) {
		t.Fatalf("release offers only held messages: %q", r.stdout)
	}
	r = e.run(t, "__complete", "list", "--account", "")
	for _, name := range []string{"m365\t", "gmail\t", "outbox"} {
		if !strings.Contains(r.stdout, name) {
			t.Fatalf("account completion lacks %s: %q", name, r.stdout)
		}
	}
	r = e.run(t, "__complete", "purge", "--state", "")
	if !strings.HasPrefix(r.stdout, "dead\ndelivered\n") {
		t.Fatalf("purge states: %q", r.stdout)
	}
	r = e.run(t, "__complete", "auth", "login", "gm")
	if !strings.HasPrefix(r.stdout, "gmail\t") {
		t.Fatalf("auth login completion: %q", r.stdout)
	}
}

// twice scripts a terminal's password prompts.
func twice(answers ...string) func() ([]byte, error) {
	var mu sync.Mutex
	return func() ([]byte, error) {
		mu.Lock()
		defer mu.Unlock()
		if len(answers) == 0 {
			return nil, errors.New("no more input")
		}
		a := answers[0]
		answers = answers[1:]
		return []byte(a), nil
	}
}

func TestHashPasswordAsksTwice(t *testing.T) {
	tty := func() bool { return true }
	r := runCLI(t, &deps{StdinIsTTY: tty, ReadPassword: twice("s3cret-pw", "s3cret-wp")}, "hash-password")
	wantExit(t, r, 1, "the two passwords differ")
	if r.stdout != "" || !strings.Contains(r.stderr, "Same password again: ") {
		t.Fatalf("mismatch: %+v", r)
	}
	r = runCLI(t, &deps{StdinIsTTY: tty, ReadPassword: twice("s3cret-pw", "s3cret-pw")}, "hash-password")
	if r.code != 0 || !strings.HasPrefix(r.stdout, "$2") || strings.Contains(r.stdout+r.stderr, "s3cret") {
		t.Fatalf("match: %+v", r)
	}
}

func TestLogoutAsks(t *testing.T) {
	e := newEnv(t)
	r := e.runIn(t, "n\n", true, "auth", "logout", "m365")
	wantExit(t, r, 1, "aborted: nothing changed")
	if !strings.Contains(r.stderr, "Sign out account m365? Its mail waits until someone signs it in again") {
		t.Fatalf("question: %q", r.stderr)
	}
	r = e.runIn(t, "", true, "auth", "logout", "--yes", "m365")
	if r.code != 0 || strings.Contains(r.stderr, "[y/N]") {
		t.Fatalf("--yes: %+v", r)
	}
}

func TestPurgeNothingToAsk(t *testing.T) {
	e := newEnv(t)
	e.populate(t)
	r := e.runIn(t, "", true, "purge", "--state", "dead", "--older-than", "7d")
	if r.code != 0 || r.stdout != "no dead messages older than 7d: nothing to purge\n" || strings.Contains(r.stderr, "[y/N]") {
		t.Fatalf("purge of nothing: %+v", r)
	}
}

func TestLoginFlowChoice(t *testing.T) {
	e := newEnv(t)
	e.acc.mu.Lock()
	e.acc.accounts = append(e.acc.accounts,
		wire.AccountInfo{Name: "dev", Transport: "smtp", Provider: "microsoft", Flow: "device", Mailbox: "dev@example.com", Status: "needs_reauth"},
		wire.AccountInfo{Name: "app", Transport: "smtp", Provider: "microsoft", Flow: "client_credentials", Mailbox: "app@example.com", Status: "ok"})
	e.acc.mu.Unlock()

	// A device account gets the device flow without --device.
	r := e.run(t, "auth", "login", "dev", "--wait", "50ms")
	if !strings.Contains(r.stdout, "enter the code ABCD-EFGH and sign in as dev@example.com") {
		t.Fatalf("device account: %+v", r)
	}
	<-e.acc.started
	// Google: refused before anything is asked of the provider.
	r = e.run(t, "auth", "login", "gmail", "--device")
	wantExit(t, r, 2, "Google does not allow the device flow")
	if !strings.Contains(r.stderr, "spoolctl auth login gmail --paste") {
		t.Fatalf("no alternative: %q", r.stderr)
	}
	select {
	case id := <-e.acc.started:
		t.Fatalf("login %s started for a refused --device", id)
	default:
	}
	wantExit(t, e.run(t, "auth", "login", "app"), 1, "account app signs in by itself")
	wantExit(t, e.run(t, "auth", "login", "outbox"), 1, "needs no sign-in")

	// accounts names the sign-in, with --device only where allowed.
	r = e.run(t, "accounts")
	if !strings.Contains(r.stdout, "spoolctl auth login m365  (browser; --device for a code") ||
		!strings.Contains(r.stdout, "spoolctl auth login gmail  (browser; --paste on a headless host)") {
		t.Fatalf("accounts hints: %q", r.stdout)
	}
}

func TestLoginOutputAndInterrupt(t *testing.T) {
	e := newEnv(t)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	var out, errb strings.Builder
	done := make(chan int, 1)
	d := &deps{Stdout: &syncWriter{w: &out}, Stderr: &syncWriter{w: &errb}, Location: time.UTC,
		Hostname: func() (string, error) { return "spool-host", nil }}
	go func() { done <- Main(ctx, []string{"--socket", e.sock, "auth", "login", "m365"}, d) }()
	// Ctrl-C once spoolctl waits for the browser.
	deadline := time.Now().Add(30 * time.Second)
	for !strings.Contains(d.Stdout.(*syncWriter).String(), "Waiting for the sign-in") {
		if time.Now().After(deadline) {
			t.Fatal("login not waiting")
		}
		time.Sleep(5 * time.Millisecond)
	}
	cancel()
	var code int
	select {
	case code = <-done:
	case <-time.After(30 * time.Second):
		t.Fatal("login did not stop")
	}
	so, se := d.Stdout.(*syncWriter).String(), d.Stderr.(*syncWriter).String()
	if code != 1 || !strings.Contains(se, "sign-in interrupted: account m365 is not signed in") || strings.Contains(se, "gave up") {
		t.Fatalf("interrupt: %d %q", code, se)
	}
	for _, want := range []string{"sign in as scanner@example.com", "http://localhost:8025/oauth2/callback",
		"ssh -L 8025:localhost:8025 spool-host", "spoolctl auth login m365 --paste"} {
		if !strings.Contains(so, want) {
			t.Fatalf("login output lacks %q:\n%s", want, so)
		}
	}
}

type syncWriter struct {
	mu sync.Mutex
	w  *strings.Builder
}

func (s *syncWriter) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.w.Write(p)
}

func (s *syncWriter) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.w.String()
}

// reloadInfo is a daemon whose reloads return scripted outcomes.
type reloadInfo struct {
	fakeInfo
	mu   sync.Mutex
	next wire.ReloadInfo
	last *wire.ReloadInfo
}

func (r *reloadInfo) Reload(context.Context) wire.ReloadInfo {
	r.mu.Lock()
	defer r.mu.Unlock()
	ri := r.next
	r.last = &ri
	return ri
}

func (r *reloadInfo) LastReload() *wire.ReloadInfo {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.last
}

func TestReloadCommand(t *testing.T) {
	info := &reloadInfo{next: wire.ReloadInfo{Time: tEnd, Config: "/etc/spoold/spoold.yaml",
		Problems: []string{"/etc/spoold/spoold.yaml:12: accounts[0].port: want 1-65535", "/etc/spoold/spoold.yaml:20: routes.default: unknown account \"m356\""}}}
	e := newEnvInfo(t, info)
	e.clk.now = tEnd
	r := e.run(t, "status")
	if strings.Contains(r.stdout, "Last reload") {
		t.Fatalf("status shows a reload before any: %s", r.stdout)
	}
	r = e.run(t, "reload")
	if r.code != 1 {
		t.Fatalf("refused reload: exit %d", r.code)
	}
	want := "reload of /etc/spoold/spoold.yaml REFUSED at 2026-03-02 13:14:00 CET"
	if !strings.Contains(r.stdout, want) || !strings.Contains(r.stdout, "\n  /etc/spoold/spoold.yaml:12: accounts[0].port: want 1-65535\n  /etc/spoold/spoold.yaml:20:") {
		t.Fatalf("reload output:\n%s", r.stdout)
	}
	r = e.run(t, "status")
	if !strings.Contains(r.stdout, "Last reload:\n  "+want) || !strings.Contains(r.stdout, "    /etc/spoold/spoold.yaml:12:") {
		t.Fatalf("status:\n%s", r.stdout)
	}
	info.mu.Lock()
	info.next = wire.ReloadInfo{Time: tEnd, Config: "/etc/spoold/spoold.yaml", OK: true, Warnings: []string{"http.listen: needs a restart to take effect"}}
	info.mu.Unlock()
	r = e.run(t, "reload")
	if r.code != 0 || !strings.Contains(r.stdout, "reloaded /etc/spoold/spoold.yaml at") || !strings.Contains(r.stdout, "warning: http.listen: needs a restart") {
		t.Fatalf("good reload: %+v", r)
	}
	wantExit(t, newEnv(t).run(t, "reload"), 1, "this daemon cannot reload its configuration")
}

func TestCleanMessage(t *testing.T) {
	cases := map[string]string{
		"test-send through account m365: delivery: test-send via m365: delivery: token: auth: account m365: auth: refresh rejected: run spoolctl auth login m365": "test-send through account m365: test-send via m365: token: account m365: refresh rejected: run spoolctl auth login m365",
		"message 01X not found": "message 01X not found",
		"spool: disk full":      "disk full",
		"auth":                  "auth",
	}
	for in, want := range cases {
		if got := cleanMessage(in); got != want {
			t.Errorf("cleanMessage(%q)\n = %q\nwant %q", in, got, want)
		}
	}
	// The chain stays: codes and errors.Is still work.
	err := humanError(&wire.APIError{Code: wire.CodeNeedsReauth, Message: "auth: account x: auth: expired"})
	if err.Error() != "account x: expired" || !wire.HasCode(err, wire.CodeNeedsReauth) {
		t.Fatalf("humanError: %v", err)
	}
}
