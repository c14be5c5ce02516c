package adminapi

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/user"
	"strconv"
	"sync"
	"time"

	"github.com/spoold/spoold/cmd/spoold/adminapi/wire"
)

// Listen creates the admin unix socket at path. A socket file left behind by
// a crashed daemon is removed, but only if nothing answers on it; a path that
// is not a socket is never removed. The socket is chmod'ed to mode (0660 when
// 0) after listening, and chgrp'ed to group when group is non-empty.
func Listen(path string, mode os.FileMode, group string) (net.Listener, error) {
	if mode == 0 {
		mode = 0o660
	}
	if fi, err := os.Lstat(path); err == nil {
		if fi.Mode()&os.ModeSocket == 0 {
			return nil, fmt.Errorf("admin socket %s: path exists and is not a socket", path)
		}
		conn, err := net.DialTimeout("unix", path, time.Second)
		if err == nil {
			conn.Close()
			return nil, fmt.Errorf("admin socket %s: another process is serving on it (is spoold already running?)", path)
		}
		if err := os.Remove(path); err != nil && !errors.Is(err, os.ErrNotExist) {
			return nil, fmt.Errorf("admin socket %s: removing the stale socket file: %w", path, err)
		}
	}
	ln, err := net.Listen("unix", path)
	if err != nil {
		return nil, fmt.Errorf("admin socket %s: %w", path, err)
	}
	fail := func(err error) (net.Listener, error) {
		ln.Close() // unlinks the socket
		return nil, err
	}
	if err := os.Chmod(path, mode); err != nil {
		return fail(fmt.Errorf("admin socket %s: chmod: %w", path, err))
	}
	if group != "" {
		gid, err := lookupGroup(group)
		if err != nil {
			return fail(fmt.Errorf("admin socket group %q (admin.group): %w", group, err))
		}
		if err := os.Chown(path, -1, gid); err != nil {
			return fail(fmt.Errorf("admin socket %s: chgrp %s: %w", path, group, err))
		}
	}
	return ln, nil
}

// lookupGroup accepts a group name or a numeric gid.
func lookupGroup(group string) (int, error) {
	if gid, err := strconv.Atoi(group); err == nil && gid >= 0 {
		return gid, nil
	}
	g, err := user.LookupGroup(group)
	if err != nil {
		return 0, err
	}
	return strconv.Atoi(g.Gid)
}

// InProcess serves h in memory and returns a wire.Client talking to it, for
// spoolctl --spool (offline mode) and tests. Bodies stream through pipes, so
// large messages are not buffered. Close stops the server.
func InProcess(h http.Handler, name string) (*wire.Client, io.Closer) {
	ln := newPipeListener()
	srv := &http.Server{Handler: h, ReadHeaderTimeout: 10 * time.Second}
	done := make(chan struct{})
	go func() {
		defer close(done)
		_ = srv.Serve(ln) // returns when closed
	}()
	c := wire.NewClientDialer(name, func(ctx context.Context, _ string) (net.Conn, error) { return ln.dial(ctx) })
	return c, closerFunc(func() error {
		c.CloseIdleConnections()
		err := srv.Close()
		<-done
		return err
	})
}

type closerFunc func() error

func (f closerFunc) Close() error { return f() }

// pipeListener is a net.Listener whose connections are in-memory pipes.
type pipeListener struct {
	conns  chan net.Conn
	once   sync.Once
	closed chan struct{}
}

func newPipeListener() *pipeListener {
	return &pipeListener{conns: make(chan net.Conn), closed: make(chan struct{})}
}

func (l *pipeListener) dial(ctx context.Context) (net.Conn, error) {
	client, server := net.Pipe()
	select {
	case l.conns <- server:
		return client, nil
	case <-l.closed:
		client.Close()
		server.Close()
		return nil, &net.OpError{Op: "dial", Net: "pipe", Err: net.ErrClosed}
	case <-ctx.Done():
		client.Close()
		server.Close()
		return nil, ctx.Err()
	}
}

func (l *pipeListener) Accept() (net.Conn, error) {
	select {
	case c := <-l.conns:
		return c, nil
	case <-l.closed:
		return nil, net.ErrClosed
	}
}

func (l *pipeListener) Close() error {
	l.once.Do(func() { close(l.closed) })
	return nil
}

func (l *pipeListener) Addr() net.Addr { return pipeAddr{} }

type pipeAddr struct{}

func (pipeAddr) Network() string { return "pipe" }
func (pipeAddr) String() string  { return "in-process" }
