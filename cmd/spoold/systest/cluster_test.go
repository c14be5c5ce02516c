package systest

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math/rand/v2"
	"net"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/emersion/go-smtp"

	"github.com/spoold/spoold/spool"
	"github.com/spoold/spoold/spool/pgspool"
	"github.com/spoold/spoold/spool/pgspool/pgtest"
	"github.com/spoold/spoold/spool/spooltest"
)

// clusterCap is the relay account's max_connections: the cap the three
// nodes share.
const clusterCap = 2

// TestClusterKill9Loop runs three spoold nodes on one PostgreSQL spool,
// watching one scan folder, under SMTP load spread over the nodes and
// scans, and SIGKILLs a random node every round (restarting it), at least
// 30 times; then stops the database under load. Asserts: every message
// that got a 250 and every scan that left the folder arrives upstream at
// least once (duplicates counted and logged), no scan fails, the
// upstream never sees more concurrent sessions than the cap of the
// account (also across the database restart: the nodes reach the upstream
// through a link that stalls while the database stops, so sends stay open
// mid-transfer through the restart unless the nodes close them when
// their slots are lost), while the database is down ingest answers 4xx,
// and after it comes back nothing acknowledged is lost and the queue
// drains.
func TestClusterKill9Loop(t *testing.T) {
	needSuite(t)
	kills := max(*flagKills*3/5, 30)
	pg := pgtest.Start(t)
	dsn := pg.NewDatabase(t)
	up := startFake(t, nil)
	link := startStallLink(t, up.Port)
	scanDir := filepath.Join(tempDir(t), "scans")
	if err := os.MkdirAll(scanDir, 0o755); err != nil {
		t.Fatal(err)
	}
	var nodes []*node
	for i := range 3 {
		n := newNode(t, nodeConfig{
			Scan:     true,
			Lease:    "5s",
			Accounts: relayAccount("relay", link.port, fmt.Sprintf("    max_connections: %d\n", clusterCap)),
			Routes:   "  default: relay\n",
			Spool:    fmt.Sprintf("  backend: postgres\n  dsn: %q\n  node: node-%d\n", dsn, i),
		})
		n.ScanDir = scanDir // one share, mounted on every node
		n.writeConfig()
		nodes = append(nodes, n)
	}
	procs := make([]*proc, 3)
	var addrs [3]atomic.Value
	for i, n := range nodes {
		procs[i] = n.start()
		addrs[i].Store(n.SMTPAddr())
	}
	var rr atomic.Int64
	addr := func() string { return addrs[rr.Add(1)%3].Load().(string) }

	ledger := newLedger()
	load := startGoLoad(6, 150, addr, ledger)
	scans, err := startScanLoad(scanDir, "alice@example.com", 150*time.Millisecond)
	if err != nil {
		t.Fatal(err)
	}
	rng := rand.New(rand.NewPCG(uint64(time.Now().UnixNano()), 22))
	start := time.Now()
	for round := 1; round <= kills; round++ {
		time.Sleep(time.Duration(100+rng.IntN(500)) * time.Millisecond)
		i := rng.IntN(3)
		procs[i].Kill()
		procs[i] = nodes[i].start()
		addrs[i].Store(nodes[i].SMTPAddr())
	}
	loopTime := time.Since(start)
	capLoop := up.MaxConcurrent()

	// The database goes away under load: ingest answers 4xx, nothing
	// acknowledged is lost. The link to the upstream stalls first, so the
	// sends under way stay open mid-transfer: the restart frees their
	// slots, and they must close before the database is back and the
	// nodes take the slots again.
	ackedBefore, _ := ledger.snapshot()
	link.stall()
	if !spooltest.Poll(30*time.Second, func() bool { return link.counts().held > 0 }) {
		t.Logf("no send was under way when the link stalled")
	}
	openAtStop := link.counts().open
	pg.Stop(t)
	if !spooltest.Poll(10*time.Second, func() bool { return link.counts().open == 0 }) {
		t.Errorf("%d upstream connections still open 10 s after the database (and so every connection slot) went away", link.counts().open)
	}
	var answer error
	if !spooltest.Poll(30*time.Second, func() bool {
		answer = sendOneTo(nodes[0].SMTPAddr(), "dbdown")
		var se *smtp.SMTPError
		return errors.As(answer, &se) && se.Code/100 == 4
	}) {
		t.Errorf("with the database down a message got %v; want a 4xx answer", answer)
	}
	time.Sleep(2 * time.Second) // the load keeps trying against the stopped database
	pg.Restart(t)
	// The nodes take the slots again and connect while the link still
	// stalls: a connection that survived the restart would be open too.
	dialsAtRestart := link.counts().accepted
	if !spooltest.Poll(30*time.Second, func() bool { return link.counts().accepted >= dialsAtRestart+clusterCap }) {
		t.Logf("fewer than %d connections made after the database restart", clusterCap)
	}
	link.flow()
	load.Stop()
	dropped, err := scans.Stop()
	if err != nil {
		t.Fatalf("scanner: %v", err)
	}
	acked, tried := ledger.snapshot()
	if len(acked) <= len(ackedBefore) {
		t.Logf("no message acknowledged after the database restart (load stopped right after it)")
	}
	keys := append(append([]string(nil), acked...), dropped...)
	got := nodes[0].waitUpstream(up, filepath.Join(scanDir, "alice@example.com"), keys, "after the kill loop and the database restart")

	// Drained: nothing queued, active, deferred or dead in the shared spool.
	sp, err := pgspool.Open(context.Background(), pgspool.Options{DSN: dsn, Node: "systest-check", RescueInterval: -1,
		Logger: slog.New(slog.NewTextHandler(io.Discard, nil))})
	if err != nil {
		t.Fatal(err)
	}
	defer sp.Close()
	var st map[spool.State]int
	if !spooltest.Poll(90*time.Second, func() bool {
		st, err = sp.Stats(context.Background())
		return err == nil && st[spool.StateQueued]+st[spool.StateActive]+st[spool.StateDeferred] == 0
	}) {
		t.Errorf("the shared queue did not drain: %v (%v)", st, err)
	}
	if st[spool.StateDead]+st[spool.StateHeld] != 0 {
		t.Errorf("messages dead or held after the loop: %v", st)
	}
	nodesSeen, err := sp.Nodes(context.Background())
	if err != nil || len(nodesSeen) < 3 {
		t.Errorf("spool_nodes lists %d nodes (%v), want the three", len(nodesSeen), err)
	}
	if out, _, code := nodes[1].ctl("status"); code != 0 || !strings.Contains(out, "node-0") || !strings.Contains(out, "node-1 (this node)") || !strings.Contains(out, "node-2") {
		t.Errorf("spoolctl status (exit %d) does not list the three nodes:\n%s", code, out)
	}
	for i, p := range procs {
		if code, err := p.Stop(60 * time.Second); err != nil || code != 0 {
			t.Errorf("node %d after the loop: SIGTERM exit %d, %v", i, code, err)
		}
	}

	capSeen := up.MaxConcurrent()
	if capLoop > clusterCap {
		t.Errorf("the upstream saw %d concurrent sessions of one account from three nodes during the kill loop; the cap is %d", capLoop, clusterCap)
	}
	if capSeen > clusterCap {
		t.Errorf("the upstream saw %d concurrent sessions of one account from three nodes across the database restart; the cap is %d", capSeen, clusterCap)
	}
	if c := link.counts().maxOpen; c > clusterCap {
		t.Errorf("the nodes had %d connections of one account open at once; the cap is %d", c, clusterCap)
	}
	dups, dupKeys := 0, 0
	for _, c := range got {
		if c > 1 {
			dups += c - 1
			dupKeys++
		}
	}
	t.Logf("cluster kill loop: %d SIGKILLs over 3 nodes in %s; SMTP: %d acknowledged of %d tried; scans: %d dropped; "+
		"upstream received %d messages, at most %d sessions at once (cap %d); duplicates: %d extra copies of %d messages; "+
		"database stopped and restarted once under load with %d sends stalled mid-transfer",
		kills, loopTime.Round(time.Second), len(acked), tried, len(dropped), up.Count(), capSeen, clusterCap, dups, dupKeys, openAtStop)
}

// sendOneTo sends one message and returns the server's answer as an error.
func sendOneTo(addr, key string) error {
	c, err := dialSMTP(addr, "probe.systest", 2*time.Second, 10*time.Second)
	if err != nil {
		return err
	}
	defer c.Close()
	return sendText(c, "mfd@example.com", []string{"bob@example.com"}, key, "")
}

// stallLink is a TCP relay between the nodes and the upstream that can
// stall (hold the nodes' bytes, as a congested link does, while still
// seeing a node close its end at once) and counts the connections open at
// once from the nodes' side.
type stallLink struct {
	port int
	to   string

	mu   sync.Mutex
	gate chan struct{} // closed: bytes flow
	c    linkCounts
}

type linkCounts struct {
	accepted, open, maxOpen int
	held                    int // connections with bytes waiting at the gate
}

func startStallLink(t *testing.T, upstreamPort int) *stallLink {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	gate := make(chan struct{})
	close(gate)
	l := &stallLink{port: ln.Addr().(*net.TCPAddr).Port, to: fmt.Sprintf("127.0.0.1:%d", upstreamPort), gate: gate}
	t.Cleanup(func() {
		ln.Close()
		l.flow()
	})
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go l.relay(c)
		}
	}()
	return l
}

func (l *stallLink) stall() {
	l.mu.Lock()
	l.gate = make(chan struct{})
	l.mu.Unlock()
}

func (l *stallLink) flow() {
	l.mu.Lock()
	select {
	case <-l.gate:
	default:
		close(l.gate)
	}
	l.mu.Unlock()
}

func (l *stallLink) counts() linkCounts {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.c
}

func (l *stallLink) relay(c net.Conn) {
	u, err := net.Dial("tcp", l.to)
	if err != nil {
		c.Close()
		return
	}
	l.mu.Lock()
	l.c.accepted++
	l.c.open++
	l.c.maxOpen = max(l.c.maxOpen, l.c.open)
	l.mu.Unlock()
	var once sync.Once
	closeBoth := func() {
		once.Do(func() {
			c.Close()
			u.Close()
			l.mu.Lock()
			l.c.open--
			l.mu.Unlock()
		})
	}
	go func() { // upstream to node: always flows
		io.Copy(c, u)
		closeBoth()
	}()
	// Node to upstream: read on, so a node closing its end is seen at
	// once, and pass the bytes on while the gate is open.
	chunks := make(chan []byte, 4096)
	go func() {
		defer close(chunks)
		for {
			b := make([]byte, 32<<10)
			n, err := c.Read(b)
			if n > 0 {
				chunks <- b[:n]
			}
			if err != nil {
				closeBoth()
				return
			}
		}
	}()
	for b := range chunks {
		l.mu.Lock()
		gate := l.gate
		l.mu.Unlock()
		select {
		case <-gate:
		default:
			l.mu.Lock()
			l.c.held++
			l.mu.Unlock()
			<-gate
			l.mu.Lock()
			l.c.held--
			l.mu.Unlock()
		}
		if _, err := u.Write(b); err != nil {
			closeBoth()
		}
	}
}
