package smtpd

import (
	"crypto/tls"
	"net"
	"net/netip"
	"sync"
	"sync/atomic"
	"time"
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
			l.ls.log.Info("smtp connection refused", "peer", ip.String(), "reason", reason)
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
	ip      netip.Addr
	release func()
	once    sync.Once

	// dataTimeout, while non-zero (during DATA), renews the read deadline
	// before every read: go-smtp sets it once per command, which would
	// bound the whole transfer of a large scan instead of the silence
	// between reads. Atomic: with BDAT, go-smtp calls Data on its own goroutine.
	dataTimeout atomic.Int64

	mu             sync.Mutex
	top            net.Conn // what the session talks through (the TLS conn once TLS is up)
	inData         bool
	closeAfterData bool // shutdown began during DATA: close once the reply is out
	closed         bool
}

func (c *trackedConn) Read(p []byte) (int, error) {
	if d := time.Duration(c.dataTimeout.Load()); d > 0 {
		_ = c.Conn.SetReadDeadline(time.Now().Add(d))
	}
	return c.Conn.Read(p)
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

// sayGoodbye writes a final reply through the session's connection and closes
// it. Callers hold c.mu.
func (c *trackedConn) sayGoodbyeLocked(reply string) {
	c.sayGoodbyeWithinLocked(reply, refuseTimeout)
}

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
