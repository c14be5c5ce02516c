package main

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"os"
	"reflect"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"

	"github.com/spoold/spoold/auth"
	"github.com/spoold/spoold/auth/seal"
	"github.com/spoold/spoold/cmd/spoold/adminapi"
	"github.com/spoold/spoold/cmd/spoold/adminapi/wire"
	"github.com/spoold/spoold/cmd/spoold/alerts"
	"github.com/spoold/spoold/configs"
	"github.com/spoold/spoold/delivery"
	"github.com/spoold/spoold/ingest/scanfolder"
	"github.com/spoold/spoold/ingest/smtpd"
	"github.com/spoold/spoold/spool"
)

// daemon owns the running subsystems. Start order follows the data flow
// (spool, auth, delivery, ingest, admin/HTTP); shutdown reverses it so that
// nothing is accepted that cannot be stored and the spool closes last.
type daemon struct {
	log     *slog.Logger
	level   *slog.LevelVar
	cfgPath string
	started time.Time

	mu  sync.Mutex // guards cfg during reloads
	cfg *configs.Config

	reg         *prometheus.Registry
	spool       spool.Backend // bbolt or PostgreSQL (spool.backend)
	auth        *auth.Manager
	engine      *delivery.Engine
	pause       *sharedPause // nil unless the spool is shared (PostgreSQL)
	smtp        *smtpd.Server
	scans       *scanfolder.Watcher
	http        *httpServer
	admin       *http.Server
	adminLn     net.Listener
	accounts    *daemonAccounts
	reloads     reloadStatus
	alerter     *alerts.Alerter
	vault       *seal.Vault
	auditCancel context.CancelFunc
	auditDone   chan struct{}

	engineCancel context.CancelFunc
	engineDone   chan error
}

// ensureDataDir creates the data directory 0700: it holds the spool, tokens
// and the admin socket, which no other local user may read.
func ensureDataDir(dir string) error {
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return fmt.Errorf("data dir %s: %w", dir, err)
	}
	return nil
}

// spoolVerifier checks an existing spool.db in a child process of this
// binary (spoold -verify-spool) before the spool maps it: damage that makes
// bbolt panic on a goroutine of its own then refuses the start with a clear
// error instead of crashing spoold at every restart.
func spoolVerifier() func(string) error {
	exe, err := os.Executable()
	if err != nil {
		return func(string) error {
			return fmt.Errorf("spool: cannot find the spoold binary to check the database: %w", err)
		}
	}
	return spool.ChildVerifier(exe, "-verify-spool")
}

// startDaemon brings every subsystem up or, on the first failure, tears down
// what was started and returns the error.
func startDaemon(ctx context.Context, p *plan, cfgPath string, log *slog.Logger, level *slog.LevelVar) (_ *daemon, err error) {
	cfg := p.cfg
	d := &daemon{log: log, level: level, cfg: cfg, cfgPath: cfgPath, started: time.Now(), reg: prometheus.NewRegistry()}
	defer func() {
		if err != nil {
			d.shutdown()
		}
	}()
	d.reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))

	if err := ensureDataDir(cfg.DataDir); err != nil {
		return nil, err
	}
	// The spool counts spoold_enqueued_total on each commit: every source
	// (SMTP, scans, failure notices) once, in one place.
	enqueued := newEnqueuedCounter(d.reg)
	spoolOpts := p.spool
	spoolOpts.Verify, spoolOpts.Logger = spoolVerifier(), log
	spoolOpts.Enqueued = func(k spool.SourceKind) { enqueued.WithLabelValues(string(k)).Inc() }
	d.spool, err = openSpool(ctx, p, spoolOpts, log)
	if err != nil {
		return nil, err
	}
	if err := d.openSecrets(ctx, p, spoolOpts); err != nil {
		return nil, err
	}
	d.reg.MustRegister(newQueueCollector(d.spool, log, d.started))

	d.auth, err = auth.NewManager(p.oauth, d.spool, auth.Options{Logger: log, Registerer: d.reg, Sealer: d.vault.Keyring()})
	if err != nil {
		return nil, err
	}
	d.auth.Start(ctx)
	d.syncSharedAuth(ctx) // spoolbackend.go

	engineOpts := p.engine
	engineOpts.Logger, engineOpts.Registerer = log, d.reg
	d.engine, err = delivery.New(p.accounts, d.spool, d.auth, engineOpts)
	if err != nil {
		return nil, err
	}
	if cfg.Delivery.Paused {
		d.engine.Pause(true)
		log.Warn("delivery is paused by configuration (delivery.paused: true)")
	}
	d.pause = newSharedPause(ctx, d.spool, d.engine, log) // clusterpause.go
	engineCtx, cancel := context.WithCancel(context.Background())
	d.engineCancel = cancel
	d.engineDone = make(chan error, 1)
	go func() { d.engineDone <- d.engine.Run(engineCtx) }()

	if len(cfg.SMTPListeners) > 0 {
		d.smtp, err = smtpd.New(p.listeners, p.routes, d.spool, smtpd.Options{
			DataDir:    p.tlsDir(),
			Logger:     log,
			Registerer: d.reg,
		})
		if err != nil {
			return nil, err
		}
		if err := d.smtp.Start(); err != nil {
			return nil, bindProblem(err)
		}
	}
	if len(cfg.ScanFolders) > 0 {
		if cfgPath == "" {
			// The quick start must work in an empty directory; a configured
			// folder that is missing is more likely an unmounted share, which
			// creating it would hide.
			for _, f := range cfg.ScanFolders {
				if err := os.MkdirAll(f.Path, 0o750); err != nil {
					return nil, fmt.Errorf("scan folder %s: %w", f.Path, err)
				}
			}
		}
		d.scans, err = scanfolder.New(p.folders, d.spool, scanfolder.Options{Logger: log, Registerer: d.reg})
		if err != nil {
			return nil, err
		}
		if err := d.scans.Start(ctx); err != nil {
			return nil, err
		}
	}

	if err := d.startAlerter(ctx, p); err != nil {
		return nil, err
	}
	d.accounts = &daemonAccounts{cfg: cfg, auth: d.auth, engine: d.engine, pause: d.pause}
	svc := adminapi.NewService(d.spool, d.accounts, daemonInfo{d: d}, adminapi.Options{Logger: log})
	d.adminLn, err = adminapi.Listen(cfg.Admin.Socket, 0o660, cfg.Admin.Group)
	if err != nil {
		return nil, err
	}
	d.admin, err = adminapi.NewSocketServer(svc.Handler(), p.access, log)
	if err != nil {
		return nil, err
	}
	d.startAuditPruner(p.access.AuditRetention)
	go func() {
		if err := d.admin.Serve(d.adminLn); err != nil && !errors.Is(err, http.ErrServerClosed) {
			log.Error("admin socket: serve", "err", err)
		}
	}()
	log.Info("admin socket listening", "path", cfg.Admin.Socket)

	if cfg.HTTP.Listen != "" {
		if d.http, err = d.startWeb(p, svc); err != nil {
			return nil, err
		}
	}
	log.Info("spoold started", d.startedAttrs(p)...)
	return d, nil
}

// startedAttrs says in one line what the daemon watches and where mail
// goes: the first thing an admin looks for after a start.
func (d *daemon) startedAttrs(p *plan) []any {
	var smtp, scans, accounts []string
	addrs := map[string]net.Addr{}
	if d.smtp != nil {
		addrs = d.smtp.Addrs()
	}
	for _, l := range p.listeners {
		addr := l.Addr
		if a, ok := addrs[l.Name]; ok {
			addr = a.String()
		}
		smtp = append(smtp, fmt.Sprintf("%s %s (tls %s)", l.Name, addr, l.TLS))
	}
	for _, f := range p.folders {
		scans = append(scans, fmt.Sprintf("%s -> %s", f.Path, f.Account))
	}
	for _, a := range p.accounts {
		if a.Transport == "file" {
			accounts = append(accounts, fmt.Sprintf("%s: .eml files in %s", a.Name, a.Dir))
		} else {
			accounts = append(accounts, fmt.Sprintf("%s: %s:%d as %s", a.Name, a.Host, a.Port, cmp.Or(a.Mailbox, a.Username, "sender")))
		}
	}
	attrs := []any{"version", version(), "data_dir", p.cfg.DataDir,
		"smtp", strings.Join(smtp, ", "), "scan_folders", strings.Join(scans, ", "),
		"accounts", strings.Join(accounts, "; "), "default_route", p.cfg.Routes.Default,
		"admin_socket", p.cfg.Admin.Socket}
	if d.http != nil {
		attrs = append(attrs, "http", d.http.Addr().String())
	}
	return attrs
}

// ready reports why the daemon cannot serve yet, for /readyz.
func (d *daemon) ready() error {
	if d.spool == nil {
		return errors.New("spool not open")
	}
	if _, err := d.spool.Stats(context.Background()); err != nil {
		return fmt.Errorf("spool: %w", err)
	}
	d.mu.Lock()
	n := len(d.cfg.SMTPListeners)
	d.mu.Unlock()
	if n > 0 && (d.smtp == nil || len(d.smtp.Addrs()) < n) {
		return errors.New("SMTP listeners not up")
	}
	return nil
}

func (d *daemon) listenerInfo() []wire.ListenerInfo {
	d.mu.Lock()
	cfg := d.cfg
	d.mu.Unlock()
	var out []wire.ListenerInfo
	var addrs map[string]net.Addr
	if d.smtp != nil {
		addrs = d.smtp.Addrs()
	}
	for _, l := range cfg.SMTPListeners {
		li := wire.ListenerInfo{Name: l.Name, Kind: "smtp", Addr: l.Listen, TLS: string(l.TLS)}
		if a, ok := addrs[l.Name]; ok {
			li.Addr = a.String()
		} else {
			li.Error = "not listening"
		}
		out = append(out, li)
	}
	if d.http != nil {
		out = append(out, wire.ListenerInfo{Name: "http", Kind: "http", Addr: d.http.Addr().String()})
	}
	out = append(out, wire.ListenerInfo{Name: "admin", Kind: "admin", Addr: cfg.Admin.Socket})
	return out
}

// reload applies a changed config file (SIGHUP): accounts, routes, users and
// scan folders change in place; listener addresses, TLS and the data dir need
// a restart, which the log says.
func (d *daemon) reload() (err error) {
	var warnings []string
	defer d.reloads.begin()(d.cfgPath, &err, &warnings)
	if d.cfgPath == "" {
		d.log.Info("reload: running the embedded default configuration; nothing to reload")
		return errEmbeddedDefault
	}
	// Every subsystem validates before any applies: all or nothing.
	p, err := loadPlan(d.cfgPath)
	if err != nil {
		d.log.Error("reload: config has problems; keeping the running configuration", "config", d.cfgPath, "problems", err.Error())
		return
	}
	cfg := p.cfg
	d.mu.Lock()
	old := d.cfg
	d.mu.Unlock()
	for _, why := range restartNeeded(old, cfg) {
		d.log.Warn("reload: change needs a restart to take effect", "change", why)
		warnings = append(warnings, why+": needs a restart to take effect")
	}
	// Prepare auth's change (it reads key files) before applying anything;
	// delivery's Reload fails only where validation did; auth's Apply cannot.
	authChange, err := d.auth.PrepareReload(p.oauth)
	if err != nil {
		d.log.Error("reload: accounts (auth); keeping the running configuration", "err", err)
		return
	}
	if err := d.engine.Reload(p.accounts); err != nil {
		d.log.Error("reload: accounts (delivery); keeping the running configuration", "err", err)
		return err
	}
	authChange.Apply()
	if err := setLevel(d.level, string(cfg.Log.Level)); err != nil {
		d.log.Warn("reload: log level", "err", err)
	}
	if d.smtp != nil {
		d.smtp.SetRoutes(p.routes)
		for _, l := range p.listeners {
			if err := d.smtp.SetUsers(l.Name, l.Users); err != nil {
				d.log.Warn("reload: SMTP users", "listener", l.Name, "err", err)
			}
		}
	}
	if d.scans != nil {
		if err := d.scans.Reload(p.folders); err != nil {
			d.log.Error("reload: scan folders", "err", err)
			warnings = append(warnings, "scan folders: "+err.Error())
		}
	}
	d.mu.Lock()
	// Keep the settings that only a restart changes, so status stays truthful.
	cfg.SMTPListeners = mergeListeners(old.SMTPListeners, cfg.SMTPListeners)
	users := cfg.HTTP.ConsoleUsers // console users change live (reloadWeb)
	cfg.DataDir, cfg.HTTP, cfg.Admin, cfg.Spool = old.DataDir, old.HTTP, old.Admin, old.Spool
	cfg.HTTP.ConsoleUsers = users
	d.cfg = cfg
	d.mu.Unlock()
	d.accounts.setConfig(cfg)
	d.reloadWeb(p)
	// A reload is the admin saying "I fixed it": accounts parked as
	// misconfigured or refresh_failing get another try (a lost grant still
	// needs spoolctl auth login).
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	for _, h := range d.auth.AllHealth(ctx) {
		if h.Status == auth.StatusMisconfigured || h.Status == auth.StatusRefreshFailing {
			if err := d.auth.Resume(ctx, h.Account); err != nil {
				d.log.Warn("reload: resuming account", "account", h.Account, "err", err)
			} else {
				d.log.Info("reload: account gets another try", "account", h.Account, "was", string(h.Status))
			}
		}
	}
	d.log.Info("configuration reloaded", "config", d.cfgPath)
	return nil
}

// mergeListeners keeps the running listeners (addresses and TLS need a
// restart) but takes their users from the new config.
func mergeListeners(running, next []configs.SMTPListener) []configs.SMTPListener {
	byName := map[string]configs.SMTPListener{}
	for _, l := range next {
		byName[l.Name] = l
	}
	out := make([]configs.SMTPListener, len(running))
	for i, l := range running {
		if n, ok := byName[l.Name]; ok {
			l.Users = n.Users
		}
		out[i] = l
	}
	return out
}

// restartNeeded names the changes a reload cannot apply in place: listener
// sockets and their settings (only users change live), the data dir, HTTP,
// admin socket, spool and delivery worker settings, and adding the first scan
// folder or listener (the subsystem was not started).
func restartNeeded(old, next *configs.Config) []string {
	var why []string
	if old.DataDir != next.DataDir {
		why = append(why, "data_dir")
	}
	if c := httpChange(old.HTTP, next.HTTP); c != "" {
		why = append(why, c)
	}
	if old.Admin != next.Admin {
		why = append(why, "admin")
	}
	if old.Spool != next.Spool {
		why = append(why, "spool")
	}
	if old.Delivery != next.Delivery {
		why = append(why, "delivery (workers, shutdown_timeout, paused, outage)")
	}
	if !reflect.DeepEqual(old.Alerts, next.Alerts) {
		why = append(why, "alerts")
	}
	if !reflect.DeepEqual(old.Secrets, next.Secrets) {
		why = append(why, "secrets")
	}
	if len(old.ScanFolders) == 0 && len(next.ScanFolders) > 0 {
		why = append(why, "scan_folders (the first folder)")
	}
	if len(old.SMTPListeners) != len(next.SMTPListeners) {
		why = append(why, "smtp_listeners (added or removed)")
		return why
	}
	for i := range old.SMTPListeners {
		o, n := old.SMTPListeners[i], next.SMTPListeners[i]
		o.Users, n.Users = nil, nil
		if !reflect.DeepEqual(o, n) {
			why = append(why, "smtp_listeners["+old.SMTPListeners[i].Name+"] settings other than users")
		}
	}
	return why
}

// shutdown stops taking new mail at once, then gives SMTP sessions in DATA
// and in-flight deliveries delivery.shutdown_timeout, side by side, to
// finish (sessions still open then are closed; unfinished deliveries are
// released to the queue), then stops the admin and HTTP endpoints and closes
// the spool last. Side by side keeps the whole stop within one timeout plus
// a few seconds, well inside systemd's TimeoutStopSec.
func (d *daemon) shutdown() {
	budget := 30 * time.Second
	if d.cfg != nil && d.cfg.Delivery.ShutdownTimeout > 0 {
		budget = d.cfg.Delivery.ShutdownTimeout
	}
	var wg sync.WaitGroup
	if d.smtp != nil {
		wg.Go(func() {
			ctx, cancel := context.WithTimeout(context.Background(), budget)
			defer cancel()
			if err := d.smtp.Shutdown(ctx); err != nil {
				d.log.Warn("shutdown: SMTP", "err", err)
			}
		})
	}
	if d.scans != nil {
		wg.Go(func() {
			if err := d.scans.Close(); err != nil {
				d.log.Warn("shutdown: scan folders", "err", err)
			}
		})
	}
	if d.engineCancel != nil {
		wg.Go(func() {
			d.engineCancel()
			if err := <-d.engineDone; err != nil && !errors.Is(err, context.Canceled) {
				d.log.Warn("shutdown: delivery", "err", err)
			}
		})
	}
	wg.Wait()
	if d.alerter != nil {
		d.alerter.Stop() // records the clean stop; before the spool closes
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if d.admin != nil {
		_ = d.admin.Shutdown(ctx)
		_ = os.Remove(d.cfg.Admin.Socket)
	} else if d.adminLn != nil {
		_ = d.adminLn.Close()
	}
	if d.http != nil {
		_ = d.http.Shutdown(ctx)
	}
	if d.auth != nil {
		_ = d.auth.Close()
	}
	if d.auditCancel != nil {
		d.auditCancel()
		<-d.auditDone
	}
	if d.spool != nil {
		if err := d.spool.Close(); err != nil {
			d.log.Error("shutdown: closing spool", "err", err)
		}
	}
}

// bindProblem names the config key of an address that cannot be bound, and
// says what to do, so "address already in use" does not read as spoold's
// own fault.
func bindProblem(err error) error {
	var key, addr string
	var be *smtpd.BindError
	var he *httpBindError
	switch {
	case errors.As(err, &be):
		key, addr = fmt.Sprintf("smtp_listeners[%d].listen", be.Index), be.Addr
	case errors.As(err, &he):
		key, addr = "http.listen", he.addr
	default:
		return err
	}
	fix := "choose another address for " + key
	switch {
	case errors.Is(err, syscall.EADDRINUSE):
		fix = "another program (or another spoold) already listens there: stop it or " + fix
	case errors.Is(err, syscall.EACCES):
		fix = "ports below 1024 need CAP_NET_BIND_SERVICE (see the systemd unit), or " + fix
	}
	return fmt.Errorf("%s: cannot listen on %s: %w; %s", key, addr, errors.Unwrap(err), fix)
}
