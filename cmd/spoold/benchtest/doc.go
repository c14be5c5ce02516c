// Package benchtest owns spoold's system-level benchmark: it builds the real
// spoold binary, runs it on loopback with a generated config against an
// in-process go-smtp sink, and measures what an admin compares with Postfix:
// ingest and end-to-end msgs/s, MAIL..250 and submit->delivered latency
// percentiles, the daemon's CPU per message (utime+stime from /proc) and its
// peak RSS (VmHWM), plus RSS with a queued backlog, start-up time with
// 100,000 queued messages and the RSS cost of one 35 MB message.
//
// Everything lives in Benchmark functions, so a normal `go test ./...` only
// compiles this package. Run it with
//
//	go test -run '^$' -bench . -benchtime 1x -timeout 60m ./cmd/spoold/benchtest
//
// or pick one part, e.g. -bench 'Relay/4KB' or -bench 'Startup'.
// BenchmarkIngest repeats the relay matrix with delivery paused (ingest
// alone). Flags (after the package): -bench.n4k, -bench.n1m, -bench.clients,
// -bench.queued, -bench.startup, -bench.conns, -bench.workers, -bench.dir,
// -bench.spoold, -bench.out (also write the Markdown tables to a file).
// Each benchmark prints its figures as custom metrics and a Markdown table
// is printed at the end. The spool lives under -bench.dir (default the
// system temp dir): put it on the disk a production spool would use, since
// every 250 waits for fsync.
//
// The side-by-side comparison with Postfix uses /work/shared/bench
// (relay-bench.sh), not this package; see the README's performance section.
package benchtest
