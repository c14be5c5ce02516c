package delivery

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/spoold/spoold/delivery/smtpfake"
	"github.com/spoold/spoold/spool"
	"github.com/spoold/spoold/spool/spooltest"
)

func benchBody(size int) string {
	var b strings.Builder
	b.WriteString("From: Bench <bench@office.example>\r\nTo: sink@dest.example\r\nSubject: bench\r\nMessage-ID: <x@bench>\r\n\r\n")
	line := strings.Repeat("abcdefghijklmnopqrstuvwxyz0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789", 1) + "\r\n"
	for b.Len() < size {
		b.WriteString(line)
	}
	return b.String()[:size-2] + "\r\n"
}

func cpuTime() time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// BenchmarkEndToEnd measures real spool -> engine -> local go-smtp sink with
// no rate limit: b.N messages are queued first, then the engine drains them.
// Reported: msgs/s and CPU ms per message (whole process, including the
// in-process sink and the spool's fsyncs).
func BenchmarkEndToEnd(b *testing.B) {
	for _, real := range []bool{true, false} {
		for _, size := range []int{4 << 10, 1 << 20} {
			for _, reuse := range []bool{true, false} {
				name := "spool=real"
				if !real {
					name = "spool=fake"
				}
				b.Run(fmt.Sprintf("%s/size=%dKB/reuse=%v", name, size>>10, reuse), func(b *testing.B) {
					benchEndToEnd(b, real, size, reuse)
				})
			}
		}
	}
}

// benchSpool is what the benchmark needs on top of Spool.
type benchSpool interface {
	Spool
	delivered() (int, bool)
}

type realBench struct{ *spool.Spool }

func (r realBench) delivered() (int, bool) {
	st, err := r.Stats(context.Background())
	if err != nil {
		return 0, false
	}
	return st[spool.StateDelivered], st[spool.StateDead] == 0
}

func (f *fakeSpool) delivered() (int, bool) {
	f.mu.Lock()
	defer f.mu.Unlock()
	n := 0
	for _, m := range f.msgs {
		switch m.State {
		case spool.StateDelivered:
			n++
		case spool.StateDead:
			return n, false
		}
	}
	return n, true
}

func benchEndToEnd(b *testing.B, real bool, size int, reuse bool) {
	quiet := slog.New(slog.NewTextHandler(io.Discard, nil))
	up, err := smtpfake.Start(smtpfake.Options{TLS: "none", Auth: "none", Discard: true})
	if err != nil {
		b.Fatal(err)
	}
	defer up.Close()
	var sp benchSpool = newFakeSpool(b, time.Now)
	if real {
		sp = realBench{spooltest.OpenTemp(b, spool.Options{Logger: quiet})}
	}
	acc := AccountConfig{Name: "sink", Host: up.Host, Port: up.Port, TLS: "none", Auth: "none", Mailbox: "box@tenant.example",
		MaxConnections: 16, RatePerMinute: -1, MaxMessagesPerConnection: 1000}
	if !reuse {
		acc.MaxMessagesPerConnection = 1
	}
	eng, err := New([]AccountConfig{acc}, sp, nil, Options{Logger: quiet, Owner: "bench", Workers: 16, Hostname: "bench"})
	if err != nil {
		b.Fatal(err)
	}
	body := benchBody(size)
	ctx := context.Background()
	for i := 0; i < b.N; i++ {
		if _, err := sp.Enqueue(ctx, spool.EnqueueRequest{From: "bench@office.example", To: []string{"sink@dest.example"}, Account: "sink"},
			strings.NewReader(body)); err != nil {
			b.Fatal(err)
		}
	}
	runCtx, cancel := context.WithCancel(ctx)
	done := make(chan error, 1)
	cpu0 := cpuTime()
	b.ResetTimer()
	start := time.Now()
	go func() { done <- eng.Run(runCtx) }()
	deadline := time.Now().Add(10 * time.Minute)
	for {
		n, ok := sp.delivered()
		if n >= b.N {
			break
		}
		if !ok || time.Now().After(deadline) {
			b.Fatalf("stuck after %d deliveries (dead messages: %v)", n, !ok)
		}
		time.Sleep(2 * time.Millisecond)
	}
	el := time.Since(start)
	b.StopTimer()
	cpu := cpuTime() - cpu0
	cancel()
	<-done
	b.ReportMetric(float64(b.N)/el.Seconds(), "msgs/s")
	b.ReportMetric(float64(cpu.Microseconds())/1000/float64(b.N), "cpu-ms/msg")
	b.ReportMetric(float64(up.Sessions()), "sessions")
}
