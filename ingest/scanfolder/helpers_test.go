package scanfolder

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/emersion/go-message/mail"

	"github.com/spoold/spoold/spool"
)

// fakeSpool is an in-memory Enqueuer with the spool's contract: the body is
// read to the end before the message counts; a body error stores nothing; a
// known idempotency key returns the first ID and stores nothing.
type fakeSpool struct {
	mu      sync.Mutex
	keys    map[string]string
	msgs    []fakeMsg
	fail    func(req spool.EnqueueRequest) error // injected spool errors
	lookups int
	changed chan struct{}
}

type fakeMsg struct {
	id   string
	req  spool.EnqueueRequest
	body []byte
	at   time.Time
}

func newFakeSpool() *fakeSpool {
	return &fakeSpool{keys: map[string]string{}, changed: make(chan struct{}, 1)}
}

func (s *fakeSpool) Enqueue(ctx context.Context, req spool.EnqueueRequest, body io.Reader) (string, error) {
	if err := ctx.Err(); err != nil {
		return "", err
	}
	s.mu.Lock()
	if req.IdempotencyKey != "" {
		if id, ok := s.keys[req.IdempotencyKey]; ok {
			s.mu.Unlock()
			return id, nil
		}
	}
	fail := s.fail
	s.mu.Unlock()
	if fail != nil {
		if err := fail(req); err != nil {
			return "", err
		}
	}
	if len(req.To) == 0 || req.Account == "" {
		return "", fmt.Errorf("fake: %w", spool.ErrInvalid)
	}
	b, err := io.ReadAll(body)
	if err != nil {
		return "", fmt.Errorf("fake spool: reading body: %w", err)
	}
	if req.Verify != nil {
		if err := req.Verify(); err != nil {
			return "", fmt.Errorf("fake spool: verify before commit: %w", err)
		}
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if id, ok := s.keys[req.IdempotencyKey]; ok && req.IdempotencyKey != "" {
		return id, nil
	}
	id := fmt.Sprintf("m%05d", len(s.msgs)+1)
	s.msgs = append(s.msgs, fakeMsg{id: id, req: req, body: b, at: time.Now()})
	if req.IdempotencyKey != "" {
		s.keys[req.IdempotencyKey] = id
	}
	select {
	case s.changed <- struct{}{}:
	default:
	}
	return id, nil
}

func (s *fakeSpool) LookupKey(ctx context.Context, key string) (string, bool, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.lookups++
	id, ok := s.keys[key]
	return id, ok, nil
}

func (s *fakeSpool) messages(kind spool.SourceKind) []fakeMsg {
	s.mu.Lock()
	defer s.mu.Unlock()
	var out []fakeMsg
	for _, m := range s.msgs {
		if m.req.Source.Kind == kind {
			out = append(out, m)
		}
	}
	return out
}

func (s *fakeSpool) count(kind spool.SourceKind) int { return len(s.messages(kind)) }

// waitFor polls cond until it holds or the deadline passes.
func waitFor(t testing.TB, timeout time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %v waiting for %s", timeout, what)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

const waitLong = 20 * time.Second

func testConfig(dir string) FolderConfig {
	return FolderConfig{
		Name:           "scans",
		Path:           dir,
		Account:        "outbox",
		QuietPeriod:    200 * time.Millisecond,
		RescanInterval: 2 * time.Second,
		RetryDelay:     100 * time.Millisecond,
	}
}

type testEnv struct {
	t   testing.TB
	dir string
	enq *fakeSpool
	w   *Watcher
}

func quietLogger() *slog.Logger {
	return slog.New(slog.NewTextHandler(io.Discard, nil))
}

// start makes a watcher over a fresh temp dir; mod adjusts the config and
// setup the watcher (test hooks) before Start.
func start(t testing.TB, enq Enqueuer, mod func(*FolderConfig), setup func(*Watcher)) *testEnv {
	t.Helper()
	dir := t.TempDir()
	return startIn(t, dir, enq, mod, setup)
}

func startIn(t testing.TB, dir string, enq Enqueuer, mod func(*FolderConfig), setup func(*Watcher)) *testEnv {
	t.Helper()
	cfg := testConfig(dir)
	if mod != nil {
		mod(&cfg)
	}
	if enq == nil {
		enq = newFakeSpool()
	}
	w, err := New([]FolderConfig{cfg}, enq, Options{Logger: quietLogger(), Hostname: "spoold.test"})
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	if setup != nil {
		setup(w)
	}
	if err := w.Start(context.Background()); err != nil {
		t.Fatalf("Start: %v", err)
	}
	t.Cleanup(func() { w.Close() })
	env := &testEnv{t: t, dir: dir, w: w}
	if f, ok := enq.(*fakeSpool); ok {
		env.enq = f
	}
	return env
}

func (e *testEnv) write(rel string, data []byte) string {
	e.t.Helper()
	p := filepath.Join(e.dir, filepath.FromSlash(rel))
	if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
		e.t.Fatal(err)
	}
	if err := os.WriteFile(p, data, 0o644); err != nil {
		e.t.Fatal(err)
	}
	return p
}

func (e *testEnv) exists(rel string) bool {
	_, err := os.Lstat(filepath.Join(e.dir, filepath.FromSlash(rel)))
	return err == nil
}

func (e *testEnv) read(rel string) string {
	e.t.Helper()
	b, err := os.ReadFile(filepath.Join(e.dir, filepath.FromSlash(rel)))
	if err != nil {
		e.t.Fatal(err)
	}
	return string(b)
}

func sample(t testing.TB, name string) []byte {
	t.Helper()
	b, err := os.ReadFile(filepath.Join("..", "..", "testdata", "scanfolder", name))
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// parsed is a decoded scan message.
type parsed struct {
	header     mail.Header
	text       string
	attachment []byte
	filename   string
	ctype      string
	disp       string // raw Content-Disposition
	parts      int
}

func parseMessage(t testing.TB, body []byte) parsed {
	t.Helper()
	r, err := mail.CreateReader(bytes.NewReader(body))
	if err != nil {
		t.Fatalf("parsing message: %v\n%s", err, body)
	}
	p := parsed{header: r.Header}
	for {
		part, err := r.NextPart()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			t.Fatalf("next part: %v", err)
		}
		p.parts++
		b, err := io.ReadAll(part.Body)
		if err != nil {
			t.Fatalf("reading part: %v", err)
		}
		switch h := part.Header.(type) {
		case *mail.InlineHeader:
			p.text = string(b)
		case *mail.AttachmentHeader:
			p.attachment = b
			p.filename, _ = h.Filename()
			p.ctype, _, _ = h.ContentType()
			p.disp = h.Get("Content-Disposition")
		}
	}
	return p
}

func addrs(t testing.TB, h mail.Header, key string) []string {
	t.Helper()
	l, err := h.AddressList(key)
	if err != nil {
		t.Fatalf("%s: %v", key, err)
	}
	var out []string
	for _, a := range l {
		out = append(out, a.Address)
	}
	return out
}

func containsAll(s string, subs ...string) bool {
	for _, x := range subs {
		if !strings.Contains(s, x) {
			return false
		}
	}
	return true
}

// testPDF is a small, complete PDF of about n bytes (the sample padded with
// a comment before its body), so cutting it in half cuts off %%EOF.
func testPDF(t *testing.T, n int) []byte {
	pdf := sample(t, "sample.pdf")
	if n <= len(pdf) {
		return pdf
	}
	nl := bytes.IndexByte(pdf, '\n') + 1
	var b bytes.Buffer
	b.Write(pdf[:nl])
	for b.Len() < n-len(pdf) {
		b.WriteString("% padding padding padding padding padding padding padding padding\n")
	}
	b.Write(pdf[nl:])
	return b.Bytes()
}

// appendFile appends data to the file at p (a writer finishing late).
func appendFile(p string, data []byte) {
	f, err := os.OpenFile(p, os.O_WRONLY|os.O_APPEND, 0)
	if err != nil {
		panic(err)
	}
	f.Write(data)
	f.Close()
}
