package auth_test

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/spoold/spoold/auth"
	"github.com/spoold/spoold/auth/authtest"
)

const (
	testClient  = "client-1"
	testMailbox = "alice@example.com"
	testAccount = "scanner"
)

// memStore is an in-memory Store; a "reopen" is a new Manager on the same memStore.
type memStore struct {
	mu      sync.Mutex
	data    map[string][]byte
	failPut func(account, key string) error
	puts    int
}

func newMemStore() *memStore { return &memStore{data: map[string][]byte{}} }

func (s *memStore) AccountGet(_ context.Context, account, key string) ([]byte, bool, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	v, ok := s.data[account+"\x00"+key]
	return append([]byte(nil), v...), ok, nil
}

func (s *memStore) AccountPut(_ context.Context, account, key string, value []byte) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.failPut != nil {
		if err := s.failPut(account, key); err != nil {
			return err
		}
	}
	s.puts++
	s.data[account+"\x00"+key] = append([]byte(nil), value...)
	return nil
}

func (s *memStore) AccountDelete(_ context.Context, account, key string) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	delete(s.data, account+"\x00"+key)
	return nil
}

func (s *memStore) setFailPut(f func(account, key string) error) {
	s.mu.Lock()
	s.failPut = f
	s.mu.Unlock()
}

func (s *memStore) get(account, key string) []byte {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]byte(nil), s.data[account+"\x00"+key]...)
}

// fakeClock is an injected clock tests move by hand.
type fakeClock struct {
	mu sync.Mutex
	t  time.Time
}

func (c *fakeClock) Now() time.Time { c.mu.Lock(); defer c.mu.Unlock(); return c.t }
func (c *fakeClock) Advance(d time.Duration) {
	c.mu.Lock()
	c.t = c.t.Add(d)
	c.mu.Unlock()
}

// syncBuffer collects log output from many goroutines.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (b *syncBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.b.Write(p)
}
func (b *syncBuffer) String() string { b.mu.Lock(); defer b.mu.Unlock(); return b.b.String() }

// env is one test's fake authorization server, callback server, store,
// clock, debug log and Manager.
type env struct {
	t        testing.TB
	srv      *authtest.Server
	cb       *httptest.Server
	handler  http.Handler
	hmu      sync.Mutex
	store    *memStore
	clock    *fakeClock
	logs     *syncBuffer
	opts     auth.Options
	m        *auth.Manager
	errTexts []string
	// recovered gets the names OnRecovered reports, for every Manager started.
	recovered chan string
}

func newEnv(t testing.TB) *env {
	t.Helper()
	e := &env{t: t, srv: authtest.New(testClient, testMailbox), store: newMemStore(),
		clock: &fakeClock{t: time.Date(2026, 3, 1, 9, 0, 0, 0, time.UTC)}, logs: &syncBuffer{},
		recovered: make(chan string, 64)}
	t.Cleanup(e.srv.Close)
	e.srv.SetClock(e.clock.Now)
	e.cb = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		e.hmu.Lock()
		h := e.handler
		e.hmu.Unlock()
		if h == nil || r.URL.Path != "/oauth2/callback" {
			http.NotFound(w, r)
			return
		}
		h.ServeHTTP(w, r)
	}))
	t.Cleanup(e.cb.Close)
	e.opts = auth.Options{
		Clock:           e.clock.Now,
		Logger:          slog.New(slog.NewTextHandler(e.logs, &slog.HandlerOptions{Level: slog.LevelDebug})),
		RefreshAttempts: 3,
		RetryInitial:    5 * time.Millisecond,
		RetryMax:        20 * time.Millisecond,
		PollUnit:        10 * time.Millisecond,
	}
	return e
}

// cfg is a delegated Microsoft account pointed at the fake.
func (e *env) cfg() auth.AccountConfig {
	return auth.AccountConfig{
		Name: testAccount, Provider: "microsoft", Tenant: "contoso.onmicrosoft.com", ClientID: testClient,
		Mailbox: testMailbox, AuthURL: e.srv.AuthURL(), TokenURL: e.srv.TokenURL(), DeviceAuthURL: e.srv.DeviceAuthURL(),
		RedirectURL: e.cb.URL + "/oauth2/callback", TokenTimeout: 5 * time.Second,
	}
}

// start creates (or re-creates, as after a restart) the Manager.
func (e *env) start(cfgs ...auth.AccountConfig) *auth.Manager {
	e.t.Helper()
	if len(cfgs) == 0 {
		cfgs = []auth.AccountConfig{e.cfg()}
	}
	if e.m != nil {
		_ = e.m.Close()
	}
	m, err := auth.NewManager(cfgs, e.store, e.opts)
	if err != nil {
		e.t.Fatalf("NewManager: %v", err)
	}
	e.m = m
	m.OnRecovered(func(account string) {
		select {
		case e.recovered <- account:
		default: // a test that does not read them
		}
	})
	e.hmu.Lock()
	e.handler = m.CallbackHandler()
	e.hmu.Unlock()
	e.t.Cleanup(func() { _ = m.Close() })
	return m
}

// note records an error's text for the redaction check.
func (e *env) note(err error) error {
	if err != nil {
		e.errTexts = append(e.errTexts, err.Error())
	}
	return err
}

// browserLogin runs the browser flow: the test's HTTP client plays the
// browser, follows the authorize redirect to the callback handler.
func (e *env) browserLogin(account string) (auth.Health, error) {
	e.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	ls, err := e.m.StartLogin(ctx, account, auth.LoginBrowser)
	if err != nil {
		e.t.Fatalf("StartLogin: %v", err)
	}
	resp, err := http.Get(ls.AuthURL)
	if err != nil {
		e.t.Fatalf("browser GET: %v", err)
	}
	page, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	h, werr := e.m.WaitLogin(ctx, ls.ID)
	e.note(werr)
	if werr == nil && (resp.StatusCode != http.StatusOK || !strings.Contains(string(page), "Signed in")) {
		e.t.Fatalf("callback page: %d %s", resp.StatusCode, page)
	}
	if werr != nil && resp.StatusCode == http.StatusOK {
		e.t.Fatalf("login failed (%v) but the callback page said 200: %s", werr, page)
	}
	return h, werr
}

// authorizeRedirect opens a login's authorize URL as the browser would and
// returns where the authorization server sends the browser back (the
// callback URL with code and state), without going there.
func authorizeRedirect(t *testing.T, authURL string) string {
	t.Helper()
	noFollow := &http.Client{CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
	resp, err := noFollow.Get(authURL)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	return resp.Header.Get("Location")
}

func (e *env) mustLogin() auth.Health {
	e.t.Helper()
	h, err := e.browserLogin(testAccount)
	if err != nil {
		e.t.Fatalf("login: %v", err)
	}
	if h.Status != auth.StatusOK {
		e.t.Fatalf("status after login = %s (%s)", h.Status, h.Reason)
	}
	return h
}

func (e *env) token() (string, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	tok, err := e.m.AccessToken(ctx, testAccount)
	return tok, e.note(err)
}

// storedHealth decodes the health record as stored (what a reader of the
// spool without the config sees).
func (e *env) storedHealth() map[string]any {
	e.t.Helper()
	var h map[string]any
	if err := json.Unmarshal(e.store.get(testAccount, auth.HealthKey), &h); err != nil {
		e.t.Fatalf("stored health: %v", err)
	}
	return h
}

func (e *env) health() auth.Health {
	e.t.Helper()
	h, err := e.m.Health(context.Background(), testAccount)
	if err != nil {
		e.t.Fatalf("Health: %v", err)
	}
	return h
}

// eventually polls cond until it holds or a generous deadline passes.
func eventually(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// writePrivate writes data to a new mode-0600 file (a key file) and returns its path.
func writePrivate(t testing.TB, name string, data []byte) string {
	t.Helper()
	path := filepath.Join(t.TempDir(), name)
	if err := os.WriteFile(path, data, 0o600); err != nil {
		t.Fatal(err)
	}
	return path
}

func wantErr(t *testing.T, err, target error) {
	t.Helper()
	if !errors.Is(err, target) {
		t.Fatalf("error = %v, want %v", err, target)
	}
}
