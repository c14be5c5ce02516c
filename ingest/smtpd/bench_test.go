package smtpd

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/textproto"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/spoold/spoold/spool"
)

func benchBody(size int) []byte {
	var b strings.Builder
	b.WriteString("From: scanner@corp.example\r\nTo: boss@corp.example\r\nSubject: bench\r\n\r\n")
	line := strings.Repeat("0123456789ABCDEF", 4) + "\r\n" // 66 bytes
	for b.Len() < size {
		b.WriteString(line)
	}
	b.WriteString(".\r\n")
	return []byte(b.String())
}

// sendOne sends one message on a fresh connection (as scanners do) and
// returns the MAIL..250 latency.
func sendOne(addr string, body []byte) (time.Duration, error) {
	conn, err := net.DialTimeout("tcp", addr, 10*time.Second)
	if err != nil {
		return 0, err
	}
	defer conn.Close()
	_ = conn.SetDeadline(time.Now().Add(60 * time.Second))
	tc := textproto.NewConn(conn)
	expect := func(code int) error {
		_, _, err := tc.ReadResponse(code)
		return err
	}
	if err := expect(220); err != nil {
		return 0, err
	}
	if err := tc.PrintfLine("EHLO bench.lan"); err != nil {
		return 0, err
	}
	if err := expect(250); err != nil {
		return 0, err
	}
	start := time.Now()
	for _, step := range []struct {
		cmd  string
		code int
	}{{"MAIL FROM:<scanner@corp.example>", 250}, {"RCPT TO:<boss@corp.example>", 250}, {"DATA", 354}} {
		if err := tc.PrintfLine("%s", step.cmd); err != nil {
			return 0, err
		}
		if err := expect(step.code); err != nil {
			return 0, fmt.Errorf("%s: %w", step.cmd, err)
		}
	}
	if _, err := conn.Write(body); err != nil { // []byte: no per-message copy on the client side
		return 0, err
	}
	if err := expect(250); err != nil {
		return 0, fmt.Errorf("end of DATA: %w", err)
	}
	lat := time.Since(start)
	_ = tc.PrintfLine("QUIT")
	_ = expect(221)
	return lat, nil
}

// discardSpool reads the body and stores nothing: the listener's own cost.
type discardSpool struct{ n atomic.Int64 }

func (d *discardSpool) Enqueue(_ context.Context, _ spool.EnqueueRequest, body io.Reader) (string, error) {
	if _, err := io.Copy(io.Discard, body); err != nil {
		return "", err
	}
	return fmt.Sprintf("D%d", d.n.Add(1)), nil
}

// BenchmarkIngestNoSpool is BenchmarkIngest without storage, to separate the
// listener's cost from the spool's fsyncs.
func BenchmarkIngestNoSpool(b *testing.B) {
	body := benchBody(4 << 10)
	for _, conc := range []int{1, 10, 50} {
		b.Run(fmt.Sprintf("size=4KB/C=%d", conc), func(b *testing.B) {
			runIngestBench(b, &discardSpool{}, body, conc)
		})
	}
}

// BenchmarkIngest measures messages/s and MAIL..250 latency against the real
// spool (fsync before 250), one message per connection.
func BenchmarkIngest(b *testing.B) {
	for _, size := range []int{4 << 10, 1 << 20} {
		body := benchBody(size)
		for _, conc := range []int{1, 10, 50} {
			b.Run(fmt.Sprintf("size=%dKB/C=%d", size>>10, conc), func(b *testing.B) {
				sp, err := spool.Open(b.TempDir(), spool.Options{Logger: discardLogger(), RescueInterval: -1})
				if err != nil {
					b.Fatal(err)
				}
				defer sp.Close()
				runIngestBench(b, sp, body, conc)
			})
		}
	}
}

func runIngestBench(b *testing.B, enq Enqueuer, body []byte, conc int) {
	lc := baseListener()
	lc.MaxConnections, lc.MaxConnectionsPerIP = 1000, 1000
	s := startServer(b, []ListenerConfig{lc}, Routes{}, enq,
		Options{Logger: slog.New(slog.NewJSONHandler(io.Discard, nil))})
	addr := addrOf(b, s, "mfd")

	lats := make([]time.Duration, 0, b.N)
	var mu sync.Mutex
	var next atomic.Int64
	var firstErr atomic.Value
	b.SetBytes(int64(len(body)))
	b.ResetTimer()
	start := time.Now()
	var wg sync.WaitGroup
	for range conc {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for next.Add(1) <= int64(b.N) {
				lat, err := sendOne(addr, body)
				if err != nil {
					firstErr.CompareAndSwap(nil, err)
					return
				}
				mu.Lock()
				lats = append(lats, lat)
				mu.Unlock()
			}
		}()
	}
	wg.Wait()
	elapsed := time.Since(start)
	b.StopTimer()
	if err, _ := firstErr.Load().(error); err != nil {
		b.Fatal(err)
	}
	slices.Sort(lats)
	pct := func(p float64) float64 {
		return float64(lats[int(p*float64(len(lats)-1))].Microseconds()) / 1000
	}
	b.ReportMetric(float64(len(lats))/elapsed.Seconds(), "msgs/s")
	b.ReportMetric(pct(0.50), "p50_ms")
	b.ReportMetric(pct(0.99), "p99_ms")
}
