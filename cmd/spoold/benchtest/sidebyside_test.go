//go:build linux

package benchtest

import (
	"flag"
	"fmt"
	"io"
	"os/exec"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"
)

var flagReps = flag.Int("bench.reps", 3, "interleaved repetitions per cell and b.N iteration (side by side with Postfix, spool backends)")

// maxClients is the largest of -bench.clients (50 when it does not parse;
// clientCounts reports that).
func maxClients() int {
	m := 0
	for f := range strings.SplitSeq(*flagClients, ",") {
		if c, err := strconv.Atoi(strings.TrimSpace(f)); err == nil {
			m = max(m, c)
		}
	}
	if m == 0 {
		return 50
	}
	return m
}

// sideRow is one relay's repetitions of one cell of the side-by-side matrix.
type sideRow struct {
	Relay, Size string
	Clients, N  int
	Ingest, E2E []float64 // msg/s per repetition
	CPU         []float64 // relay's CPU ms per message per repetition
	Errors      int       // failed submissions
	Lost        int       // accepted but never delivered
	Dups        int       // delivered twice
	Unexpected  int       // delivered although the submission failed
}

func (s *suite) addSide(r sideRow) {
	s.mu.Lock()
	defer s.mu.Unlock()
	for i, o := range s.side {
		if o.Relay == r.Relay && o.Size == r.Size && o.Clients == r.Clients {
			s.side[i] = r
			return
		}
	}
	s.side = append(s.side, r)
}

// BenchmarkRelaySideBySide relays the same load through spoold and through
// a Postfix reference relay started by the benchmark, in the same run and
// the same way: the same load generator (one connection per message), the
// same in-process sink, fresh relay and empty queue for every repetition,
// CPU of each relay's whole process tree from /proc, and every accepted
// message checked at the sink (none lost, none twice). The two relays
// alternate within each cell (spoold first in even repetitions, Postfix
// first in odd ones), so drift of the machine hits both alike.
//
// It needs root for Postfix and skips otherwise; see doc.go.
func BenchmarkRelaySideBySide(b *testing.B) {
	tools, err := findPostfix()
	if err != nil {
		b.Skipf("side-by-side with Postfix skipped: %v", err)
	}
	if *flagReps < 1 {
		b.Fatalf("benchtest: -bench.reps %d: want at least 1", *flagReps)
	}
	// Other work on the machine skews a comparison; the table says how busy
	// it was at the start and at the end.
	theSuite.mu.Lock()
	theSuite.sideLoad = loadavg()
	theSuite.mu.Unlock()
	sizes := []struct {
		name  string
		bytes int
		n     int
	}{{"4KB", 4096, *flagN4K}, {"1MB", 1 << 20, *flagN1M}}
	for _, sz := range sizes {
		for _, c := range clientCounts(b) {
			b.Run(fmt.Sprintf("%s/clients=%d", sz.name, c), func(b *testing.B) {
				rows := map[string]*sideRow{
					"spoold":  {Relay: "spoold", Size: sz.name, Clients: c, N: sz.n},
					"postfix": {Relay: "Postfix", Size: sz.name, Clients: c, N: sz.n},
				}
				order := []string{"spoold", "postfix"}
				for i := range b.N * *flagReps {
					for _, which := range order {
						sk := startSink(b, sz.n)
						var r relay
						if which == "spoold" {
							// spoold's default log level: a line per accepted and per
							// delivered message, as Postfix logs each message too.
							r = startDaemon(b, daemonConfig{DataDir: newDataDir(b), SinkPort: sk.port(), LogLevel: "info"}, time.Minute)
						} else {
							r = startPostfix(b, tools, sk.port())
						}
						warmUp(b, r, sk, sz.n, c)
						row := measure(b, r, sk, sz.bytes, sz.n, c, false)
						stopRelay(b, r)
						_ = sk.srv.Close()
						out := rows[which]
						out.Ingest = append(out.Ingest, row.IngestMPS)
						out.E2E = append(out.E2E, row.E2EMPS)
						out.CPU = append(out.CPU, row.CPUPerMsg)
						out.Errors += row.Errors
						out.Lost += row.Missing
						out.Dups += row.Dups
						out.Unexpected += row.Unexpected
						b.Logf("rep %d %s: ingest %.0f msg/s, e2e %.0f msg/s, CPU %.2f ms/msg", i+1, which, row.IngestMPS, row.E2EMPS, row.CPUPerMsg)
					}
					slices.Reverse(order)
				}
				for _, which := range []string{"spoold", "postfix"} {
					r := rows[which]
					b.ReportMetric(median(r.Ingest), which+"_ingest_msg/s")
					b.ReportMetric(median(r.E2E), which+"_e2e_msg/s")
					b.ReportMetric(median(r.CPU), which+"_cpu_ms/msg")
					theSuite.addSide(*r)
					if r.Errors+r.Lost+r.Dups+r.Unexpected > 0 {
						b.Errorf("%s: %d submissions failed, %d accepted messages lost, %d delivered twice, %d delivered although refused",
							r.Relay, r.Errors, r.Lost, r.Dups, r.Unexpected)
					}
				}
				if p := median(rows["postfix"].E2E); p > 0 {
					b.ReportMetric(median(rows["spoold"].E2E)/p, "e2e_x_postfix")
				}
			})
		}
	}
}

// warmUp relays one 4 KB message per client, all at once, and waits until
// the sink has them, so that neither relay is measured while it starts
// processes or opens its first upstream sessions: Postfix's master spawns
// smtpd, cleanup and smtp processes on demand, and qmgr raises its
// concurrency towards the sink as deliveries succeed. The messages carry
// sequence numbers past n, which the sink counts apart.
func warmUp(b *testing.B, r relay, sk *sink, n, clients int) {
	b.Helper()
	body := payload(4096 - len(header(0)))
	addrs := relayAddrs(r) // every node of a cluster gets its share
	errs := make(chan error, clients)
	for i := range clients {
		go func() {
			_, err := sendOne(addrs[i%len(addrs)], n+i, body)
			errs <- err
		}()
	}
	for range clients {
		if err := <-errs; err != nil {
			b.Fatalf("benchtest: warming up %s: %v", r.name(), err)
		}
	}
	waitFor(b, r, "the warm-up messages at the sink", 2*time.Minute, func() bool { return sk.other.Load() >= int64(clients) })
}

// stopRelay stops a relay before the next one starts, so that the two
// never share the machine.
func stopRelay(tb testing.TB, r relay) {
	switch r := r.(type) {
	case *daemon:
		r.stop(tb)
	case *postfixRelay:
		r.stop(tb)
	case *spoolCluster:
		r.stop(tb)
	}
}

// medianSpread is a table cell: median [min..max] of xs in format.
func medianSpread(xs []float64, format string) string {
	if len(xs) == 0 {
		return "-"
	}
	return fmt.Sprintf(format+" ["+format+".."+format+"]", median(xs), slices.Min(xs), slices.Max(xs))
}

// sizeLabel turns a cell's size name ("4KB") into the tables' "4 KB".
func sizeLabel(size string) string {
	return strings.NewReplacer("KB", " KB", "MB", " MB").Replace(size)
}

// writeSide writes the side-by-side table: median [min..max] per relay and
// cell, and the end-to-end ratio of the medians.
func writeSide(w io.Writer, rows []sideRow) {
	fmt.Fprintf(w, "Side by side with Postfix (%d repetitions per cell, interleaved; median [min..max]):\n\n", len(rows[0].E2E))
	io.WriteString(w, "| relay | size | C | N | ingest msg/s | end-to-end msg/s | relay CPU ms/msg | e2e vs Postfix | failed / lost / twice |\n")
	io.WriteString(w, "| --- | --- | --- | --- | --- | --- | --- | --- | --- |\n")
	for _, r := range rows {
		ratio := "-"
		if r.Relay == "spoold" {
			for _, p := range rows {
				if p.Relay == "Postfix" && p.Size == r.Size && p.Clients == r.Clients && median(p.E2E) > 0 {
					ratio = fmt.Sprintf("%.2fx", median(r.E2E)/median(p.E2E))
				}
			}
		}
		size := sizeLabel(r.Size)
		fmt.Fprintf(w, "| %s | %s | %d | %d | %s | %s | %s | %s | %d / %d / %d |\n", r.Relay, size, r.Clients, r.N,
			medianSpread(r.Ingest, "%.0f"), medianSpread(r.E2E, "%.0f"), medianSpread(r.CPU, "%.2f"), ratio, r.Errors, r.Lost, r.Dups+r.Unexpected)
	}
	io.WriteString(w, "\n")
}

// spooldVersion is the first line of `spoold -version` of the binary under
// test, so a table says which build it measured.
func spooldVersion() string {
	bin := *flagSpoold
	if bin == "" {
		bin = theSuite.bin
	}
	if bin == "" {
		return "version unknown"
	}
	out, err := exec.Command(bin, "-version").Output()
	if err != nil {
		return "version unknown"
	}
	line, _, _ := strings.Cut(strings.TrimSpace(string(out)), "\n")
	if !strings.Contains(line, "commit") {
		// A plain `go build` in a shared work tree may carry no VCS stamp.
		if c, err := exec.Command("git", "rev-parse", "--short", "HEAD").Output(); err == nil {
			line += ", tree at commit " + strings.TrimSpace(string(c))
		}
	}
	return line
}
