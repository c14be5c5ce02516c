//go:build linux

package benchtest

import (
	"flag"
	"fmt"
	"io"
	"net"
	"os"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/emersion/go-smtp"
)

var (
	flagDelays = flag.String("bench.delays", "0,20,50", "one-way delays in ms between the relay and the sink (BenchmarkRelayLatency)")
	flagNLat   = flag.Int("bench.nlat", 1000, "4 KB messages per relay run in BenchmarkRelayLatency")
	flagCLat   = flag.Int("bench.clat", 10, "concurrent SMTP clients in BenchmarkRelayLatency")
)

// delayProxy forwards TCP connections to target and delays every byte by
// the same one-way delay in each direction: a link with latency and no
// bandwidth limit, like a relay tens of milliseconds from its provider.
// Data is timestamped as it is read and written out once its delay has
// passed, so a burst of pipelined commands costs one delay, not one per
// segment. Connection setup waits two delays first (TCP's SYN and SYN-ACK),
// so the greeting arrives three delays after connect, as over a real link.
type delayProxy struct {
	ln       net.Listener
	target   string
	delay    time.Duration
	sessions atomic.Int64
	wg       sync.WaitGroup
	mu       sync.Mutex
	conns    map[net.Conn]struct{}
	closed   bool
}

func startDelayProxy(tb testing.TB, target string, delay time.Duration) *delayProxy {
	tb.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		tb.Fatalf("benchtest: delay proxy listen: %v", err)
	}
	p := &delayProxy{ln: ln, target: target, delay: delay, conns: map[net.Conn]struct{}{}}
	p.wg.Add(1)
	go p.serve()
	tb.Cleanup(p.close)
	return p
}

func (p *delayProxy) port() int { return p.ln.Addr().(*net.TCPAddr).Port }

func (p *delayProxy) serve() {
	defer p.wg.Done()
	for {
		c, err := p.ln.Accept()
		if err != nil {
			return
		}
		p.sessions.Add(1)
		p.wg.Add(1)
		go func() {
			defer p.wg.Done()
			p.handle(c)
		}()
	}
}

// track registers c for close; false once the proxy is closed.
func (p *delayProxy) track(c net.Conn) bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.closed {
		return false
	}
	p.conns[c] = struct{}{}
	return true
}

func (p *delayProxy) handle(client net.Conn) {
	defer client.Close()
	if !p.track(client) {
		return
	}
	time.Sleep(2 * p.delay) // SYN, SYN-ACK
	up, err := net.Dial("tcp", p.target)
	if err != nil {
		return
	}
	defer up.Close()
	if !p.track(up) {
		return
	}
	done := make(chan struct{}, 2)
	go func() { p.pipe(up, client); done <- struct{}{} }()
	go func() { p.pipe(client, up); done <- struct{}{} }()
	<-done
	<-done
}

type chunk struct {
	b   []byte
	due time.Time
}

// pipe copies src to dst with the delay; at src's end it half-closes dst
// once everything read before has been written.
func (p *delayProxy) pipe(dst, src net.Conn) {
	q := make(chan chunk, 4096)
	go func() {
		defer close(q)
		for {
			buf := make([]byte, 32<<10)
			n, err := src.Read(buf)
			if n > 0 {
				q <- chunk{buf[:n], time.Now().Add(p.delay)}
			}
			if err != nil {
				return
			}
		}
	}()
	for c := range q {
		if d := time.Until(c.due); d > 0 {
			time.Sleep(d)
		}
		if _, err := dst.Write(c.b); err != nil {
			src.Close()
			for range q { // let the reader end
			}
			return
		}
	}
	if tc, ok := dst.(*net.TCPConn); ok {
		_ = tc.CloseWrite()
	} else {
		dst.Close()
	}
}

func (p *delayProxy) close() {
	p.mu.Lock()
	p.closed = true
	for c := range p.conns {
		c.Close()
	}
	p.mu.Unlock()
	p.ln.Close()
	p.wg.Wait()
}

// TestDelayProxy checks the proxy's model: a command and its reply take one
// delay each way, a pipelined burst one delay in all, and the greeting
// three delays after connect.
func TestDelayProxy(t *testing.T) {
	const delay = 30 * time.Millisecond
	sk := startSink(t, 1)
	p := startDelayProxy(t, fmt.Sprintf("127.0.0.1:%d", sk.port()), delay)
	start := time.Now()
	conn, err := net.Dial("tcp", fmt.Sprintf("127.0.0.1:%d", p.port()))
	if err != nil {
		t.Fatal(err)
	}
	c := smtp.NewClient(conn)
	defer c.Close()
	if err := c.Hello("proxy.test"); err != nil { // greeting + EHLO round trip
		t.Fatal(err)
	}
	if got := time.Since(start); got < 5*delay || got > 5*delay+time.Second {
		t.Errorf("greeting and EHLO took %s, want about %s", got, 5*delay)
	}
	start = time.Now()
	if err := c.Noop(); err != nil {
		t.Fatal(err)
	}
	if got := time.Since(start); got < 2*delay || got > 2*delay+time.Second {
		t.Errorf("NOOP took %s, want about %s", got, 2*delay)
	}
	start = time.Now()
	errs, w, err := c.MailRcptData("a@example.org", nil, []string{"b@example.net", "c@example.net", "d@example.net"}, nil)
	if err != nil || w == nil || errs[0] != nil {
		t.Fatalf("pipelined group: %v %v %v", errs, w, err)
	}
	if got := time.Since(start); got < 2*delay || got > 3*delay {
		t.Errorf("a pipelined MAIL, 3 RCPT and DATA took %s, want one round trip (%s)", got, 2*delay)
	}
	io.WriteString(w, "Subject: x\r\n\r\nhi\r\n")
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	if n := p.sessions.Load(); n != 1 {
		t.Errorf("%d sessions through the proxy, want 1", n)
	}
}

// latRow is one relay at one delay.
type latRow struct {
	Relay    string
	Delay    int // ms one-way
	N        int
	E2E      []float64 // msg/s per repetition
	Sessions []float64 // upstream sessions per repetition
	CPU      []float64
	Failures int // failed + lost + twice
}

// BenchmarkRelayLatency relays -bench.nlat (1,000) 4 KB messages from
// -bench.clat (10) clients through spoold, and through Postfix when it can
// run (root and its tools, as BenchmarkRelaySideBySide), to the sink behind
// a delayProxy adding each of -bench.delays (0, 20, 50 ms) one way. Both
// relays get -bench.conns (20) upstream connections and the same proxy, load
// and checks; repetitions alternate the relays (-bench.reps). Upstream
// sessions are counted at the proxy.
//
//	go test -run '^$' -bench RelayLatency -benchtime 1x -timeout 30m ./cmd/spoold/benchtest
func BenchmarkRelayLatency(b *testing.B) {
	tools, pfErr := findPostfix()
	relays := []string{"spoold", "postfix"}
	if pfErr != nil {
		relays = relays[:1]
		b.Logf("Postfix left out: %v", pfErr)
	}
	var delays []int
	for f := range strings.SplitSeq(*flagDelays, ",") {
		d, err := strconv.Atoi(strings.TrimSpace(f))
		if err != nil || d < 0 {
			b.Fatalf("benchtest: -bench.delays %q: want milliseconds, comma-separated", *flagDelays)
		}
		delays = append(delays, d)
	}
	load := loadavg()
	var rows []*latRow
	for _, d := range delays {
		b.Run(fmt.Sprintf("delay=%dms", d), func(b *testing.B) {
			byRelay := map[string]*latRow{}
			for _, r := range relays {
				byRelay[r] = &latRow{Relay: r, Delay: d, N: *flagNLat}
			}
			order := slices.Clone(relays)
			for i := range b.N * max(1, *flagReps) {
				for _, which := range order {
					sk := startSink(b, *flagNLat)
					px := startDelayProxy(b, fmt.Sprintf("127.0.0.1:%d", sk.port()), time.Duration(d)*time.Millisecond)
					var r relay
					if which == "spoold" {
						r = startDaemon(b, daemonConfig{DataDir: newDataDir(b), SinkPort: px.port(), LogLevel: "info"}, time.Minute)
					} else {
						r = startPostfix(b, tools, px.port())
					}
					warmUp(b, r, sk, *flagNLat, *flagCLat)
					row := measure(b, r, sk, 4096, *flagNLat, *flagCLat, false)
					sessions := px.sessions.Load() // the warm-up's included
					stopRelay(b, r)
					px.close()
					_ = sk.srv.Close()
					out := byRelay[which]
					out.E2E = append(out.E2E, row.E2EMPS)
					out.Sessions = append(out.Sessions, float64(sessions))
					out.CPU = append(out.CPU, row.CPUPerMsg)
					out.Failures += row.Errors + row.Missing + row.Dups + row.Unexpected
					b.Logf("rep %d %s at %d ms: e2e %.0f msg/s, %d upstream sessions, CPU %.2f ms/msg",
						i+1, which, d, row.E2EMPS, sessions, row.CPUPerMsg)
				}
				slices.Reverse(order)
			}
			for _, which := range relays {
				r := byRelay[which]
				b.ReportMetric(median(r.E2E), which+"_e2e_msg/s")
				if r.Failures > 0 {
					b.Errorf("%s: %d messages failed, lost or delivered twice", which, r.Failures)
				}
				rows = append(rows, r)
			}
		})
	}
	var sb strings.Builder
	writeLatency(&sb, rows, load, loadavg())
	fmt.Print(sb.String())
	if *flagOut != "" {
		if f, err := os.OpenFile(*flagOut, os.O_APPEND|os.O_CREATE|os.O_WRONLY, 0o644); err == nil {
			_, _ = f.WriteString(sb.String())
			f.Close()
		} else {
			b.Errorf("benchtest: -bench.out: %v", err)
		}
	}
}

func writeLatency(w io.Writer, rows []*latRow, load0, load1 string) {
	if len(rows) == 0 {
		return
	}
	spread := func(xs []float64, format string) string {
		if len(xs) == 0 {
			return "-"
		}
		return fmt.Sprintf(format+" ["+format+".."+format+"]", median(xs), slices.Min(xs), slices.Max(xs))
	}
	fmt.Fprintf(w, "\nRelay to an upstream behind a fixed one-way delay (%d x 4 KB, %d clients, %d upstream connections, "+
		"%d repetitions, median [min..max]; %s; %d CPUs, load %s -> %s):\n\n",
		rows[0].N, *flagCLat, *flagConns, len(rows[0].E2E), spooldVersion(), nproc(), load0, load1)
	io.WriteString(w, "| one-way delay | relay | end-to-end msg/s | upstream sessions | relay CPU ms/msg | vs Postfix | failed/lost/twice |\n")
	io.WriteString(w, "| --- | --- | --- | --- | --- | --- | --- |\n")
	for _, r := range rows {
		ratio := "-"
		if r.Relay == "spoold" {
			for _, p := range rows {
				if p.Relay == "postfix" && p.Delay == r.Delay && median(p.E2E) > 0 {
					ratio = fmt.Sprintf("%.2fx", median(r.E2E)/median(p.E2E))
				}
			}
		}
		name := r.Relay
		if name == "postfix" {
			name = "Postfix " + theSuite.pfVer
		}
		fmt.Fprintf(w, "| %d ms | %s | %s | %s | %s | %s | %d |\n", r.Delay, name, spread(r.E2E, "%.0f"),
			spread(r.Sessions, "%.0f"), spread(r.CPU, "%.2f"), ratio, r.Failures)
	}
	io.WriteString(w, "\n")
}
