package spooltest

import (
	"bytes"
	"net"
	"sync"
	"testing"
	"time"
)

// The helpers below are not about spools: they are the few things every
// package's tests need (waiting on a condition, a free loopback port, a log
// sink safe for concurrent writes). They live here because spooltest is
// already the test-support package the others import, so each package need
// not keep its own copy.

// WaitFor polls cond until it holds, failing the test with what if timeout
// passes first. Tests wait on conditions, never on fixed sleeps.
func WaitFor(t testing.TB, what string, timeout time.Duration, cond func() bool) {
	t.Helper()
	if !Poll(timeout, cond) {
		t.Fatalf("timed out after %s waiting for %s", timeout, what)
	}
}

// Poll reports whether cond held within timeout, checking every 20 ms.
func Poll(timeout time.Duration, cond func() bool) bool {
	deadline := time.Now().Add(timeout)
	for !cond() {
		if time.Now().After(deadline) {
			return false
		}
		time.Sleep(20 * time.Millisecond)
	}
	return true
}

// FreePort returns a TCP port on 127.0.0.1 that was free a moment ago; a
// caller that loses the race to bind it sees an "address in use" error.
// It never returns a port twice in one test process: servers a test picks
// ports for before starting any (several nodes) would otherwise be given
// the same one, and the second would find the first answering there.
func FreePort(t testing.TB) int {
	t.Helper()
	handedOut.mu.Lock()
	defer handedOut.mu.Unlock()
	for {
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		port := ln.Addr().(*net.TCPAddr).Port
		ln.Close()
		if !handedOut.ports[port] {
			handedOut.ports[port] = true
			return port
		}
	}
}

var handedOut = struct {
	mu    sync.Mutex
	ports map[int]bool
}{ports: map[int]bool{}}

// SyncBuffer is a bytes.Buffer that goroutines (a logger, a child process's
// output copier) may write while the test reads it.
type SyncBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *SyncBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *SyncBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}
