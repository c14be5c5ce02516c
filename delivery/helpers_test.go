package delivery

import (
	"context"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/spoold/spoold/delivery/smtpfake"
	"github.com/spoold/spoold/spool"
)

func stringsReader(s string) io.Reader { return strings.NewReader(s) }

// waitFor polls cond until it holds or a generous deadline passes.
func waitFor(t testing.TB, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// logBuffer collects log output for assertions (secrets, possible duplicate).
type logBuffer struct {
	mu sync.Mutex
	b  strings.Builder
}

func (l *logBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *logBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

type harness struct {
	t      testing.TB
	clock  *fakeClock
	sp     *fakeSpool
	tokens *fakeTokens
	up     *smtpfake.Server
	eng    *Engine
	logs   *logBuffer
	cancel context.CancelFunc
	done   chan error
}

const testMailbox = "scanner@tenant.example"

// testAccount returns an xoauth2 STARTTLS account pointing at up, with
// Microsoft's connection limit as the daemon sets it from auth's preset.
func testAccount(up *smtpfake.Server) AccountConfig {
	return AccountConfig{Name: "m365", Host: up.Host, Port: up.Port, TLS: "starttls", CAFile: up.CAFile,
		ServerName: "127.0.0.1", Auth: "xoauth2", Mailbox: testMailbox, MaxConnections: 3, RatePerMinute: -1,
		ConnectTimeout: 10 * time.Second, CommandTimeout: 10 * time.Second, DataTimeout: 10 * time.Second}
}

type hopt struct {
	up      smtpfake.Options
	account func(*AccountConfig)
	opts    func(*Options)
	noStart bool
}

func newHarness(t testing.TB, o hopt) *harness {
	t.Helper()
	if o.up.Dir == "" {
		o.up.Dir = t.TempDir() // its CA file: nothing outside the test's own directory
	}
	up := startUpstream(t, o.up)
	h := &harness{t: t, clock: newClock(), tokens: newTokens(), up: up, logs: &logBuffer{}}
	h.sp = newFakeSpool(t, h.clock.Now)
	acc := testAccount(up)
	if o.account != nil {
		o.account(&acc)
	}
	opts := Options{Clock: h.clock.Now, Rand: func() float64 { return 0.5 }, Owner: "test",
		Logger:          slog.New(slog.NewTextHandler(h.logs, &slog.HandlerOptions{Level: slog.LevelDebug})),
		ShutdownTimeout: 10 * time.Second, Hostname: "spoold.test"}
	if o.opts != nil {
		o.opts(&opts)
	}
	var err error
	h.eng, err = New([]AccountConfig{acc}, h.sp, h.tokens, opts)
	if err != nil {
		t.Fatal(err)
	}
	if !o.noStart {
		h.start()
	}
	return h
}

func (h *harness) start() {
	ctx, cancel := context.WithCancel(context.Background())
	h.cancel = cancel
	h.done = make(chan error, 1)
	go func() { h.done <- h.eng.Run(ctx) }()
	h.t.Cleanup(h.stop)
}

// stop shuts the engine down and waits for Run to return.
func (h *harness) stop() {
	if h.cancel == nil {
		return
	}
	h.cancel()
	h.cancel = nil
	select {
	case err := <-h.done:
		if err != nil {
			h.t.Errorf("Run: %v", err)
		}
	case <-time.After(60 * time.Second):
		h.t.Fatal("engine did not stop")
	}
}

const simpleBody = "From: Alice Example <alice@office.example>\r\nTo: bob@dest.example\r\nSubject: scan\r\n\r\nhello\r\n"

func (h *harness) enqueue(to ...string) string {
	if len(to) == 0 {
		to = []string{"bob@dest.example"}
	}
	return h.sp.add(spool.EnqueueRequest{From: "alice@office.example", To: to, Account: "m365",
		Source: spool.Source{Kind: spool.SourceSMTP}}, simpleBody)
}

func (h *harness) waitState(id string, st spool.State) *spool.Message {
	h.t.Helper()
	var m *spool.Message
	waitFor(h.t, "message "+id+" in state "+string(st), func() bool {
		m = h.sp.get(id)
		return m.State == st
	})
	return m
}

func readFile(dir, name string) ([]byte, error) { return os.ReadFile(filepath.Join(dir, name)) }

// startUpstream starts a fake upstream that stops when the test ends.
func startUpstream(t testing.TB, o smtpfake.Options) *smtpfake.Server {
	t.Helper()
	up, err := smtpfake.Start(o)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(up.Close)
	return up
}
