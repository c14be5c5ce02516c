//go:build linux

package benchtest

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"log/slog"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/spoold/spoold/spool"
)

func clientCounts(tb testing.TB) []int {
	tb.Helper()
	var out []int
	for f := range strings.SplitSeq(*flagClients, ",") {
		c, err := strconv.Atoi(strings.TrimSpace(f))
		if err != nil || c < 1 {
			tb.Fatalf("benchtest: -bench.clients %q: want positive integers", *flagClients)
		}
		out = append(out, c)
	}
	return out
}

// BenchmarkRelay measures SMTP ingest and relaying to the sink, one
// connection per message, for 4 KB and 1 MB messages at each client count.
// Every repetition (b.N) runs a fresh spoold on an empty spool.
func BenchmarkRelay(b *testing.B) { benchRelay(b, false) }

// BenchmarkIngest is BenchmarkRelay with delivery paused: SMTP ingest alone,
// which shows how much delivery's spool transactions slow ingest down.
func BenchmarkIngest(b *testing.B) { benchRelay(b, true) }

func benchRelay(b *testing.B, paused bool) {
	sizes := []struct {
		name  string
		bytes int
		n     int
	}{{"4KB", 4096, *flagN4K}, {"1MB", 1 << 20, *flagN1M}}
	for _, sz := range sizes {
		for _, c := range clientCounts(b) {
			b.Run(fmt.Sprintf("%s/clients=%d", sz.name, c), func(b *testing.B) {
				var rows []relayRow
				for range b.N {
					rows = append(rows, relayOnce(b, sz.bytes, sz.n, c, paused))
				}
				r := medianRow(rows)
				r.Size = sz.name
				if paused {
					r.Size += " (delivery paused)"
				}
				b.ReportMetric(r.IngestMPS, "ingest_msg/s")
				b.ReportMetric(r.TxnP50, "txn_p50_ms")
				b.ReportMetric(r.TxnP99, "txn_p99_ms")
				if !paused {
					b.ReportMetric(r.E2EMPS, "e2e_msg/s")
					b.ReportMetric(r.LatP50, "e2e_p50_ms")
					b.ReportMetric(r.LatP99, "e2e_p99_ms")
				}
				b.ReportMetric(r.CPUPerMsg, "cpu_ms/msg")
				b.ReportMetric(r.PeakRSSMB, "peak_rss_MB")
				theSuite.addRelay(r)
				if r.Errors > 0 || r.Missing > 0 || r.Dups > 0 || r.Unexpected > 0 {
					b.Errorf("%d submissions failed, %d accepted messages never reached the sink, %d arrived twice, %d arrived although refused",
						r.Errors, r.Missing, r.Dups, r.Unexpected)
				}
			})
		}
	}
}

func relayOnce(b *testing.B, size, n, clients int, paused bool) relayRow {
	sk := startSink(b, n)
	d := startDaemon(b, daemonConfig{DataDir: newDataDir(b), SinkPort: sk.port(), Paused: paused}, time.Minute)
	defer d.stop(b)
	return measure(b, d, sk, size, n, clients, paused)
}

// measure submits n messages of about size bytes to the relay over
// `clients` concurrent sessions and, unless delivery is paused, waits until
// every accepted message reached the sink. The relay's CPU is that of its
// whole process tree (treeCPU), from the first connection to the last
// delivery; for a cluster (multiRelay) the load goes round robin to every
// node and the CPU is the sum of every node's and the PostgreSQL server's
// trees.
func measure(b *testing.B, d relay, sk *sink, size, n, clients int, paused bool) relayRow {
	cpu0, err := relayCPU(d)
	if err != nil {
		b.Fatal(err)
	}
	res := runLoad(relayAddrs(d), n, clients, size)
	if res.firstErr != nil {
		b.Logf("first submission error: %v", res.firstErr)
	}
	var accepted []int
	for seq, ok := range res.accepted {
		if ok {
			accepted = append(accepted, seq)
		}
	}
	allIn := func() bool {
		if sk.count.Load() < int64(len(accepted)) {
			return false
		}
		for _, seq := range accepted {
			if sk.recv[seq].Load() == 0 {
				return false
			}
		}
		return true
	}
	if !paused {
		waitFor(b, d, "every accepted message at the sink", 10*time.Minute, allIn)
	}
	cpu1, err := relayCPU(d)
	if err != nil {
		b.Fatal(err)
	}
	hwm, err := relayPeakRSS(d)
	if err != nil {
		b.Fatal(err)
	}
	var lat []time.Duration
	missing := 0
	for _, seq := range accepted {
		if paused {
			break
		}
		r := sk.recv[seq].Load()
		if r == 0 {
			missing++
			continue
		}
		lat = append(lat, time.Duration(r-res.sent[seq]))
	}
	acc := float64(len(accepted))
	last := time.Unix(0, sk.last.Load())
	row := relayRow{
		Clients:   clients,
		N:         n,
		IngestMPS: acc / res.end.Sub(res.start).Seconds(),
		TxnP50:    percentile(res.txn, 50),
		TxnP99:    percentile(res.txn, 99),
		LatP50:    percentile(lat, 50),
		LatP99:    percentile(lat, 99),
		PeakRSSMB: mb(hwm),
		Errors:    res.errors,
		Missing:   missing,
	}
	if !paused {
		row.E2EMPS = acc / last.Sub(res.start).Seconds()
	}
	if acc > 0 {
		row.CPUPerMsg = float64(cpu1-cpu0) / float64(time.Millisecond) / acc
	}
	// Messages whose submission failed must not arrive either (a relay that
	// queued a message and then answered with an error sends it twice when
	// the client retries).
	for seq, ok := range res.accepted {
		if !ok && sk.recv[seq].Load() != 0 {
			row.Unexpected++
		}
	}
	row.Dups = int(sk.dups.Load())
	if row.Dups > 0 {
		b.Logf("sink saw %d duplicate deliveries", row.Dups)
	}
	return row
}

func medianRow(rows []relayRow) relayRow {
	pick := func(f func(relayRow) float64) float64 {
		xs := make([]float64, len(rows))
		for i, r := range rows {
			xs[i] = f(r)
		}
		return median(xs)
	}
	out := rows[0]
	out.IngestMPS = pick(func(r relayRow) float64 { return r.IngestMPS })
	out.E2EMPS = pick(func(r relayRow) float64 { return r.E2EMPS })
	out.TxnP50 = pick(func(r relayRow) float64 { return r.TxnP50 })
	out.TxnP99 = pick(func(r relayRow) float64 { return r.TxnP99 })
	out.LatP50 = pick(func(r relayRow) float64 { return r.LatP50 })
	out.LatP99 = pick(func(r relayRow) float64 { return r.LatP99 })
	out.CPUPerMsg = pick(func(r relayRow) float64 { return r.CPUPerMsg })
	out.PeakRSSMB = pick(func(r relayRow) float64 { return r.PeakRSSMB })
	out.Errors, out.Missing, out.Dups, out.Unexpected = 0, 0, 0, 0
	for _, r := range rows {
		out.Errors += r.Errors
		out.Missing += r.Missing
		out.Dups += r.Dups
		out.Unexpected += r.Unexpected
	}
	return out
}

// fillSpool enqueues n messages of about size bytes for account "sink"
// straight through the spool package (much faster than SMTP) and returns
// the achieved enqueue rate.
func fillSpool(tb testing.TB, dir string, n, size int) float64 {
	tb.Helper()
	sp, err := spool.Open(dir, spool.Options{Logger: slog.New(slog.DiscardHandler), RescueInterval: -1})
	if err != nil {
		tb.Fatalf("benchtest: opening spool %s: %v", dir, err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Minute)
	defer cancel()
	body := payload(size - len(header(0)))
	var next atomic.Int64
	var mu sync.Mutex
	var firstErr error
	var wg sync.WaitGroup
	start := time.Now()
	for range 32 {
		wg.Go(func() {
			for {
				seq := int(next.Add(1) - 1)
				if seq >= n || ctx.Err() != nil {
					return
				}
				req := spool.EnqueueRequest{
					From:    "bench@example.org",
					To:      []string{fmt.Sprintf("%drcpt@example.net", seq)},
					Account: "sink",
					Source:  spool.Source{Kind: spool.SourceSMTP, Listener: "bench", PeerIP: "127.0.0.1"},
				}
				if _, err := sp.Enqueue(ctx, req, io.MultiReader(bytes.NewReader(header(seq)), bytes.NewReader(body))); err != nil {
					mu.Lock()
					if firstErr == nil {
						firstErr = err
					}
					mu.Unlock()
					cancel()
					return
				}
			}
		})
	}
	wg.Wait()
	elapsed := time.Since(start)
	if err := sp.Close(); err != nil && firstErr == nil {
		firstErr = err
	}
	if firstErr != nil {
		tb.Fatalf("benchtest: filling the spool: %v", firstErr)
	}
	return float64(n) / elapsed.Seconds()
}

// settledMem samples spoold's memory every 250 ms until RSS stops changing
// (two samples within 1 %, after at least a second) or 15 s pass, and
// returns the last sample.
func settledMem(tb testing.TB, d *daemon) (rss, hwm int64) {
	tb.Helper()
	deadline := time.Now().Add(15 * time.Second)
	var prev int64
	for i := 0; ; i++ {
		r, h, err := procMem(d.pid)
		if err != nil {
			tb.Fatal(err)
		}
		stable := i >= 4 && prev > 0 && abs(r-prev)*100 <= prev
		if stable || time.Now().After(deadline) {
			return r, h
		}
		prev = r
		time.Sleep(250 * time.Millisecond)
	}
}

func abs(x int64) int64 {
	if x < 0 {
		return -x
	}
	return x
}

// BenchmarkQueuedRSS compares spoold's RSS on an empty spool with its RSS
// when -bench.queued 4 KB messages are queued and delivery is paused.
func BenchmarkQueuedRSS(b *testing.B) {
	n := *flagQueued
	sk := startSink(b, 1)
	var rssE, rssQ, hwmE, hwmQ []float64
	for range b.N {
		empty := newDataDir(b)
		d := startDaemon(b, daemonConfig{DataDir: empty, SinkPort: sk.port(), Paused: true}, time.Minute)
		r, h := settledMem(b, d)
		d.stop(b)
		rssE, hwmE = append(rssE, mb(r)), append(hwmE, mb(h))

		full, rate := theSuite.filledSpool(b, n)
		b.Logf("%d messages queued (filled at %.0f msg/s)", n, rate)
		d = startDaemon(b, daemonConfig{DataDir: full, SinkPort: sk.port(), Paused: true}, 2*time.Minute)
		r, h = settledMem(b, d)
		d.stop(b)
		rssQ, hwmQ = append(rssQ, mb(r)), append(hwmQ, mb(h))
	}
	e, q := median(rssE), median(rssQ)
	b.ReportMetric(e, "rss_empty_MB")
	b.ReportMetric(q, "rss_queued_MB")
	b.ReportMetric(q-e, "rss_delta_MB")
	theSuite.addOther(fmt.Sprintf("RSS, empty spool vs %d x 4 KB queued (delivery paused)", n),
		fmt.Sprintf("%.1f MB vs %.1f MB: +%.1f MB (VmHWM %.1f vs %.1f MB)", e, q, q-e, median(hwmE), median(hwmQ)),
		"within 50 MB")
}

// BenchmarkStartup measures exec -> first 200 from /readyz with
// -bench.startup messages queued (delivery on, towards the sink; a few
// hundred may be delivered before each stop, so repetitions see a queue
// that is slightly shorter).
func BenchmarkStartup(b *testing.B) {
	n := *flagStartup
	dir, rate := theSuite.filledSpool(b, n)
	theSuite.addOther(fmt.Sprintf("spool.Enqueue directly, 32 goroutines, %d x 4 KB", n), fmt.Sprintf("%.0f msg/s", rate), "-")
	sk := startSink(b, 1)
	b.ResetTimer()
	var ready []float64
	for range b.N {
		d := startDaemon(b, daemonConfig{DataDir: dir, SinkPort: sk.port()}, 5*time.Minute)
		ready = append(ready, float64(d.readyIn)/float64(time.Millisecond))
		d.stop(b)
	}
	m := median(ready)
	b.ReportMetric(m, "ready_ms")
	theSuite.addOther(fmt.Sprintf("start-up (exec -> /readyz 200) with %d queued", n), fmt.Sprintf("%.0f ms", m), "under 2 s")
}

// BenchmarkStartupEmpty is the start-up time on an empty spool, the
// baseline for BenchmarkStartup.
func BenchmarkStartupEmpty(b *testing.B) {
	sk := startSink(b, 1)
	var ready []float64
	for range b.N {
		d := startDaemon(b, daemonConfig{DataDir: newDataDir(b), SinkPort: sk.port()}, time.Minute)
		ready = append(ready, float64(d.readyIn)/float64(time.Millisecond))
		d.stop(b)
	}
	m := median(ready)
	b.ReportMetric(m, "ready_ms")
	theSuite.addOther("start-up (exec -> /readyz 200), empty spool", fmt.Sprintf("%.0f ms", m), "-")
}

// BenchmarkLargeMessage sends one 35 MiB message through SMTP to the sink
// and measures how far it raises spoold's peak RSS above its RSS after a
// small warm-up.
func BenchmarkLargeMessage(b *testing.B) {
	const size = 35 << 20
	const warm = 5
	var deltas, txns, e2es []float64
	for range b.N {
		sk := startSink(b, warm+1)
		d := startDaemon(b, daemonConfig{DataDir: newDataDir(b), SinkPort: sk.port()}, time.Minute)
		small := payload(4096)
		for seq := range warm {
			if _, err := sendOne(d.smtpAddr, seq, small); err != nil {
				b.Fatalf("warm-up message: %v", err)
			}
		}
		waitFor(b, d, "warm-up deliveries", 2*time.Minute, func() bool { return sk.count.Load() >= warm })
		rss0, _ := settledMem(b, d)
		base := rss0
		if err := resetPeak(d.pid); err != nil {
			// Without clear_refs the baseline is the peak so far.
			b.Logf("cannot reset VmHWM (%v); measuring from the current peak", err)
			_, base, _ = procMem(d.pid)
		} else if r, _, err := procMem(d.pid); err == nil {
			base = r
		}
		big := payload(size - len(header(warm)))
		start := time.Now()
		txn, err := sendOne(d.smtpAddr, warm, big)
		if err != nil {
			b.Fatalf("35 MiB message: %v", err)
		}
		waitFor(b, d, "the 35 MiB message at the sink", 5*time.Minute, func() bool { return sk.recv[warm].Load() != 0 })
		e2e := time.Unix(0, sk.recv[warm].Load()).Sub(start)
		_, hwm, err := procMem(d.pid)
		if err != nil {
			b.Fatal(err)
		}
		d.stop(b)
		deltas = append(deltas, mb(hwm-base))
		txns = append(txns, float64(txn)/float64(time.Millisecond))
		e2es = append(e2es, float64(e2e)/float64(time.Millisecond))
	}
	dm := median(deltas)
	b.ReportMetric(dm, "peak_rss_raise_MB")
	b.ReportMetric(median(txns), "txn_ms")
	b.ReportMetric(median(e2es), "e2e_ms")
	theSuite.addOther("35 MiB message via SMTP to delivery: peak RSS raise",
		fmt.Sprintf("%.1f MB (MAIL..250 %.0f ms, submit->delivered %.0f ms)", dm, median(txns), median(e2es)), "under 16 MB")
}
