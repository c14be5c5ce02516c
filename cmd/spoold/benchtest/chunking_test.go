//go:build linux

package benchtest

import (
	"bytes"
	"flag"
	"fmt"
	"io"
	"net"
	"strings"
	"sync"
	"testing"
	"time"
)

var flagNChunk = flag.Int("bench.nchunk", 300, "messages per run and size in BenchmarkRelayChunking")

// capsFilter forwards TCP connections to target and, when drop is set,
// removes that line from the server's EHLO reply: the same sink with and
// without a capability, behind the same extra hop.
type capsFilter struct {
	ln     net.Listener
	target string
	drop   []byte
	wg     sync.WaitGroup
}

func startCapsFilter(tb testing.TB, target string, drop string) *capsFilter {
	tb.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		tb.Fatalf("benchtest: caps filter listen: %v", err)
	}
	f := &capsFilter{ln: ln, target: target}
	if drop != "" {
		f.drop = []byte("250-" + drop + "\r\n")
	}
	f.wg.Add(1)
	go f.serve()
	tb.Cleanup(func() { ln.Close(); f.wg.Wait() })
	return f
}

func (f *capsFilter) port() int { return f.ln.Addr().(*net.TCPAddr).Port }

func (f *capsFilter) serve() {
	defer f.wg.Done()
	for {
		c, err := f.ln.Accept()
		if err != nil {
			return
		}
		up, err := net.Dial("tcp", f.target)
		if err != nil {
			c.Close()
			continue
		}
		f.wg.Add(2)
		go func() {
			defer f.wg.Done()
			_, _ = io.Copy(up, c)
			up.(*net.TCPConn).CloseWrite()
		}()
		go func() {
			defer f.wg.Done()
			defer c.Close()
			defer up.Close()
			buf := make([]byte, 64<<10)
			for {
				n, err := up.Read(buf)
				if n > 0 {
					out := buf[:n]
					// go-smtp writes its EHLO reply in one call; on
					// loopback it arrives in one read.
					if f.drop != nil && bytes.HasPrefix(out, []byte("250-")) {
						out = bytes.Replace(out, f.drop, nil, 1)
					}
					if _, werr := c.Write(out); werr != nil {
						return
					}
				}
				if err != nil {
					return
				}
			}
		}()
	}
}

// BenchmarkRelayChunking compares spoold's delivery with BDAT (the sink
// offers CHUNKING, as Exchange Online does) and with DATA (the same sink with
// CHUNKING removed from its EHLO reply), for 4 KB and 1 MB messages at each
// of -bench.delays one way, -bench.reps alternating repetitions of
// -bench.nchunk messages from -bench.clat clients. It reports end-to-end
// msg/s and spoold's CPU ms per message.
//
//	go test -run '^$' -bench RelayChunking -benchtime 1x -bench.delays 0,20 -timeout 60m ./cmd/spoold/benchtest
func BenchmarkRelayChunking(b *testing.B) {
	var delays []int
	for f := range strings.SplitSeq(*flagDelays, ",") {
		var d int
		if _, err := fmt.Sscan(strings.TrimSpace(f), &d); err != nil || d < 0 {
			b.Fatalf("benchtest: -bench.delays %q: want milliseconds, comma-separated", *flagDelays)
		}
		delays = append(delays, d)
	}
	type cell struct{ e2e, cpu []float64 }
	var sb strings.Builder
	sb.WriteString("\n| size | one-way delay | upstream body command | end-to-end msg/s | spoold CPU ms/msg |\n| --- | --- | --- | --- | --- |\n")
	for _, size := range []int{4096, 1 << 20} {
		for _, d := range delays {
			b.Run(fmt.Sprintf("size=%d/delay=%dms", size, d), func(b *testing.B) {
				cells := map[string]*cell{"BDAT": {}, "DATA": {}}
				order := []string{"BDAT", "DATA"}
				for i := range b.N * max(1, *flagReps) {
					for _, mode := range order {
						sk := startSink(b, *flagNChunk)
						drop := ""
						if mode == "DATA" {
							drop = "CHUNKING"
						}
						cf := startCapsFilter(b, fmt.Sprintf("127.0.0.1:%d", sk.port()), drop)
						px := startDelayProxy(b, fmt.Sprintf("127.0.0.1:%d", cf.port()), time.Duration(d)*time.Millisecond)
						r := startDaemon(b, daemonConfig{DataDir: newDataDir(b), SinkPort: px.port()}, time.Minute)
						warmUp(b, r, sk, *flagNChunk, *flagCLat)
						row := measure(b, r, sk, size, *flagNChunk, *flagCLat, false)
						stopRelay(b, r)
						px.close()
						_ = sk.srv.Close()
						if n := row.Errors + row.Missing + row.Dups + row.Unexpected; n > 0 {
							b.Errorf("%s: %d messages failed, lost or delivered twice", mode, n)
						}
						c := cells[mode]
						c.e2e = append(c.e2e, row.E2EMPS)
						c.cpu = append(c.cpu, row.CPUPerMsg)
						b.Logf("rep %d %s %d B at %d ms: e2e %.1f msg/s, CPU %.2f ms/msg", i+1, mode, size, d, row.E2EMPS, row.CPUPerMsg)
					}
					order[0], order[1] = order[1], order[0]
				}
				for _, mode := range []string{"BDAT", "DATA"} {
					c := cells[mode]
					b.ReportMetric(median(c.e2e), mode+"_e2e_msg/s")
					fmt.Fprintf(&sb, "| %d | %d ms | %s | %s | %s |\n", size, d, mode, fmtAll(c.e2e, "%.1f"), fmtAll(c.cpu, "%.2f"))
				}
			})
		}
	}
	fmt.Print(sb.String())
}

// fmtAll writes the median and every repetition.
func fmtAll(xs []float64, format string) string {
	parts := make([]string, len(xs))
	for i, x := range xs {
		parts[i] = fmt.Sprintf(format, x)
	}
	return fmt.Sprintf(format, median(xs)) + " (" + strings.Join(parts, ", ") + ")"
}
