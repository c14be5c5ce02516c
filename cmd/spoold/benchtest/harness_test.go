//go:build linux

package benchtest

import (
	"bufio"
	"bytes"
	"errors"
	"flag"
	"fmt"
	"io"
	"log"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/emersion/go-smtp"
)

var (
	flagN4K     = flag.Int("bench.n4k", 2000, "4 KB messages per relay run")
	flagN1M     = flag.Int("bench.n1m", 200, "1 MB messages per relay run")
	flagClients = flag.String("bench.clients", "1,10,50", "concurrent SMTP clients, comma-separated (one connection per message)")
	flagQueued  = flag.Int("bench.queued", 10000, "messages queued for the RSS comparison")
	flagStartup = flag.Int("bench.startup", 100000, "messages queued for the start-up time")
	flagConns   = flag.Int("bench.conns", 20, "upstream connections of the sink account (Postfix's reference relay uses destination concurrency 20)")
	flagWorkers = flag.Int("bench.workers", 32, "delivery.workers")
	flagDir     = flag.String("bench.dir", "", "parent of the data dirs (default the system temp dir); must be on the disk under test")
	flagSpoold  = flag.String("bench.spoold", "", "spoold binary to run instead of building cmd/spoold")
	flagOut     = flag.String("bench.out", "", "also write the Markdown results to this file")
)

// clkTck is USER_HZ, the unit of utime/stime in /proc/<pid>/stat; it is 100
// on every Linux architecture Go supports.
const clkTck = 100

// suite holds what the benchmarks of one test process share: the spoold
// binary (built once) and the result rows printed at the end.
type suite struct {
	once     sync.Once
	tmp      string
	bin      string
	buildErr error

	mu          sync.Mutex
	relay       []relayRow
	side        []sideRow    // BenchmarkRelaySideBySide
	pfVer       string       // Postfix's mail_version, once known
	sideLoad    string       // load average when the side-by-side run started
	backends    []backendRow // BenchmarkSpoolBackends
	backendLoad string       // load average when the backend run started
	others      []otherRow
	filled      map[int]filledDir // queued-message count -> prepared data dir
	cleanup     []string          // dirs removed when the process ends
}

type filledDir struct {
	dir  string
	rate float64 // enqueue msg/s achieved while filling
}

type relayRow struct {
	Size            string
	Clients, N      int
	IngestMPS       float64
	E2EMPS          float64
	TxnP50, TxnP99  float64 // ms, MAIL..250 after DATA
	LatP50, LatP99  float64 // ms, submit (connect) -> sink received
	CPUPerMsg       float64 // ms of spoold utime+stime per message
	PeakRSSMB       float64
	Errors, Missing int
	Dups            int // deliveries of a message the sink already had
	Unexpected      int // deliveries of messages whose submission failed
}

type otherRow struct{ What, Value, Target string }

var theSuite = &suite{}

func TestMain(m *testing.M) {
	flag.Parse()
	code := m.Run()
	theSuite.report(os.Stdout)
	for _, dir := range append(theSuite.cleanup, theSuite.tmp) {
		if dir != "" {
			_ = os.RemoveAll(dir)
		}
	}
	os.Exit(code)
}

// spooldBinary returns the binary under test, building cmd/spoold on first use.
func spooldBinary(tb testing.TB) string {
	tb.Helper()
	if *flagSpoold != "" {
		return *flagSpoold
	}
	s := theSuite
	s.once.Do(func() {
		s.tmp, s.buildErr = os.MkdirTemp("", "spoold-benchbin-")
		if s.buildErr != nil {
			return
		}
		s.bin = filepath.Join(s.tmp, "spoold")
		out, err := exec.Command("go", "build", "-o", s.bin, "github.com/spoold/spoold/cmd/spoold").CombinedOutput()
		if err != nil {
			s.buildErr = fmt.Errorf("go build cmd/spoold: %w\n%s", err, out)
		}
	})
	if s.buildErr != nil {
		tb.Fatal(s.buildErr)
	}
	return s.bin
}

// addRelay records a row; the testing package runs a benchmark once with
// b.N = 1 before the requested -benchtime, so a later row replaces an
// earlier one of the same cell.
func (s *suite) addRelay(r relayRow) {
	s.mu.Lock()
	defer s.mu.Unlock()
	for i, o := range s.relay {
		if o.Size == r.Size && o.Clients == r.Clients {
			s.relay[i] = r
			return
		}
	}
	s.relay = append(s.relay, r)
}

func (s *suite) addOther(what, value, target string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	for i, o := range s.others {
		if o.What == what {
			s.others[i] = otherRow{what, value, target}
			return
		}
	}
	s.others = append(s.others, otherRow{what, value, target})
}

// filledSpool returns a data dir holding n queued 4 KB messages, filling it
// on first use; it lives until the test process ends, so the b.N = 1 probe
// and the real run share one fill.
func (s *suite) filledSpool(tb testing.TB, n int) (dir string, rate float64) {
	tb.Helper()
	s.mu.Lock()
	f, ok := s.filled[n]
	s.mu.Unlock()
	if ok {
		return f.dir, f.rate
	}
	dir, err := os.MkdirTemp(*flagDir, "spoold-bench-q")
	if err != nil {
		tb.Fatalf("benchtest: data dir: %v", err)
	}
	s.mu.Lock()
	s.cleanup = append(s.cleanup, dir)
	s.mu.Unlock()
	rate = fillSpool(tb, dir, n, 4096)
	s.mu.Lock()
	if s.filled == nil {
		s.filled = map[int]filledDir{}
	}
	s.filled[n] = filledDir{dir, rate}
	s.mu.Unlock()
	return dir, rate
}

// report prints the Markdown tables of everything measured in this process.
func (s *suite) report(w io.Writer) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if len(s.relay) == 0 && len(s.side) == 0 && len(s.backends) == 0 && len(s.others) == 0 {
		return
	}
	var b strings.Builder
	host, _ := os.Hostname()
	fmt.Fprintf(&b, "\n## spoold benchmark (%s, %d CPUs, %s, load %s)\n\n", host, nproc(), time.Now().Format("2006-01-02 15:04"), loadavg())
	if len(s.relay) > 0 {
		b.WriteString("| size | clients | N | ingest msg/s | e2e msg/s | MAIL..250 p50/p99 ms | submit->delivered p50/p99 ms | spoold CPU ms/msg | peak RSS MB | errors | missing |\n")
		b.WriteString("|---|---|---|---|---|---|---|---|---|---|---|\n")
		for _, r := range s.relay {
			e2e, lat := "-", "-"
			if r.E2EMPS > 0 {
				e2e, lat = fmt.Sprintf("%.0f", r.E2EMPS), fmt.Sprintf("%.1f / %.1f", r.LatP50, r.LatP99)
			}
			fmt.Fprintf(&b, "| %s | %d | %d | %.0f | %s | %.1f / %.1f | %s | %.2f | %.1f | %d | %d |\n",
				r.Size, r.Clients, r.N, r.IngestMPS, e2e, r.TxnP50, r.TxnP99, lat, r.CPUPerMsg, r.PeakRSSMB, r.Errors, r.Missing)
		}
		b.WriteString("\n")
	}
	if len(s.side) > 0 {
		fmt.Fprintf(&b, "spoold (%s) and Postfix %s on loopback, both relaying to the in-process sink; %d upstream sessions each; "+
			"load average %s at the start, %s at the end.\n", spooldVersion(), s.pfVer, *flagConns, s.sideLoad, loadavg())
		writeSide(&b, s.side)
	}
	if len(s.backends) > 0 {
		fmt.Fprintf(&b, "spoold (%s) with its spool in bbolt and in PostgreSQL %s, relaying to the in-process sink; at most %d upstream sessions (on PostgreSQL across all nodes); "+
			"load average %s at the start, %s at the end.\n", spooldVersion(), postgresVersion(), *flagConns, s.backendLoad, loadavg())
		writeBackends(&b, s.backends)
		writeStatements(&b, s.backends)
	}
	if len(s.others) > 0 {
		b.WriteString("| figure | measured | target (issue 8) |\n|---|---|---|\n")
		for _, o := range s.others {
			fmt.Fprintf(&b, "| %s | %s | %s |\n", o.What, o.Value, o.Target)
		}
		b.WriteString("\n")
	}
	_, _ = io.WriteString(w, b.String())
	if *flagOut != "" {
		if err := os.WriteFile(*flagOut, []byte(b.String()), 0o644); err != nil {
			fmt.Fprintf(os.Stderr, "benchtest: writing %s: %v\n", *flagOut, err)
		}
	}
}

func nproc() int {
	b, err := os.ReadFile("/proc/cpuinfo")
	if err != nil {
		return 0
	}
	return bytes.Count(b, []byte("\nprocessor")) + boolInt(bytes.HasPrefix(b, []byte("processor")))
}

func boolInt(v bool) int {
	if v {
		return 1
	}
	return 0
}

func loadavg() string {
	b, err := os.ReadFile("/proc/loadavg")
	if err != nil {
		return "?"
	}
	f := strings.Fields(string(b))
	if len(f) < 3 {
		return "?"
	}
	return strings.Join(f[:3], " ")
}

// ---- /proc readers ----

// procCPU returns the process's user+system CPU time.
func procCPU(pid int) (time.Duration, error) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return 0, fmt.Errorf("benchtest: reading stat of %d: %w", pid, err)
	}
	// The command name may contain spaces and parentheses: fields start after the last ')'.
	i := bytes.LastIndexByte(b, ')')
	if i < 0 {
		return 0, fmt.Errorf("benchtest: malformed /proc/%d/stat", pid)
	}
	f := strings.Fields(string(b[i+1:]))
	// f[0] is field 3 (state); utime and stime are fields 14 and 15.
	if len(f) < 13 {
		return 0, fmt.Errorf("benchtest: short /proc/%d/stat", pid)
	}
	ut, err1 := strconv.ParseInt(f[11], 10, 64)
	st, err2 := strconv.ParseInt(f[12], 10, 64)
	if err := errors.Join(err1, err2); err != nil {
		return 0, fmt.Errorf("benchtest: parsing /proc/%d/stat: %w", pid, err)
	}
	return time.Duration(ut+st) * time.Second / clkTck, nil
}

// treeCPU returns the CPU time of pid and all its descendants: their
// utime+stime, plus cutime+cstime, which holds the CPU of children that
// already exited and were reaped. Postfix is a master process whose smtpd,
// cleanup, qmgr and smtp children come and go; spoold is one process, for
// which this equals procCPU. A delta of two readings counts every process
// of the tree that ran in between, whether it is still alive or not.
func treeCPU(pid int) (time.Duration, error) {
	ents, err := os.ReadDir("/proc")
	if err != nil {
		return 0, fmt.Errorf("benchtest: listing /proc: %w", err)
	}
	type proc struct {
		ppid int
		cpu  int64 // ticks: utime+stime+cutime+cstime
	}
	procs := map[int]proc{}
	for _, e := range ents {
		p, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		ppid, ticks, err := statTicks(p)
		if err != nil {
			continue // exited while we looked; its CPU is in its parent's cutime
		}
		procs[p] = proc{ppid, ticks}
	}
	root, ok := procs[pid]
	if !ok {
		return 0, fmt.Errorf("benchtest: process %d is gone", pid)
	}
	children := map[int][]int{}
	for p, pr := range procs {
		children[pr.ppid] = append(children[pr.ppid], p)
	}
	total := root.cpu
	queue := slices.Clone(children[pid])
	for len(queue) > 0 {
		p := queue[0]
		queue = queue[1:]
		total += procs[p].cpu
		queue = append(queue, children[p]...)
	}
	return time.Duration(total) * time.Second / clkTck, nil
}

// statTicks returns the parent PID and utime+stime+cutime+cstime of pid.
func statTicks(pid int) (ppid int, ticks int64, err error) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return 0, 0, err
	}
	i := bytes.LastIndexByte(b, ')')
	if i < 0 {
		return 0, 0, fmt.Errorf("benchtest: malformed /proc/%d/stat", pid)
	}
	f := strings.Fields(string(b[i+1:]))
	// f[0] is field 3 (state); ppid is field 4, utime..cstime fields 14-17.
	if len(f) < 15 {
		return 0, 0, fmt.Errorf("benchtest: short /proc/%d/stat", pid)
	}
	ppid, err = strconv.Atoi(f[1])
	if err != nil {
		return 0, 0, fmt.Errorf("benchtest: parsing /proc/%d/stat: %w", pid, err)
	}
	for _, s := range f[11:15] {
		v, err := strconv.ParseInt(s, 10, 64)
		if err != nil {
			return 0, 0, fmt.Errorf("benchtest: parsing /proc/%d/stat: %w", pid, err)
		}
		ticks += v
	}
	return ppid, ticks, nil
}

// procMem returns VmRSS and VmHWM (peak RSS) in bytes.
func procMem(pid int) (rss, hwm int64, err error) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return 0, 0, fmt.Errorf("benchtest: reading status of %d: %w", pid, err)
	}
	for line := range strings.SplitSeq(string(b), "\n") {
		k, v, ok := strings.Cut(line, ":")
		if !ok || (k != "VmRSS" && k != "VmHWM") {
			continue
		}
		kb, err := strconv.ParseInt(strings.TrimSuffix(strings.TrimSpace(v), " kB"), 10, 64)
		if err != nil {
			return 0, 0, fmt.Errorf("benchtest: parsing %s of %d: %w", k, pid, err)
		}
		if k == "VmRSS" {
			rss = kb << 10
		} else {
			hwm = kb << 10
		}
	}
	if rss == 0 || hwm == 0 {
		return 0, 0, fmt.Errorf("benchtest: no VmRSS/VmHWM in /proc/%d/status", pid)
	}
	return rss, hwm, nil
}

// resetPeak sets the process's VmHWM back to its current RSS (Linux >= 4.0).
func resetPeak(pid int) error {
	return os.WriteFile(fmt.Sprintf("/proc/%d/clear_refs", pid), []byte("5"), 0)
}

func mb(bytes int64) float64 { return float64(bytes) / (1 << 20) }

// ---- spoold process ----

type daemonConfig struct {
	DataDir  string
	SinkPort int
	Paused   bool
	LogLevel string // default warn: no line per message
	// PostgresDSN, when set, puts the spool in that PostgreSQL database
	// (spool.backend: postgres) instead of bbolt under DataDir; Node is the
	// node's name there (spool.node).
	PostgresDSN string
	Node        string
}

type daemon struct {
	pid       int
	smtpAddr  string
	httpAddr  string
	logPath   string
	cmd       *exec.Cmd
	exited    chan struct{}
	waitErr   error
	startedAt time.Time
	readyIn   time.Duration // exec -> first 200 from /readyz
}

// newDataDir makes a data dir under -bench.dir, removed when tb ends. The
// path stays short: the admin socket inside it must fit sun_path.
func newDataDir(tb testing.TB) string {
	tb.Helper()
	dir, err := os.MkdirTemp(*flagDir, "spoold-bench-")
	if err != nil {
		tb.Fatalf("benchtest: data dir: %v", err)
	}
	tb.Cleanup(func() { _ = os.RemoveAll(dir) })
	return dir
}

func freePort(tb testing.TB) int {
	tb.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		tb.Fatalf("benchtest: free port: %v", err)
	}
	defer ln.Close()
	return ln.Addr().(*net.TCPAddr).Port
}

// configYAML is spoold's config for a benchmark: one plain SMTP listener on
// loopback with room for every client, and one account relaying to the sink
// without TLS, AUTH or rate limit (0 = unlimited for a non-provider account).
func configYAML(dataDir, smtpAddr, httpAddr string, c daemonConfig) string {
	level := c.LogLevel
	if level == "" {
		level = "warn"
	}
	spoolKeys := ""
	if c.PostgresDSN != "" {
		spoolKeys = fmt.Sprintf("spool:\n  backend: postgres\n  dsn: %q\n  node: %q\n", c.PostgresDSN, c.Node)
	}
	return spoolKeys + fmt.Sprintf(`data_dir: %s
log: {level: %s, format: json}
http: {listen: %s}
delivery: {workers: %d, paused: %t}
smtp_listeners:
  - name: bench
    listen: %s
    tls: none
    allowed_networks: [127.0.0.0/8]
    max_connections: 2000
    max_connections_per_ip: 1000
    max_message_size: 64MiB
accounts:
  - name: sink
    transport: smtp
    host: 127.0.0.1
    port: %d
    tls: none
    auth: none
    sender_rule: keep
    max_connections: %d
    rate_per_minute: 0
routes:
  default: sink
`, dataDir, level, httpAddr, *flagWorkers, c.Paused, smtpAddr, c.SinkPort, *flagConns)
}

// startDaemon runs spoold on fresh loopback ports and waits for /readyz.
// It is stopped (SIGTERM, then SIGKILL) when tb ends.
func startDaemon(tb testing.TB, c daemonConfig, readyTimeout time.Duration) *daemon {
	tb.Helper()
	bin := spooldBinary(tb)
	d := &daemon{
		smtpAddr: fmt.Sprintf("127.0.0.1:%d", freePort(tb)),
		httpAddr: fmt.Sprintf("127.0.0.1:%d", freePort(tb)),
		exited:   make(chan struct{}),
	}
	cfgPath := filepath.Join(c.DataDir, "bench.yaml")
	if err := os.WriteFile(cfgPath, []byte(configYAML(c.DataDir, d.smtpAddr, d.httpAddr, c)), 0o600); err != nil {
		tb.Fatalf("benchtest: writing config: %v", err)
	}
	d.logPath = filepath.Join(c.DataDir, "spoold.log")
	logf, err := os.Create(d.logPath)
	if err != nil {
		tb.Fatalf("benchtest: log file: %v", err)
	}
	d.cmd = exec.Command(bin, "-config", cfgPath)
	d.cmd.Stdout, d.cmd.Stderr = logf, logf
	// spoold ends with the benchmark even when the test binary is killed.
	d.cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGTERM}
	d.startedAt = time.Now()
	if err := d.cmd.Start(); err != nil {
		logf.Close()
		tb.Fatalf("benchtest: starting spoold: %v", err)
	}
	d.pid = d.cmd.Process.Pid
	go func() {
		d.waitErr = d.cmd.Wait()
		logf.Close()
		close(d.exited)
	}()
	tb.Cleanup(func() { d.stop(tb) })

	client := &http.Client{Timeout: time.Second}
	url := "http://" + d.httpAddr + "/readyz"
	deadline := d.startedAt.Add(readyTimeout)
	for {
		select {
		case <-d.exited:
			tb.Fatalf("benchtest: spoold exited before it was ready: %v\n%s", d.waitErr, d.logTail())
		default:
		}
		if resp, err := client.Get(url); err == nil {
			_, _ = io.Copy(io.Discard, resp.Body)
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				d.readyIn = time.Since(d.startedAt)
				return d
			}
		}
		if time.Now().After(deadline) {
			tb.Fatalf("benchtest: spoold not ready after %s\n%s", readyTimeout, d.logTail())
		}
		// Short poll interval: this loop is the start-up time measurement.
		time.Sleep(2 * time.Millisecond)
	}
}

// stop ends spoold gracefully, or kills it after a minute.
func (d *daemon) stop(tb testing.TB) {
	select {
	case <-d.exited:
		return
	default:
	}
	_ = d.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-d.exited:
	case <-time.After(60 * time.Second):
		_ = d.cmd.Process.Kill()
		<-d.exited
		tb.Errorf("benchtest: spoold did not stop within 60s of SIGTERM; killed")
	}
}

func (d *daemon) alive() error {
	select {
	case <-d.exited:
		return fmt.Errorf("benchtest: spoold exited: %v\n%s", d.waitErr, d.logTail())
	default:
		return nil
	}
}

func (d *daemon) logTail() string {
	b, _ := os.ReadFile(d.logPath)
	if len(b) > 4000 {
		b = b[len(b)-4000:]
	}
	return string(b)
}

// ---- in-process upstream sink ----

// sink is the upstream SMTP server spoold delivers to. It keys messages by
// their X-Bench-Seq header and records the first receipt time of each.
type sink struct {
	srv   *smtp.Server
	ln    net.Listener
	recv  []atomic.Int64 // unix ns of the first receipt per seq; 0 = not yet
	count atomic.Int64   // distinct seqs received
	dups  atomic.Int64
	other atomic.Int64 // messages without a valid seq
	last  atomic.Int64 // unix ns of the latest first receipt
}

func startSink(tb testing.TB, n int) *sink {
	tb.Helper()
	s := &sink{recv: make([]atomic.Int64, n)}
	s.srv = smtp.NewServer(smtp.BackendFunc(func(*smtp.Conn) (smtp.Session, error) { return &sinkSession{s: s}, nil }))
	s.srv.Domain = "sink.bench.invalid"
	s.srv.MaxMessageBytes = 128 << 20
	s.srv.MaxRecipients = 1000
	s.srv.ReadTimeout = 2 * time.Minute
	s.srv.WriteTimeout = 2 * time.Minute
	s.srv.ErrorLog = log.New(io.Discard, "", 0)
	var err error
	s.ln, err = net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		tb.Fatalf("benchtest: sink listen: %v", err)
	}
	go func() { _ = s.srv.Serve(s.ln) }()
	tb.Cleanup(func() { _ = s.srv.Close() })
	return s
}

func (s *sink) port() int { return s.ln.Addr().(*net.TCPAddr).Port }

type sinkSession struct{ s *sink }

func (*sinkSession) Reset()                               {}
func (*sinkSession) Logout() error                        { return nil }
func (*sinkSession) Mail(string, *smtp.MailOptions) error { return nil }
func (*sinkSession) Rcpt(string, *smtp.RcptOptions) error { return nil }
func (ss *sinkSession) Data(r io.Reader) error {
	br := bufio.NewReaderSize(r, 8192)
	seq := -1
	for {
		line, err := br.ReadSlice('\n')
		if err != nil && !errors.Is(err, bufio.ErrBufferFull) {
			break
		}
		t := bytes.TrimRight(line, "\r\n")
		if len(t) == 0 {
			break
		}
		if v, ok := bytes.CutPrefix(t, []byte("X-Bench-Seq:")); ok {
			if n, err := strconv.Atoi(string(bytes.TrimSpace(v))); err == nil {
				seq = n
			}
		}
	}
	if _, err := io.Copy(io.Discard, br); err != nil {
		return err
	}
	now := time.Now().UnixNano()
	s := ss.s
	if seq < 0 || seq >= len(s.recv) {
		s.other.Add(1)
		return nil
	}
	if s.recv[seq].CompareAndSwap(0, now) {
		s.count.Add(1)
		for {
			l := s.last.Load()
			if now <= l || s.last.CompareAndSwap(l, now) {
				break
			}
		}
	} else {
		s.dups.Add(1)
	}
	return nil
}

// relay is a running relay under test: spoold or the Postfix reference.
type relay interface {
	name() string
	addr() string    // its SMTP listener
	rootPID() int    // the process whose tree is the relay (treeCPU)
	alive() error    // nil while it runs
	logTail() string // the end of its log, for errors
}

// multiRelay is a relay of several processes: the nodes of a spoold cluster
// and the PostgreSQL server they share. measure spreads the load over every
// address and counts the CPU of every process tree.
type multiRelay interface {
	relay
	addrs() []string // every node's SMTP listener
	rootPIDs() []int // every process tree that is part of the relay
	memPIDs() []int  // the spoold processes whose peak RSS is reported
}

func relayAddrs(r relay) []string {
	if m, ok := r.(multiRelay); ok {
		return m.addrs()
	}
	return []string{r.addr()}
}

// relayCPU is the CPU time of every process tree of the relay.
func relayCPU(r relay) (time.Duration, error) {
	pids := []int{r.rootPID()}
	if m, ok := r.(multiRelay); ok {
		pids = m.rootPIDs()
	}
	var total time.Duration
	for _, pid := range pids {
		cpu, err := treeCPU(pid)
		if err != nil {
			return 0, err
		}
		total += cpu
	}
	return total, nil
}

// relayPeakRSS is the largest VmHWM of the relay's spoold processes (of
// its root process for a single relay).
func relayPeakRSS(r relay) (int64, error) {
	pids := []int{r.rootPID()}
	if m, ok := r.(multiRelay); ok {
		pids = m.memPIDs()
	}
	var peak int64
	for _, pid := range pids {
		_, hwm, err := procMem(pid)
		if err != nil {
			return 0, err
		}
		peak = max(peak, hwm)
	}
	return peak, nil
}

func (d *daemon) name() string { return "spoold" }
func (d *daemon) addr() string { return d.smtpAddr }
func (d *daemon) rootPID() int { return d.pid }

// waitFor polls cond every 10ms until it holds, the relay dies or the
// timeout passes.
func waitFor(tb testing.TB, r relay, what string, timeout time.Duration, cond func() bool) {
	tb.Helper()
	deadline := time.Now().Add(timeout)
	for !cond() {
		if err := r.alive(); err != nil {
			tb.Fatalf("waiting for %s: %v", what, err)
		}
		if time.Now().After(deadline) {
			tb.Fatalf("benchtest: timed out after %s waiting for %s\n%s", timeout, what, r.logTail())
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// ---- load generator ----

// payload returns CRLF text lines totalling about size bytes.
func payload(size int) []byte {
	const alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/"
	b := make([]byte, 0, size+80)
	for i := 0; len(b) < size; i++ {
		n := min(76, size-len(b))
		if n < 3 {
			break
		}
		for j := range n - 2 {
			b = append(b, alphabet[(i*7+j)%len(alphabet)])
		}
		b = append(b, '\r', '\n')
	}
	return b
}

func header(seq int) []byte {
	return fmt.Appendf(nil, "From: Bench <bench@example.org>\r\nTo: rcpt@example.net\r\n"+
		"Subject: bench %d\r\nMessage-ID: <%d.%d@bench.invalid>\r\nDate: %s\r\nX-Bench-Seq: %d\r\n\r\n",
		seq, seq, time.Now().UnixNano(), time.Now().Format(time.RFC1123Z), seq)
}

type loadResult struct {
	start, end time.Time
	sent       []int64 // unix ns of each message's connect
	accepted   []bool
	txn        []time.Duration // MAIL..250 of accepted messages
	errors     int
	firstErr   error
}

// runLoad submits n messages of about size bytes over `clients` concurrent
// sessions, one connection per message, as scanners do. With several
// addresses (the nodes of a cluster) message seq goes to addrs[seq %
// len(addrs)], round robin, as a DNS name or load balancer over the nodes
// would spread the scanners.
func runLoad(addrs []string, n, clients, size int) *loadResult {
	body := payload(size - len(header(0)))
	res := &loadResult{sent: make([]int64, n), accepted: make([]bool, n)}
	var next atomic.Int64
	var mu sync.Mutex
	var wg sync.WaitGroup
	res.start = time.Now()
	for range clients {
		wg.Go(func() {
			for {
				seq := int(next.Add(1) - 1)
				if seq >= n {
					return
				}
				res.sent[seq] = time.Now().UnixNano()
				txn, err := sendOne(addrs[seq%len(addrs)], seq, body)
				mu.Lock()
				if err != nil {
					res.errors++
					if res.firstErr == nil {
						res.firstErr = err
					}
				} else {
					res.accepted[seq] = true
					res.txn = append(res.txn, txn)
				}
				mu.Unlock()
			}
		})
	}
	wg.Wait()
	res.end = time.Now()
	return res
}

func sendOne(addr string, seq int, body []byte) (time.Duration, error) {
	conn, err := net.DialTimeout("tcp", addr, 30*time.Second)
	if err != nil {
		return 0, fmt.Errorf("benchtest: dial %s: %w", addr, err)
	}
	c := smtp.NewClient(conn)
	defer c.Close()
	c.CommandTimeout = 2 * time.Minute
	c.SubmissionTimeout = 5 * time.Minute
	if err := c.Hello("client.bench.invalid"); err != nil {
		return 0, fmt.Errorf("benchtest: EHLO: %w", err)
	}
	t0 := time.Now()
	if err := c.Mail("bench@example.org", nil); err != nil {
		return 0, fmt.Errorf("benchtest: MAIL: %w", err)
	}
	if err := c.Rcpt(fmt.Sprintf("%drcpt@example.net", seq), nil); err != nil {
		return 0, fmt.Errorf("benchtest: RCPT: %w", err)
	}
	w, err := c.Data()
	if err != nil {
		return 0, fmt.Errorf("benchtest: DATA: %w", err)
	}
	if _, err := w.Write(header(seq)); err != nil {
		return 0, fmt.Errorf("benchtest: writing message: %w", err)
	}
	if _, err := w.Write(body); err != nil {
		return 0, fmt.Errorf("benchtest: writing message: %w", err)
	}
	if err := w.Close(); err != nil {
		return 0, fmt.Errorf("benchtest: end of DATA: %w", err)
	}
	txn := time.Since(t0)
	_ = c.Quit()
	return txn, nil
}

// percentile returns the nearest-rank p-th percentile (0 < p <= 100) in ms.
func percentile(ds []time.Duration, p float64) float64 {
	if len(ds) == 0 {
		return 0
	}
	s := slices.Clone(ds)
	slices.Sort(s)
	i := int(float64(len(s))*p/100+0.5) - 1
	i = max(0, min(len(s)-1, i))
	return float64(s[i]) / float64(time.Millisecond)
}

func median(xs []float64) float64 {
	if len(xs) == 0 {
		return 0
	}
	s := slices.Clone(xs)
	slices.Sort(s)
	if len(s)%2 == 1 {
		return s[len(s)/2]
	}
	return (s[len(s)/2-1] + s[len(s)/2]) / 2
}
