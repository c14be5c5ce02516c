package delivery

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"math/rand/v2"
	"net"
	"regexp"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/spoold/spoold/auth"
	"github.com/spoold/spoold/delivery/smtpfake"
	"github.com/spoold/spoold/spool"
	"github.com/spoold/spoold/spool/spooltest"
)

// outageRig is the engine on the real bbolt spool, both on an injected
// clock, delivering to a relay account (no TLS, no AUTH, 10 connections, no
// rate limit) on a scripted upstream whose connections the test can refuse.
type outageRig struct {
	t     *testing.T
	clock *fakeClock
	sp    *spool.Spool
	up    *smtpfake.Server
	eng   *Engine
	reg   *prometheus.Registry
	stop  func()
}

func newOutageRig(t *testing.T, opts func(*Options)) *outageRig {
	t.Helper()
	up := startUpstream(t, smtpfake.Options{TLS: "none", Auth: "none", Dir: t.TempDir()})
	clock := newClock()
	quiet := slog.New(slog.NewTextHandler(io.Discard, nil))
	// No rescuer: the test moves the clock in jumps, and nothing may lose
	// its lease to a jump (no message is active while the clock moves).
	sp := spooltest.OpenTemp(t, spool.Options{Clock: clock.Now, RescueInterval: -1, Logger: quiet})
	reg := prometheus.NewRegistry()
	rng := rand.New(rand.NewPCG(23, 23))
	var rmu sync.Mutex
	o := Options{Clock: clock.Now, Owner: "node-1", Hostname: "spoold.test", ShutdownTimeout: 5 * time.Second,
		Logger: quiet, Dial: up.Dial, Registerer: reg,
		Rand: func() float64 { rmu.Lock(); defer rmu.Unlock(); return rng.Float64() }}
	if opts != nil {
		opts(&o)
	}
	acc := AccountConfig{Name: "relay", Host: up.Host, Port: up.Port, TLS: "none", Auth: "none",
		MaxConnections: 10, RatePerMinute: -1, ConnectTimeout: 10 * time.Second, SenderRule: "keep"}
	eng, err := New([]AccountConfig{acc}, sp, nil, o)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- eng.Run(ctx) }()
	r := &outageRig{t: t, clock: clock, sp: sp, up: up, eng: eng, reg: reg}
	stopped := false
	r.stop = func() {
		if !stopped {
			stopped = true
			cancel()
			if err := <-done; err != nil {
				t.Errorf("Run: %v", err)
			}
		}
	}
	t.Cleanup(r.stop)
	return r
}

// enqueue stores n messages concurrently (sharing group commits); message i
// carries "X-Seq: i".
func (r *outageRig) enqueue(n int) {
	r.t.Helper()
	var wg sync.WaitGroup
	var failed atomic.Int64
	next := atomic.Int64{}
	for w := 0; w < 16; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				i := next.Add(1) - 1
				if i >= int64(n) {
					return
				}
				body := fmt.Sprintf("From: a@office.example\r\nTo: b@dest.example\r\nSubject: m%d\r\nX-Seq: %d\r\n\r\nhello\r\n", i, i)
				if _, err := r.sp.Enqueue(context.Background(), spool.EnqueueRequest{From: "a@office.example",
					To: []string{"b@dest.example"}, Account: "relay"}, strings.NewReader(body)); err != nil {
					failed.Add(1)
				}
			}
		}()
	}
	wg.Wait()
	if failed.Load() > 0 {
		r.t.Fatalf("%d enqueues failed", failed.Load())
	}
}

func (r *outageRig) state() AccountState { return r.eng.AccountStates()[0] }

func (r *outageRig) stats() map[spool.State]int {
	st, err := r.sp.Stats(context.Background())
	if err != nil {
		r.t.Fatal(err)
	}
	return st
}

// step moves the clock by d and waits until the scheduler has run on the new
// time and any probe it started has finished.
func (r *outageRig) step(d time.Duration) {
	r.t.Helper()
	r.clock.Add(d)
	passAfterStep(r.t, r.eng, "relay")
}

// passAfterStep waits, after a clock step, for a scheduler pass that began
// after the step and for any probe of account it started. One more pass is
// not enough: a pass already running when the clock moved (woken by a
// commit just before) ends without seeing the new time. So it waits for
// one pass to end, then for another: that one began after the first ended,
// hence after the step. Each wait wakes the engine, so a pass comes.
func passAfterStep(t testing.TB, e *Engine, account string) {
	t.Helper()
	for range 2 {
		p := e.passes.Load()
		e.wake()
		waitFor(t, "a scheduler pass after the clock step", func() bool { return e.passes.Load() > p })
	}
	waitFor(t, "the probe that pass started", func() bool {
		e.mu.Lock()
		defer e.mu.Unlock()
		return !e.accounts[account].probing
	})
}

// maxAttempts returns the largest attempt count of any stored message.
func (r *outageRig) maxAttempts() int {
	r.t.Helper()
	most, cursor := 0, ""
	for {
		page, err := r.sp.List(context.Background(), spool.Filter{}, cursor, 1000)
		if err != nil {
			r.t.Fatal(err)
		}
		for _, m := range page.Messages {
			most = max(most, m.Attempts)
		}
		if page.Next == "" {
			return most
		}
		cursor = page.Next
	}
}

var seqRe = regexp.MustCompile(`X-Seq: (\d+)`)

// checkExactlyOnce fails unless the upstream received each of n messages once.
func checkExactlyOnce(t *testing.T, up *smtpfake.Server, n int) {
	t.Helper()
	seen := map[string]int{}
	for _, m := range up.Messages() {
		if s := seqRe.FindSubmatch(m.Data); s != nil {
			seen[string(s[1])]++
		}
	}
	dups, missing := 0, 0
	for i := 0; i < n; i++ {
		switch c := seen[fmt.Sprint(i)]; {
		case c == 0:
			missing++
		case c > 1:
			dups += c - 1
		}
	}
	if dups > 0 || missing > 0 {
		t.Errorf("upstream: %d messages missing, %d duplicate copies (of %d)", missing, dups, n)
	}
}

// TestUpstreamOutage2000 is issue 23's scenario: 2,000 messages queued for an
// account whose upstream refuses connections. During the outage only the
// account's probe connects (a handful of connections a minute at most), no
// message uses an attempt, and once the upstream is back all 2,000 are
// delivered within seconds, exactly once, also after an outage long enough
// for per-message backoff to have reached its 1 h maximum.
func TestUpstreamOutage2000(t *testing.T) {
	if testing.Short() {
		t.Skip("2,000 messages through the real spool")
	}
	for _, tc := range []struct {
		name   string
		outage time.Duration
		step   time.Duration
	}{
		{"10min", 10 * time.Minute, 5 * time.Second},
		// Per-message backoff (1m, 2m, 4m ... 1h) would be at its 1 h cap
		// after about 2 h; 3 h also re-parks the queue 12 times.
		{"3h", 3 * time.Hour, 30 * time.Second},
	} {
		t.Run(tc.name, func(t *testing.T) {
			const n = 2000
			r := newOutageRig(t, nil)
			r.up.SetOutage(smtpfake.Refuse)
			r.enqueue(n)
			r.eng.wake()

			onsetStart := time.Now()
			waitFor(t, "upstream_down with every message parked", func() bool {
				return !r.state().UpstreamDownSince.IsZero() && r.stats()[spool.StateDeferred] == n
			})
			onsetDials := r.up.Dials()
			t.Logf("onset: upstream_down after %d connection attempts, %s; all %d messages parked",
				onsetDials, time.Since(onsetStart).Round(time.Millisecond), n)
			if onsetDials > 6 {
				t.Errorf("%d connection attempts before the account was marked down", onsetDials)
			}
			if a := r.maxAttempts(); a != 0 {
				t.Errorf("a message used %d attempts on a refused connection", a)
			}
			if got := testutil.ToFloat64(r.eng.m.upstreamDown.WithLabelValues("relay")); got != 1 {
				t.Errorf("spoold_delivery_upstream_down = %v, want 1", got)
			}

			// The outage, minute by minute on the injected clock.
			perMinute := []int{}
			last, minuteEnd := r.up.Dials(), r.clock.Now().Add(time.Minute)
			end := r.clock.Now().Add(tc.outage)
			for r.clock.Now().Before(end) {
				r.step(tc.step)
				if !r.clock.Now().Before(minuteEnd) {
					d := r.up.Dials()
					perMinute = append(perMinute, d-last)
					last, minuteEnd = d, minuteEnd.Add(time.Minute)
				}
			}
			worst, total := 0, 0
			for _, c := range perMinute {
				worst, total = max(worst, c), total+c
			}
			t.Logf("outage of %s: %d connection attempts in %d minutes (first minutes %v, worst minute %d)",
				tc.outage, total, len(perMinute), perMinute[:min(6, len(perMinute))], worst)
			if worst > 5 {
				t.Errorf("%d connection attempts in one minute of the outage, want a handful (<= 5)", worst)
			}
			if a := r.maxAttempts(); a != 0 {
				t.Errorf("after the outage a message has %d attempts, want 0", a)
			}
			st := r.state()
			if st.UpstreamDownSince.IsZero() || !strings.Contains(st.UpstreamDownReason, "connection refused") {
				t.Errorf("account state during the outage: %+v", st)
			}
			if c := r.stats(); c[spool.StateDeferred] != n || c[spool.StateDead] != 0 {
				t.Errorf("queue during the outage: %v", c)
			}

			// The upstream comes back; the next probe finds it.
			r.up.SetOutage(smtpfake.Up)
			detectStart := r.clock.Now()
			for !r.state().UpstreamDownSince.IsZero() {
				r.step(tc.step)
				if r.clock.Now().Sub(detectStart) > 4*time.Minute {
					t.Fatalf("no probe found the upstream back within 4 min")
				}
			}
			began := time.Now()
			// A bound for a stuck drain, not a speed target (the drain takes
			// seconds; a loaded 2-core CI machine under -race or qemu is slower).
			deadline := began.Add(3 * time.Minute)
			for r.stats()[spool.StateDelivered] != n {
				if time.Now().After(deadline) {
					t.Fatalf("after the upstream came back, %d of %d messages delivered in 3 min: %v", r.stats()[spool.StateDelivered], n, r.stats())
				}
				time.Sleep(10 * time.Millisecond)
			}
			drain := time.Since(began)
			t.Logf("recovery: probe found the upstream %s after it came back (injected clock); %d messages delivered %s after that (real time), over at most %d connections",
				r.clock.Now().Sub(detectStart), n, drain.Round(time.Millisecond), r.up.MaxConcurrent())
			if got := r.up.Count(); got != n {
				t.Errorf("upstream accepted %d, want %d", got, n)
			}
			checkExactlyOnce(t, r.up, n)
			if got := testutil.ToFloat64(r.eng.m.upstreamDown.WithLabelValues("relay")); got != 0 {
				t.Errorf("spoold_delivery_upstream_down = %v after recovery, want 0", got)
			}
			if r.up.MaxConcurrent() > 10 {
				t.Errorf("%d concurrent connections, cap is 10", r.up.MaxConcurrent())
			}
		})
	}
}

// stepClock moves the harness clock by d and waits for a scheduler pass on
// the new time and for any probe it started.
func (h *harness) stepClock(d time.Duration) {
	h.t.Helper()
	h.clock.Add(d)
	passAfterStep(h.t, h.eng, "m365")
}

// outageHarness is newHarness whose upstream connections go through the
// fake's counting dialer (so Refuse refuses).
func outageHarness(t *testing.T, o hopt) *harness {
	t.Helper()
	var up atomic.Pointer[smtpfake.Server]
	user := o.opts
	o.opts = func(op *Options) {
		op.Dial = func(ctx context.Context, network, addr string) (net.Conn, error) {
			return up.Load().Dial(ctx, network, addr)
		}
		if user != nil {
			user(op)
		}
	}
	start := !o.noStart
	o.noStart = true
	h := newHarness(t, o)
	up.Store(h.up)
	if start {
		h.start()
	}
	return h
}

func (h *harness) waitDown() AccountState {
	h.t.Helper()
	var st AccountState
	waitFor(h.t, "account upstream_down", func() bool {
		st = h.eng.AccountStates()[0]
		return !st.UpstreamDownSince.IsZero()
	})
	return st
}

// A message deferred for a reason of its own (a 4xx to its recipient) keeps
// its schedule through an outage and the drain after it; messages parked by
// the outage go at once.
func TestOutageDrainKeepsOwnBackoff(t *testing.T) {
	var slow atomic.Bool
	slow.Store(true)
	h := outageHarness(t, hopt{up: smtpfake.Options{Script: func(c smtpfake.Command) smtpfake.Reply {
		if c.Name == "RCPT" && c.Arg == "slow@dest.example" && slow.Load() {
			return smtpfake.Reply{Code: 451, Enhanced: "4.2.1", Text: "mailbox busy, try later"}
		}
		return smtpfake.Reply{}
	}}, opts: func(o *Options) { o.IdleTimeout = time.Millisecond }})
	own := h.enqueue("slow@dest.example")
	before := h.waitState(own, spool.StateDeferred)
	if before.Attempts != 1 {
		t.Fatalf("own failure: attempts %d", before.Attempts)
	}
	// An open connection would carry the next messages whatever the
	// outage does to new ones.
	waitFor(t, "the connection closed", func() bool { return h.eng.AccountStates()[0].Connections == 0 })

	h.up.SetOutage(smtpfake.Refuse)
	var parked []string
	for i := 0; i < 5; i++ {
		parked = append(parked, h.enqueue())
	}
	st := h.waitDown()
	if !strings.Contains(st.UpstreamDownReason, "connection refused") || st.ConnectFailures < 3 || st.NextProbe.IsZero() {
		t.Errorf("account state: %+v", st)
	}
	for _, id := range parked {
		// Messages a worker had claimed but not sent are released due now
		// ("released unsent"); the next scheduler pass parks them.
		var m *spool.Message
		waitFor(t, id+" parked", func() bool {
			m = h.sp.get(id)
			return m.State == spool.StateDeferred && strings.HasPrefix(m.Reason, reasonUnreachable)
		})
		if m.Attempts != 0 {
			t.Errorf("parked %s: attempts %d reason %q", id, m.Attempts, m.Reason)
		}
	}

	h.up.SetOutage(smtpfake.Up)
	h.stepClock(10 * time.Second) // the first probe (no jitter: Rand is 0.5)
	for _, id := range parked {
		h.waitState(id, spool.StateDelivered)
	}
	after := h.sp.get(own)
	if after.State != spool.StateDeferred || !after.NextAttempt.Equal(before.NextAttempt) || after.Attempts != 1 {
		t.Errorf("own-backoff message after the drain: state %s next %v (was %v) attempts %d",
			after.State, after.NextAttempt, before.NextAttempt, after.Attempts)
	}
	if st := h.eng.AccountStates()[0]; !st.UpstreamDownSince.IsZero() || st.ConnectFailures != 0 {
		t.Errorf("account after recovery: %+v", st)
	}
	slow.Store(false)
	h.stepClock(time.Minute)
	h.waitState(own, spool.StateDelivered)
}

// The lifetime runs during an outage: a parked message is dead-lettered at
// its end with the last connection error as the reason.
func TestOutageLifetimeEndsInDeadLetter(t *testing.T) {
	h := outageHarness(t, hopt{noStart: true, account: func(a *AccountConfig) { a.Retry.Lifetime = time.Hour }})
	h.up.SetOutage(smtpfake.Refuse)
	h.start()
	ids := []string{h.enqueue(), h.enqueue(), h.enqueue(), h.enqueue()}
	h.waitDown()
	for h.clock.Now().Before(time.Date(2026, 3, 1, 13, 1, 0, 0, time.UTC)) {
		h.stepClock(time.Minute)
	}
	for _, id := range ids {
		m := h.waitState(id, spool.StateDead)
		if !strings.Contains(m.Reason, "lifetime of 1h0m0s expired") || !strings.Contains(m.Reason, "connection refused") {
			t.Errorf("dead %s: reason %q", id, m.Reason)
		}
	}
	if n := len(h.up.Messages()); n != 0 {
		t.Errorf("%d messages reached a refusing upstream", n)
	}
}

// 421 at the greeting (a server in maintenance) is an outage too; the probe
// counts in the metrics and the state is visible in AccountStates.
func TestGreeting421MakesUpstreamDown(t *testing.T) {
	reg := prometheus.NewRegistry()
	h := outageHarness(t, hopt{noStart: true, opts: func(o *Options) { o.Registerer = reg }})
	h.up.SetOutage(smtpfake.Greet421)
	h.start()
	ids := []string{h.enqueue(), h.enqueue(), h.enqueue()}
	st := h.waitDown()
	if !strings.Contains(st.UpstreamDownReason, "421") || st.LastError == nil || st.LastError.Code != 421 {
		t.Errorf("state: %+v", st)
	}
	h.stepClock(10 * time.Second) // probe: still 421
	if got := testutil.ToFloat64(h.eng.m.probes.WithLabelValues("m365", "down")); got != 1 {
		t.Errorf("probes down = %v, want 1", got)
	}
	if st := h.eng.AccountStates()[0]; st.UpstreamDownSince.IsZero() || !st.NextProbe.After(h.clock.Now().Add(15*time.Second)) {
		t.Errorf("after a failed probe: %+v (now %v)", st, h.clock.Now())
	}
	h.up.SetOutage(smtpfake.Up)
	h.stepClock(20 * time.Second)
	for _, id := range ids {
		if m := h.waitState(id, spool.StateDelivered); m.Attempts != 1 {
			t.Errorf("%s delivered after %d attempts, want 1", id, m.Attempts)
		}
	}
	if got := testutil.ToFloat64(h.eng.m.probes.WithLabelValues("m365", "up")); got != 1 {
		t.Errorf("probes up = %v, want 1", got)
	}
	if got := testutil.ToFloat64(h.eng.m.upstreamDown.WithLabelValues("m365")); got != 0 {
		t.Errorf("upstream_down gauge = %v", got)
	}
}

// An upstream that goes down and up again and again (refusing, resetting,
// answering 421) while mail flows loses and duplicates nothing.
func TestFlappingUpstreamLosesAndDuplicatesNothing(t *testing.T) {
	const n = 300
	var mode atomic.Int64 // the current smtpfake.Outage
	h := outageHarness(t, hopt{noStart: true, opts: func(o *Options) {
		o.Clock = time.Now
		o.Outage = OutagePolicy{After: 2, First: time.Second, Max: 2 * time.Second}
		o.HoldInterval = 3 * time.Second
	}, account: func(a *AccountConfig) {
		a.Retry = RetryPolicy{First: time.Second, Max: 2 * time.Second}
	}, up: smtpfake.Options{Script: func(c smtpfake.Command) smtpfake.Reply {
		// The link dies under established connections too, between
		// messages (a drop after the final dot could duplicate: that is
		// at-least-once, tested elsewhere).
		if c.Name == "MAIL" && smtpfake.Outage(mode.Load()) != smtpfake.Up {
			return smtpfake.Reply{Drop: true}
		}
		return smtpfake.Reply{}
	}}})
	h.eng.opts.Clock = time.Now
	h.sp.clock = time.Now
	h.start()
	stop := make(chan struct{})
	flapped := make(chan int)
	go func() {
		modes := []smtpfake.Outage{smtpfake.Refuse, smtpfake.Up, smtpfake.Reset, smtpfake.Up, smtpfake.Greet421, smtpfake.Up}
		i := 0
		defer func() { mode.Store(int64(smtpfake.Up)); h.up.SetOutage(smtpfake.Up); flapped <- i }()
		for {
			select {
			case <-stop:
				return
			case <-time.After(150 * time.Millisecond):
			}
			mode.Store(int64(modes[i%len(modes)]))
			h.up.SetOutage(modes[i%len(modes)])
			i++
		}
	}()
	for i := 0; i < n; i++ {
		body := fmt.Sprintf("From: a@office.example\r\nTo: b@dest.example\r\nSubject: m%d\r\nX-Seq: %d\r\n\r\nhello\r\n", i, i)
		h.sp.add(spool.EnqueueRequest{From: "a@office.example", To: []string{"b@dest.example"}, Account: "m365"}, body)
		if i%50 == 0 {
			time.Sleep(200 * time.Millisecond) // mail keeps arriving while the upstream flaps
		}
	}
	time.Sleep(2 * time.Second)
	close(stop)
	flips := <-flapped
	// Wait for the spool, not the upstream's count: the fake counts a
	// message before its 250, so the last Delivered commit may be pending.
	allDelivered := func() bool {
		for _, m := range h.sp.all() {
			if m.State != spool.StateDelivered {
				return false
			}
		}
		return len(h.sp.all()) == n
	}
	deadline := time.Now().Add(60 * time.Second)
	for !allDelivered() && time.Now().Before(deadline) {
		time.Sleep(20 * time.Millisecond)
	}
	for _, m := range h.sp.all() {
		if m.State != spool.StateDelivered {
			t.Errorf("%s: %s (%s)", m.ID, m.State, m.Reason)
		}
	}
	checkExactlyOnce(t, h.up, n)
	most := 0
	for _, m := range h.sp.all() {
		most = max(most, m.Attempts)
	}
	t.Logf("flapping: %d outage switches; %d connection attempts for %d messages; most attempts of one message: %d",
		flips, h.up.Dials(), n, most)
}

// Messages parked by an outage outlive the process: the next engine on the
// same spool starts the account upstream_down with a probe due at once, and
// drains them as soon as it connects instead of after HoldInterval.
func TestOutageParkedMessagesDrainAfterRestart(t *testing.T) {
	r := newOutageRig(t, nil)
	r.up.SetOutage(smtpfake.Refuse)
	r.enqueue(50)
	r.eng.wake()
	waitFor(t, "all parked", func() bool {
		return !r.state().UpstreamDownSince.IsZero() && r.stats()[spool.StateDeferred] == 50
	})
	r.stop()
	r.up.SetOutage(smtpfake.Up)

	acc := r.eng.AccountStates()
	if len(acc) != 1 {
		t.Fatal(acc)
	}
	eng2, err := New([]AccountConfig{{Name: "relay", Host: r.up.Host, Port: r.up.Port, TLS: "none", Auth: "none",
		SenderRule: "keep", RatePerMinute: -1}}, r.sp, nil, Options{Clock: r.clock.Now, Owner: "node-1",
		Hostname: "spoold.test", Logger: slog.New(slog.NewTextHandler(io.Discard, nil)), Dial: r.up.Dial})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- eng2.Run(ctx) }()
	defer func() { cancel(); <-done }()
	// The injected clock stands still: only the start-up probe can drain them.
	waitFor(t, "all delivered after the restart", func() bool { return r.stats()[spool.StateDelivered] == 50 })
	checkExactlyOnce(t, r.up, 50)
}

// A recovery racing the parking of a big queue leaves nothing parked: the
// drain may list the messages before the park has postponed them, so the
// park makes them due again itself.
func TestRecoveryRacingParkLeavesNothingParked(t *testing.T) {
	h := outageHarness(t, hopt{noStart: true})
	a := h.eng.accounts["m365"]
	now := h.clock.Now()
	h.eng.mu.Lock()
	a.downSince, a.downReason = now, "connection refused"
	a.downErr = &SMTPError{Command: "CONNECT", Class: ClassTransient, Text: "connection refused"}
	h.eng.mu.Unlock()
	for i := 0; i < 600; i++ {
		h.enqueue()
	}
	// The upstream comes back, and its drain completes, just after the
	// park claimed a batch and before it postponed any of it.
	var once sync.Once
	h.sp.onPostpone = func(string) {
		once.Do(func() {
			h.eng.upstreamBack(a, "test")
			h.eng.wg.Wait()
		})
	}
	h.eng.parkDown(context.Background(), a)
	h.eng.wg.Wait()
	for _, m := range h.sp.all() {
		if m.NextAttempt.After(now) {
			t.Fatalf("%s still parked until %v (%s)", m.ID, m.NextAttempt, m.Reason)
		}
	}
}

// The probe schedule: 10 s, doubling, capped at 3 min, jittered ±20 %.
func TestProbeSchedule(t *testing.T) {
	e := &Engine{opts: Options{Outage: OutagePolicy{}.WithDefaults()}}
	now := time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)
	for _, tc := range []struct {
		step int
		rnd  float64
		want time.Duration
	}{
		{0, 0.5, 10 * time.Second}, {1, 0.5, 20 * time.Second}, {2, 0.5, 40 * time.Second},
		{4, 0.5, 160 * time.Second}, {5, 0.5, 3 * time.Minute}, {50, 0.5, 3 * time.Minute},
		{0, 0, 8 * time.Second}, {50, 0.999999, 216 * time.Second},
	} {
		e.opts.Rand = func() float64 { return tc.rnd }
		if got := e.probeDelay(tc.step, now).Sub(now); got.Round(time.Second) != tc.want {
			t.Errorf("step %d rnd %v: %s, want %s", tc.step, tc.rnd, got, tc.want)
		}
	}
}

// A probe that cannot get a token says nothing about the upstream: the
// account is held as for any token failure (messages wait, no attempts) and
// stays upstream_down; the probe after the hold connects and drains.
func TestProbeWithoutTokenHoldsAndRetries(t *testing.T) {
	h := outageHarness(t, hopt{noStart: true})
	h.up.SetOutage(smtpfake.Refuse)
	h.start()
	ids := []string{h.enqueue(), h.enqueue(), h.enqueue()}
	h.waitDown()
	h.up.SetOutage(smtpfake.Up)
	h.tokens.set("", fmt.Errorf("token endpoint: %w", auth.ErrTransient))
	h.stepClock(10 * time.Second)
	st := h.eng.AccountStates()[0]
	if st.UpstreamDownSince.IsZero() || !strings.Contains(st.HoldReason, "token endpoint unavailable") {
		t.Fatalf("after a probe without a token: %+v", st)
	}
	if got := testutil.ToFloat64(h.eng.m.probes.WithLabelValues("m365", "error")); got != 1 {
		t.Errorf("probes error = %v", got)
	}
	h.tokens.set("tok-2", nil)
	h.stepClock(time.Minute) // TokenRetry ends the hold; the probe is due by then
	for _, id := range ids {
		if m := h.waitState(id, spool.StateDelivered); m.Attempts != 1 {
			t.Errorf("%s: %d attempts", id, m.Attempts)
		}
	}
}

// A 421 greeting while another session of the account is up is the server's
// connection limit (Exchange answers "421 4.3.2 ... concurrent server
// connections" when a mailbox has too many), not an outage: the account is
// throttled, never upstream_down, and no message uses an attempt for it.
func TestGreeting421WhileConnectedIsAThrottle(t *testing.T) {
	inData := make(chan struct{}, 1)
	gate := make(chan struct{})
	var held atomic.Bool
	h := outageHarness(t, hopt{noStart: true, up: smtpfake.Options{Script: func(c smtpfake.Command) smtpfake.Reply {
		if c.Name == "DATA" && held.CompareAndSwap(false, true) {
			inData <- struct{}{}
			<-gate // the first session stays up, busy with its message
		}
		return smtpfake.Reply{}
	}}})
	h.start()
	ids := []string{h.enqueue()}
	<-inData
	h.up.SetOutage(smtpfake.Greet421) // new connections only: the busy session lives on
	for i := 0; i < 5; i++ {
		ids = append(ids, h.enqueue())
	}
	waitFor(t, "a refused second connection", func() bool { return h.up.Accepted() >= 2 })
	for i := 0; i < 6; i++ {
		h.stepClock(30 * time.Second)
		if st := h.eng.AccountStates()[0]; !st.UpstreamDownSince.IsZero() {
			t.Fatalf("a connection limit while a session works made the account upstream_down: %+v", st)
		}
	}
	close(gate)
	h.up.SetOutage(smtpfake.Up)
	for i := 0; i < 4; i++ {
		h.stepClock(time.Minute) // past the throttle pause
	}
	for _, id := range ids {
		if m := h.waitState(id, spool.StateDelivered); m.Attempts != 1 {
			t.Errorf("%s delivered after %d attempts, want 1", id, m.Attempts)
		}
	}
}
