package delivery

import (
	"context"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/spoold/spoold/auth"
	"github.com/spoold/spoold/delivery/smtpfake"
	"github.com/spoold/spoold/spool"
	"github.com/spoold/spoold/spool/spooltest"
)

// realHarness runs the engine against the real bbolt spool.
func realHarness(t *testing.T, up smtpfake.Options, tokens *fakeTokens) (*spool.Spool, *smtpfake.Server, *Engine, func()) {
	t.Helper()
	if up.Dir == "" {
		up.Dir = t.TempDir()
	}
	srv, err := smtpfake.Start(up)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(srv.Close)
	sp := spooltest.OpenTemp(t, spool.Options{Logger: slog.New(slog.NewTextHandler(io.Discard, nil))})
	eng, err := New([]AccountConfig{testAccount(srv)}, sp, tokens, Options{Owner: "node-1", ShutdownTimeout: time.Second,
		Logger: slog.New(slog.NewTextHandler(io.Discard, nil)), Hostname: "spoold.test"})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- eng.Run(ctx) }()
	stopped := false
	stop := func() {
		if stopped {
			return
		}
		stopped = true
		cancel()
		if err := <-done; err != nil {
			t.Errorf("Run: %v", err)
		}
	}
	t.Cleanup(stop)
	return sp, srv, eng, stop
}

func realEnqueue(t *testing.T, sp *spool.Spool, req spool.EnqueueRequest, body string) string {
	t.Helper()
	if req.Account == "" {
		req.Account = "m365"
	}
	id, err := sp.Enqueue(context.Background(), req, strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	return id
}

func realWait(t *testing.T, sp *spool.Spool, id string, cond func(*spool.Message) bool) *spool.Message {
	t.Helper()
	var m *spool.Message
	waitFor(t, "message "+id, func() bool {
		var err error
		m, err = sp.Get(context.Background(), id)
		if err != nil {
			t.Fatalf("get %s: %v", id, err)
		}
		return cond(m)
	})
	return m
}

func TestRealSpoolDeliversAndReuses(t *testing.T) {
	sp, srv, _, _ := realHarness(t, smtpfake.Options{}, newTokens())
	var ids []string
	for i := 0; i < 20; i++ {
		ids = append(ids, realEnqueue(t, sp, spool.EnqueueRequest{From: "a@office.example", To: []string{"b@dest.example"}}, simpleBody))
	}
	for _, id := range ids {
		m := realWait(t, sp, id, func(m *spool.Message) bool { return m.State == spool.StateDelivered })
		if m.Attempts != 1 {
			t.Errorf("%s attempts %d", id, m.Attempts)
		}
	}
	if srv.Count() != 20 || srv.Sessions() >= 20 || srv.MaxConcurrent() > 3 {
		t.Errorf("count %d sessions %d max concurrent %d", srv.Count(), srv.Sessions(), srv.MaxConcurrent())
	}
}

func TestRealSpoolPartialDeadAndNotice(t *testing.T) {
	sp, srv, _, _ := realHarness(t, smtpfake.Options{Script: func(c smtpfake.Command) smtpfake.Reply {
		if c.Name == "RCPT" && c.Arg == "gone@dest.example" {
			return smtpfake.Reply{Code: 550, Enhanced: "5.1.1", Text: "no such user"}
		}
		return smtpfake.Reply{}
	}}, newTokens())
	id := realEnqueue(t, sp, spool.EnqueueRequest{From: "mfd@office.example", To: []string{"ok@dest.example", "gone@dest.example"},
		Source: spool.Source{Kind: spool.SourceScan, Folder: "scans", Path: "alice/a.pdf"}},
		"From: Alice <alice@office.example>\r\nSubject: Scan\r\n\r\nbody\r\n")
	m := realWait(t, sp, id, func(m *spool.Message) bool { return m.State == spool.StateDead })
	if !strings.Contains(m.Reason, "gone@dest.example") || m.LastError == nil || m.LastError.Code != 550 {
		t.Errorf("reason %q last error %+v", m.Reason, m.LastError)
	}
	waitFor(t, "notice delivered to alice", func() bool {
		for _, msg := range srv.Messages() {
			if len(msg.To) == 1 && msg.To[0] == "alice@office.example" {
				return strings.Contains(string(msg.Data), "no such user")
			}
		}
		return false
	})
}

func TestRealSpoolNeedsReauthWaitsThenDrains(t *testing.T) {
	tok := newTokens()
	tok.set("", auth.ErrNeedsReauth)
	sp, srv, _, _ := realHarness(t, smtpfake.Options{}, tok)
	id := realEnqueue(t, sp, spool.EnqueueRequest{From: "a@office.example", To: []string{"b@dest.example"}}, simpleBody)
	m := realWait(t, sp, id, func(m *spool.Message) bool { return m.State == spool.StateDeferred })
	if m.Attempts != 0 || !m.NextAttempt.After(time.Now().Add(10*time.Minute)) {
		t.Errorf("attempts %d next %v", m.Attempts, m.NextAttempt)
	}
	tok.set("tok-ok", nil)
	tok.recover("m365")
	realWait(t, sp, id, func(m *spool.Message) bool { return m.State == spool.StateDelivered })
	if srv.Count() != 1 {
		t.Errorf("upstream count %d", srv.Count())
	}
}

func TestRealSpoolShutdownReleasesLease(t *testing.T) {
	entered := make(chan struct{}, 1)
	sp, _, _, stop := realHarness(t, smtpfake.Options{Script: func(c smtpfake.Command) smtpfake.Reply {
		if c.Name == "DATA" {
			select {
			case entered <- struct{}{}:
			default:
			}
			return smtpfake.Reply{Hang: time.Minute}
		}
		return smtpfake.Reply{}
	}}, newTokens())
	id := realEnqueue(t, sp, spool.EnqueueRequest{From: "a@office.example", To: []string{"b@dest.example"}}, simpleBody)
	select {
	case <-entered:
	case <-time.After(20 * time.Second):
		t.Fatal("send did not start")
	}
	stop()
	m, err := sp.Get(context.Background(), id)
	if err != nil {
		t.Fatal(err)
	}
	if m.State == spool.StateActive || m.Attempts != 0 || m.LeaseOwner != "" {
		t.Errorf("after shutdown: state %s attempts %d owner %q", m.State, m.Attempts, m.LeaseOwner)
	}
}

// TestRealSpoolBodyDeletedWhileRunning: a body file removed from messages/
// while spoold runs can never be sent; the message is dead-lettered at once
// as "body missing" (as recovery does at start), not deferred for its whole
// lifetime with "message not found".
func TestRealSpoolBodyDeletedWhileRunning(t *testing.T) {
	sp, _, eng, _ := realHarness(t, smtpfake.Options{}, newTokens())
	eng.Pause(true)
	big := strings.Repeat("a line of a large scan\r\n", 4000) // > 64 KiB: a body file
	id := realEnqueue(t, sp, spool.EnqueueRequest{From: "a@office.example", To: []string{"b@dest.example"}}, big)
	if err := os.Remove(filepath.Join(sp.Dir(), spool.MessagesDir, id+".eml")); err != nil {
		t.Fatal(err)
	}
	eng.Pause(false)
	m := realWait(t, sp, id, func(m *spool.Message) bool { return m.State != spool.StateQueued && m.State != spool.StateActive })
	if m.State != spool.StateDead || !strings.Contains(m.Reason, "body missing") {
		t.Fatalf("message is %s with reason %q, want dead with \"body missing\"", m.State, m.Reason)
	}
	if m.Attempts > 1 {
		t.Errorf("attempts = %d", m.Attempts)
	}
}

// TestRecoveryWhileTokenErrorInFlight: a "needs re-authorization" answer
// made before a login but seen after it must not put the freshly recovered
// account on hold for HoldInterval: the message goes out at once.
func TestRecoveryWhileTokenErrorInFlight(t *testing.T) {
	tok := newTokens()
	tok.set("", auth.ErrNeedsReauth)
	gate := make(chan struct{})
	tok.gate = gate
	sp, srv, _, _ := realHarness(t, smtpfake.Options{}, tok)
	id := realEnqueue(t, sp, spool.EnqueueRequest{From: "a@office.example", To: []string{"b@dest.example"}}, simpleBody)
	<-gate // the worker holds a stale needs_reauth answer
	tok.mu.Lock()
	tok.gate = nil
	tok.mu.Unlock()
	tok.set("tok-ok", nil)
	tok.recover("m365") // the login completes
	gate <- struct{}{}  // only now does the worker see the stale answer
	m := realWait(t, sp, id, func(m *spool.Message) bool {
		return m.State == spool.StateDelivered || (m.State == spool.StateDeferred && m.NextAttempt.After(time.Now().Add(time.Minute)))
	})
	if m.State != spool.StateDelivered || srv.Count() != 1 {
		t.Fatalf("message %s (next attempt %v, reason %q): the recovered account was put back on hold", m.State, m.NextAttempt, m.Reason)
	}
}
