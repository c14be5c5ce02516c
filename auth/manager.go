package auth

import (
	"context"
	"crypto/rand"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"reflect"
	"slices"
	"sort"
	"strings"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/spoold/spoold/configs/secret"
)

// Options are a Manager's injected dependencies and tunables. Zero values
// give production defaults.
type Options struct {
	Clock func() time.Time // default time.Now
	// HTTPClient makes every token and device request; each also carries a
	// context timeout (token_timeout). The default goes through the proxy
	// that HTTPS_PROXY names, except for hosts in NO_PROXY
	// (http.ProxyFromEnvironment), as servers behind an outbound proxy need;
	// a client given here must choose its proxy itself.
	HTTPClient *http.Client
	Logger     *slog.Logger // default slog.Default()
	// Registerer, when set, gets spoold_token_refreshes_total{account,result}
	// and spoold_account_health{account,status} (1 for the current status).
	Registerer prometheus.Registerer
	// KeepAliveCheck is how often the keep-alive loop looks for idle grants (default 1m).
	KeepAliveCheck time.Duration
	// RefreshAttempts bounds the tries of one refresh (default 4); RetryInitial
	// and RetryMax shape the backoff between them (default 1s, 15s).
	RefreshAttempts int
	RetryInitial    time.Duration
	RetryMax        time.Duration
	// PollUnit is the device-code polling interval unit (default 1s, as RFC
	// 8628 specifies seconds); tests shrink it.
	PollUnit time.Duration
	// LoginTTL is how long a started browser/paste login stays valid (default 15m).
	LoginTTL time.Duration
	// Rand provides login IDs, state and JWT IDs (default crypto/rand).
	Rand io.Reader
	// Sealer, when set, seals token records in the Store (spoold's
	// secrets.key); nil stores them as plain JSON.
	Sealer Sealer
}

// Manager owns the configured accounts' grants: it hands out access tokens,
// refreshes and persists them, tracks health and runs logins. It is safe
// for concurrent use.
type Manager struct {
	store Store
	now   func() time.Time
	hc    *http.Client
	log   *slog.Logger
	opts  Options
	met   *metrics

	hookMu sync.Mutex
	hooks  []func(account string) // OnRecovered

	base      context.Context
	cancel    context.CancelFunc
	wg        sync.WaitGroup
	startOnce sync.Once
	lifeMu    sync.Mutex // guards closed with wg.Add
	closed    bool

	mu       sync.RWMutex
	accounts map[string]*account

	lmu     sync.Mutex
	logins  map[string]*pendingLogin
	byState map[string]*pendingLogin
}

// account is one configured account's live state.
type account struct {
	name string

	mu     sync.Mutex
	r      *resolved
	loaded bool
	tok    *tokenRecord // nil: no grant stored
	dirty  bool         // tok holds a token not yet saved (the store failed)
	hr     healthRecord
	gen    uint64 // bumped by login/logout so a refresh started before is discarded
	// lostAnswer: the last refresh had requests that got no answer in time;
	// a later invalid_grant probably is reuse detection (see refresh).
	lostAnswer bool
	flight     *flight
}

// flight is one refresh in progress; concurrent callers wait on done.
type flight struct {
	done  chan struct{}
	force bool // a forced refresh: its token is new unless it failed
	tok   secret.Secret
	exp   time.Time
	err   error
}

// NewManager validates the accounts and returns a Manager storing grants in
// store. Call Start for keep-alive refreshes and Close when done.
func NewManager(accounts []AccountConfig, store Store, opts Options) (*Manager, error) {
	if store == nil {
		return nil, errors.New("auth: NewManager: store is nil")
	}
	if opts.Clock == nil {
		opts.Clock = time.Now
	}
	if opts.HTTPClient == nil {
		tr := http.DefaultTransport.(*http.Transport).Clone()
		tr.Proxy = http.ProxyFromEnvironment // stated, not inherited: see HTTPClient
		opts.HTTPClient = &http.Client{Transport: tr}
	}
	if opts.Logger == nil {
		opts.Logger = slog.Default()
	}
	if opts.KeepAliveCheck <= 0 {
		opts.KeepAliveCheck = time.Minute
	}
	if opts.RefreshAttempts <= 0 {
		opts.RefreshAttempts = 4
	}
	if opts.RetryInitial <= 0 {
		opts.RetryInitial = time.Second
	}
	if opts.RetryMax <= 0 {
		opts.RetryMax = 15 * time.Second
	}
	if opts.PollUnit <= 0 {
		opts.PollUnit = time.Second
	}
	if opts.LoginTTL <= 0 {
		opts.LoginTTL = 15 * time.Minute
	}
	if opts.Rand == nil {
		opts.Rand = rand.Reader
	}
	rs, err := resolveAll(accounts)
	if err != nil {
		return nil, err
	}
	met, err := newMetrics(opts.Registerer)
	if err != nil {
		return nil, err
	}
	m := &Manager{
		store: store, now: opts.Clock, hc: opts.HTTPClient, log: opts.Logger.With("component", "auth"), opts: opts, met: met,
		accounts: make(map[string]*account, len(rs)),
		logins:   make(map[string]*pendingLogin), byState: make(map[string]*pendingLogin),
	}
	if opts.Sealer != nil {
		m.store = sealedStore{Store: store, s: opts.Sealer}
	}
	m.base, m.cancel = context.WithCancel(context.Background())
	for _, r := range rs {
		m.accounts[r.cfg.Name] = &account{name: r.cfg.Name, r: r}
	}
	return m, nil
}

// resolveAll is checkAll for the Manager: the accounts with their defaults
// and key material, or every problem as one error.
func resolveAll(accounts []AccountConfig) ([]*resolved, error) {
	rs, ps := checkAll(accounts)
	if len(ps) > 0 {
		return nil, fmt.Errorf("invalid OAuth accounts:\n%w", ps)
	}
	return rs, nil
}

// Start starts the keep-alive loop: idle delegated grants are refreshed every
// KeepAlive (Microsoft refresh tokens die after 90 days unused) and failing
// ones are retried. It returns at once; the loop ends with ctx or Close.
func (m *Manager) Start(ctx context.Context) {
	m.startOnce.Do(func() {
		if !m.goSafe() {
			return
		}
		go m.keepAlive(ctx)
	})
}

// goSafe reserves a background goroutine slot; false after Close.
func (m *Manager) goSafe() bool {
	m.lifeMu.Lock()
	defer m.lifeMu.Unlock()
	if m.closed {
		return false
	}
	m.wg.Add(1)
	return true
}

// Close stops background work (keep-alive, device polling, refreshes in
// flight) and waits for it. Pending logins fail.
func (m *Manager) Close() error {
	m.lifeMu.Lock()
	if m.closed {
		m.lifeMu.Unlock()
		return nil
	}
	m.closed = true
	m.lifeMu.Unlock()
	m.cancel()
	m.lmu.Lock()
	for _, p := range m.logins {
		p.finish(Health{}, errShuttingDown(p.account))
	}
	m.lmu.Unlock()
	m.wg.Wait()
	return nil
}

// PreparedReload is a validated account set waiting to be applied.
type PreparedReload struct {
	m  *Manager
	rs []*resolved
}

// PrepareReload validates accounts and returns the change to apply; it
// changes nothing. Apply cannot fail, so a daemon that prepares every
// subsystem first and then applies them all reloads all or nothing.
func (m *Manager) PrepareReload(accounts []AccountConfig) (*PreparedReload, error) {
	rs, err := resolveAll(accounts)
	if err != nil {
		return nil, err
	}
	return &PreparedReload{m: m, rs: rs}, nil
}

// Reload replaces the account set (SIGHUP): PrepareReload, then Apply. An
// invalid config changes nothing.
func (m *Manager) Reload(accounts []AccountConfig) error {
	p, err := m.PrepareReload(accounts)
	if err != nil {
		return err
	}
	p.Apply()
	return nil
}

// Apply installs the prepared account set: new accounts are added, missing
// ones removed, changed ones updated in place keeping their grants. It makes
// no store or network calls. Whether a stored grant still fits an account
// (client_id, mailbox) is derived from the config on every read, so a config
// that goes back to what the grant was issued for makes the account usable
// again: it is then reported recovered.
func (p *PreparedReload) Apply() {
	m := p.m
	var recovered []string
	m.mu.Lock()
	keep := make(map[string]bool, len(p.rs))
	for _, r := range p.rs {
		name := r.cfg.Name
		keep[name] = true
		a, ok := m.accounts[name]
		if !ok {
			m.accounts[name] = &account{name: name, r: r}
			m.log.Info("account added", "account", name, "provider", r.provider, "flow", r.flow)
			continue
		}
		a.mu.Lock()
		old := a.r
		if reflect.DeepEqual(old.cfg, r.cfg) {
			a.r = r // same settings; key material re-read
			a.mu.Unlock()
			continue
		}
		before, _ := m.statusLocked(a)
		a.r = r
		m.log.Info("account updated", "account", name)
		// A changed config is the fix for most misconfigurations: let the
		// next token call decide again.
		if a.hr.Status == StatusMisconfigured {
			a.hr.Status, a.hr.Reason = StatusOK, ""
		}
		if old.flow != r.flow || old.cfg.ClientID != r.cfg.ClientID || !slices.Equal(old.scopes, r.scopes) || old.tokenURL != r.tokenURL {
			// The cached access token was issued for the old settings.
			if a.tok != nil {
				a.tok.Expiry = time.Time{}
			}
		}
		if a.loaded {
			after, why := m.statusLocked(a)
			m.met.setHealth(name, after)
			switch {
			case after != before && after == StatusOK:
				m.log.Info("account health changed", "account", name, "status", after, "previous", before)
				recovered = append(recovered, name)
			case after != before:
				m.log.Warn("account health changed", "account", name, "status", after, "previous", before, "reason", why)
			}
		}
		a.mu.Unlock()
	}
	for name := range m.accounts {
		if !keep[name] {
			delete(m.accounts, name)
			m.met.forget(name)
			m.log.Info("account removed (its stored grant is kept)", "account", name)
		}
	}
	m.mu.Unlock()
	for _, name := range recovered {
		m.signalRecovered(name)
	}
}

// Accounts lists the configured account names, sorted.
func (m *Manager) Accounts() []string {
	m.mu.RLock()
	defer m.mu.RUnlock()
	names := make([]string, 0, len(m.accounts))
	for n := range m.accounts {
		names = append(names, n)
	}
	sort.Strings(names)
	return names
}

// OnRecovered registers f to be called with an account's name whenever the
// account goes back to "ok": a login, a successful refresh after failures,
// Resume, a reload that restored the config its grant was issued for. f runs
// synchronously, outside the Manager's locks, before the operation that
// recovered the account returns or reports its result (WaitLogin,
// CompletePaste, the callback page, the token call), so a consumer that
// clears its own hold in f never shows a stale hold after a successful login.
// f must be quick (clear state, wake a loop) and may call the Manager.
func (m *Manager) OnRecovered(f func(account string)) {
	m.hookMu.Lock()
	m.hooks = append(m.hooks, f)
	m.hookMu.Unlock()
}

// signalRecovered runs the OnRecovered hooks. Callers must not hold an
// account's lock (the hooks may call back).
func (m *Manager) signalRecovered(name string) {
	m.hookMu.Lock()
	hooks := slices.Clone(m.hooks)
	m.hookMu.Unlock()
	for _, f := range hooks {
		f(name)
	}
}

func (m *Manager) lookup(name string) (*account, error) {
	m.mu.RLock()
	defer m.mu.RUnlock()
	a, ok := m.accounts[name]
	if !ok {
		names := make([]string, 0, len(m.accounts))
		for n := range m.accounts {
			names = append(names, n)
		}
		sort.Strings(names)
		return nil, acctErr(ErrUnknownAccount, nil, "unknown account %q (configured: %s)", sanitize(name, 64), strings.Join(names, ", "))
	}
	return a, nil
}

// resolvedOf returns the account's settings as they are now (a reload
// replaces them under a.mu).
func (m *Manager) resolvedOf(name string) (*resolved, error) {
	a, err := m.lookup(name)
	if err != nil {
		return nil, err
	}
	a.mu.Lock()
	defer a.mu.Unlock()
	return a.r, nil
}

// lockLoaded looks the account up, locks it and loads its stored token and
// health; on success the caller holds a.mu and must unlock it.
func (m *Manager) lockLoaded(ctx context.Context, name string) (*account, error) {
	a, err := m.lookup(name)
	if err != nil {
		return nil, err
	}
	a.mu.Lock()
	if err := m.loadLocked(ctx, a); err != nil {
		a.mu.Unlock()
		return nil, err
	}
	return a, nil
}

// AccessToken returns a valid access token, refreshing it when it expires
// within RefreshBefore. Concurrent callers share one refresh. Errors wrap
// ErrNeedsReauth, ErrMisconfigured, ErrTransient or ErrUnknownAccount.
func (m *Manager) AccessToken(ctx context.Context, account string) (string, error) {
	t, _, err := m.token(ctx, account, false, "", false)
	return t.Reveal(), err
}

// RefreshRejected returns an access token to use instead of rejected, one
// the upstream refused (SMTP 535), or a new one in any case when rejected is
// empty. Refusals of the same token coalesce: if
// the account's token already differs from rejected (a refresh that
// superseded it is done), that token is returned without a token request;
// if a refresh is in flight, its result is shared; otherwise one refresh is
// forced. So N parallel connections refused with one token cause a single
// refresh-token rotation, not N (providers may revoke a grant whose refresh
// token is used twice).
func (m *Manager) RefreshRejected(ctx context.Context, account, rejected string) (string, error) {
	t, _, err := m.token(ctx, account, true, secret.Secret(rejected), false)
	return t.Reveal(), err
}

// token is the core of AccessToken and RefreshRejected and of
// logins that obtain a token at once. With force, a refresh happens even if
// the current token looks fresh, unless rejected is set and the current token
// is no longer rejected (someone refreshed since). ignoreBlock lets an
// admin's login retry an account in needs_reauth or misconfigured (client
// credentials and service accounts).
func (m *Manager) token(ctx context.Context, name string, force bool, rejected secret.Secret, ignoreBlock bool) (secret.Secret, time.Time, error) {
	a, err := m.lookup(name)
	if err != nil {
		return "", time.Time{}, err
	}
	// Two rounds at most: a shared flight that handed back the rejected token
	// (a refresh-ahead that failed transiently falls back to the current
	// token) is followed by one forced refresh of our own.
	for round := 0; ; round++ {
		a.mu.Lock()
		if err := m.loadLocked(ctx, a); err != nil {
			a.mu.Unlock()
			return "", time.Time{}, err
		}
		fl := a.flight
		if fl == nil {
			if !ignoreBlock {
				if err := blockedErr(m, a); err != nil {
					if !m.rereadBlockedLocked(ctx, a) { // cluster.go
						a.mu.Unlock()
						return "", time.Time{}, err
					}
					// Another node signed the account in: go on with its
					// grant, and report the recovery (outside a.mu) before
					// returning, as a login here would.
					defer m.signalRecovered(name)
				}
			}
			now := m.now()
			f := force
			if f && rejected != "" && a.tok != nil && a.tok.AccessToken != "" && a.tok.AccessToken != rejected {
				f = false // superseded: the current token is not the refused one
			}
			// An app-only token obtained with other settings (a changed
			// secret, key or mailbox) is not handed out: the new ones get
			// tested now rather than when it expires.
			if !f && !a.dirty && fresh(a.tok, now, a.r.cfg.RefreshBefore) && (a.r.flow.Delegated() || verified(a)) {
				t, exp := a.tok.AccessToken, a.tok.Expiry
				a.mu.Unlock()
				return t, exp, nil
			}
			if !m.goSafe() {
				a.mu.Unlock()
				return "", time.Time{}, acctErr(ErrTransient, nil, "account %s gets no token: spoold is shutting down; retry once it is back", name)
			}
			fl = &flight{done: make(chan struct{}), force: f}
			a.flight = fl
			// The refresh runs detached from this caller's ctx: others share it,
			// and it is bounded by per-request timeouts and a retry limit.
			go m.runFlight(a, fl, f)
		}
		a.mu.Unlock()
		select {
		case <-fl.done:
		case <-ctx.Done():
			return "", time.Time{}, acctErr(ErrTransient, ctx.Err(), "account %s: stopped waiting for a token (%v); the refresh goes on and a retry shares it", name, ctx.Err())
		}
		if fl.err == nil && rejected != "" && fl.tok == rejected && !fl.force && round == 0 {
			continue
		}
		return fl.tok, fl.exp, fl.err
	}
}

func fresh(t *tokenRecord, now time.Time, before time.Duration) bool {
	return t != nil && t.AccessToken != "" && now.Before(t.Expiry.Add(-before))
}

func blockedErr(m *Manager, a *account) error {
	switch st, why := m.statusLocked(a); st {
	case StatusNeedsReauth:
		return acctErr(ErrNeedsReauth, nil, "account %s needs re-authorization: %s", a.name, why)
	case StatusMisconfigured:
		return acctErr(ErrMisconfigured, nil, "account %s is misconfigured: %s", a.name, why)
	}
	return nil
}

// grantMismatch says why the stored grant cannot serve the account's current
// config, "" if it can. It is derived from the config on every read and
// never stored as the status: a reload that changes client_id or mailbox
// blocks the grant, and one that restores them unblocks it, with no token
// request in between (a refresh with the wrong client could get the grant
// refused for good).
func grantMismatch(a *account) string {
	r, t := a.r, a.tok
	if !r.flow.Delegated() || t == nil || t.RefreshToken == "" {
		return ""
	}
	switch {
	case t.ClientID != "" && t.ClientID != r.cfg.ClientID:
		return fmt.Sprintf("client_id changed since sign-in (the grant was issued to client_id %s): restore it, or run `spoolctl auth login %s`", sanitize(t.ClientID, 128), a.name)
	case t.Identity != "" && r.cfg.SignInAs != "" && !strings.EqualFold(t.Identity, r.cfg.SignInAs):
		return fmt.Sprintf("the stored grant is for %s but sign_in_as is %s: restore sign_in_as, or run `spoolctl auth login %s` and sign in as %s", t.Identity, r.cfg.SignInAs, a.name, r.cfg.SignInAs)
	case t.Identity != "" && r.cfg.SignInAs == "" && !strings.EqualFold(t.Identity, r.cfg.Mailbox):
		return fmt.Sprintf("the stored grant is for %s but the mailbox is %s: restore mailbox (or set sign_in_as: %s if that is the mailbox's sign-in name), or run `spoolctl auth login %s` and sign in as %s",
			t.Identity, r.cfg.Mailbox, t.Identity, a.name, r.cfg.Mailbox)
	}
	return ""
}

// statusLocked is the account's effective status: the stored one, or
// needs_reauth while the grant does not fit the config (grantMismatch), or
// pending while an app-only account has no token obtained with its current
// settings (a reload or Resume resets misconfigured to ok, which says
// nothing about whether the settings work).
func (m *Manager) statusLocked(a *account) (Status, string) {
	if a.hr.Status != StatusNeedsReauth {
		if why := grantMismatch(a); why != "" {
			return StatusNeedsReauth, why
		}
	}
	if a.hr.Status == StatusOK && !a.r.flow.Delegated() && !verified(a) {
		return StatusPending, fmt.Sprintf("no token obtained with the current settings yet: the first delivery gets one, or run `spoolctl auth login %s` to test them now", a.name)
	}
	return a.hr.Status, a.hr.Reason
}

// verified reports whether the account's token was obtained with its current
// settings. A token stored before tokens carried ConfigHash counts.
func verified(a *account) bool {
	t := a.tok
	return t != nil && t.AccessToken != "" && (t.ConfigHash == "" || t.ConfigHash == a.r.fingerprint())
}

// legacyMismatch recognises the reasons older versions stored as the status
// for a config mismatch (now derived, see grantMismatch).
func legacyMismatch(reason string) bool {
	for _, p := range []string{"client_id changed since sign-in", "mailbox changed to ", "the stored grant is for "} {
		if strings.HasPrefix(reason, p) {
			return true
		}
	}
	return false
}

func (m *Manager) runFlight(a *account, fl *flight, force bool) {
	defer m.wg.Done()
	tok, exp, err := m.refresh(m.base, a, force)
	a.mu.Lock()
	fl.tok, fl.exp, fl.err = tok, exp, err
	a.flight = nil
	a.mu.Unlock()
	close(fl.done)
}

// loadLocked reads the account's records from the store once.
func (m *Manager) loadLocked(ctx context.Context, a *account) error {
	if a.loaded {
		return nil
	}
	b, ok, err := m.store.AccountGet(ctx, a.name, TokenKey)
	if err != nil {
		return acctErr(ErrTransient, err, "account %s: reading its stored token from the spool failed (%v); retry", a.name, err)
	}
	var tokErr error
	a.tok = nil
	if ok {
		if a.tok, tokErr = unmarshalToken(b); tokErr != nil {
			m.log.Error("stored token is unreadable; sign in again", "account", a.name, "error", tokErr)
		}
	}
	hb, hok, herr := m.store.AccountGet(ctx, a.name, HealthKey)
	if herr != nil {
		return acctErr(ErrTransient, herr, "account %s: reading its stored health from the spool failed (%v); retry", a.name, herr)
	}
	a.hr = healthRecord{V: 1, Status: StatusOK}
	if hok {
		var hr healthRecord
		if err := json.Unmarshal(hb, &hr); err != nil {
			m.log.Warn("stored health is unreadable; starting fresh", "account", a.name, "error", err)
		} else if slices.Contains(statuses, hr.Status) {
			a.hr = hr
		}
	}
	r := a.r
	switch {
	case tokErr != nil:
		a.hr.Status, a.hr.Reason = StatusNeedsReauth, fmt.Sprintf("the stored grant is unreadable (%v): run `spoolctl auth login %s`", tokErr, a.name)
	case r.flow.Delegated() && (a.tok == nil || a.tok.RefreshToken == ""):
		a.hr.Status, a.hr.Reason = StatusNeedsReauth, fmt.Sprintf("not signed in yet: run `spoolctl auth login %s` and sign in as %s", a.name, r.cfg.signInName())
	case a.hr.Status == StatusNeedsReauth && legacyMismatch(a.hr.Reason):
		// Stored by an older version; a config mismatch is derived now
		// (grantMismatch), so it goes away when the config is restored.
		a.hr.Status, a.hr.Reason = StatusOK, ""
	case a.hr.Status == StatusNeedsReauth && a.tok != nil && a.tok.RefreshToken != "" && a.tok.GrantedAt.After(a.hr.GrantedAt):
		// The grant is newer than the status (a login whose health write was
		// lost): the grant wins.
		a.hr.Status, a.hr.Reason = StatusOK, ""
	case a.hr.Status == StatusMisconfigured && a.hr.ConfigHash != r.fingerprint():
		a.hr.Status, a.hr.Reason = StatusOK, "" // the config changed since: try again
	}
	a.loaded = true
	st, _ := m.statusLocked(a)
	m.met.setHealth(a.name, st)
	return nil
}

// setStatusLocked changes the in-memory status and metrics; the caller persists.
func (m *Manager) setStatusLocked(a *account, st Status, reason string) {
	if a.hr.Status != st || a.hr.Reason != reason {
		lvl := slog.LevelWarn
		if st == StatusOK {
			lvl = slog.LevelInfo
		}
		m.log.Log(context.Background(), lvl, "account health changed", "account", a.name, "status", st, "previous", a.hr.Status, "reason", reason)
	}
	a.hr.Status, a.hr.Reason = st, reason
	eff, _ := m.statusLocked(a)
	m.met.setHealth(a.name, eff)
}

// saveHealthLocked persists the health record; failures are logged only
// (health is advisory, the token record is what matters).
func (m *Manager) saveHealthLocked(ctx context.Context, a *account) {
	r := a.r
	a.hr.V = 1
	a.hr.Provider, a.hr.Flow, a.hr.Mailbox = string(r.provider), string(r.flow), r.cfg.Mailbox
	if a.tok != nil {
		a.hr.Identity, a.hr.Expiry, a.hr.GrantedAt = a.tok.Identity, a.tok.Expiry, a.tok.GrantedAt
	} else {
		a.hr.Identity, a.hr.Expiry, a.hr.GrantedAt = "", time.Time{}, time.Time{}
	}
	a.hr.Updated = m.now()
	a.hr.ConfigHash = r.fingerprint()
	a.hr.Mismatch = grantMismatch(a)
	b, err := json.Marshal(a.hr)
	if err == nil {
		err = m.store.AccountPut(ctx, a.name, HealthKey, b)
	}
	if err != nil {
		m.log.Error("saving account health failed", "account", a.name, "error", err)
	}
}

// MarkNeedsReauth puts the account in needs_reauth (delivery saw the grant
// refused, e.g. 535 after a forced refresh). No refresh happens until a login.
func (m *Manager) MarkNeedsReauth(ctx context.Context, account, reason string) error {
	if !strings.Contains(reason, "spoolctl auth login") {
		reason = strings.TrimSpace(reason + fmt.Sprintf(": run `spoolctl auth login %s`", account))
	}
	return m.mark(ctx, account, StatusNeedsReauth, reason)
}

// MarkMisconfigured puts the account in misconfigured with reason (what to
// fix, e.g. "SMTP AUTH is disabled for the tenant: enable it"). A config
// reload or a login clears it.
func (m *Manager) MarkMisconfigured(ctx context.Context, account, reason string) error {
	return m.mark(ctx, account, StatusMisconfigured, reason)
}

func (m *Manager) mark(ctx context.Context, name string, st Status, reason string) error {
	a, err := m.lockLoaded(ctx, name)
	if err != nil {
		return err
	}
	defer a.mu.Unlock()
	m.setStatusLocked(a, st, sanitize(reason, 600))
	m.saveHealthLocked(ctx, a)
	return nil
}

// Resume clears misconfigured or refresh_failing after the admin fixed the
// cause outside spoold (for example enabled SMTP AUTH for the tenant), so the
// next token call tries again and delivery drains the account. A missing or
// refused grant (needs_reauth) still needs a login.
func (m *Manager) Resume(ctx context.Context, name string) error {
	a, err := m.lockLoaded(ctx, name)
	if err != nil {
		return err
	}
	if st, reason := m.statusLocked(a); st == StatusNeedsReauth {
		a.mu.Unlock()
		return acctErr(ErrNeedsReauth, nil, "account %s needs re-authorization, which resuming cannot clear: %s", name, reason)
	}
	prev := a.hr.Status
	a.hr.Failures = 0
	m.setStatusLocked(a, StatusOK, "")
	m.saveHealthLocked(ctx, a)
	a.mu.Unlock()
	if prev != StatusOK {
		m.signalRecovered(name)
	}
	return nil
}

// Health returns the account's current health.
func (m *Manager) Health(ctx context.Context, name string) (Health, error) {
	a, err := m.lockLoaded(ctx, name)
	if err != nil {
		return Health{}, err
	}
	defer a.mu.Unlock()
	return m.healthLocked(a), nil
}

// AllHealth returns every account's health, sorted by name. An account whose
// records cannot be read shows refresh_failing with the reason.
func (m *Manager) AllHealth(ctx context.Context) []Health {
	var out []Health
	for _, name := range m.Accounts() {
		h, err := m.Health(ctx, name)
		if errors.Is(err, ErrUnknownAccount) {
			continue // removed by a reload meanwhile
		}
		if err != nil {
			h = Health{Account: name, Status: StatusRefreshFailing, Reason: err.Error()}
		}
		out = append(out, h)
	}
	return out
}

func (m *Manager) healthLocked(a *account) Health {
	r, now := a.r, m.now()
	st, why := m.statusLocked(a)
	h := Health{Account: a.name, Provider: string(r.provider), Flow: string(r.flow), Mailbox: r.cfg.Mailbox,
		Status: st, Reason: why, LastRefresh: a.hr.LastRefresh, ClientSecretExpires: r.cfg.ClientSecretExpires}
	if a.tok != nil {
		h.Identity, h.AccessTokenExpiry, h.GrantedAt = a.tok.Identity, a.tok.Expiry, a.tok.GrantedAt
		if !a.tok.GrantedAt.IsZero() {
			h.GrantAge = now.Sub(a.tok.GrantedAt)
		}
	}
	if exp := r.cfg.ClientSecretExpires; !exp.IsZero() {
		switch left := exp.Sub(now); {
		case left <= 0:
			h.Warnings = append(h.Warnings, fmt.Sprintf("client secret expired on %s: create a new one in the app registration and update client_secret", exp.Format(time.DateOnly)))
		case left <= SecretExpiryWarning:
			h.Warnings = append(h.Warnings, fmt.Sprintf("client secret expires in %d days (%s): create a new one and update client_secret", int((left+24*time.Hour-1)/(24*time.Hour)), exp.Format(time.DateOnly)))
		}
	}
	if r.provider == ProviderGoogle && r.flow.Delegated() && h.GrantAge >= GoogleTestingGrantWarning {
		h.Warnings = append(h.Warnings, fmt.Sprintf("Google grant is %d days old: if the OAuth app is in \"testing\" publishing status its refresh token dies after 7 days; publish the app or sign in again", int(h.GrantAge.Hours()/24)))
	}
	if a.dirty {
		h.Warnings = append(h.Warnings, "a new token could not be saved to the spool yet; it is retried before the next refresh")
	}
	if r.flow.Delegated() && a.tok != nil && a.tok.RefreshToken != "" && a.tok.Identity == "" {
		h.Warnings = append(h.Warnings, "the signed-in identity was not verified (no ID token)")
	}
	return h
}

// keepAlive refreshes idle grants and retries failing ones.
func (m *Manager) keepAlive(ctx context.Context) {
	defer m.wg.Done()
	// Load every account once: metrics get their health and the admin sees
	// what needs attention right at start.
	for _, h := range m.AllHealth(ctx) {
		switch h.Status {
		case StatusOK:
		case StatusPending:
			m.log.Info("account not verified yet", "account", h.Account, "status", h.Status, "reason", h.Reason)
		default:
			m.log.Warn("account needs attention", "account", h.Account, "status", h.Status, "reason", h.Reason)
		}
		for _, w := range h.Warnings {
			m.log.Warn("account warning", "account", h.Account, "warning", w)
		}
	}
	t := time.NewTicker(m.opts.KeepAliveCheck)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-m.base.Done():
			return
		case <-t.C:
		}
		for _, name := range m.Accounts() {
			if ctx.Err() != nil || m.base.Err() != nil {
				return
			}
			if m.keepAliveDue(ctx, name) {
				if _, _, err := m.token(ctx, name, true, "", false); err != nil {
					m.log.Warn("keep-alive refresh failed", "account", name, "error", err)
				} else {
					m.log.Debug("keep-alive refresh done", "account", name)
				}
			}
		}
	}
}

func (m *Manager) keepAliveDue(ctx context.Context, name string) bool {
	a, err := m.lockLoaded(ctx, name)
	if err != nil {
		return false
	}
	defer a.mu.Unlock()
	if a.flight != nil {
		return false
	}
	switch st, _ := m.statusLocked(a); st {
	case StatusRefreshFailing:
		return true
	case StatusOK:
	default:
		return false
	}
	if !a.r.flow.Delegated() || a.tok == nil || a.tok.RefreshToken == "" {
		return false
	}
	last := a.hr.LastRefresh
	if last.IsZero() {
		last = a.tok.GrantedAt
	}
	return !m.now().Before(last.Add(a.r.cfg.KeepAlive))
}

// errShuttingDown ends a pending login when the Manager closes.
func errShuttingDown(account string) error {
	return acctErr(ErrTransient, nil, "account %s: the login was aborted because spoold is shutting down: start it again once spoold is back", account)
}

// randomBase64URL returns n random bytes base64url-encoded (a PKCE
// verifier: RFC 7636 4.1 asks for 32 bytes).
func (m *Manager) randomBase64URL(n int) (string, error) {
	b := make([]byte, n)
	if _, err := io.ReadFull(m.opts.Rand, b); err != nil {
		return "", fmt.Errorf("reading randomness: %w", err)
	}
	return base64.RawURLEncoding.EncodeToString(b), nil
}

// randomString returns n random bytes hex-encoded.
func (m *Manager) randomString(n int) (string, error) {
	b := make([]byte, n)
	if _, err := io.ReadFull(m.opts.Rand, b); err != nil {
		return "", fmt.Errorf("reading randomness: %w", err)
	}
	return hex.EncodeToString(b), nil
}
