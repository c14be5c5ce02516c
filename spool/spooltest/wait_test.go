package spooltest

import (
	"fmt"
	"net"
	"sync"
	"testing"
	"time"
)

func TestWaitHelpers(t *testing.T) {
	start := time.Now()
	if !Poll(time.Second, func() bool { return time.Since(start) > 50*time.Millisecond }) {
		t.Error("Poll gave up on a condition that became true")
	}
	if Poll(30*time.Millisecond, func() bool { return false }) {
		t.Error("Poll reported a condition that never held")
	}
	ln, err := net.Listen("tcp", fmt.Sprintf("127.0.0.1:%d", FreePort(t)))
	if err != nil {
		t.Fatalf("FreePort's port cannot be bound: %v", err)
	}
	ln.Close()
	var b SyncBuffer
	var wg sync.WaitGroup
	for i := 0; i < 8; i++ {
		wg.Add(1)
		go func() { defer wg.Done(); fmt.Fprint(&b, "x") }()
	}
	wg.Wait()
	if b.String() != "xxxxxxxx" {
		t.Errorf("SyncBuffer = %q", b.String())
	}
}
