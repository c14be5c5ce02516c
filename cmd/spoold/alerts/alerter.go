package alerts

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/spoold/spoold/cmd/spoold/adminapi/wire"
	"github.com/spoold/spoold/configs/secret"
	"github.com/spoold/spoold/spool"
)

// Queue is the part of the spool the alerter reads and queues mail into.
type Queue interface {
	Stats(ctx context.Context) (map[spool.State]int, error)
	List(ctx context.Context, f spool.Filter, cursor string, limit int) (spool.Page, error)
	Get(ctx context.Context, id string) (*spool.Message, error)
	WaitingByAccount(ctx context.Context) (map[string]int, error)
	Enqueue(ctx context.Context, req spool.EnqueueRequest, body io.Reader) (string, error)
}

// Store keeps the alerter's state durably (the spool's alerts bucket).
type Store interface {
	AlertState(ctx context.Context) (map[string][]byte, error)
	AlertWrite(ctx context.Context, put map[string][]byte, del []string) error
}

// Deps are the alerter's collaborators and what tests inject.
type Deps struct {
	Queue      Queue
	Store      Store
	Sources    Sources
	Logger     *slog.Logger          // default slog.Default()
	Registerer prometheus.Registerer // nil: metrics are not exported
	Clock      func() time.Time      // default time.Now
	Hostname   string
	// Senders maps an account to the address its mail comes from: alert
	// e-mails and delay warnings are sent as that address.
	Senders map[string]string
	// Secrets are the configured secrets (client secrets, passwords,
	// webhook URLs): replaced by [redacted] in every alert before it is
	// stored or sent.
	Secrets []secret.Secret
	// HTTPClient posts webhooks; default a client without redirects.
	HTTPClient *http.Client
}

// Keys of the records in the Store.
const (
	keyActive = "active/" // + condition key: activeRecord
	keyOut    = "out/"    // + channel + "/" + notification ID: outItem
	keyRun    = "run"     // runRecord; on a shared spool "run/" + node
	keyDigest = "digest"  // digestRecord
	keyPaused = "paused"  // time delivery was first seen paused; on a shared spool "paused/" + node
	keyDelay  = "delay/"  // + message ID: time its sender was warned
)

// activeRecord is a raised condition.
type activeRecord struct {
	Finding   finding   `json:"finding"`
	Since     time.Time `json:"since"`
	LastSent  time.Time `json:"last_sent"`
	Reminders int       `json:"reminders"`
}

// outItem is one notification a channel still owes.
type outItem struct {
	Alert     Alert     `json:"alert"`
	Channel   string    `json:"channel"`
	Attempts  int       `json:"attempts"`
	NextTry   time.Time `json:"next_try"`
	LastError string    `json:"last_error,omitempty"`
}

func (o *outItem) key() string { return keyOut + o.Channel + "/" + o.Alert.ID }

// runRecord tells a clean stop from a crash: Running stays true after a
// kill -9, a crash or a power cut.
type runRecord struct {
	Running bool      `json:"running"`
	Started time.Time `json:"started"`
}

type digestRecord struct {
	Watermark time.Time `json:"watermark"` // dead letters updated after this are new
	LastSent  time.Time `json:"last_sent"`
}

// channelStats is a channel's health since start.
type channelStats struct {
	sent, failed  int
	lastOK        time.Time
	lastErr       string
	lastErrTime   time.Time
	kick          chan struct{}
	sending       bool
	sendingCancel context.CancelFunc
}

// Alerter raises, reminds and resolves alerts. Safe for concurrent use.
type Alerter struct {
	opts     Options
	queue    Queue
	store    Store
	src      Sources
	log      *slog.Logger
	now      func() time.Time
	host     string
	senders  map[string]string
	secrets  []string
	channels []channel
	diskFree func(string) (uint64, error)
	metrics  *metrics

	checkMu     sync.Mutex // one Check at a time
	pausedSince time.Time  // guarded by checkMu
	lastDead    int        // dead count at the last digest scan; -1 = scan

	mu       sync.Mutex
	active   map[string]*activeRecord
	out      map[string]*outItem // by key()
	stats    map[string]*channelStats
	digest   digestRecord
	delayed  map[string]time.Time
	loaded   bool
	stopLoop context.CancelFunc
	loops    sync.WaitGroup // the check loop

	// On a spool shared by nodes (node != ""), one node at a time leads:
	// see cluster.go. Only the check loop (and Stop after it) touch slot,
	// leadCancel and sendLoops; leading is read by Check and Status too.
	node       string
	slots      leaderStore
	leading    atomic.Bool
	slot       spool.ConnSlot
	leadCancel context.CancelFunc
	sendLoops  sync.WaitGroup
	ticks      atomic.Int64 // check loop rounds done, for tests to wait on
}

// New builds an alerter from validated options; Start runs it.
func New(opts Options, deps Deps) (*Alerter, error) {
	if deps.Queue == nil || deps.Store == nil {
		return nil, errors.New("alerts: a queue and a store are required")
	}
	if deps.Logger == nil {
		deps.Logger = slog.Default()
	}
	if deps.Clock == nil {
		deps.Clock = time.Now
	}
	if deps.Hostname == "" {
		deps.Hostname = "localhost"
	}
	if deps.HTTPClient == nil {
		// A webhook that redirects is misconfigured; following it could
		// send the alert somewhere else.
		deps.HTTPClient = &http.Client{CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
	}
	a := &Alerter{opts: opts, queue: deps.Queue, store: deps.Store, src: deps.Sources,
		log: deps.Logger.With("component", "alerts"), now: deps.Clock, host: deps.Hostname,
		senders: deps.Senders, diskFree: deps.Sources.DiskFree, lastDead: -1,
		active: map[string]*activeRecord{}, out: map[string]*outItem{}, stats: map[string]*channelStats{},
		delayed: map[string]time.Time{}}
	if a.diskFree == nil {
		a.diskFree = statfsFree
	}
	if ls, ok := deps.Store.(leaderStore); ok && ls.Node() != "" {
		a.node, a.slots = ls.Node(), ls
	} else {
		a.leading.Store(true) // the only node
	}
	for _, s := range deps.Secrets {
		// Very short values would redact ordinary words; the configs
		// layer never accepts a secret that short for a real credential.
		if len(s.Reveal()) >= 6 {
			a.secrets = append(a.secrets, s.Reveal())
		}
	}
	if opts.Email.Account != "" {
		a.channels = append(a.channels, &emailChannel{a: a, account: opts.Email.Account, to: opts.Email.To})
	}
	for _, w := range opts.Webhooks {
		a.channels = append(a.channels, &webhookChannel{cfg: w, hc: deps.HTTPClient})
	}
	for _, c := range opts.Commands {
		a.channels = append(a.channels, &commandChannel{cfg: c})
	}
	for _, ch := range a.channels {
		a.stats[ch.name()] = &channelStats{kick: make(chan struct{}, 1)}
	}
	a.metrics = newMetrics(deps.Registerer, a.channels)
	return a, nil
}

// Load reads the persisted state and records this run (the run marker);
// when the previous run did not stop cleanly it queues the unclean-stop
// notice in the same commit. Start calls it; tests call it directly.
func (a *Alerter) Load(ctx context.Context) error {
	a.checkMu.Lock()
	defer a.checkMu.Unlock()
	st, err := a.store.AlertState(ctx)
	if err != nil {
		return fmt.Errorf("alerts: reading the alert state: %w", err)
	}
	now := a.now()
	a.mu.Lock()
	defer a.mu.Unlock()
	var prev runRecord
	haveRun := false
	for k, v := range st {
		var err error
		switch {
		case strings.HasPrefix(k, keyActive):
			var r activeRecord
			if err = json.Unmarshal(v, &r); err == nil {
				a.active[strings.TrimPrefix(k, keyActive)] = &r
			}
		case strings.HasPrefix(k, keyOut):
			var o outItem
			if err = json.Unmarshal(v, &o); err == nil {
				if _, ok := a.stats[o.Channel]; ok {
					a.out[k] = &o
				} else if a.node == "" {
					// The channel was removed from the config: its backlog
					// has nowhere to go. (On a shared spool another node's
					// config may still have it.)
					defer a.writeLocked(ctx, nil, []string{k})
				}
			}
		case k == a.runKey():
			err = json.Unmarshal(v, &prev)
			haveRun = err == nil
		case k == a.pausedKey():
			err = json.Unmarshal(v, &a.pausedSince)
		default:
			_, err = a.readLeaderRecord(k, v)
		}
		if err != nil {
			a.log.Warn("ignoring an unreadable alert record", "key", k, "err", err)
		}
	}
	put := map[string][]byte{}
	if a.digest.Watermark.IsZero() {
		// Dead letters from before alerts were turned on are not news.
		a.digest.Watermark = now
		put[keyDigest] = mustJSON(a.digest)
	}
	put[a.runKey()] = mustJSON(runRecord{Running: true, Started: now})
	if haveRun && prev.Running && *a.opts.UncleanStop {
		// On a shared spool the notice is queued into the shared outbox
		// like any other; the leading node sends it.
		f := finding{Key: a.localKey(KindUncleanStop), Kind: KindUncleanStop, Severity: SeverityWarning,
			Title: "spoold" + a.onNode() + " restarted after an unclean stop",
			Text: fmt.Sprintf("spoold%s started at %s; its previous run (started %s) ended without a clean shutdown: a crash, kill -9, an OOM kill or a power cut. Nothing that was accepted is lost; a message being sent at that moment may be sent once more.",
				a.onNode(), now.Format(time.RFC3339), prev.Started.Format(time.RFC3339)),
			Fix:   "Find out why in the system journal" + a.onNode() + ": journalctl -u spoold -b -1 (and dmesg for the OOM killer).",
			Since: now}
		a.queueLocked(put, a.alertFor(f, EventNotice, now, now))
	}
	a.loaded = true
	return a.writeLocked(ctx, put, nil)
}

// Start loads the state and runs the checks and the channels' senders
// until Stop.
func (a *Alerter) Start(ctx context.Context) error {
	if err := a.Load(ctx); err != nil {
		return err
	}
	ctx, cancel := context.WithCancel(context.WithoutCancel(ctx))
	a.stopLoop = cancel
	if a.node == "" {
		a.startSenders(ctx)
	}
	a.loops.Go(func() {
		t := time.NewTicker(a.opts.CheckInterval)
		defer t.Stop()
		for {
			var lost <-chan struct{}
			if a.node != "" {
				lost = a.lead(ctx)
				if err := a.refresh(ctx); err != nil && ctx.Err() == nil {
					a.log.Warn("cannot re-read the shared alert state", "err", err)
				}
			}
			if err := a.Check(ctx); err != nil && ctx.Err() == nil {
				a.log.Warn("alert check failed", "err", err)
			}
			a.ticks.Add(1)
			select {
			case <-ctx.Done():
				return
			case <-t.C:
			case <-lost:
				a.resign("its database session ended (the database restarted or the link failed); another node takes over")
			}
		}
	})
	return nil
}

// startSenders runs one sender per channel until ctx ends.
func (a *Alerter) startSenders(ctx context.Context) {
	for _, ch := range a.channels {
		a.sendLoops.Go(func() { a.senderLoop(ctx, ch) })
	}
}

// Stop ends the loops, hands the alerts over to another node and records
// a clean stop. Call it before the spool closes.
func (a *Alerter) Stop() {
	if !a.halt() {
		return
	}
	a.mu.Lock()
	defer a.mu.Unlock()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := a.writeLocked(ctx, map[string][]byte{a.runKey(): mustJSON(runRecord{Running: false})}, nil); err != nil {
		a.log.Warn("cannot record the clean stop; the next start will report an unclean one", "err", err)
	}
}

// halt stops the loops and gives up the leadership, recording nothing (as
// a kill -9 would, whose database sessions end with it). It reports
// whether this run was loaded and not yet halted.
func (a *Alerter) halt() bool {
	if a.stopLoop != nil {
		a.stopLoop()
		a.loops.Wait()
	}
	if a.node == "" {
		a.sendLoops.Wait() // they ended with the loop's context
	} else {
		a.resign("")
	}
	a.mu.Lock()
	defer a.mu.Unlock()
	was := a.loaded
	a.loaded = false
	return was
}

// Check evaluates every condition once: it raises new alerts, sends
// reminders, resolves ended ones, sends a dead-letter digest and delay
// warnings when due. The notifications are committed before Check returns;
// the channels' senders deliver them.
func (a *Alerter) Check(ctx context.Context) error {
	a.checkMu.Lock()
	defer a.checkMu.Unlock()
	now := a.now()
	wasPaused := a.pausedSince
	leading := a.leading.Load()
	found, skip := a.evaluate(ctx, now, leading)

	a.mu.Lock()
	put := map[string][]byte{}
	var del []string
	if !a.pausedSince.Equal(wasPaused) {
		put[a.pausedKey()] = mustJSON(a.pausedSince)
	}
	keys := make([]string, 0, len(found))
	for k := range found {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	for _, k := range keys {
		f := a.scrubFinding(found[k]) // it is stored: no secret may reach the database either
		r := a.active[k]
		switch {
		case r == nil:
			since := f.Since
			if since.IsZero() || since.After(now) {
				since = now
			}
			r = &activeRecord{Finding: f, Since: since, LastSent: now}
			a.active[k] = r
			a.queueLocked(put, a.alertFor(f, EventStarted, since, now))
		case *a.opts.ReminderInterval > 0 && now.Sub(r.LastSent) >= *a.opts.ReminderInterval:
			r.Finding, r.LastSent = f, now
			r.Reminders++
			a.queueLocked(put, a.alertFor(f, EventReminder, r.Since, now))
		default:
			r.Finding = f // the latest text and counts, for spoolctl alerts
		}
		put[keyActive+k] = mustJSON(r)
	}
	for k, r := range a.active {
		if _, still := found[k]; still || slices.Contains(skip, r.Finding.Kind) || !a.owns(k, leading) {
			continue
		}
		delete(a.active, k)
		del = append(del, keyActive+k)
		f := r.Finding
		f.Waiting = 0
		a.queueLocked(put, a.alertFor(f, EventResolved, r.Since, now))
	}
	err := a.writeLocked(ctx, put, del)
	a.mu.Unlock()
	if err != nil {
		return err
	}
	if !leading {
		return nil // the digest, delay warnings and sending are the leader's
	}
	if *a.opts.DeadLetterDigest > 0 {
		if err := a.digestCheck(ctx, now); err != nil {
			a.log.Warn("dead-letter digest", "err", err)
		}
	}
	if a.opts.DelayWarning > 0 {
		if err := a.delayCheck(ctx, now); err != nil {
			a.log.Warn("delay warnings", "err", err)
		}
	}
	a.kickAll()
	return nil
}

// alertFor makes the notification of f, scrubbed of every configured
// secret.
func (a *Alerter) alertFor(f finding, ev Event, since, now time.Time) Alert {
	al := Alert{Schema: Schema, ID: fmt.Sprintf("%s@%d/%s", f.Key, now.UnixNano(), ev), Key: f.Key, Kind: f.Kind, Event: ev,
		Severity: f.Severity, Title: f.Title, Text: f.Text, Fix: f.Fix, Since: since, Time: now,
		Account: f.Account, Folder: f.Folder, Waiting: f.Waiting, Host: a.host}
	if ev == EventResolved {
		al.Severity = SeverityInfo
		al.Text = "This has ended after " + roundAge(now.Sub(since)) + ": " + f.Title + "."
		al.Fix = ""
	}
	for _, p := range []*string{&al.Title, &al.Text, &al.Fix, &al.Account, &al.Folder} {
		*p = a.scrub(*p)
	}
	return al
}

func (a *Alerter) scrubFinding(f finding) finding {
	for _, p := range []*string{&f.Title, &f.Text, &f.Fix, &f.Account, &f.Folder} {
		*p = a.scrub(*p)
	}
	return f
}

// scrub replaces every configured secret in s.
func (a *Alerter) scrub(s string) string {
	for _, sec := range a.secrets {
		s = strings.ReplaceAll(s, sec, secret.Redacted)
	}
	return s
}

// queueLocked logs an alert, counts it and adds one outbox item per
// channel to put.
func (a *Alerter) queueLocked(put map[string][]byte, al Alert) {
	level := slog.LevelWarn
	if al.Event == EventResolved {
		level = slog.LevelInfo
	}
	attrs := []any{"alert", al.Key, "event", al.Event, "title", al.Title, "text", al.Text}
	if al.Fix != "" {
		attrs = append(attrs, "fix", al.Fix)
	}
	if al.Account != "" {
		attrs = append(attrs, "account", al.Account)
	}
	if len(a.channels) == 0 {
		attrs = append(attrs, "channels", "none configured (alerts: in the config)")
	}
	a.log.Log(context.Background(), level, "alert", attrs...)
	if al.Event == EventStarted || al.Event == EventNotice {
		a.metrics.raised.WithLabelValues(al.Kind).Inc()
	}
	for _, ch := range a.channels {
		o := &outItem{Alert: al, Channel: ch.name(), NextTry: al.Time}
		a.out[o.key()] = o
		put[o.key()] = mustJSON(o)
	}
}

// writeLocked commits put and del (a.mu held).
func (a *Alerter) writeLocked(ctx context.Context, put map[string][]byte, del []string) error {
	if err := a.store.AlertWrite(context.WithoutCancel(ctx), put, del); err != nil {
		return fmt.Errorf("alerts: saving the alert state: %w", err)
	}
	return nil
}

func mustJSON(v any) []byte {
	b, err := json.Marshal(v)
	if err != nil {
		// Only the package's own plain structs are marshalled here.
		panic(fmt.Sprintf("alerts: encoding %T: %v", v, err))
	}
	return b
}

func (a *Alerter) kickAll() {
	for _, st := range a.stats {
		select {
		case st.kick <- struct{}{}:
		default:
		}
	}
}

// senderLoop delivers one channel's notifications in order, retrying with
// backoff; it never blocks another channel or the checks.
func (a *Alerter) senderLoop(ctx context.Context, ch channel) {
	st := a.stats[ch.name()]
	for {
		next := a.SendDue(ctx, ch.name())
		var timer <-chan time.Time
		if !next.IsZero() {
			timer = time.After(max(next.Sub(a.now()), 0) + 10*time.Millisecond)
		}
		select {
		case <-ctx.Done():
			return
		case <-st.kick:
		case <-timer:
		}
	}
}

// SendDue sends every notification of the channel whose time has come and
// returns when the next one is due (zero: none left).
func (a *Alerter) SendDue(ctx context.Context, name string) time.Time {
	var ch channel
	for _, c := range a.channels {
		if c.name() == name {
			ch = c
		}
	}
	if ch == nil {
		return time.Time{}
	}
	for ctx.Err() == nil {
		a.mu.Lock()
		now := a.now()
		var due, later *outItem
		for _, o := range a.out {
			if o.Channel != name {
				continue
			}
			if !o.NextTry.After(now) {
				if due == nil || o.Alert.Time.Before(due.Alert.Time) || o.Alert.Time.Equal(due.Alert.Time) && o.Alert.ID < due.Alert.ID {
					due = o
				}
			} else if later == nil || o.NextTry.Before(later.NextTry) {
				later = o
			}
		}
		a.mu.Unlock()
		if due == nil {
			if later == nil {
				return time.Time{}
			}
			return later.NextTry
		}
		a.deliver(ctx, ch, due)
	}
	return time.Time{}
}

// permanent marks a failure that retrying cannot fix (the e-mail account is
// the broken one): the notification is dropped at once.
type permanent struct{ error }

func (p permanent) Unwrap() error { return p.error }

// deliver makes one attempt at o and records the outcome.
func (a *Alerter) deliver(ctx context.Context, ch channel, o *outItem) {
	cctx, cancel := context.WithTimeout(ctx, ch.timeout())
	detail, err := ch.send(cctx, o.Alert)
	cancel()
	if err != nil && ctx.Err() != nil {
		return // shutting down: the item stays for the next run
	}
	a.mu.Lock()
	defer a.mu.Unlock()
	st := a.stats[ch.name()]
	now := a.now()
	if err == nil {
		st.sent++
		st.lastOK = now
		a.metrics.sent.WithLabelValues(ch.name()).Inc()
		delete(a.out, o.key())
		a.log.Info("alert sent", "alert", o.Alert.Key, "event", o.Alert.Event, "channel", ch.name(), "detail", detail)
		if werr := a.writeLocked(ctx, nil, []string{o.key()}); werr != nil {
			a.log.Warn("alert sent, but recording it failed; it may be sent again after a restart", "alert", o.Alert.Key, "channel", ch.name(), "err", werr)
		}
		return
	}
	msg := a.scrub(err.Error())
	st.failed++
	st.lastErr, st.lastErrTime = msg, now
	a.metrics.failed.WithLabelValues(ch.name()).Inc()
	o.Attempts++
	o.LastError = msg
	var perm permanent
	switch {
	case errors.As(err, &perm):
		delete(a.out, o.key())
		others := len(a.channels) - 1
		a.log.Warn("alert not sent through this channel; the other channels carry it", "alert", o.Alert.Key, "channel", ch.name(), "err", msg, "other_channels", others)
		if others == 0 {
			a.log.Error("alert reached no channel: this log line is the only notice", "alert", o.Alert.Key, "title", o.Alert.Title, "fix", o.Alert.Fix)
		}
		_ = a.writeLocked(ctx, nil, []string{o.key()})
	case now.Sub(o.Alert.Time) >= a.opts.Retry.GiveUp:
		delete(a.out, o.key())
		a.log.Error("giving up on an alert after retrying (alerts.retry.give_up)", "alert", o.Alert.Key, "channel", ch.name(), "attempts", o.Attempts, "err", msg)
		_ = a.writeLocked(ctx, nil, []string{o.key()})
	default:
		o.NextTry = now.Add(a.backoff(o.Attempts))
		a.log.Warn("alert channel failed; retrying", "alert", o.Alert.Key, "channel", ch.name(), "attempt", o.Attempts, "next_try", o.NextTry, "err", msg)
		_ = a.writeLocked(ctx, map[string][]byte{o.key(): mustJSON(o)}, nil)
	}
}

// backoff is the wait after the n-th failed attempt: retry.first doubling,
// at most retry.max.
func (a *Alerter) backoff(n int) time.Duration {
	d := a.opts.Retry.First
	for i := 1; i < n && d < a.opts.Retry.Max; i++ {
		d *= 2
	}
	return min(d, a.opts.Retry.Max)
}

// Status lists the active alerts and the channels' health.
func (a *Alerter) Status() wire.AlertsResponse {
	a.mu.Lock()
	defer a.mu.Unlock()
	out := wire.AlertsResponse{Active: []wire.ActiveAlert{}, Channels: []wire.AlertChannel{}}
	for _, r := range a.active {
		f := r.Finding
		out.Active = append(out.Active, wire.ActiveAlert{Key: f.Key, Kind: f.Kind, Severity: f.Severity, Title: a.scrub(f.Title),
			Text: a.scrub(f.Text), Fix: a.scrub(f.Fix), Account: f.Account, Folder: f.Folder, Waiting: f.Waiting,
			Since: r.Since, LastSent: r.LastSent, Reminders: r.Reminders})
	}
	slices.SortFunc(out.Active, func(x, y wire.ActiveAlert) int { return strings.Compare(x.Key, y.Key) })
	for _, ch := range a.channels {
		st := a.stats[ch.name()]
		c := wire.AlertChannel{Name: ch.name(), Kind: ch.kind(), Target: ch.target(), Sent: st.sent, Failed: st.failed,
			LastOK: st.lastOK, LastError: st.lastErr, LastErrorTime: st.lastErrTime}
		for _, o := range a.out {
			if o.Channel == ch.name() {
				c.Pending++
			}
		}
		out.Channels = append(out.Channels, c)
	}
	return out
}

// Test sends a test alert through every channel at once and reports each
// result; it does not go through the outbox (nothing is retried).
func (a *Alerter) Test(ctx context.Context) wire.AlertTestResponse {
	now := a.now()
	f := finding{Key: KindTest, Kind: KindTest, Severity: SeverityInfo, Title: "Test alert from spoold on " + a.host,
		Text: "This is a test (spoolctl alerts test). If you read this, this channel works.", Fix: "Nothing to do."}
	al := a.alertFor(f, EventTest, now, now)
	res := make([]wire.AlertTestResult, len(a.channels))
	var wg sync.WaitGroup
	for i, ch := range a.channels {
		wg.Go(func() {
			start := time.Now()
			cctx, cancel := context.WithTimeout(ctx, ch.timeout())
			detail, err := ch.send(cctx, al)
			cancel()
			r := wire.AlertTestResult{Channel: ch.name(), Kind: ch.kind(), OK: err == nil, Detail: detail, Duration: time.Since(start)}
			a.mu.Lock()
			st := a.stats[ch.name()]
			if err != nil {
				r.Error = a.scrub(err.Error())
				st.failed++
				st.lastErr, st.lastErrTime = r.Error, a.now()
				a.metrics.failed.WithLabelValues(ch.name()).Inc()
			} else {
				st.sent++
				st.lastOK = a.now()
				a.metrics.sent.WithLabelValues(ch.name()).Inc()
			}
			a.mu.Unlock()
			res[i] = r
		})
	}
	wg.Wait()
	return wire.AlertTestResponse{Results: res}
}

// accountBroken says why mail through account cannot go out now ("" if it
// can): an active account alert, or delivery holding the account.
func (a *Alerter) accountBroken(account string) string {
	a.mu.Lock()
	for _, r := range a.active {
		if r.Finding.Account == account && (r.Finding.Kind == KindNeedsReauth || r.Finding.Kind == KindMisconfigured || r.Finding.Kind == KindRefreshFailing) {
			a.mu.Unlock()
			return r.Finding.Kind
		}
	}
	a.mu.Unlock()
	if a.src.Accounts != nil {
		for _, s := range a.src.Accounts() {
			if s.Name != account {
				continue
			}
			switch {
			case s.HoldReason != "":
				return "on hold: " + s.HoldReason
			case !s.UpstreamDownSince.IsZero():
				return "upstream down: " + s.UpstreamDownReason
			}
		}
	}
	return ""
}
