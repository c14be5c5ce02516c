package alerts

import (
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

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/spoold/spoold/auth"
	"github.com/spoold/spoold/configs/secret"
	"github.com/spoold/spoold/delivery"
	"github.com/spoold/spoold/ingest/scanfolder"
	"github.com/spoold/spoold/spool"
)

// clock is a settable test clock.
type clock struct {
	mu sync.Mutex
	t  time.Time
}

func (c *clock) now() time.Time      { c.mu.Lock(); defer c.mu.Unlock(); return c.t }
func (c *clock) add(d time.Duration) { c.mu.Lock(); c.t = c.t.Add(d); c.mu.Unlock() }

// world is what the fake sources report; tests change it between checks.
type world struct {
	mu       sync.Mutex
	health   []auth.Health
	states   []delivery.AccountState
	paused   bool
	folders  []scanfolder.FolderStatus
	diskFree uint64
}

func (w *world) sources(dataDir string) Sources {
	return Sources{
		Health: func(context.Context) []auth.Health {
			w.mu.Lock()
			defer w.mu.Unlock()
			return append([]auth.Health(nil), w.health...)
		},
		Accounts: func() []delivery.AccountState { w.mu.Lock(); defer w.mu.Unlock(); return w.states },
		Paused:   func() bool { w.mu.Lock(); defer w.mu.Unlock(); return w.paused },
		Folders:  func() []scanfolder.FolderStatus { w.mu.Lock(); defer w.mu.Unlock(); return w.folders },
		DiskFree: func(string) (uint64, error) { w.mu.Lock(); defer w.mu.Unlock(); return w.diskFree, nil },
		DataDir:  dataDir,
	}
}

func (w *world) set(f func(w *world)) { w.mu.Lock(); f(w); w.mu.Unlock() }

// receiver is a loopback webhook that records what it is sent.
type receiver struct {
	srv    *httptest.Server
	mu     sync.Mutex
	bodies [][]byte
	fail   int // answer 500 to this many requests first
}

func newReceiver(t *testing.T) *receiver {
	r := &receiver{}
	r.srv = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, req *http.Request) {
		b, _ := io.ReadAll(req.Body)
		r.mu.Lock()
		defer r.mu.Unlock()
		if r.fail > 0 {
			r.fail--
			http.Error(w, "try later", http.StatusInternalServerError)
			return
		}
		r.bodies = append(r.bodies, b)
	}))
	t.Cleanup(r.srv.Close)
	return r
}

// alerts decodes the JSON alerts received so far.
func (r *receiver) alerts(t *testing.T) []Alert {
	t.Helper()
	r.mu.Lock()
	defer r.mu.Unlock()
	var out []Alert
	for _, b := range r.bodies {
		var a Alert
		if err := json.Unmarshal(b, &a); err != nil {
			t.Fatalf("webhook body is not an alert: %v: %s", err, b)
		}
		out = append(out, a)
	}
	return out
}

func (r *receiver) raw() []string {
	r.mu.Lock()
	defer r.mu.Unlock()
	var out []string
	for _, b := range r.bodies {
		out = append(out, string(b))
	}
	return out
}

type rig struct {
	t     *testing.T
	dir   string
	sp    *spool.Spool
	clock *clock
	world *world
	hook  *receiver
	opts  Options
	deps  Deps
	a     *Alerter
	reg   *prometheus.Registry
}

func quiet() *slog.Logger { return slog.New(slog.NewTextHandler(io.Discard, nil)) }

// newRig opens a spool in a temp dir and an alerter with one JSON webhook;
// edit changes the options before the alerter is built.
func newRig(t *testing.T, edit func(o *Options)) *rig {
	t.Helper()
	r := &rig{t: t, dir: t.TempDir(), clock: &clock{t: time.Date(2025, 4, 1, 9, 0, 0, 0, time.UTC)},
		world: &world{diskFree: 50e9}, hook: newReceiver(t)}
	r.opts = Options{Webhooks: []WebhookConfig{{Name: "hook", URL: secret.Secret(r.hook.srv.URL + "/hook/SECRETPATH123")}}}
	if edit != nil {
		edit(&r.opts)
	}
	r.opts = r.opts.WithDefaults()
	if ps := r.opts.Validate(); len(ps) > 0 {
		t.Fatalf("options: %v", ps)
	}
	r.open()
	return r
}

func (r *rig) open() {
	r.t.Helper()
	sp, err := spool.Open(r.dir, spool.Options{Clock: r.clock.now, RescueInterval: -1, Logger: quiet(), LockTimeout: time.Second})
	if err != nil {
		r.t.Fatal(err)
	}
	r.sp = sp
	r.t.Cleanup(func() { _ = sp.Close() })
	r.reg = prometheus.NewRegistry()
	r.deps = Deps{Queue: sp, Store: sp, Sources: r.world.sources(r.dir), Logger: quiet(), Registerer: r.reg,
		Clock: r.clock.now, Hostname: "printhost", Senders: map[string]string{"m365": "scanner@contoso.com"},
		Secrets: []secret.Secret{secret.Secret(r.hook.srv.URL + "/hook/SECRETPATH123"), "client-secret-value-42"}}
	a, err := New(r.opts, r.deps)
	if err != nil {
		r.t.Fatal(err)
	}
	if err := a.Load(context.Background()); err != nil {
		r.t.Fatal(err)
	}
	r.a = a
}

// restart simulates a stop (clean: Stop is called; else a kill -9) and a
// new start over the same spool.
func (r *rig) restart(clean bool) {
	r.t.Helper()
	if clean {
		r.a.Stop()
	}
	if err := r.sp.Close(); err != nil {
		r.t.Fatal(err)
	}
	r.open()
}

// check runs one check and delivers what it queued.
func (r *rig) check() {
	r.t.Helper()
	if err := r.a.Check(context.Background()); err != nil {
		r.t.Fatal(err)
	}
	r.flush()
}

func (r *rig) flush() {
	for _, ch := range r.a.channels {
		r.a.SendDue(context.Background(), ch.name())
	}
}

// events lists "event key" of every alert the webhook received.
func (r *rig) events() []string {
	var out []string
	for _, a := range r.hook.alerts(r.t) {
		out = append(out, string(a.Event)+" "+a.Key)
	}
	return out
}

func (r *rig) wantEvents(want ...string) {
	r.t.Helper()
	got := r.events()
	if strings.Join(got, "\n") != strings.Join(want, "\n") {
		r.t.Fatalf("webhook got\n  %s\nwant\n  %s", strings.Join(got, "\n  "), strings.Join(want, "\n  "))
	}
}

func (r *rig) enqueue(account string, n int) []string {
	r.t.Helper()
	var ids []string
	for range n {
		id, err := r.sp.Enqueue(context.Background(), spool.EnqueueRequest{From: "alice@contoso.com", To: []string{"bob@example.com"}, Account: account,
			Source: spool.Source{Kind: spool.SourceSMTP}}, strings.NewReader("Subject: x\r\n\r\nhello\r\n"))
		if err != nil {
			r.t.Fatal(err)
		}
		ids = append(ids, id)
	}
	return ids
}

// TestConditions raises and resolves each condition with the injected
// clock: one "started", then one "resolved", nothing in between.
func TestConditions(t *testing.T) {
	now := time.Date(2025, 4, 1, 9, 0, 0, 0, time.UTC)
	msHealth := func(h auth.Health) auth.Health {
		h.Account, h.Provider, h.Flow, h.Mailbox = "m365", "microsoft", "authcode", "scanner@contoso.com"
		if h.Status == "" {
			h.Status = auth.StatusOK
		}
		return h
	}
	cases := []struct {
		name    string
		key     string
		opts    func(o *Options)
		start   func(r *rig)
		end     func(r *rig)
		wantFix string
	}{
		{name: "needs reauth", key: "account_needs_reauth/m365", wantFix: "spoolctl auth login m365",
			start: func(r *rig) {
				r.enqueue("m365", 2)
				r.world.set(func(w *world) {
					w.health = []auth.Health{msHealth(auth.Health{Status: auth.StatusNeedsReauth, Reason: "the grant was revoked (invalid_grant)"})}
				})
			},
			end: func(r *rig) {
				r.world.set(func(w *world) { w.health = []auth.Health{msHealth(auth.Health{LastRefresh: now})} })
			}},
		{name: "misconfigured", key: "account_misconfigured/m365", wantFix: "spoolctl reload",
			start: func(r *rig) {
				r.world.set(func(w *world) {
					w.health = []auth.Health{msHealth(auth.Health{Status: auth.StatusMisconfigured, Reason: "AADSTS7000215: invalid client secret; put the secret's value, not its ID"})}
				})
			},
			end: func(r *rig) {
				r.world.set(func(w *world) { w.health = []auth.Health{msHealth(auth.Health{LastRefresh: now})} })
			}},
		{name: "token endpoint failing", key: "account_refresh_failing/m365", wantFix: "HTTPS_PROXY",
			start: func(r *rig) {
				r.world.set(func(w *world) {
					w.health = []auth.Health{msHealth(auth.Health{Status: auth.StatusRefreshFailing, Reason: "token endpoint answered 503", LastRefresh: now})}
				})
			},
			end: func(r *rig) {
				r.world.set(func(w *world) { w.health = []auth.Health{msHealth(auth.Health{LastRefresh: now})} })
			}},
		{name: "client secret expiring", key: "client_secret_expiring/m365", wantFix: "client_secret_expires",
			start: func(r *rig) {
				r.world.set(func(w *world) {
					w.health = []auth.Health{msHealth(auth.Health{LastRefresh: now, ClientSecretExpires: now.Add(10 * 24 * time.Hour)})}
				})
			},
			end: func(r *rig) {
				r.world.set(func(w *world) {
					w.health = []auth.Health{msHealth(auth.Health{LastRefresh: now, ClientSecretExpires: now.Add(400 * 24 * time.Hour)})}
				})
			}},
		{name: "google testing grant expiring", key: "grant_expiring/gmail", wantFix: "Publish the OAuth app",
			start: func(r *rig) {
				r.world.set(func(w *world) {
					w.health = []auth.Health{{Account: "gmail", Provider: "google", Flow: "authcode", Status: auth.StatusOK, GrantedAt: r.clock.now().Add(-6 * 24 * time.Hour)}}
				})
			},
			end: func(r *rig) {
				r.world.set(func(w *world) {
					w.health = []auth.Health{{Account: "gmail", Provider: "google", Flow: "authcode", Status: auth.StatusOK, GrantedAt: r.clock.now()}}
				})
			}},
		{name: "microsoft idle grant expiring", key: "grant_expiring/m365", wantFix: "spoolctl auth login m365",
			start: func(r *rig) {
				r.world.set(func(w *world) {
					w.health = []auth.Health{msHealth(auth.Health{LastRefresh: r.clock.now().Add(-89 * 24 * time.Hour)})}
				})
			},
			end: func(r *rig) {
				r.world.set(func(w *world) { w.health = []auth.Health{msHealth(auth.Health{LastRefresh: r.clock.now()})} })
			}},
		{name: "queue depth", key: "queue_depth", opts: func(o *Options) { n := 2; o.QueueDepth = &n }, wantFix: "spoolctl status",
			start: func(r *rig) { r.enqueue("m365", 3) },
			end: func(r *rig) {
				p, _ := r.sp.List(context.Background(), spool.Filter{State: spool.StateQueued}, "", 10)
				if err := r.sp.Hold(context.Background(), p.Messages[0].ID, "test"); err != nil {
					t.Fatal(err)
				}
			}},
		{name: "queue age", key: "queue_age", opts: func(o *Options) { d := time.Hour; o.QueueAge = &d }, wantFix: "spoolctl show",
			start: func(r *rig) { r.enqueue("m365", 1); r.clock.add(2 * time.Hour) },
			end: func(r *rig) {
				p, _ := r.sp.List(context.Background(), spool.Filter{State: spool.StateQueued}, "", 10)
				if err := r.sp.Delete(context.Background(), p.Messages[0].ID); err != nil {
					t.Fatal(err)
				}
			}},
		{name: "disk free", key: "disk_free", wantFix: "Free space",
			start: func(r *rig) { r.world.set(func(w *world) { w.diskFree = 200e6 }) },
			end:   func(r *rig) { r.world.set(func(w *world) { w.diskFree = 5e9 }) }},
		{name: "scan failures", key: "scan_failures/scans", wantFix: ".error.txt",
			start: func(r *rig) {
				dir := filepath.Join(r.dir, "scans")
				must(t, os.MkdirAll(filepath.Join(dir, "failed", "kim@example.com"), 0o755))
				must(t, os.WriteFile(filepath.Join(dir, "failed", "kim@example.com", "a.pdf"), []byte("%PDF"), 0o644))
				must(t, os.WriteFile(filepath.Join(dir, "failed", "kim@example.com", "a.pdf.error.txt"), []byte("too big"), 0o644))
				r.world.set(func(w *world) {
					w.folders = []scanfolder.FolderStatus{{Name: "scans", Path: dir, LastError: "scanfolder: a.pdf: too big"}}
				})
			},
			end: func(r *rig) { must(t, os.RemoveAll(filepath.Join(r.dir, "scans", "failed"))) }},
		{name: "account held by delivery (daily budget)", key: "account_held/m365", wantFix: "fallback",
			start: func(r *rig) {
				r.enqueue("m365", 3)
				r.world.set(func(w *world) {
					w.states = []delivery.AccountState{{Name: "m365", HeldUntil: r.clock.now().Add(2 * time.Hour),
						HoldReason: "daily recipient limit reached: 10000 of 10000 in the last 24 h"}}
				})
			},
			end: func(r *rig) { r.world.set(func(w *world) { w.states = nil }) }},
		{name: "delivery paused", key: "delivery_paused", wantFix: "spoolctl resume",
			start: func(r *rig) {
				r.world.set(func(w *world) { w.paused = true })
				r.check() // first seen paused: not yet an alert
				r.wantEvents()
				r.clock.add(61 * time.Minute)
			},
			end: func(r *rig) { r.world.set(func(w *world) { w.paused = false }) }},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			r := newRig(t, tc.opts)
			r.check()
			r.wantEvents()
			tc.start(r)
			r.check()
			r.wantEvents("started " + tc.key)
			got := r.hook.alerts(t)[0]
			if !strings.Contains(got.Fix, tc.wantFix) {
				t.Errorf("fix %q does not name %q", got.Fix, tc.wantFix)
			}
			if got.Title == "" || got.Text == "" || got.Since.IsZero() || got.Host != "printhost" || got.Schema != 1 {
				t.Errorf("incomplete alert: %+v", got)
			}
			r.clock.add(time.Minute)
			r.check() // still on: nothing new before the reminder interval
			r.wantEvents("started " + tc.key)
			if st := r.a.Status(); len(st.Active) != 1 || st.Active[0].Key != tc.key {
				t.Errorf("Status().Active = %+v", st.Active)
			}
			tc.end(r)
			r.clock.add(time.Minute)
			r.check()
			r.wantEvents("started "+tc.key, "resolved "+tc.key)
			r.check()
			r.wantEvents("started "+tc.key, "resolved "+tc.key)
			if n := testutil.ToFloat64(r.a.metrics.sent.WithLabelValues("hook")); n != 2 {
				t.Errorf("spoold_alerts_sent_total{channel=hook} = %v, want 2", n)
			}
		})
	}
}

func must(t *testing.T, err error) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
}

// TestNeedsReauthSaysWhatWaits: the alert names the account's waiting
// messages and the exact fix.
func TestNeedsReauthSaysWhatWaits(t *testing.T) {
	r := newRig(t, nil)
	r.enqueue("m365", 3)
	r.world.set(func(w *world) {
		w.health = []auth.Health{{Account: "m365", Provider: "microsoft", Flow: "authcode", Mailbox: "scanner@contoso.com", Status: auth.StatusNeedsReauth, Reason: "invalid_grant"}}
	})
	r.check()
	al := r.hook.alerts(t)[0]
	if al.Waiting != 3 || !strings.Contains(al.Text, "3 messages") || al.Fix != "Run: spoolctl auth login m365 (or open the web console's account page) and sign in as scanner@contoso.com. The waiting messages are sent as soon as it works." {
		t.Errorf("alert = %+v", al)
	}
}

func TestReminders(t *testing.T) {
	r := newRig(t, func(o *Options) { d := 6 * time.Hour; o.ReminderInterval = &d })
	r.world.set(func(w *world) { w.diskFree = 1 })
	r.check()
	r.clock.add(5 * time.Hour)
	r.check()
	r.wantEvents("started disk_free")
	r.clock.add(time.Hour)
	r.check()
	r.clock.add(time.Hour)
	r.check()
	r.wantEvents("started disk_free", "reminder disk_free")
	r.clock.add(5 * time.Hour)
	r.check()
	r.wantEvents("started disk_free", "reminder disk_free", "reminder disk_free")
	if st := r.a.Status(); st.Active[0].Reminders != 2 {
		t.Errorf("reminders = %d", st.Active[0].Reminders)
	}
}

// TestNoDuplicatesAcrossRestart: an alert raised before a clean restart or
// a kill -9 is not raised again, a notification that was still owed is sent
// once after the restart, and the kill -9 is reported once.
func TestNoDuplicatesAcrossRestart(t *testing.T) {
	r := newRig(t, nil)
	r.world.set(func(w *world) { w.diskFree = 1 })
	r.check()
	r.wantEvents("started disk_free")

	r.restart(true)
	r.check()
	r.wantEvents("started disk_free")

	// Raised, committed, not yet sent: then kill -9.
	r.world.set(func(w *world) {
		w.health = []auth.Health{{Account: "m365", Provider: "microsoft", Flow: "authcode", Status: auth.StatusNeedsReauth}}
	})
	if err := r.a.Check(context.Background()); err != nil {
		t.Fatal(err)
	}
	r.restart(false)
	r.check()
	r.wantEvents("started disk_free", "started account_needs_reauth/m365", "notice unclean_stop")
	r.restart(true)
	r.check()
	r.wantEvents("started disk_free", "started account_needs_reauth/m365", "notice unclean_stop")
	if st := r.a.Status(); len(st.Active) != 2 {
		t.Errorf("active after restarts: %+v", st.Active)
	}
}

// TestRetryWithBackoff: a failing channel is retried with doubling waits,
// counted, and delivers once it works.
func TestRetryWithBackoff(t *testing.T) {
	r := newRig(t, nil)
	r.hook.mu.Lock()
	r.hook.fail = 3
	r.hook.mu.Unlock()
	r.world.set(func(w *world) { w.diskFree = 1 })
	r.check()
	next := r.a.SendDue(context.Background(), "hook")
	if want := r.clock.now().Add(30 * time.Second); !next.Equal(want) {
		t.Fatalf("first retry at %v, want %v (retry.first)", next, want)
	}
	r.clock.add(30 * time.Second)
	next = r.a.SendDue(context.Background(), "hook")
	if want := r.clock.now().Add(time.Minute); !next.Equal(want) {
		t.Fatalf("second retry at %v, want %v (doubled)", next, want)
	}
	st := r.a.Status().Channels[0]
	if st.Pending != 1 || st.Failed != 2 || !strings.Contains(st.LastError, "500") || strings.Contains(st.LastError, "SECRETPATH") {
		t.Errorf("channel status = %+v", st)
	}
	r.clock.add(time.Minute)
	r.a.SendDue(context.Background(), "hook")
	r.clock.add(2 * time.Minute)
	if next := r.a.SendDue(context.Background(), "hook"); !next.IsZero() {
		t.Errorf("still pending after success: next %v", next)
	}
	r.wantEvents("started disk_free")
	if n := testutil.ToFloat64(r.a.metrics.failed.WithLabelValues("hook")); n != 3 {
		t.Errorf("failed_total = %v, want 3", n)
	}
	if n := testutil.ToFloat64(r.a.metrics.raised.WithLabelValues(KindDiskFree)); n != 1 {
		t.Errorf("raised_total = %v, want 1", n)
	}
}

// TestGiveUp drops a notification after retry.give_up and says so.
func TestGiveUp(t *testing.T) {
	r := newRig(t, func(o *Options) { o.Retry.GiveUp = time.Hour })
	r.hook.mu.Lock()
	r.hook.fail = 1000
	r.hook.mu.Unlock()
	r.world.set(func(w *world) { w.diskFree = 1 })
	r.check()
	for range 20 {
		r.clock.add(10 * time.Minute)
		r.flush()
	}
	if st := r.a.Status().Channels[0]; st.Pending != 0 {
		t.Errorf("still pending after give_up: %+v", st)
	}
}

// TestSlowChannelDoesNotBlock: a webhook that never answers holds up
// neither the checks nor another channel.
func TestSlowChannelDoesNotBlock(t *testing.T) {
	release := make(chan struct{})
	slow := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { <-release }))
	t.Cleanup(func() { close(release); slow.Close() })
	r := newRig(t, func(o *Options) {
		o.Webhooks = append(o.Webhooks, WebhookConfig{Name: "slow", URL: secret.Secret(slow.URL), Timeout: time.Minute})
		o.CheckInterval = time.Hour
	})
	r.world.set(func(w *world) { w.diskFree = 1 })
	r.a.now = time.Now // real time for the loops
	if err := r.a.Start(context.Background()); err != nil {
		t.Fatal(err)
	}
	defer r.a.Stop()
	// Generous bounds: the slow webhook hangs for its whole minute, so a
	// blocking defect still fails, and a loaded machine does not.
	deadline := time.Now().Add(30 * time.Second)
	for len(r.hook.alerts(t)) == 0 {
		if time.Now().After(deadline) {
			t.Fatal("the fast webhook got nothing while the slow one hangs")
		}
		time.Sleep(10 * time.Millisecond)
	}
	done := make(chan error, 1)
	go func() { done <- r.a.Check(context.Background()) }()
	select {
	case err := <-done:
		if err != nil {
			t.Fatal(err)
		}
	case <-time.After(30 * time.Second):
		t.Fatal("Check is blocked by the hanging channel")
	}
}

// TestChannelsEndToEnd: the same alert through a Teams webhook, a Slack
// webhook, a command (JSON on stdin, SPOOLD_ALERT_* in the environment)
// and e-mail queued through the spool; no body holds a configured secret.
func TestChannelsEndToEnd(t *testing.T) {
	teams, slack := newReceiver(t), newReceiver(t)
	dir := t.TempDir()
	script := filepath.Join(dir, "notify.sh")
	out := filepath.Join(dir, "out")
	must(t, os.WriteFile(script, []byte("#!/bin/sh\ncat > "+out+".json\nenv | grep '^SPOOLD_ALERT_' > "+out+".env\nenv > "+out+".allenv\n"), 0o755))
	t.Setenv("SPOOLD_TEST_SECRET", "client-secret-value-42")
	r := newRig(t, func(o *Options) {
		o.Webhooks = append(o.Webhooks,
			WebhookConfig{Name: "teams", URL: secret.Secret(teams.srv.URL + "/workflows/KEY-teams-9876"), Format: FormatTeams},
			WebhookConfig{Name: "slack", URL: secret.Secret(slack.srv.URL + "/services/T000/B000/XXXXSLACK"), Format: FormatSlack})
		o.Commands = []CommandConfig{{Name: "script", Command: []string{script}}}
		o.Email = EmailConfig{Account: "m365", To: []string{"admin@contoso.com"}}
	})
	r.deps.Secrets = append(r.deps.Secrets, secret.Secret(teams.srv.URL+"/workflows/KEY-teams-9876"), secret.Secret(slack.srv.URL+"/services/T000/B000/XXXXSLACK"))
	r.deps.Registerer = nil
	r.a.Stop() // replaced by one with more secrets: a clean stop, no unclean-stop notice
	a, err := New(r.opts, r.deps)
	must(t, err)
	must(t, a.Load(context.Background()))
	r.a = a
	// A source that quotes a secret (it must not, but if it did).
	r.world.set(func(w *world) {
		w.health = []auth.Health{{Account: "gmail", Provider: "google", Flow: "authcode", Status: auth.StatusMisconfigured,
			Reason: "the token endpoint refused client secret client-secret-value-42"}}
	})
	r.check()

	var bodies []string
	for _, rc := range []*receiver{r.hook, teams, slack} {
		got := rc.raw()
		if len(got) != 1 {
			t.Fatalf("webhook got %d bodies, want 1", len(got))
		}
		bodies = append(bodies, got[0])
	}
	if !strings.Contains(bodies[1], `"type":"AdaptiveCard"`) || !strings.Contains(bodies[1], "application/vnd.microsoft.card.adaptive") || !strings.Contains(bodies[1], "PROBLEM: Account gmail is misconfigured") {
		t.Errorf("teams body: %s", bodies[1])
	}
	var sl map[string]string
	must(t, json.Unmarshal([]byte(bodies[2]), &sl))
	if !strings.HasPrefix(sl["text"], ":red_circle: *PROBLEM: Account gmail is misconfigured*") || !strings.Contains(sl["text"], "*Fix:* ") {
		t.Errorf("slack body: %s", bodies[2])
	}
	js, err := os.ReadFile(out + ".json")
	must(t, err)
	var fromCmd Alert
	must(t, json.Unmarshal(js, &fromCmd))
	if fromCmd.Key != "account_misconfigured/gmail" {
		t.Errorf("command stdin: %s", js)
	}
	env, err := os.ReadFile(out + ".env")
	must(t, err)
	if !strings.Contains(string(env), "SPOOLD_ALERT_KIND=account_misconfigured\n") || !strings.Contains(string(env), "SPOOLD_ALERT_ACCOUNT=gmail\n") {
		t.Errorf("command env: %s", env)
	}
	allEnv, err := os.ReadFile(out + ".allenv")
	must(t, err)
	bodies = append(bodies, string(js), string(env), string(allEnv))

	p, err := r.sp.List(context.Background(), spool.Filter{State: spool.StateQueued, Account: "m365"}, "", 10)
	must(t, err)
	if len(p.Messages) != 1 || p.Messages[0].Recipients[0].Addr != "admin@contoso.com" || p.Messages[0].From != "" {
		t.Fatalf("alert e-mail in the spool: %+v", p.Messages)
	}
	rc, err := r.sp.OpenBody(p.Messages[0].ID)
	must(t, err)
	mail, _ := io.ReadAll(rc)
	rc.Close()
	if !strings.Contains(string(mail), "Subject: [spoold printhost] PROBLEM: Account gmail is misconfigured") || !strings.Contains(string(mail), "From: \"spoold on printhost\" <scanner@contoso.com>") {
		t.Errorf("alert e-mail:\n%s", mail)
	}
	bodies = append(bodies, string(mail))
	for _, b := range bodies {
		for _, s := range []string{"client-secret-value-42", "SECRETPATH123", "KEY-teams-9876", "XXXXSLACK"} {
			if strings.Contains(b, s) {
				t.Errorf("a body contains the secret %q:\n%s", s, b)
			}
		}
	}
	if !strings.Contains(bodies[0], "[redacted]") {
		t.Errorf("the secret the reason quoted was not redacted: %s", bodies[0])
	}
	// The queue does not hold a secret either (the outbox is persisted).
	st, err := r.sp.AlertState(context.Background())
	must(t, err)
	for k, v := range st {
		if strings.Contains(string(v), "client-secret-value-42") {
			t.Errorf("stored alert record %s holds a secret", k)
		}
	}
}

// TestEmailAccountBroken: when the alert's e-mail account is the broken
// one, the e-mail channel says so and the webhook carries the alert.
func TestEmailAccountBroken(t *testing.T) {
	r := newRig(t, func(o *Options) { o.Email = EmailConfig{Account: "m365", To: []string{"admin@contoso.com"}} })
	r.world.set(func(w *world) {
		w.health = []auth.Health{{Account: "m365", Provider: "microsoft", Flow: "authcode", Status: auth.StatusNeedsReauth}}
	})
	r.check()
	r.wantEvents("started account_needs_reauth/m365")
	if n, _ := r.sp.Stats(context.Background()); n[spool.StateQueued] != 0 {
		t.Errorf("an alert e-mail was queued through the broken account: %v", n)
	}
	var email *struct{ failed int }
	for _, c := range r.a.Status().Channels {
		if c.Name == ChannelEmail {
			email = &struct{ failed int }{c.Failed}
			if c.Pending != 0 || !strings.Contains(c.LastError, "m365 cannot send now") {
				t.Errorf("email channel: %+v", c)
			}
		}
	}
	if email == nil || email.failed != 1 {
		t.Errorf("email channel failure not counted: %+v", r.a.Status().Channels)
	}
	// Once the account works again, the "resolved" goes out by e-mail too.
	r.world.set(func(w *world) {
		w.health = []auth.Health{{Account: "m365", Provider: "microsoft", Flow: "authcode", Status: auth.StatusOK, LastRefresh: r.clock.now()}}
	})
	r.check()
	if n, _ := r.sp.Stats(context.Background()); n[spool.StateQueued] != 1 {
		t.Errorf("the resolved alert was not queued as e-mail: %v", n)
	}
}

// TestCommandTimeout: a command that hangs is killed at its timeout and
// counted as a failure.
func TestCommandTimeout(t *testing.T) {
	dir := t.TempDir()
	script := filepath.Join(dir, "hang.sh")
	must(t, os.WriteFile(script, []byte("#!/bin/sh\nexec sleep 60\n"), 0o755))
	r := newRig(t, func(o *Options) {
		o.Webhooks = nil
		o.Commands = []CommandConfig{{Name: "hang", Command: []string{script}, Timeout: 200 * time.Millisecond}}
	})
	res := r.a.Test(context.Background())
	if len(res.Results) != 1 || res.Results[0].OK || !strings.Contains(res.Results[0].Error, "did not finish within") {
		t.Fatalf("Test = %+v", res)
	}
	if res.Results[0].Duration > 10*time.Second {
		t.Errorf("took %s", res.Results[0].Duration)
	}
}

// TestAlertsTest sends a test through every channel and reports each.
func TestAlertsTest(t *testing.T) {
	bad := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { http.Error(w, "nope", http.StatusForbidden) }))
	t.Cleanup(bad.Close)
	r := newRig(t, func(o *Options) {
		o.Webhooks = append(o.Webhooks, WebhookConfig{Name: "bad", URL: secret.Secret(bad.URL + "/k/SECRETPATH123")})
		o.Email = EmailConfig{Account: "m365", To: []string{"admin@contoso.com"}}
	})
	res := r.a.Test(context.Background())
	byName := map[string]bool{}
	for _, x := range res.Results {
		byName[x.Channel] = x.OK
		if strings.Contains(x.Error+x.Detail, "SECRETPATH123") {
			t.Errorf("result shows the URL's secret: %+v", x)
		}
	}
	if !byName["hook"] || byName["bad"] || !byName[ChannelEmail] || len(res.Results) != 3 {
		t.Errorf("results = %+v", res.Results)
	}
	r.wantEvents("test test")
}

// TestDeadLetterDigest: new dead letters make one digest per interval,
// listing them; alert e-mails that died are left out.
func TestDeadLetterDigest(t *testing.T) {
	r := newRig(t, nil)
	ctx := context.Background()
	kill := func(n int) {
		r.enqueue("m365", n)
		ms, err := r.sp.Claim(ctx, r.clock.now(), n, "w")
		must(t, err)
		for _, m := range ms {
			must(t, r.sp.Dead(ctx, m.ID, "w", spool.Result{Now: r.clock.now(), Reason: "550 5.7.60 SendAsDenied"}))
		}
	}
	r.check()
	r.clock.add(time.Minute)
	kill(2)
	r.check()
	r.wantEvents("notice dead_letters")
	if al := r.hook.alerts(t)[0]; !strings.Contains(al.Text, "SendAsDenied") || !strings.HasPrefix(al.Title, "2 new") {
		t.Errorf("digest = %+v", al)
	}
	r.clock.add(time.Minute)
	kill(1)
	r.check() // within the digest interval: waits
	r.wantEvents("notice dead_letters")
	r.clock.add(time.Hour)
	r.check()
	r.wantEvents("notice dead_letters", "notice dead_letters")
	if al := r.hook.alerts(t)[1]; !strings.HasPrefix(al.Title, "1 new") {
		t.Errorf("second digest = %+v", al)
	}
	r.clock.add(2 * time.Hour)
	r.check()
	r.wantEvents("notice dead_letters", "notice dead_letters")
}

// TestUncleanStop: only a run without Stop is reported, once.
func TestUncleanStop(t *testing.T) {
	r := newRig(t, nil)
	r.check()
	r.restart(true)
	r.check()
	r.wantEvents()
	r.restart(false)
	r.check()
	r.wantEvents("notice unclean_stop")
	r.check()
	r.wantEvents("notice unclean_stop")
}

// TestDelayWarning: the sender of a message still waiting after
// delay_warning gets one warning; off by default.
func TestDelayWarning(t *testing.T) {
	if (Options{}).WithDefaults().DelayWarning != 0 {
		t.Fatal("delay warnings are on by default")
	}
	r := newRig(t, func(o *Options) { o.DelayWarning = 4 * time.Hour })
	ids := r.enqueue("m365", 1)
	r.clock.add(3 * time.Hour)
	r.check()
	ctx := context.Background()
	if st, _ := r.sp.Stats(ctx); st[spool.StateQueued] != 1 {
		t.Fatalf("warned too early: %v", st)
	}
	r.clock.add(2 * time.Hour)
	r.check()
	r.check()
	p, err := r.sp.List(ctx, spool.Filter{State: spool.StateQueued}, "", 10)
	must(t, err)
	var warnings []*spool.Message
	for _, m := range p.Messages {
		if m.Source.Kind == spool.SourceNotice {
			warnings = append(warnings, m)
		}
	}
	if len(warnings) != 1 || warnings[0].Recipients[0].Addr != "alice@contoso.com" || warnings[0].Source.NoticeFor != ids[0] {
		t.Fatalf("warnings = %+v", warnings)
	}
	rc, err := r.sp.OpenBody(warnings[0].ID)
	must(t, err)
	body, _ := io.ReadAll(rc)
	rc.Close()
	if !strings.Contains(string(body), "Subject: Delayed Mail (still being retried)") || !strings.Contains(string(body), "bob@example.com") {
		t.Errorf("warning:\n%s", body)
	}
	// After a restart it is not sent again.
	r.restart(true)
	r.clock.add(time.Hour)
	r.check()
	if st, _ := r.sp.Stats(ctx); st[spool.StateQueued] != 2 {
		t.Errorf("queue after restart: %v", st)
	}
}

func TestValidate(t *testing.T) {
	zero := time.Duration(0)
	short := time.Second
	neg := -1
	o := Options{
		QueueAge: &short, QueueDepth: &neg, ReminderInterval: &zero,
		Email:    EmailConfig{To: []string{"Admin <admin@contoso.com>"}},
		Webhooks: []WebhookConfig{{URL: "ftp://x"}, {Name: "email", URL: "https://ok.example/x", Format: "xml"}},
		Commands: []CommandConfig{{}, {Command: []string{"notify"}}},
	}.WithDefaults()
	var keys []string
	for _, p := range o.Validate() {
		keys = append(keys, p.Key)
		if strings.Contains(p.Reason, "ftp://") {
			t.Errorf("a reason quotes the webhook URL: %s", p)
		}
	}
	want := "queue_age queue_depth email.account email.to[0] webhooks[0].url webhooks[1].name webhooks[1].format commands[0].command commands[1].command"
	if strings.Join(keys, " ") != want {
		t.Errorf("problems at\n  %s\nwant\n  %s", strings.Join(keys, " "), want)
	}
	if ps := (Options{}).WithDefaults().Validate(); len(ps) != 0 {
		t.Errorf("defaults do not validate: %v", ps)
	}
}

// TestNoChannels: without channels alerts are still raised, listed and
// logged, and nothing waits in an outbox.
func TestNoChannels(t *testing.T) {
	r := newRig(t, func(o *Options) { o.Webhooks = nil })
	r.world.set(func(w *world) { w.diskFree = 1 })
	r.check()
	st := r.a.Status()
	if len(st.Active) != 1 || len(st.Channels) != 0 {
		t.Errorf("status = %+v", st)
	}
	if s, _ := r.sp.AlertState(context.Background()); len(s) == 0 {
		t.Error("no state stored")
	} else {
		for k := range s {
			if strings.HasPrefix(k, keyOut) {
				t.Errorf("outbox item without a channel: %s", k)
			}
		}
	}
}

var _ = errors.New
