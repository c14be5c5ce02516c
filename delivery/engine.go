package delivery

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math/rand/v2"
	"net"
	"os"
	"sort"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"golang.org/x/time/rate"

	"github.com/spoold/spoold/configs/field"
	"github.com/spoold/spoold/spool"
)

// The engine's parts each declare the little they need from the spool.

// dueQueue is what the scheduler watches: which accounts have due mail and
// when the next is due.
type dueQueue interface {
	Notify() <-chan struct{}
	DueAccounts(ctx context.Context, now time.Time) ([]string, error)
	NextDue(ctx context.Context, account string) (due time.Time, ok bool, err error)
}

// claimer is how connection workers and the parking of held or unreachable
// accounts take due messages and give them back without an attempt.
type claimer interface {
	ClaimAccount(ctx context.Context, account string, now time.Time, limit int, owner string) ([]*spool.Message, error)
	ClaimAccountStart(ctx context.Context, account string, now time.Time, limit int, owner string, ifCrash func(m *spool.Message) time.Time) ([]*spool.Message, error)
	Postpone(ctx context.Context, id, owner string, next time.Time, reason string) error
}

// attempts is what one delivery attempt of a claimed message reads and ends with.
type attempts interface {
	OpenBody(id string) (io.ReadCloser, error)
	StartAttempt(ctx context.Context, id, owner string, now, ifCrash time.Time) error
	RenewLease(ctx context.Context, id, owner string, until time.Time) error
	Delivered(ctx context.Context, id, owner string, r spool.Result) error
	Defer(ctx context.Context, id, owner string, next time.Time, r spool.Result) error
	Dead(ctx context.Context, id, owner string, r spool.Result) error
}

// noticeQueue is what a failure notice needs: the failed message's header
// and a way to queue the notice.
type noticeQueue interface {
	OpenBody(id string) (io.ReadCloser, error)
	Enqueue(ctx context.Context, req spool.EnqueueRequest, body io.Reader) (string, error)
}

// flusher makes waiting messages due now: after a recovery, a reload, or
// the end of an upstream outage (which lists the parked ones first).
type flusher interface {
	FlushAll(ctx context.Context, account string) (int, error)
	Flush(ctx context.Context, id string) error
	List(ctx context.Context, f spool.Filter, cursor string, limit int) (spool.Page, error)
}

// Spool is what New takes: one value with every part's methods
// (*spool.Spool). The engine keeps it only as those parts.
type Spool interface {
	dueQueue
	claimer
	attempts
	noticeQueue
	flusher
	budgetStore
}

// Tokens is the part of auth.Manager the engine uses (errors wrap auth.Err*).
type Tokens interface {
	AccessToken(ctx context.Context, account string) (string, error)
	// RefreshRejected returns a token other than rejected, the one the
	// upstream refused: the current one when a refresh has already
	// replaced it, else after one refresh shared by every caller (so
	// three connections refused at once rotate the refresh token once).
	RefreshRejected(ctx context.Context, account, rejected string) (string, error)
	MarkNeedsReauth(ctx context.Context, account, reason string) error
	MarkMisconfigured(ctx context.Context, account, reason string) error
	// OnRecovered registers f, which the token source calls synchronously
	// when an account is back to ok (a login, a reload that fixed it),
	// before that login reports success: the hold is gone by the time the
	// admin sees "ok", and the account is drained at once.
	OnRecovered(f func(account string))
}

// Options configures the engine. Zero values take the defaults noted
// (WithDefaults); Validate reports the rest.
type Options struct {
	Clock           func() time.Time // default time.Now
	Rand            func() float64   // jitter source in [0,1); default math/rand/v2
	Logger          *slog.Logger     // default slog.Default(); the engine adds component=delivery
	Workers         int              // global concurrent sends; default 16
	Owner           string           // lease owner id; default hostname:pid
	Hostname        string           // EHLO name; default os.Hostname()
	ShutdownTimeout time.Duration    // finish in-flight sends on shutdown; default 30s
	Dial            func(ctx context.Context, network, addr string) (net.Conn, error)
	// NoticeForSources: sources whose dead messages get a failure notice even
	// without NotifyOnFailure; default [scan].
	NoticeForSources []spool.SourceKind
	Registerer       prometheus.Registerer // default: a private registry (metrics not exported)

	LeaseDuration   time.Duration // lease renewal target; default 5m (the spool's default lease)
	HoldInterval    time.Duration // how long messages of a held account wait before a re-check; default 15m
	TokenRetry      time.Duration // wait when the token endpoint is down; default 1m
	ThrottlePause   time.Duration // pause of an account after a throttling answer; default 1m
	ThrottleRecover time.Duration // successful period before concurrency/rate step back up; default 5m
	IdleTimeout     time.Duration // keep an idle upstream connection open this long for more mail; default 2s
	// Outage is when an account counts as upstream_down and how often it
	// is probed then (outage.go); zero fields take DefaultOutagePolicy.
	Outage OutagePolicy
}

// TestResult is the upstream's final answer to TestSend.
type TestResult struct {
	Account  string
	Code     int
	Enhanced string
	Text     string
	Duration time.Duration
}

// AccountState is the live state of one account for status displays.
type AccountState struct {
	Name           string
	Transport      string
	InFlight       int
	Connections    int
	ConnLimit      int     // current limit (lowered while throttled)
	RatePerMinute  float64 // current rate; <0 unlimited
	LastDelivery   time.Time
	LastError      *spool.ErrorRecord
	ThrottledUntil time.Time
	HeldUntil      time.Time
	HoldReason     string
	// RecipientsToday is how many recipients the account sent to in the
	// last 24 hours, of DailyRecipientLimit (<=0: no limit; not counted).
	RecipientsToday     int
	DailyRecipientLimit int
	// FallbackVia names the account sending this one's mail while it is
	// held (budget.go); "" when none is.
	FallbackVia string
	// UpstreamDownSince is set while the account is upstream_down (several
	// connection-level failures in a row): its messages wait without using
	// attempts and one probe connection at a time checks the upstream.
	UpstreamDownSince  time.Time
	UpstreamDownReason string    // the last connection failure
	NextProbe          time.Time // when the next probe connects (zero while one runs)
	ConnectFailures    int       // connection-level failures in a row
}

// StateUpstreamDown is the account state shown while UpstreamDownSince is set.
const StateUpstreamDown = "upstream_down"

type account struct {
	cfg     AccountConfig
	tr      transport
	limiter *rate.Limiter // nil = unlimited

	conns, inflight int
	idle            int // connection workers waiting for more mail
	connLimit       int
	throttledUntil  time.Time
	throttledAt     time.Time
	hold            hold   // hold.go
	budget          budget // budget.go
	lastDelivery    time.Time
	lastErr         *spool.ErrorRecord
	removed         bool

	// Upstream outage (outage.go), guarded by Engine.mu.
	connFails  int       // connection-level failures in a row
	downSince  time.Time // zero: not upstream_down
	downReason string
	downErr    *SMTPError
	probeStep  int       // probes failed since downSince
	probeAt    time.Time // next probe
	probing    bool
	ups        uint64 // times upstream_down ended (a park racing a recovery re-drains)
	// reached: a connection succeeded since the start or the last
	// connection-level failure. Until then the account opens one
	// connection at a time, so an upstream that is down on arrival costs
	// one connection's failures, not one per connection slot.
	reached bool
	// slotsFullAt: when takeSlot last found every slot shared by the
	// nodes taken; zero once a slot of ours is given back (cluster.go).
	slotsFullAt time.Time
}

// Engine schedules and performs deliveries. Safe for concurrent use.
type Engine struct {
	due     dueQueue
	claims  claimer
	msgs    attempts
	sp      noticeQueue // failure notices
	drains  flusher
	budgets budgetStore
	tokens  Tokens
	opts    Options
	log     *slog.Logger
	m       *metrics

	kick   chan struct{}
	workCh chan struct{} // closed and replaced to wake idle connections

	mu       sync.Mutex
	accounts map[string]*account
	paused   bool
	workers  int
	hard     context.Context // in-flight sends; cancelled after ShutdownTimeout
	soft     context.Context // claiming; cancelled when Run's ctx is
	wg       sync.WaitGroup
	running  bool

	// passes counts finished scheduler passes, so tests that step an
	// injected clock can wait for the scheduler to have seen each step.
	passes atomic.Int64
}

// Engine option defaults.
const (
	defaultWorkers         = 16
	defaultShutdownTimeout = 30 * time.Second
)

// WithDefaults returns o with every zero field set to its default (the
// injected clock, randomness, logger, dialer and registry included). It is
// idempotent; negative values are left for Validate.
func (o Options) WithDefaults() Options {
	if o.Clock == nil {
		o.Clock = time.Now
	}
	if o.Rand == nil {
		o.Rand = rand.Float64
	}
	if o.Logger == nil {
		o.Logger = slog.Default()
	}
	if o.Workers == 0 {
		o.Workers = defaultWorkers
	}
	if o.Hostname == "" {
		h, err := os.Hostname()
		if err != nil || h == "" {
			h = "localhost"
		}
		o.Hostname = h
	}
	if o.Owner == "" {
		o.Owner = fmt.Sprintf("%s:%d", o.Hostname, os.Getpid())
	}
	if o.ShutdownTimeout == 0 {
		o.ShutdownTimeout = defaultShutdownTimeout
	}
	if o.Dial == nil {
		d := &net.Dialer{KeepAlive: 30 * time.Second}
		o.Dial = d.DialContext
	}
	if o.NoticeForSources == nil {
		o.NoticeForSources = []spool.SourceKind{spool.SourceScan}
	}
	if o.Registerer == nil {
		o.Registerer = prometheus.NewRegistry()
	}
	if o.LeaseDuration == 0 {
		o.LeaseDuration = 5 * time.Minute
	}
	if o.HoldInterval == 0 {
		o.HoldInterval = 15 * time.Minute
	}
	if o.TokenRetry == 0 {
		o.TokenRetry = time.Minute
	}
	if o.ThrottlePause == 0 {
		o.ThrottlePause = time.Minute
	}
	if o.ThrottleRecover == 0 {
		o.ThrottleRecover = 5 * time.Minute
	}
	if o.IdleTimeout == 0 {
		o.IdleTimeout = 2 * time.Second
	}
	o.Outage = o.Outage.WithDefaults()
	return o
}

// Validate reports what is wrong with o as it would run (defaults applied),
// keyed by the delivery section's YAML names: workers, shutdown_timeout and
// outage.*. The durations that come from elsewhere (LeaseDuration is
// spool.lease) or from no key at all are reported without a key.
func (o Options) Validate() error {
	o = o.WithDefaults()
	var ps field.Problems
	if o.Workers < 0 {
		ps.Add("workers", "%d is negative: want at least 1, or 0 for the default %d", o.Workers, defaultWorkers)
	}
	if o.ShutdownTimeout < 0 {
		ps.Add("shutdown_timeout", "%s is negative: want a duration, or 0 for the default %s", o.ShutdownTimeout, defaultShutdownTimeout)
	}
	ps.MergeErr("outage", o.Outage.Validate())
	for _, d := range []struct {
		name string
		v    time.Duration
	}{{"lease duration", o.LeaseDuration}, {"hold interval", o.HoldInterval}, {"token retry", o.TokenRetry},
		{"throttle pause", o.ThrottlePause}, {"throttle recover", o.ThrottleRecover}, {"idle timeout", o.IdleTimeout}} {
		if d.v < 0 {
			ps.Add("", "delivery %s %s is negative", d.name, d.v)
		}
	}
	return ps.Err()
}

// New validates the accounts and options and builds an engine. tokens may
// be nil when no account uses xoauth2.
func New(accounts []AccountConfig, sp Spool, tokens Tokens, opts Options) (*Engine, error) {
	if sp == nil {
		return nil, errors.New("delivery: new engine: nil spool")
	}
	opts = opts.WithDefaults()
	if err := opts.Validate(); err != nil {
		return nil, fmt.Errorf("delivery: options: %w", err)
	}
	m, err := newMetrics(opts.Registerer)
	if err != nil {
		return nil, err
	}
	e := &Engine{due: sp, claims: sp, msgs: sp, sp: sp, drains: sp, budgets: sp, tokens: tokens, opts: opts, log: opts.Logger.With("component", "delivery"), m: m,
		kick: make(chan struct{}, 1), workCh: make(chan struct{}), soft: context.Background(), hard: context.Background()}
	accs, err := e.build(accounts)
	if err != nil {
		return nil, err
	}
	e.loadBudgets(accs)
	e.accounts = accs
	if tokens != nil {
		tokens.OnRecovered(e.accountRecovered)
	}
	return e, nil
}

// build checks the accounts as ValidateAccounts does and makes their live
// records, with transports and TLS settings (ca_file is read here).
func (e *Engine) build(cfgs []AccountConfig) (map[string]*account, error) {
	if err := ValidateAccounts(cfgs); err != nil {
		return nil, fmt.Errorf("delivery: accounts: %w", err)
	}
	out := make(map[string]*account, len(cfgs))
	var errs []error
	for _, c := range cfgs {
		n := c.WithDefaults()
		if n.Transport == "smtp" && n.Auth == "xoauth2" && e.tokens == nil {
			errs = append(errs, fmt.Errorf("delivery: account %q uses xoauth2 but no token source is configured", n.Name))
			continue
		}
		a := &account{cfg: n, connLimit: n.MaxConnections}
		if n.Transport == "graph" && e.tokens == nil {
			errs = append(errs, fmt.Errorf("delivery: account %q uses transport graph but no token source is configured", n.Name))
			continue
		}
		if n.Transport == "file" {
			a.tr = &fileTransport{dir: n.Dir}
		} else if n.Transport == "graph" {
			gt, err := e.newGraphTransport(a)
			if err != nil {
				errs = append(errs, err)
				continue
			}
			a.tr = gt
		} else {
			tc, err := n.tlsConfig()
			if err != nil {
				errs = append(errs, err)
				continue
			}
			a.tr = &smtpTransport{cfg: n, tls: tc, dial: e.opts.Dial, hostname: e.opts.Hostname}
		}
		if n.RatePerMinute > 0 {
			a.limiter = rate.NewLimiter(rate.Limit(n.RatePerMinute/60), 1)
		}
		out[n.Name] = a
	}
	if err := errors.Join(errs...); err != nil {
		return nil, err
	}
	return out, nil
}

// Reload replaces the account set (SIGHUP). Unchanged accounts keep their
// live state; changed ones start fresh (holds and throttles cleared) while
// their in-flight sends finish with the old settings.
func (e *Engine) Reload(accounts []AccountConfig) error {
	accs, err := e.build(accounts)
	if err != nil {
		return err
	}
	e.loadBudgets(accs)
	e.mu.Lock()
	var flush []string // new or changed accounts: their waiting messages may go now
	for name, n := range accs {
		if old, ok := e.accounts[name]; !ok || old.cfg != n.cfg {
			flush = append(flush, name)
		}
	}
	for name, old := range e.accounts {
		n, ok := accs[name]
		if ok && n.cfg == old.cfg {
			// Unchanged: keep the live record (connections, throttle, hold).
			accs[name] = old
			continue
		}
		if ok {
			n.lastDelivery, n.lastErr = old.lastDelivery, old.lastErr
		}
		// Workers of a changed or removed account finish their current
		// message and stop; they count themselves out on the old record.
		// A changed account starts up (not upstream_down): its parked
		// messages are flushed below, so the new settings are tried at once.
		old.removed = true
		e.m.upstreamDown.DeleteLabelValues(name)
	}
	e.accounts = accs
	e.mu.Unlock()
	for _, name := range flush {
		if _, err := e.drains.FlushAll(context.Background(), name); err != nil {
			e.log.Warn("flushing account after reload", "account", name, "err", err)
		}
	}
	e.wake()
	return nil
}

// Pause stops (true) or resumes (false) claiming new messages.
func (e *Engine) Pause(p bool) {
	e.mu.Lock()
	e.paused = p
	e.mu.Unlock()
	e.wake()
}

// Paused reports whether claiming is paused.
func (e *Engine) Paused() bool {
	e.mu.Lock()
	defer e.mu.Unlock()
	return e.paused
}

func (e *Engine) wake() {
	select {
	case e.kick <- struct{}{}:
	default:
	}
}

// AccountStates returns the live state of every account, sorted by name.
func (e *Engine) AccountStates() []AccountState {
	e.mu.Lock()
	defer e.mu.Unlock()
	out := make([]AccountState, 0, len(e.accounts))
	for _, a := range e.accounts {
		r := a.cfg.RatePerMinute
		if a.limiter != nil {
			r = float64(a.limiter.Limit()) * 60
		}
		s := AccountState{Name: a.cfg.Name, Transport: a.cfg.Transport, InFlight: a.inflight, Connections: a.conns,
			ConnLimit: a.connLimit, RatePerMinute: r, LastDelivery: a.lastDelivery, ThrottledUntil: a.throttledUntil,
			HeldUntil: a.hold.until, HoldReason: a.hold.reason,
			UpstreamDownSince: a.downSince, UpstreamDownReason: a.downReason, ConnectFailures: a.connFails,
			DailyRecipientLimit: a.cfg.DailyRecipientLimit}
		if a.cfg.DailyRecipientLimit > 0 {
			s.RecipientsToday = a.budget.trim(e.opts.Clock())
		}
		if fb := e.fallbackLocked(a, e.opts.Clock()); fb != nil {
			s.FallbackVia = fb.cfg.Name
		}
		if !a.downSince.IsZero() && !a.probing {
			s.NextProbe = a.probeAt
		}
		if a.lastErr != nil {
			le := *a.lastErr
			s.LastError = &le
		}
		out = append(out, s)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Name < out[j].Name })
	return out
}

// Run is the scheduler loop. It returns after ctx is cancelled and the
// graceful shutdown is complete: no new claims, in-flight sends get
// ShutdownTimeout to finish, the rest are postponed (leases released).
func (e *Engine) Run(ctx context.Context) error {
	e.mu.Lock()
	if e.running {
		e.mu.Unlock()
		return errors.New("delivery: engine is already running")
	}
	e.running = true
	hard, hardCancel := context.WithCancel(context.WithoutCancel(ctx))
	defer hardCancel()
	e.soft, e.hard = ctx, hard
	e.mu.Unlock()

	e.resumeOutages(ctx)
	notify := e.due.Notify()
	timer := time.NewTimer(time.Hour)
	defer timer.Stop()
	e.log.Info("engine started", "workers", e.opts.Workers, "owner", e.opts.Owner)
	for ctx.Err() == nil {
		wake := e.schedule(ctx)
		timer.Stop()
		var timerC <-chan time.Time
		if !wake.IsZero() {
			d := wake.Sub(e.opts.Clock())
			if d < 10*time.Millisecond {
				d = 10 * time.Millisecond
			}
			timer.Reset(d)
			timerC = timer.C
		}
		select {
		case <-ctx.Done():
		case <-notify:
		case <-e.kick:
		case <-timerC:
		}
	}

	e.log.Info("shutting down", "timeout", e.opts.ShutdownTimeout)
	done := make(chan struct{})
	go func() { e.wg.Wait(); close(done) }()
	select {
	case <-done:
	case <-time.After(e.opts.ShutdownTimeout):
		e.log.Warn("shutdown timeout: interrupting in-flight sends")
		hardCancel()
		<-done
	}
	e.mu.Lock()
	e.running = false
	e.mu.Unlock()
	e.log.Info("engine stopped")
	return nil
}

// schedule starts connection workers for due accounts and returns when to
// look again (zero: only on a signal).
func (e *Engine) schedule(ctx context.Context) time.Time {
	now := e.opts.Clock()
	e.mu.Lock()
	paused := e.paused
	e.mu.Unlock()
	if paused {
		return time.Time{}
	}
	var wake time.Time
	earlier := func(t time.Time) {
		if wake.IsZero() || t.Before(wake) {
			wake = t
		}
	}
	defer e.passes.Add(1)
	e.startProbes(now, earlier)
	due, err := e.due.DueAccounts(ctx, now)
	if err != nil {
		if ctx.Err() == nil {
			e.log.Error("listing due accounts", "err", err)
			earlier(now.Add(5 * time.Second))
		}
		return wake
	}
	if len(due) > 0 {
		e.broadcast()
	}
	for _, name := range due {
		e.mu.Lock()
		a := e.accounts[name]
		switch {
		case a == nil:
			e.mu.Unlock()
			e.parkAll(ctx, name, now.Add(e.opts.HoldInterval), fmt.Sprintf("account %q is not configured", name))
		case a.hold.active(now):
			if fb := e.fallbackLocked(a, now); fb != nil {
				// The fallback sends the held account's mail, within its own limits.
				if !e.blockedLocked(fb, now) && fb.conns < fb.connLimit && e.workers < e.opts.Workers && !e.slotsPausedLocked(fb, now, earlier) {
					fb.conns++
					e.workers++
					e.wg.Add(1)
					e.mu.Unlock()
					go e.connWorker(a, fb)
					continue
				}
				if e.blockedLocked(fb, now) {
					// Held or down too: wait for whichever ends first.
					until, reason := a.hold.until, a.hold.reason
					e.mu.Unlock()
					e.parkAll(ctx, name, until, reason)
					continue
				}
				e.mu.Unlock()
				continue
			}
			until, reason := a.hold.until, a.hold.reason
			e.mu.Unlock()
			e.parkAll(ctx, name, e.parkUntil(a, until), reason)
		case !a.downSince.IsZero():
			// Upstream down: the probe (startProbes) connects, messages wait.
			e.mu.Unlock()
			e.parkDown(ctx, a)
		case a.throttledUntil.After(now):
			earlier(a.throttledUntil)
			e.mu.Unlock()
		case a.idle > 0:
			// An idle connection of this account takes it (broadcast below).
			e.mu.Unlock()
		case !a.reached && a.conns > 0:
			// Slow start: the connection being opened reports first
			// (connected or connLevelFailed kick us).
			e.mu.Unlock()
		case e.slotsPausedLocked(a, now, earlier):
			// The nodes held every slot a moment ago (cluster.go).
			e.mu.Unlock()
		case a.conns < a.connLimit && e.workers < e.opts.Workers:
			// One new connection per pass; a worker that claims a message
			// kicks the scheduler, so connections ramp up while work remains.
			a.conns++
			e.workers++
			e.wg.Add(1)
			e.mu.Unlock()
			go e.connWorker(a, a)
		default:
			e.mu.Unlock()
		}
	}
	next, ok, err := e.due.NextDue(ctx, "")
	switch {
	case err != nil:
		if ctx.Err() == nil {
			e.log.Error("reading next due time", "err", err)
			earlier(now.Add(5 * time.Second))
		}
	case ok && next.After(now):
		earlier(next)
	case ok:
		// Something is due but taken, throttled or at a limit: claims and
		// finishing workers kick us; this backstop only runs while busy.
		earlier(now.Add(time.Second))
	}
	return wake
}

// parkAll postpones every due message of an account that waits, without
// using attempts.
func (e *Engine) parkAll(ctx context.Context, name string, until time.Time, reason string) {
	if e.signedInElsewhere(ctx, name) { // hold.go
		return
	}
	seen := e.recoveriesByName(name)
	for ctx.Err() == nil {
		msgs, err := e.claims.ClaimAccount(ctx, name, e.opts.Clock(), 100, e.opts.Owner)
		if err != nil {
			e.log.Error("claiming messages to postpone", "account", name, "err", err)
			return
		}
		for _, m := range msgs {
			if e.holdEnded(name) { // cluster.go
				until = e.opts.Clock()
			}
			if err := e.claims.Postpone(ctx, m.ID, e.opts.Owner, until, reason); err != nil {
				e.log.Error("postponing", "msg_id", m.ID, "account", name, "err", err)
			} else {
				e.m.attempt(name, "postponed", "")
				e.log.Info("message waits", "msg_id", m.ID, "account", name, "until", until, "reason", reason)
				e.unparkIfRecovered(ctx, name, m.ID, seen, e.log.With("account", name))
			}
		}
		if len(msgs) < 100 {
			return
		}
	}
}

// blockedLocked says why a connection worker of a should stop (e.mu held).
func (e *Engine) blockedLocked(a *account, now time.Time) bool {
	return e.paused || a.removed || a.hold.active(now) || a.throttledUntil.After(now) || a.conns > a.connLimit ||
		!a.downSince.IsZero()
}

// connWorker sends due messages of account from over one connection of
// account a: the same account, or its fallback while from is held
// (budget.go), for as long as that lasts.
func (e *Engine) connWorker(from, a *account) {
	var sess session
	worked := false
	g, slotOK := e.takeSlot(a) // cluster.go: the slot shared by the nodes, and its loss closing the connection
	defer func() {
		if sess != nil {
			sess.close()
		}
		e.releaseSlot(a, g)
		e.mu.Lock()
		a.conns--
		e.workers--
		e.mu.Unlock()
		e.wg.Done()
		// A freed slot may let a waiting account go; a worker that found
		// nothing does not kick, so an index glitch cannot make a spin.
		if worked {
			e.wake()
		}
	}()
	soft := e.soft
	if slotOK {
		soft = g.soft // also ends when the slot is lost
	}
	var queue []*spool.Message // claimed, not yet sent
	queueStarted := false      // the claim also started their attempts
	var claimedAt time.Time
	woken := false // the last idle wait ended with a signal
	defer func() {
		// Leftovers (shutdown, pause, throttle, hold) go back without an attempt.
		for _, m := range queue {
			e.postpone(context.WithoutCancel(soft), a, m, e.opts.Clock(), "released unsent", e.log.With("msg_id", m.ID, "account", a.cfg.Name))
		}
	}()
	for sent := 0; slotOK && sent < a.cfg.MaxMessagesPerConnection; {
		if soft.Err() != nil {
			return
		}
		e.mu.Lock()
		stop := e.blockedLocked(a, e.opts.Clock()) || (from != a && e.fallbackLocked(from, e.opts.Clock()) != a)
		work := e.workCh // taken before claiming so no signal is missed
		e.mu.Unlock()
		if stop {
			return
		}
		if len(queue) > 0 && e.opts.Clock().Sub(claimedAt) > e.opts.LeaseDuration/2 {
			// Leases of messages waiting in our queue are not renewed: give
			// them back before they could expire and be claimed twice.
			for _, m := range queue {
				e.postpone(context.WithoutCancel(soft), a, m, e.opts.Clock(), "released unsent", e.log.With("msg_id", m.ID, "account", a.cfg.Name))
			}
			queue = nil
		}
		if !g.held() {
			return
		}
		if len(queue) == 0 {
			// Unlimited accounts claim a few at once and start their
			// attempts in the same commit: two spool commits fewer per
			// message. A rate-limited account may wait long before it
			// sends, so its attempt starts only when it does.
			var msgs []*spool.Message
			var err error
			now := e.opts.Clock()
			queueStarted = a.limiter == nil
			if queueStarted {
				batch := min(claimBatch, a.cfg.MaxMessagesPerConnection-sent)
				msgs, err = e.claims.ClaimAccountStart(soft, from.cfg.Name, now, batch, e.opts.Owner,
					func(m *spool.Message) time.Time { return e.ifCrash(a, m, now) })
			} else {
				msgs, err = e.claims.ClaimAccount(soft, from.cfg.Name, now, 1, e.opts.Owner)
			}
			if err != nil {
				if soft.Err() == nil {
					e.log.Error("claiming", "account", a.cfg.Name, "err", err)
				}
				return
			}
			if len(msgs) == 0 {
				e.mu.Lock()
				full := e.workers >= e.opts.Workers
				e.mu.Unlock()
				// Woken for another account's mail while all worker slots
				// are taken: give ours up instead of idling on.
				if sess == nil || (woken && full) || !e.idleWait(a, work, soft.Done()) {
					return
				}
				woken = true
				continue
			}
			woken = false
			queue, claimedAt = msgs, e.opts.Clock()
			worked = true
			e.wake()
		}
		if err := e.waitRate(soft, a); err != nil { // cluster.go
			return
		}
		if !g.begin() {
			return
		}
		m := queue[0]
		queue = queue[1:]
		sess = e.deliverSafe(g.ctx, a, m, sess, queueStarted)
		g.end(sess)
		sent++
	}
}

// claimBatch is how many messages an unlimited account's connection claims at once.
const claimBatch = 4

// idleWait keeps an open connection for the account's IdleTimeout (else the
// engine's) in case more mail arrives (like Postfix's connection cache);
// false when nothing came.
func (e *Engine) idleWait(a *account, work, stop <-chan struct{}) bool {
	e.mu.Lock()
	a.idle++
	e.mu.Unlock()
	defer func() {
		e.mu.Lock()
		a.idle--
		e.mu.Unlock()
	}()
	idle := e.opts.IdleTimeout
	if a.cfg.IdleTimeout > 0 {
		idle = a.cfg.IdleTimeout
	}
	t := time.NewTimer(idle)
	defer t.Stop()
	select {
	case <-work:
		return true
	case <-t.C:
	case <-stop:
	}
	return false
}

// broadcast wakes idle connection workers.
func (e *Engine) broadcast() {
	e.mu.Lock()
	close(e.workCh)
	e.workCh = make(chan struct{})
	e.mu.Unlock()
}

// The real spool satisfies the interface; a signature drift fails the build here.
var _ Spool = (*spool.Spool)(nil)
