package smtpd

import (
	"crypto/tls"
	"errors"
	"net"
	"net/netip"
	"sync"
	"sync/atomic"
	"time"

	"github.com/emersion/go-smtp"
)

// refuseTimeout bounds how long a refused connection may take to be told.
const refuseTimeout = 5 * time.Second

// maxRefusing bounds the goroutines telling refused clients why.
const maxRefusing = 64

// limitListener admits connections: it enforces the total and per-IP caps,
// refuses clients that could never send (not in an allowed network and no
// users to authenticate as) and IPs blocked for AUTH failures, each with a
// 421/554 reply, and wraps implicit-TLS connections. go-smtp has no cap of
// its own.
type limitListener struct {
	net.Listener
	ls *listenerState
}

func (l *limitListener) Accept() (net.Conn, error) {
	for {
		c, err := l.Listener.Accept()
		if err != nil {
			return nil, err
		}
		ip := remoteIP(c.RemoteAddr())
		tc, reply, reason := l.ls.admit(c, ip)
		if tc == nil {
			l.ls.srv.metrics.rejections.WithLabelValues(l.ls.cfg.Name, reason).Inc()
			l.ls.log.Info("connection refused", "peer", ip.String(), "reason", reason)
			select {
			case l.ls.srv.refusing <- struct{}{}:
				l.ls.srv.bg.Add(1)
				go l.ls.refuse(c, reply)
			default:
				// A flood: don't spend a goroutine per connection telling it.
				_ = c.Close()
			}
			continue
		}
		l.ls.srv.metrics.sessions.WithLabelValues(l.ls.cfg.Name).Inc()
		if l.ls.tlsConfig != nil && l.ls.cfg.TLS == TLSImplicit {
			tlsc := tls.Server(tc, l.ls.tlsConfig)
			tc.setTop(tlsc)
			return tlsc, nil
		}
		return tc, nil
	}
}

// refuse tells a refused client why (over TLS on implicit-TLS listeners, so
// the client can read it) and closes the connection.
func (ls *listenerState) refuse(c net.Conn, reply string) {
	defer ls.srv.bg.Done()
	defer func() { <-ls.srv.refusing }()
	defer c.Close()
	_ = c.SetDeadline(time.Now().Add(refuseTimeout))
	w := c
	if ls.cfg.TLS == TLSImplicit && ls.tlsConfig != nil {
		tlsc := tls.Server(c, ls.tlsConfig)
		if err := tlsc.Handshake(); err != nil {
			return
		}
		w = tlsc
	}
	_, _ = w.Write([]byte(reply + "\r\n"))
}

func remoteIP(a net.Addr) netip.Addr {
	if ta, ok := a.(*net.TCPAddr); ok {
		if ip, ok := netip.AddrFromSlice(ta.IP); ok {
			return ip.Unmap()
		}
	}
	if ap, err := netip.ParseAddrPort(a.String()); err == nil {
		return ap.Addr().Unmap()
	}
	return netip.Addr{}
}

// trackedConn is an admitted connection. It releases its slot on Close and
// knows whether its session is inside DATA, for graceful shutdown.
type trackedConn struct {
	net.Conn
	ls      *listenerState
	ip      netip.Addr
	release func()
	once    sync.Once

	// The read deadline go-smtp asked for and when, kept so that stress
	// mode can shorten it and restore it (see ListenerConfig.StressThreshold).
	dlMu  sync.Mutex
	want  time.Time
	since time.Time

	// dataTimeout, while non-zero (during DATA), renews the read deadline
	// before every read: go-smtp sets it once per command, which would
	// bound the whole transfer of a large scan instead of the silence
	// between reads. Atomic: with BDAT, go-smtp calls Data on its own goroutine.
	dataTimeout atomic.Int64

	// The DATA rate check (see ListenerConfig.DataMinRate). Guarded by
	// rateMu: Data starts it, possibly on BDAT's goroutine; the
	// connection's goroutine reads.
	rateMu  sync.Mutex
	minRate int64         // bytes per second; 0: no check
	credit  time.Duration // how long reads may still wait for the client

	// Counts of the session's junk commands and refused commands since
	// its last accepted message (see ListenerConfig.JunkCommandLimit and
	// HardErrorLimit). Atomic: Data may run on BDAT's goroutine.
	junk, hardErrors atomic.Int32

	mu             sync.Mutex
	top            net.Conn // what the session talks through (the TLS conn once TLS is up)
	inData         bool
	closeAfterData bool // shutdown began during DATA: close once the reply is out
	closed         bool
}

// startData begins DATA: reads renew their deadline, and with minRate > 0
// may wait for the client only as long as the credit lasts.
func (c *trackedConn) startData(readTimeout time.Duration, minRate int64, grace time.Duration) {
	c.rateMu.Lock()
	c.minRate, c.credit = max(minRate, 0), grace
	c.rateMu.Unlock()
	// Under dlMu: applyReadDeadline (stress mode, from another goroutine)
	// must not set a command deadline after DATA's reads took over.
	c.dlMu.Lock()
	c.dataTimeout.Store(int64(readTimeout))
	c.dlMu.Unlock()
}

func (c *trackedConn) endData() { c.dataTimeout.Store(0) }

// errDataTooSlow ends DATA below the minimum rate. An *smtp.SMTPError so that
// go-smtp's BDAT path, which replies with read errors as they are, sends it too.
var errDataTooSlow = &smtp.SMTPError{Code: 421, EnhancedCode: smtp.EnhancedCode{4, 4, 2},
	Message: "Message data arriving too slowly, closing connection"}

func (c *trackedConn) Read(p []byte) (int, error) {
	d := time.Duration(c.dataTimeout.Load())
	if d <= 0 {
		return c.Conn.Read(p)
	}
	c.rateMu.Lock()
	rate, credit := c.minRate, c.credit
	c.rateMu.Unlock()
	byRate := rate > 0 && credit < d
	if byRate {
		if credit <= 0 {
			return 0, errDataTooSlow // sticky: go-smtp's drain ends at once
		}
		d = credit
	}
	start := time.Now()
	_ = c.Conn.SetReadDeadline(start.Add(d))
	n, err := c.Conn.Read(p)
	if rate > 0 {
		// Only time spent waiting here counts against the client: time the
		// spool takes between reads (fsync, a busy disk) is not its fault.
		earned := time.Duration(n) * time.Second / time.Duration(rate)
		c.rateMu.Lock()
		c.credit += earned - time.Since(start)
		c.rateMu.Unlock()
	}
	var ne net.Error
	if byRate && errors.As(err, &ne) && ne.Timeout() {
		err = errDataTooSlow
	}
	return n, err
}

// SetReadDeadline records the deadline go-smtp sets before each command (and
// the implicit TLS handshake) and applies it, shortened in stress mode.
func (c *trackedConn) SetReadDeadline(t time.Time) error {
	c.dlMu.Lock()
	c.want, c.since = t, time.Now()
	c.dlMu.Unlock()
	return c.applyReadDeadline()
}

// applyReadDeadline sets the read deadline for the listener's current mode:
// in stress mode a session waiting for a command gets StressTimeout from
// when it started waiting (so a connection idle for long times out at once).
// DATA reads set their own deadline.
func (c *trackedConn) applyReadDeadline() error {
	c.dlMu.Lock()
	defer c.dlMu.Unlock()
	if c.dataTimeout.Load() > 0 {
		return nil
	}
	t := c.want
	if c.ls != nil && c.ls.stressed.Load() && !t.IsZero() {
		if st := c.since.Add(c.ls.cfg.StressTimeout); st.Before(t) {
			t = st
		}
	}
	return c.Conn.SetReadDeadline(t)
}

// updateStressLocked enters or leaves stress mode after the connection count
// changed, and re-applies every session's read deadline when it does.
// Callers hold srv.mu.
func (ls *listenerState) updateStressLocked() {
	th := ls.cfg.StressThreshold
	if th <= 0 {
		return
	}
	n := len(ls.conns)
	switch on := ls.stressed.Load(); {
	case !on && n >= th:
		ls.stressed.Store(true)
		ls.log.Warn("stress mode on: sessions waiting for a command get the stress timeout",
			"connections", n, "threshold", th, "stress_timeout", ls.cfg.StressTimeout)
	case on && n*4 < th*3: // hysteresis, so the log does not flap at the threshold
		ls.stressed.Store(false)
		ls.log.Info("stress mode off", "connections", n)
	default:
		return
	}
	for c := range ls.conns {
		_ = c.applyReadDeadline()
	}
}

func (c *trackedConn) Close() error {
	c.once.Do(c.release)
	return c.Conn.Close()
}

func (c *trackedConn) setTop(top net.Conn) {
	c.mu.Lock()
	c.top = top
	c.mu.Unlock()
}

// sayGoodbyeLocked writes a final reply through the session's connection
// and closes it. Callers hold c.mu.
func (c *trackedConn) sayGoodbyeLocked(reply string) {
	c.sayGoodbyeWithinLocked(reply, refuseTimeout)
}

// sayGoodbyeWithinLocked is sayGoodbyeLocked with the write bounded by d.
func (c *trackedConn) sayGoodbyeWithinLocked(reply string, d time.Duration) {
	if c.closed {
		return
	}
	c.closed = true
	w := c.top
	if w == nil {
		w = c.Conn
	}
	_ = w.SetWriteDeadline(time.Now().Add(d))
	_, _ = w.Write([]byte(reply + "\r\n"))
	_ = c.Close()
}

// goodbye closes the connection, with a last reply if the client takes it
// within d. Unlike sayGoodbyeLocked it does not wait for c.mu, and it closes
// even a connection already told goodbye whose close has not ended the
// session (a write stuck on a full send buffer holds the TLS lock).
func (c *trackedConn) goodbye(reply string, d time.Duration) {
	if c.mu.TryLock() {
		c.sayGoodbyeWithinLocked(reply, d)
		c.mu.Unlock()
	}
	_ = c.Close()
}

// unwrapTracked finds the trackedConn under a session's connection (which
// may be a *tls.Conn after STARTTLS or on implicit TLS).
func unwrapTracked(c net.Conn) *trackedConn {
	for c != nil {
		switch v := c.(type) {
		case *trackedConn:
			return v
		case interface{ NetConn() net.Conn }:
			c = v.NetConn()
		default:
			return nil
		}
	}
	return nil
}
