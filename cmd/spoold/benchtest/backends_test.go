//go:build linux

package benchtest

import (
	"flag"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/spoold/spoold/spool/pgspool/pgtest"
)

var flagBackends1M = flag.Bool("bench.backends1m", false, "BenchmarkSpoolBackends: also relay 1 MB messages (-bench.n1m of them)")

// backendRow is one spool backend's repetitions of one cell of the
// backend matrix.
type backendRow struct {
	Backend    string // bbolt or PostgreSQL
	Nodes      int
	Size       string
	Clients, N int
	Ingest     []float64 // msg/s per repetition
	E2E        []float64
	CPU        []float64    // CPU ms per message: spoold nodes + PostgreSQL server
	Errors     int          // failed submissions
	Lost       int          // accepted but never delivered
	Dups       int          // delivered twice
	Unexpected int          // delivered although the submission failed
	Stmts      []stmtCounts // database statements per message by kind, with -bench.statements
}

func (s *suite) addBackend(r backendRow) {
	s.mu.Lock()
	defer s.mu.Unlock()
	for i, o := range s.backends {
		if o.Backend == r.Backend && o.Nodes == r.Nodes && o.Size == r.Size && o.Clients == r.Clients {
			s.backends[i] = r
			return
		}
	}
	s.backends = append(s.backends, r)
}

// spoolCluster is spoold on a PostgreSQL spool: one or more nodes sharing
// one database, and the server holding it. It is one relay to measure: the
// load is spread over the nodes, and its CPU is that of every node and of
// the server's whole process tree (postmaster, backends, checkpointer,
// WAL writer, autovacuum), so that CPU per message compares with bbolt,
// whose spool lives inside the spoold process.
type spoolCluster struct {
	nodes []*daemon
	pgPID int // the postmaster
}

func (c *spoolCluster) name() string {
	return fmt.Sprintf("spoold on PostgreSQL (%d nodes)", len(c.nodes))
}
func (c *spoolCluster) addr() string { return c.nodes[0].smtpAddr }
func (c *spoolCluster) rootPID() int { return c.nodes[0].pid }

func (c *spoolCluster) addrs() []string {
	out := make([]string, len(c.nodes))
	for i, d := range c.nodes {
		out[i] = d.smtpAddr
	}
	return out
}

func (c *spoolCluster) memPIDs() []int {
	out := make([]int, len(c.nodes))
	for i, d := range c.nodes {
		out[i] = d.pid
	}
	return out
}

func (c *spoolCluster) rootPIDs() []int { return append(c.memPIDs(), c.pgPID) }

func (c *spoolCluster) alive() error {
	for _, d := range c.nodes {
		if err := d.alive(); err != nil {
			return err
		}
	}
	if err := syscall.Kill(c.pgPID, 0); err != nil {
		return fmt.Errorf("benchtest: the PostgreSQL server (pid %d) is gone: %w", c.pgPID, err)
	}
	return nil
}

func (c *spoolCluster) logTail() string {
	var b strings.Builder
	for i, d := range c.nodes {
		fmt.Fprintf(&b, "--- node %d ---\n%s\n", i+1, d.logTail())
	}
	return b.String()
}

func (c *spoolCluster) stop(tb testing.TB) {
	for _, d := range c.nodes {
		d.stop(tb)
	}
}

// postmasterPID reads the server's PID from the lock file next to its unix
// socket in the DSN's host directory: its first line is the postmaster's
// PID, as in postmaster.pid (PostgreSQL's CreateSocketLockFile). The server
// was started by pg_ctl, so it is no child of the test.
func postmasterPID(dsn string) (int, error) {
	host := ""
	for f := range strings.FieldsSeq(dsn) {
		if v, ok := strings.CutPrefix(f, "host="); ok {
			host = v
		}
	}
	if host == "" {
		return 0, fmt.Errorf("benchtest: no host= socket directory in the test cluster's DSN")
	}
	locks, _ := filepath.Glob(filepath.Join(host, ".s.PGSQL.*.lock"))
	if len(locks) != 1 {
		return 0, fmt.Errorf("benchtest: want one socket lock file in %s, found %d: is the PostgreSQL server running?", host, len(locks))
	}
	b, err := os.ReadFile(locks[0])
	if err != nil {
		return 0, fmt.Errorf("benchtest: reading the postmaster's PID: %w", err)
	}
	line, _, _ := strings.Cut(string(b), "\n")
	pid, err := strconv.Atoi(strings.TrimSpace(line))
	if err != nil || pid <= 0 {
		return 0, fmt.Errorf("benchtest: %s does not start with the postmaster's PID: %q", locks[0], line)
	}
	return pid, nil
}

// backendVariant is one column of the comparison: a spool backend and a
// node count.
type backendVariant struct {
	backend string // "bbolt" or "PostgreSQL"
	nodes   int
}

// BenchmarkSpoolBackends relays the same load through spoold on its bbolt
// spool (one node) and on a PostgreSQL spool with one and with three nodes,
// in the same run and the same way as BenchmarkRelaySideBySide: one
// connection per message, the same in-process sink, a fresh spool (an
// empty schema in one throwaway PostgreSQL cluster, or a fresh data dir)
// and fresh processes for every repetition, a warm-up of one message per
// client, and every accepted message checked at the sink (none lost, none
// twice). Three nodes get the connections round robin and all deliver to
// the one sink. CPU per message counts the spoold processes and, for
// PostgreSQL, the server's whole process tree. The variants rotate within
// each cell from one repetition to the next, so drift of the machine hits
// all alike.
//
// It skips, saying why, when the PostgreSQL server binaries are missing;
// see doc.go for the command.
func BenchmarkSpoolBackends(b *testing.B) {
	if _, err := pgtest.FindBin(); err != nil {
		b.Skipf("spool backend comparison skipped: %v", err)
	}
	if *flagReps < 1 {
		b.Fatalf("benchtest: -bench.reps %d: want at least 1", *flagReps)
	}
	pg := pgtest.StartWith(b, pgtest.Options{StatStatements: *flagStatements})
	pgPID, err := postmasterPID(pg.DSN("postgres"))
	if err != nil {
		b.Fatal(err)
	}
	theSuite.mu.Lock()
	theSuite.backendLoad = loadavg()
	theSuite.mu.Unlock()
	sizes := []struct {
		name  string
		bytes int
		n     int
	}{{"4KB", 4096, *flagN4K}}
	if *flagBackends1M {
		sizes = append(sizes, struct {
			name  string
			bytes int
			n     int
		}{"1MB", 1 << 20, *flagN1M})
	}
	variants := []backendVariant{{"bbolt", 1}, {"PostgreSQL", 1}, {"PostgreSQL", 3}}
	for _, sz := range sizes {
		for _, c := range clientCounts(b) {
			b.Run(fmt.Sprintf("%s/clients=%d", sz.name, c), func(b *testing.B) {
				rows := make([]backendRow, len(variants))
				for i, v := range variants {
					rows[i] = backendRow{Backend: v.backend, Nodes: v.nodes, Size: sz.name, Clients: c, N: sz.n}
				}
				for rep := range b.N * *flagReps {
					for k := range variants {
						i := (rep + k) % len(variants) // rotate which goes first
						v := variants[i]
						sk := startSink(b, sz.n)
						r := startBackend(b, v, pg, pgPID, sk.port())
						warmUp(b, r, sk, sz.n, c)
						count := *flagStatements && v.backend == "PostgreSQL"
						var sessions0 int64
						if count {
							pg.ResetStatements(b)
							sessions0 = pg.Sessions(b)
						}
						row := measure(b, r, sk, sz.bytes, sz.n, c, false)
						stopRelay(b, r)
						if count {
							// After the stop, so every commit of the run is in
							// (a message reaches the sink before its delivery
							// is recorded); the stop's own few statements are
							// noise against thousands of messages.
							stmts := pg.Statements(b)
							sc := countStatements(stmts, sz.n-row.Errors)
							// Less the session of this reading itself.
							sc["sessions"] = float64(pg.Sessions(b)-sessions0-1) / float64(sz.n-row.Errors)
							if testing.Verbose() {
								for _, st := range stmts {
									b.Logf("  %6.2f/msg %-10s %.160s", float64(st.Calls)/float64(sz.n-row.Errors), stmtKind(st.Query), strings.Join(strings.Fields(st.Query), " "))
								}
							}
							rows[i].Stmts = append(rows[i].Stmts, sc)
							b.Logf("rep %d %s x%d: %.1f statements/msg %v", rep+1, v.backend, v.nodes, sc.total(), fmtCounts(sc))
						}
						_ = sk.srv.Close()
						out := &rows[i]
						out.Ingest = append(out.Ingest, row.IngestMPS)
						out.E2E = append(out.E2E, row.E2EMPS)
						out.CPU = append(out.CPU, row.CPUPerMsg)
						out.Errors += row.Errors
						out.Lost += row.Missing
						out.Dups += row.Dups
						out.Unexpected += row.Unexpected
						b.Logf("rep %d %s x%d: ingest %.0f msg/s, e2e %.0f msg/s, CPU %.2f ms/msg", rep+1, v.backend, v.nodes, row.IngestMPS, row.E2EMPS, row.CPUPerMsg)
					}
				}
				for _, r := range rows {
					key := fmt.Sprintf("%s%d", strings.ToLower(r.Backend), r.Nodes)
					b.ReportMetric(median(r.Ingest), key+"_ingest_msg/s")
					b.ReportMetric(median(r.E2E), key+"_e2e_msg/s")
					b.ReportMetric(median(r.CPU), key+"_cpu_ms/msg")
					if len(r.Stmts) > 0 {
						b.ReportMetric(medianOf(r.Stmts, stmtCounts.total), key+"_stmts/msg")
					}
					theSuite.addBackend(r)
					if r.Errors+r.Lost+r.Dups+r.Unexpected > 0 {
						b.Errorf("%s with %d node(s): %d submissions failed, %d accepted messages lost, %d delivered twice, %d delivered although refused",
							r.Backend, r.Nodes, r.Errors, r.Lost, r.Dups, r.Unexpected)
					}
				}
			})
		}
	}
}

// startBackend starts one variant on fresh state: a new data dir for bbolt;
// for PostgreSQL an empty schema (cheaper than a database, which costs a
// checkpoint that would land in the measurement) and one data dir per node
// for the node's local files (admin socket, log).
func startBackend(b *testing.B, v backendVariant, pg *pgtest.Cluster, pgPID, sinkPort int) relay {
	b.Helper()
	// spoold's default log level: a line per accepted and per delivered
	// message, as in the side-by-side run.
	if v.backend == "bbolt" {
		return startDaemon(b, daemonConfig{DataDir: newDataDir(b), SinkPort: sinkPort, LogLevel: "info"}, time.Minute)
	}
	dsn := pg.NewSchema(b)
	c := &spoolCluster{pgPID: pgPID}
	// Nodes start one after another: the first migrates the empty schema.
	for i := range v.nodes {
		c.nodes = append(c.nodes, startDaemon(b, daemonConfig{
			DataDir: newDataDir(b), SinkPort: sinkPort, LogLevel: "info",
			PostgresDSN: dsn, Node: fmt.Sprintf("bench-%d", i+1),
		}, time.Minute))
	}
	return c
}

// writeBackends writes the backend table: median [min..max] per backend,
// node count and cell.
func writeBackends(w io.Writer, rows []backendRow) {
	fmt.Fprintf(w, "Spool backends (%d repetitions per cell, interleaved; median [min..max]; CPU = spoold nodes + PostgreSQL server):\n\n", len(rows[0].E2E))
	io.WriteString(w, "| backend | nodes | size | C | N | ingest msg/s | end-to-end msg/s | CPU ms/msg | failed / lost / twice |\n")
	io.WriteString(w, "| --- | --- | --- | --- | --- | --- | --- | --- | --- |\n")
	for _, r := range rows {
		size := sizeLabel(r.Size)
		fmt.Fprintf(w, "| %s | %d | %s | %d | %d | %s | %s | %s | %d / %d / %d |\n", r.Backend, r.Nodes, size, r.Clients, r.N,
			medianSpread(r.Ingest, "%.0f"), medianSpread(r.E2E, "%.0f"), medianSpread(r.CPU, "%.2f"), r.Errors, r.Lost, r.Dups+r.Unexpected)
	}
	io.WriteString(w, "\n")
}

// TestPostmasterPIDFromTheSocketLock checks the PID reading the backend
// benchmark's CPU accounting relies on, against a real throwaway cluster.
func TestPostmasterPIDFromTheSocketLock(t *testing.T) {
	if _, err := pgtest.FindBin(); err != nil {
		t.Skipf("no PostgreSQL server binaries: %v", err)
	}
	pg := pgtest.Start(t)
	pid, err := postmasterPID(pg.DSN("postgres"))
	if err != nil {
		t.Fatal(err)
	}
	comm, err := os.ReadFile(fmt.Sprintf("/proc/%d/comm", pid))
	if err != nil {
		t.Fatalf("postmasterPID = %d, no such process: %v", pid, err)
	}
	if got := strings.TrimSpace(string(comm)); got != "postgres" {
		t.Errorf("postmasterPID = %d, a %q process; want postgres", pid, got)
	}
	if _, err := treeCPU(pid); err != nil {
		t.Errorf("treeCPU of the postmaster: %v", err)
	}
	if _, err := postmasterPID("host=" + t.TempDir() + " dbname=x"); err == nil {
		t.Error("postmasterPID of a directory without a server: no error")
	}
	if _, err := postmasterPID("dbname=x"); err == nil {
		t.Error("postmasterPID of a DSN without host: no error")
	}
}

// postgresVersion is the version of the server binaries pgtest runs, so
// the table says which PostgreSQL it measured.
func postgresVersion() string {
	dir, err := pgtest.FindBin()
	if err != nil {
		return "(version unknown)"
	}
	out, err := exec.Command(filepath.Join(dir, "postgres"), "--version").Output()
	if err != nil {
		return "(version unknown)"
	}
	return strings.TrimPrefix(strings.TrimSpace(string(out)), "postgres (PostgreSQL) ")
}
