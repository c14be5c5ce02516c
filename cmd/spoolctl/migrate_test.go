package main

import (
	"bytes"
	"context"
	"io"
	"log/slog"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/spoold/spoold/spool"
	"github.com/spoold/spoold/spool/pgspool"
	"github.com/spoold/spoold/spool/pgspool/pgtest"
)

// migrateSource builds a stopped bbolt spool with a message in each state,
// an idempotency key, bodies inline, in a file and larger than a database
// chunk, a (sealed-looking) token record, alert state and audit entries.
func migrateSource(t *testing.T, dir string) {
	t.Helper()
	ctx := context.Background()
	sp, err := spool.Open(dir, spool.Options{RescueInterval: -1, Logger: slog.New(slog.DiscardHandler)})
	if err != nil {
		t.Fatal(err)
	}
	defer sp.Close()
	enq := func(key string, body string) string {
		id, err := sp.Enqueue(ctx, spool.EnqueueRequest{From: "mfd@example.com", To: []string{"bob@example.com", "carol@example.com"}, Account: "m365",
			IdempotencyKey: key, Source: spool.Source{Kind: spool.SourceSMTP, Listener: "office"}}, strings.NewReader(body))
		if err != nil {
			t.Fatal(err)
		}
		return id
	}
	enq("scan:abc", "Subject: small\r\n\r\nhello\r\n")
	enq("", "Subject: file\r\n\r\n"+strings.Repeat("x", 100<<10))
	enq("", "Subject: big\r\n\r\n"+strings.Repeat("0123456789abcdef", 40<<10)) // 640 KiB: three chunks
	held := enq("", "Subject: held\r\n\r\nheld\r\n")
	if err := sp.Hold(ctx, held, "checking"); err != nil {
		t.Fatal(err)
	}
	done := enq("", "Subject: delivered\r\n\r\nx\r\n")
	dead := enq("", "Subject: dead\r\n\r\nx\r\n")
	ms, err := sp.Claim(ctx, time.Now().Add(time.Second), 10, "w")
	if err != nil {
		t.Fatal(err)
	}
	for _, m := range ms {
		now := time.Now()
		switch m.ID {
		case done:
			_ = sp.StartAttempt(ctx, m.ID, "w", now, now.Add(time.Minute))
			err = sp.Delivered(ctx, m.ID, "w", spool.Result{Now: now})
		case dead:
			_ = sp.StartAttempt(ctx, m.ID, "w", now, now.Add(time.Minute))
			err = sp.Dead(ctx, m.ID, "w", spool.Result{Now: now, Reason: "550 5.7.60 SendAsDenied",
				Error: &spool.ErrorRecord{Time: now, Class: "permanent", Code: 550, Command: "MAIL", Text: "SendAsDenied"}})
		default:
			continue // stays active: its daemon "stopped mid-send"
		}
		if err != nil {
			t.Fatal(err)
		}
	}
	if err := sp.AccountPut(ctx, "m365", "auth.token", []byte("SPOOLD-SEALED\x01opaque")); err != nil {
		t.Fatal(err)
	}
	if err := sp.AlertWrite(ctx, map[string][]byte{"rule.queue_age": []byte(`{"firing":true}`)}, nil); err != nil {
		t.Fatal(err)
	}
	if err := sp.AuditAppend(ctx, spool.AuditEntry{Time: time.Now(), Via: "socket", UID: 0, Action: "hold", Target: held, Result: "ok"}); err != nil {
		t.Fatal(err)
	}
}

// sameSpools compares every message (state, recipients, history, key,
// body) and the records of two spools; a message active in want is queued
// in got.
func sameSpools(t *testing.T, want, got spool.Migratable) {
	t.Helper()
	ctx := context.Background()
	page, err := want.List(ctx, spool.Filter{}, "", 100)
	if err != nil {
		t.Fatal(err)
	}
	if len(page.Messages) != 6 {
		t.Fatalf("source lists %d messages, want 6", len(page.Messages))
	}
	for _, lm := range page.Messages {
		w, err := want.Get(ctx, lm.ID)
		if err != nil {
			t.Fatal(err)
		}
		g, err := got.Get(ctx, lm.ID)
		if err != nil {
			t.Fatalf("message %s not copied: %v", lm.ID, err)
		}
		wantState := w.State
		if wantState == spool.StateActive {
			wantState = spool.StateQueued
		}
		if g.State != wantState || g.Account != w.Account || g.From != w.From || g.IdempotencyKey != w.IdempotencyKey ||
			!reflect.DeepEqual(g.Recipients, w.Recipients) || len(g.History) != len(w.History) || !g.Created.Equal(w.Created) || g.Reason != w.Reason {
			t.Errorf("message %s differs:\n got %+v\nwant %+v", lm.ID, g, w)
		}
		if w.State == spool.StateDelivered {
			continue
		}
		wb, gb := readBody(t, want, lm.ID), readBody(t, got, lm.ID)
		if !bytes.Equal(wb, gb) || g.Size != int64(len(wb)) {
			t.Errorf("body of %s: %d bytes copied (size %d), want %d", lm.ID, len(gb), g.Size, len(wb))
		}
	}
	if id, ok, err := got.LookupKey(ctx, "scan:abc"); err != nil || !ok || id == "" {
		t.Errorf("idempotency key not copied: %q %v %v", id, ok, err)
	}
	if v, ok, err := got.AccountGet(ctx, "m365", "auth.token"); err != nil || !ok || string(v) != "SPOOLD-SEALED\x01opaque" {
		t.Errorf("token record not copied as it was: %q %v %v", v, ok, err)
	}
	if a, err := got.AlertState(ctx); err != nil || string(a["rule.queue_age"]) != `{"firing":true}` {
		t.Errorf("alert state not copied: %v %v", a, err)
	}
	if au, err := got.AuditList(ctx, time.Time{}, 10); err != nil || len(au) != 1 || au[0].Action != "hold" {
		t.Errorf("audit log not copied: %v %v", au, err)
	}
}

func readBody(t *testing.T, sp spool.Migratable, id string) []byte {
	t.Helper()
	r, err := sp.OpenBody(id)
	if err != nil {
		t.Fatalf("body of %s: %v", id, err)
	}
	defer r.Close()
	b, err := io.ReadAll(r)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// spoolctl migrate copies a stopped bbolt spool into PostgreSQL and back,
// refuses a spool a daemon holds and a target that is not empty.
func TestMigrateBothWays(t *testing.T) {
	dsn := pgtest.Start(t).NewSchema(t)
	dir := filepath.Join(shortTempDir(t), "data")
	migrateSource(t, dir)

	// A running daemon holds the lock: refused, nothing copied.
	running, err := spool.Open(dir, spool.Options{RescueInterval: -1, Logger: slog.New(slog.DiscardHandler)})
	if err != nil {
		t.Fatal(err)
	}
	r := runCLI(t, &deps{}, "migrate", "--from", dir, "--to", dsn)
	if r.code == 0 || !strings.Contains(r.stderr, "is locked") {
		t.Fatalf("migrate from a spool in use: exit %d\n%s%s", r.code, r.stdout, r.stderr)
	}
	running.Close()

	r = runCLI(t, &deps{}, "migrate", "--from", dir, "--to", dsn)
	if r.code != 0 || !strings.Contains(r.stdout, "copied 6 messages") {
		t.Fatalf("migrate into PostgreSQL: exit %d\n%s%s", r.code, r.stdout, r.stderr)
	}
	src, err := spool.Open(dir, spool.Options{ReadOnly: true, RescueInterval: -1, Logger: slog.New(slog.DiscardHandler)})
	if err != nil {
		t.Fatal(err)
	}
	defer src.Close()
	pg, err := pgspool.Open(context.Background(), pgspool.Options{DSN: dsn, Node: "check", RescueInterval: -1, Logger: slog.New(slog.DiscardHandler)})
	if err != nil {
		t.Fatal(err)
	}
	sameSpools(t, src, pg)
	if nodes, _ := pg.Nodes(context.Background()); len(nodes) != 1 {
		t.Errorf("migrate left itself in the node table: %v", nodes)
	}
	if err := pg.Leave(context.Background()); err != nil {
		t.Fatal(err)
	}
	pg.Close()

	r = runCLI(t, &deps{}, "migrate", "--from", dir, "--to", dsn)
	if r.code == 0 || !strings.Contains(r.stderr, "already holds messages") {
		t.Errorf("migrate into a database that holds messages: exit %d\n%s%s", r.code, r.stdout, r.stderr)
	}

	back := filepath.Join(shortTempDir(t), "back")
	r = runCLI(t, &deps{}, "migrate", "--from", dsn, "--to", back)
	if r.code != 0 || !strings.Contains(r.stdout, "copied 6 messages") {
		t.Fatalf("migrate back into bbolt: exit %d\n%s%s", r.code, r.stdout, r.stderr)
	}
	pg, err = pgspool.Open(context.Background(), pgspool.Options{DSN: dsn, Node: "check", RescueInterval: -1, Logger: slog.New(slog.DiscardHandler)})
	if err != nil {
		t.Fatal(err)
	}
	defer pg.Close()
	bb, err := spool.Open(back, spool.Options{RescueInterval: -1, Logger: slog.New(slog.DiscardHandler)})
	if err != nil {
		t.Fatal(err)
	}
	defer bb.Close()
	sameSpools(t, pg, bb)
}
