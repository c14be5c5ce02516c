// Package benchtest owns spoold's system-level benchmark: it builds the real
// spoold binary, runs it on loopback with a generated config against an
// in-process go-smtp sink, and measures what an admin compares with Postfix:
// ingest and end-to-end msgs/s, MAIL..250 and submit->delivered latency
// percentiles, the daemon's CPU per message (utime+stime from /proc) and its
// peak RSS (VmHWM), plus RSS with a queued backlog, start-up time with
// 100,000 queued messages and the RSS cost of one 35 MB message.
//
// Everything lives in Benchmark functions, so a normal `go test ./...` only
// compiles this package. Run everything (as root this includes the
// side-by-side run with Postfix below) with
//
//	go test -run '^$' -bench . -benchtime 1x -timeout 60m ./cmd/spoold/benchtest
//
// or pick one part, e.g. -bench 'Relay$/4KB' or -bench 'Startup'.
// BenchmarkIngest repeats the relay matrix with delivery paused (ingest
// alone). Flags (after the package): -bench.n4k, -bench.n1m, -bench.clients,
// -bench.queued, -bench.startup, -bench.conns, -bench.workers, -bench.dir,
// -bench.spoold, -bench.out (also write the Markdown tables to a file),
// -bench.reps, -bench.postfix (side by side) and -bench.backends1m (spool
// backends).
// Each benchmark prints its figures as custom metrics and a Markdown table
// is printed at the end. The spool lives under -bench.dir (default the
// system temp dir): put it on the disk a production spool would use, since
// every 250 waits for fsync.
//
// # Side by side with Postfix
//
// BenchmarkRelaySideBySide relays the same load through spoold and through
// Postfix in the same run, the same way, and prints one table for both:
//
//	go test -run '^$' -bench SideBySide -timeout 30m ./cmd/spoold/benchtest
//
// as root. For each size (4 KB, 1 MB) and client
// count (-bench.clients, default 1, 10, 50) it runs -bench.reps (default 3)
// repetitions of each relay, interleaved (spoold then Postfix, then Postfix
// then spoold, ...), each on a fresh relay with an empty queue and a fresh
// sink, after a warm-up of one message per client. Both get the same Go
// load generator (one connection per message), the same in-process sink
// and -bench.conns (20) upstream sessions, and both log every message to a
// file as they do by default (spoold at log level info, Postfix through its
// postlogd, whose CPU counts as Postfix's). It reports per relay ingest
// msg/s, end-to-end msg/s and the relay's CPU ms per message (utime+stime
// of its whole process tree from /proc, including children that exited:
// Postfix's smtpd, cleanup, qmgr and smtp processes), checks that no
// accepted message was lost or delivered twice, and prints a Markdown table
// of median [min..max] at the end. With the default counts (2,000 x 4 KB,
// 200 x 1 MB) it takes about 5 minutes on a 2-core machine; -bench.n4k,
// -bench.n1m and -bench.reps trade time for spread.
//
// The README's side-by-side table (4 KB and 1 MB, 10 and 50 clients, end to
// end msg/s and CPU ms per message of both relays, same run) comes from
//
//	go test -run '^$' -bench SideBySide -benchtime 1x -timeout 30m ./cmd/spoold/benchtest -bench.clients 10,50 -bench.out /tmp/sidebyside.md
//
// (as root; about 5 minutes on an idle 2-core machine). To compare two spoold
// builds, build each with `go build -o DIR/spoold-NAME ./cmd/spoold` and run
// the command once per build with -bench.spoold DIR/spoold-NAME, alternating
// builds between repetitions of the whole command: each run measures its
// build against Postfix, so the ratio to Postfix is comparable across runs
// even when the machine's load changes between them.
//
// Postfix is a throwaway instance that the benchmark owns: main.cf and
// master.cf written into a temporary directory under -bench.dir, with its
// own queue and data directories there, one smtpd on a free loopback port,
// relayhost the sink, no local delivery, no TLS, no chroot, logging to
// maillog in that directory. Its master runs in the foreground as a child of
// the test; it is stopped after each repetition, and a watchdog stops it and
// removes the instance if the test binary is killed. The system's
// /etc/postfix, /var/spool/postfix and any running system Postfix are not
// touched. Durability is Postfix's default, comparable to spoold's: cleanup
// fsyncs every queue file before smtpd answers 250. Other settings keep
// their defaults (in_flow_delay, the connection cache).
//
// It needs the postfix and postconf commands (Debian: `apt-get install
// postfix`, answering "No configuration"; CI's .ci/run installs it that
// way) and root, because Postfix's master binds as root and runs its
// daemons as mail_owner; without either it skips and says why. Postfix's
// daemons must be able to traverse -bench.dir. -bench.postfix names the
// directory of postfix and postconf when they are not in PATH or /usr/sbin.
//
// # Spool backends: bbolt and PostgreSQL
//
// BenchmarkSpoolBackends relays the same load through spoold on its bbolt
// spool (one node) and on a PostgreSQL spool with one node and with three
// nodes sharing one database, in the same run, and prints one table:
// backend, nodes, size, clients, ingest msg/s, end-to-end msg/s, CPU ms per
// message, failed / lost / twice, median [min..max] of -bench.reps
// repetitions. The README's figures come from
//
//	go test -run '^$' -bench SpoolBackends -benchtime 1x -timeout 30m ./cmd/spoold/benchtest -bench.clients 10,50 -bench.out /tmp/backends.md
//
// (about 5 minutes on an idle 2-core machine with the defaults: 2,000 x
// 4 KB, 3 repetitions; add -bench.backends1m for 1 MB messages too,
// -bench.n1m of them). It works as the side-by-side run does: a fresh
// spool and fresh processes for every repetition, a warm-up of one message
// per client, the variants rotating within each cell, every accepted
// message checked at the sink, spoold at log level info, the sink account's
// max_connections -bench.conns (on PostgreSQL counted in the database, so
// three nodes share those sessions, as they share a mailbox's in
// production). The PostgreSQL server is a throwaway
// cluster (spool/pgspool/pgtest: unix socket only, fsync on, run as user
// postgres when the test runs as root), started once per run; each
// repetition gets an empty schema in it. Three nodes each get their own
// data dir and spool.node name, the load generator sends message i to node
// i mod 3, and all deliver to the one sink, so end to end counts every
// message once wherever it was accepted and whichever node delivered it.
// CPU per message is the spoold processes' CPU plus that of the PostgreSQL
// server's whole process tree (the postmaster, found from the lock file of
// its socket, and its backends, checkpointer, WAL writer and autovacuum,
// including exited ones), so it compares with bbolt's, whose spool lives
// inside spoold. It needs the PostgreSQL server binaries (Debian: `apt-get
// install postgresql`) and skips saying so without them; it does not need
// root.
//
// With -bench.statements the cluster loads pg_stat_statements and each
// PostgreSQL row also counts the database statements per accepted message
// by kind (enqueue, claim, due accounts and next due time, notify, state
// transitions, body, limits, heartbeat, rescue, BEGIN/COMMIT, other), from
// after the warm-up until the nodes have stopped: a figure that does not
// depend on how busy the machine is, unlike msg/s and CPU, so the work
// added by more nodes can be compared on a shared machine. It is reported
// as the metric <variant>_stmts/msg and as a second table; with -v each
// statement's count is logged. Its bookkeeping costs the server a little
// CPU, so CPU figures for the README come from runs without it.
//
// The benchmark reads /proc, so its files build on Linux only.
package benchtest
