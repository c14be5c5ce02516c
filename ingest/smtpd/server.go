// Package smtpd owns spoold's SMTP submission listeners: the go-smtp servers,
// their access control (allowed networks, AUTH PLAIN/LOGIN with bcrypt,
// sender/recipient domains, AUTH failure throttling), limits (size, recipients,
// connections, timeouts, line length), TLS (none/STARTTLS/implicit with a
// persisted self-signed certificate), SMTP smuggling defence, routing of each
// message to an upstream account, and streaming each accepted body into the
// spool through Enqueue. A client hears 250 only after the spool committed.
//
// It owns every listener setting's default and validation
// (ListenerConfig.WithDefaults and Validate, ValidateListeners): spoold
// -check and start-up judge the same ListenerConfig.
package smtpd

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"maps"
	"net"
	"net/netip"
	"sync"
	"sync/atomic"
	"time"

	"github.com/emersion/go-smtp"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/spoold/spoold/configs/field"
	"github.com/spoold/spoold/spool"
)

// Enqueuer is what smtpd needs from the spool (*spool.Spool satisfies it).
type Enqueuer interface {
	Enqueue(ctx context.Context, req spool.EnqueueRequest, body io.Reader) (string, error)
}

// Options configures New. Zero values take the defaults noted.
type Options struct {
	DataDir    string                // self-signed certificate is persisted here
	Logger     *slog.Logger          // default slog.Default(); records carry component=smtpd
	Clock      func() time.Time      // default time.Now; for headers and the AUTH throttle
	Registerer prometheus.Registerer // nil: metrics are kept but not registered
	// AuthFailureDelay is how long a failed AUTH waits before its 535 reply,
	// to slow password guessing; default 1s, negative disables.
	AuthFailureDelay time.Duration
}

// Server runs the configured SMTP listeners.
type Server struct {
	listeners []*listenerState
	byName    map[string]*listenerState
	enq       Enqueuer
	log       *slog.Logger
	clock     func() time.Time
	authDelay time.Duration
	routes    atomic.Pointer[Routes]
	metrics   *metrics
	bufs      sync.Pool // *bodyBufs

	baseCtx context.Context // cancelled when Shutdown gives up waiting
	cancel  context.CancelFunc

	mu       sync.Mutex
	started  bool
	shutting bool
	bg       sync.WaitGroup // refusal writers
	refusing chan struct{}  // semaphore of refusal writers
	serving  sync.WaitGroup // Serve loops
}

// listenerState is one listener's config and runtime state.
type listenerState struct {
	srv       *Server
	cfg       ListenerConfig
	log       *slog.Logger
	tlsConfig *tls.Config
	users     atomic.Pointer[userTable]
	throttle  *authThrottle
	smtp      *smtp.Server
	ln        net.Listener

	// Guarded by srv.mu.
	conns map[*trackedConn]struct{}
	perIP map[netip.Addr]int

	stressed atomic.Bool // written under srv.mu; read by sessions setting deadlines
}

// New fills the listener configs' defaults and validates them as
// ValidateListeners does (its error wraps the field.Problems), loads or
// creates TLS certificates and prepares the servers. Nothing listens until
// Start.
func New(listeners []ListenerConfig, routes Routes, enq Enqueuer, opts Options) (*Server, error) {
	if enq == nil {
		return nil, errors.New("smtpd: nil Enqueuer")
	}
	if len(listeners) == 0 {
		return nil, errors.New("smtpd: no listeners configured")
	}
	s := &Server{
		enq:       enq,
		log:       opts.Logger,
		clock:     opts.Clock,
		authDelay: opts.AuthFailureDelay,
		byName:    make(map[string]*listenerState, len(listeners)),
	}
	s.bufs.New = func() any { return newBodyBufs() }
	s.refusing = make(chan struct{}, maxRefusing)
	if s.log == nil {
		s.log = slog.Default()
	}
	s.log = s.log.With("component", "smtpd")
	if s.clock == nil {
		s.clock = time.Now
	}
	if s.authDelay == 0 {
		s.authDelay = time.Second
	}
	var err error
	if s.metrics, err = newMetrics(opts.Registerer); err != nil {
		return nil, err
	}
	s.SetRoutes(routes)
	s.baseCtx, s.cancel = context.WithCancel(context.Background())

	cfgs, ps := prepareListeners(listeners, opts.DataDir)
	if len(ps) > 0 {
		return nil, listenersError(ps)
	}
	var selfSigned *tls.Certificate
	for _, cfg := range cfgs {
		ls := &listenerState{
			srv:      s,
			cfg:      cfg,
			log:      s.log.With("listener", cfg.Name),
			throttle: newAuthThrottle(cfg.AuthFailureLimit, cfg.AuthFailureWindow),
			conns:    make(map[*trackedConn]struct{}),
			perIP:    make(map[netip.Addr]int),
		}
		ls.users.Store(newUserTable(cfg.Users))
		if cfg.TLS != TLSNone {
			var cert tls.Certificate
			if cfg.CertFile != "" {
				cert, err = tls.LoadX509KeyPair(cfg.CertFile, cfg.KeyFile)
				if err != nil {
					return nil, fmt.Errorf("smtpd: listener %q: loading certificate %s: %w", cfg.Name, cfg.CertFile, err)
				}
			} else {
				if selfSigned == nil {
					c, created, err := loadOrCreateSelfSigned(opts.DataDir, cfg.Hostname, s.clock())
					if err != nil {
						return nil, err
					}
					verb := "loaded"
					if created {
						verb = "generated"
					}
					s.log.Info("self-signed certificate "+verb, "dir", opts.DataDir,
						"sha256_fingerprint", fingerprint(c))
					selfSigned = &c
				}
				cert = *selfSigned
			}
			ls.tlsConfig = &tls.Config{Certificates: []tls.Certificate{cert}, MinVersion: cfg.MinTLSVersion}
			if cfg.MinTLSVersion < tls.VersionTLS12 {
				ls.log.Warn("listener allows TLS versions below 1.2 for old devices; they are weak",
					"min_tls", tls.VersionName(cfg.MinTLSVersion))
			}
		}
		for _, p := range cfg.AllowedNetworks {
			if p.Bits() == 0 {
				ls.log.Warn("listener allows clients from every address without AUTH", "network", p.String())
			}
		}
		ls.smtp = ls.newSMTPServer()
		s.listeners = append(s.listeners, ls)
		s.byName[cfg.Name] = ls
	}
	return s, nil
}

func (ls *listenerState) newSMTPServer() *smtp.Server {
	cfg := ls.cfg
	srv := smtp.NewServer(smtp.BackendFunc(ls.newSession))
	srv.Domain = cfg.Hostname
	srv.MaxRecipients = cfg.MaxRecipients
	srv.MaxMessageBytes = cfg.MaxMessageSize
	srv.MaxLineLength = cfg.MaxLineLength
	srv.ReadTimeout = cfg.ReadTimeout
	srv.WriteTimeout = cfg.WriteTimeout
	srv.AllowInsecureAuth = cfg.Legacy
	srv.ErrorLog = slogPrintf{ls.log}
	srv.CommandHook = ls.commandHook
	if cfg.TLS == TLSStartTLS {
		srv.TLSConfig = ls.tlsConfig
	}
	return srv
}

// slogPrintf adapts go-smtp's error log (connection-level errors such as
// failed TLS handshakes; never AUTH payloads) to slog.
type slogPrintf struct{ log *slog.Logger }

func (l slogPrintf) Printf(format string, v ...any) {
	l.log.Info("connection error", "err", fmt.Sprintf(format, v...))
}
func (l slogPrintf) Println(v ...any) { l.log.Info("connection error", "err", fmt.Sprint(v...)) }

// BindError is a listener that could not bind its address; Index is its
// position in the configs New got, so the daemon can name the config key.
type BindError struct {
	Index    int
	Listener string
	Addr     string
	Err      error
}

func (e *BindError) Error() string {
	return fmt.Sprintf("smtpd: listener %q cannot listen on %s: %v", e.Listener, e.Addr, e.Err)
}

func (e *BindError) Unwrap() error { return e.Err }

// Start binds every listener (closing all of them again if any bind fails)
// and serves them in the background. A failed bind is a *BindError.
func (s *Server) Start() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.started {
		return errors.New("smtpd: already started")
	}
	if s.shutting {
		return errors.New("smtpd: shut down")
	}
	for i, ls := range s.listeners {
		l, err := net.Listen("tcp", ls.cfg.Addr)
		if err != nil {
			for _, prev := range s.listeners[:i] {
				_ = prev.ln.Close()
				prev.ln = nil
			}
			return &BindError{Index: i, Listener: ls.cfg.Name, Addr: ls.cfg.Addr, Err: err}
		}
		ls.ln = &limitListener{Listener: l, ls: ls}
	}
	s.started = true
	for _, ls := range s.listeners {
		ls.log.Info("listener started", "addr", ls.ln.Addr().String(), "tls", string(ls.cfg.TLS))
		s.serving.Add(1)
		go func(ls *listenerState) {
			defer s.serving.Done()
			if err := ls.smtp.Serve(ls.ln); err != nil && !errors.Is(err, net.ErrClosed) {
				ls.log.Error("listener stopped", "err", err)
			}
		}(ls)
	}
	return nil
}

// Addrs returns the bound address of each listener by name (after Start).
func (s *Server) Addrs() map[string]net.Addr {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := make(map[string]net.Addr, len(s.listeners))
	for _, ls := range s.listeners {
		if ls.ln != nil {
			out[ls.cfg.Name] = ls.ln.Addr()
		}
	}
	return out
}

// SetRoutes replaces the routing table (SIGHUP). Transactions that already
// passed MAIL keep the route they got.
func (s *Server) SetRoutes(r Routes) {
	c := Routes{
		ByUser:         maps.Clone(r.ByUser),
		BySenderDomain: make(map[string]string, len(r.BySenderDomain)),
		Default:        r.Default,
		AccountMaxSize: maps.Clone(r.AccountMaxSize),
	}
	for d, a := range r.BySenderDomain {
		c.BySenderDomain[lowerASCII(d)] = a
	}
	s.routes.Store(&c)
}

// SetUsers replaces a listener's AUTH users (SIGHUP). Connected clients stay
// connected; those already authenticated keep their session.
func (s *Server) SetUsers(listener string, users []User) error {
	ls, ok := s.byName[listener]
	if !ok {
		return fmt.Errorf("smtpd: setting users: no listener %q", listener)
	}
	var ps field.Problems
	ls.cfg.accessProblems(&ps, users)
	userProblems(&ps, users)
	if len(ps) > 0 {
		return fmt.Errorf("smtpd: setting users of listener %q: %w", listener, ps)
	}
	ls.users.Store(newUserTable(users))
	ls.log.Info("users replaced", "users", len(users))
	return nil
}

const (
	replyShutdown = "421 4.3.2 Service shutting down, try again later"
	replyTooMany  = "421 4.7.0 Too many connections, try again later"
)

// admit registers a new connection or says why it is refused.
func (ls *listenerState) admit(c net.Conn, ip netip.Addr) (tc *trackedConn, reply, reason string) {
	s := ls.srv
	if ls.throttle.blocked(ip, s.clock()) {
		return nil, "421 4.7.0 Too many authentication failures, try again later", "auth_throttled"
	}
	if !ls.inNetworks(ip) && len(ls.users.Load().byName) == 0 {
		return nil, "554 5.7.1 Client host not allowed", "network"
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	switch {
	case s.shutting:
		return nil, replyShutdown, "shutdown"
	case len(ls.conns) >= ls.cfg.MaxConnections:
		return nil, replyTooMany, "too_many_connections"
	case ls.perIP[ip] >= ls.cfg.MaxConnectionsPerIP:
		return nil, replyTooMany + " from your address", "too_many_connections"
	}
	tc = &trackedConn{Conn: c, ls: ls, ip: ip}
	tc.release = func() {
		s.mu.Lock()
		defer s.mu.Unlock()
		delete(ls.conns, tc)
		if ls.perIP[ip] <= 1 {
			delete(ls.perIP, ip)
		} else {
			ls.perIP[ip]--
		}
		ls.updateStressLocked()
	}
	ls.conns[tc] = struct{}{}
	ls.perIP[ip]++
	ls.updateStressLocked()
	return tc, "", ""
}

func (ls *listenerState) inNetworks(ip netip.Addr) bool {
	for _, p := range ls.cfg.AllowedNetworks {
		if p.Contains(ip) {
			return true
		}
	}
	return false
}

// Shutdown stops accepting, answers 421 to idle sessions, lets sessions in
// DATA finish (their reply is sent, then 421) until ctx is done, then closes
// whatever is left and cancels in-flight Enqueue calls.
func (s *Server) Shutdown(ctx context.Context) error {
	s.mu.Lock()
	if s.shutting {
		s.mu.Unlock()
		return errors.New("smtpd: already shut down")
	}
	s.shutting = true
	var conns []*trackedConn
	for _, ls := range s.listeners {
		if ls.ln != nil {
			_ = ls.ln.Close() // go-smtp closes it too; closing first stops accepting now
		}
		for c := range ls.conns {
			conns = append(conns, c)
		}
	}
	s.mu.Unlock()

	for _, c := range conns {
		c.mu.Lock()
		if c.inData {
			c.closeAfterData = true
		} else {
			c.sayGoodbyeLocked(replyShutdown)
		}
		c.mu.Unlock()
	}

	done := make(chan error, 1)
	go func() {
		var first error
		for _, ls := range s.listeners {
			if err := ls.smtp.Shutdown(context.Background()); err != nil && !errors.Is(err, net.ErrClosed) && first == nil {
				first = err
			}
		}
		s.serving.Wait()
		s.bg.Wait()
		done <- first
	}()
	select {
	case err := <-done:
		s.cancel()
		s.log.Info("listeners shut down")
		return err
	case <-ctx.Done():
		s.cancel()
		// go-smtp's Close returns at once after its Shutdown without closing
		// connections, so a client stalled in DATA would keep its session,
		// and the daemon, alive until its read timeout: close every session
		// left ourselves.
		n := s.closeAll(replyShutdown)
		<-done
		s.log.Warn("shutdown timed out; closed the sessions left", "sessions", n)
		return fmt.Errorf("smtpd: shutdown: %w", ctx.Err())
	}
}

// goodbyeTimeout bounds the last reply to a session closed at shutdown: a
// stalled client may not be reading, and shutdown must not wait for it.
const goodbyeTimeout = 500 * time.Millisecond

// closeAll tells every remaining session reply and closes it, all at once
// so that clients that do not read cost one goodbyeTimeout in total.
func (s *Server) closeAll(reply string) int {
	s.mu.Lock()
	var conns []*trackedConn
	for _, ls := range s.listeners {
		for c := range ls.conns {
			conns = append(conns, c)
		}
	}
	s.mu.Unlock()
	var wg sync.WaitGroup
	for _, c := range conns {
		wg.Add(1)
		go func() {
			defer wg.Done()
			c.goodbye(reply, goodbyeTimeout)
		}()
	}
	wg.Wait()
	return len(conns)
}

func lowerASCII(s string) string {
	b := []byte(s)
	for i, c := range b {
		if 'A' <= c && c <= 'Z' {
			b[i] = c + 'a' - 'A'
		}
	}
	return string(b)
}

// metrics are the Prometheus collectors of all listeners.
type metrics struct {
	sessions   *prometheus.CounterVec
	rejections *prometheus.CounterVec
}

func newMetrics(reg prometheus.Registerer) (*metrics, error) {
	m := &metrics{
		sessions: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "spoold_smtp_sessions_total", Help: "SMTP connections admitted, by listener.",
		}, []string{"listener"}),
		rejections: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "spoold_smtp_rejections_total", Help: "SMTP connections, commands and messages refused, by listener and reason.",
		}, []string{"listener", "reason"}),
	}
	if reg == nil {
		return m, nil
	}
	for _, c := range []**prometheus.CounterVec{&m.sessions, &m.rejections} {
		if err := reg.Register(*c); err != nil {
			var are prometheus.AlreadyRegisteredError
			if !errors.As(err, &are) {
				return nil, fmt.Errorf("smtpd: registering metrics: %w", err)
			}
			existing, ok := are.ExistingCollector.(*prometheus.CounterVec)
			if !ok {
				return nil, fmt.Errorf("smtpd: registering metrics: %w", err)
			}
			*c = existing
		}
	}
	return m, nil
}
