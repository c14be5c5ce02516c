package systest

import (
	"bufio"
	"context"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/emersion/go-smtp"
	"golang.org/x/time/rate"

	"github.com/spoold/spoold/cmd/spoold/adminapi/wire"
	"github.com/spoold/spoold/delivery/smtpfake"
	"github.com/spoold/spoold/spool"
	"github.com/spoold/spoold/spool/spooltest"
)

// ledger records what spoold acknowledged, keyed by a unique message key.
type ledger struct {
	mu    sync.Mutex
	acked map[string]bool
	tried int
}

func newLedger() *ledger { return &ledger{acked: map[string]bool{}} }

func (l *ledger) try()           { l.mu.Lock(); l.tried++; l.mu.Unlock() }
func (l *ledger) ack(key string) { l.mu.Lock(); l.acked[key] = true; l.mu.Unlock() }

func (l *ledger) snapshot() (acked []string, tried int) {
	l.mu.Lock()
	defer l.mu.Unlock()
	for k := range l.acked {
		acked = append(acked, k)
	}
	return acked, l.tried
}

var (
	goKeyRe   = regexp.MustCompile(`(?m)^X-Systest-Id: ([A-Za-z0-9_-]+)\r?$`)
	scanKeyRe = regexp.MustCompile(`scan-[0-9]{6}\.pdf`)
	srcRcptRe = regexp.MustCompile(`^[0-9]+src[0-9]+@example\.com$`)
)

// received counts, per key, how many times the upstream got a message: Go
// client messages by their X-Systest-Id header, smtp-source messages by
// their numbered recipient, scans by file name.
func received(up *smtpfake.Server) map[string]int {
	got := map[string]int{}
	for _, m := range up.Messages() {
		keys := map[string]bool{}
		if k := goKeyRe.FindSubmatch(m.Data); k != nil {
			keys[string(k[1])] = true
		}
		for _, k := range scanKeyRe.FindAll(m.Data, -1) {
			keys[string(k)] = true
		}
		for _, to := range m.To {
			if srcRcptRe.MatchString(to) {
				keys[to] = true
			}
		}
		for k := range keys {
			got[k]++
		}
	}
	return got
}

// goLoad runs SMTP clients that send uniquely numbered messages to whatever
// address addr returns, reconnecting while spoold is down, until stop.
type goLoad struct {
	loadShape
	addr    func() string
	ledger  *ledger
	limiter *rate.Limiter
	seq     atomic.Int64
	wg      sync.WaitGroup
	stop    chan struct{}
}

// loadShape is what a goLoad's clients send.
type loadShape struct {
	helo       string // the EHLO name
	keyPrefix  string // message keys are keyPrefix and a number
	perSession int    // messages per connection
	text       string // the body after the headers; "" is a one-line note
}

// smallLoad is many small messages, stored inline in the spool.
var smallLoad = loadShape{helo: "loadgen.systest", keyPrefix: "g", perSession: 8}

// bigLoad is messages above the spool's inline limit, so their bodies go to
// files (temp file or O_TMPFILE, fsync, link or rename, directory fsync)
// before the commit.
var bigLoad = loadShape{helo: "bigload.systest", keyPrefix: "big", perSession: 4,
	text: strings.Repeat(strings.Repeat("y", 76)+"\r\n", 1200)} // ~94 KB

func startGoLoad(clients int, perSecond float64, addr func() string, l *ledger) *goLoad {
	return startLoad(smallLoad, clients, perSecond, addr, l)
}

func startLoad(shape loadShape, clients int, perSecond float64, addr func() string, l *ledger) *goLoad {
	g := &goLoad{loadShape: shape, addr: addr, ledger: l, limiter: rate.NewLimiter(rate.Limit(perSecond), clients), stop: make(chan struct{})}
	for i := 0; i < clients; i++ {
		g.wg.Add(1)
		go g.client()
	}
	return g
}

// Stop ends the clients after their current message.
func (g *goLoad) Stop() { close(g.stop); g.wg.Wait() }

func (g *goLoad) stopped() bool {
	select {
	case <-g.stop:
		return true
	default:
		return false
	}
}

func (g *goLoad) client() {
	defer g.wg.Done()
	for !g.stopped() {
		if err := g.session(); err != nil {
			// spoold is down or was killed mid-session: back off briefly.
			select {
			case <-g.stop:
			case <-time.After(25 * time.Millisecond):
			}
		}
	}
}

// session sends up to perSession messages over one connection.
func (g *goLoad) session() error {
	c, err := dialSMTP(g.addr(), g.helo, 2*time.Second, 15*time.Second)
	if err != nil {
		return err
	}
	defer c.Close()
	for i := 0; i < g.perSession && !g.stopped(); i++ {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		err := g.limiter.Wait(ctx)
		cancel()
		if err != nil {
			continue
		}
		key := fmt.Sprintf("%s%d", g.keyPrefix, g.seq.Add(1))
		g.ledger.try()
		if err := sendText(c, "mfd@example.com", []string{"bob@example.com"}, key, g.text); err != nil {
			return err
		}
		g.ledger.ack(key)
	}
	_ = c.Quit()
	return nil
}

// dialSMTP connects to addr and says EHLO helo; commands and the
// submission time out after cmdTimeout.
func dialSMTP(addr, helo string, dialTimeout, cmdTimeout time.Duration) (*smtp.Client, error) {
	conn, err := net.DialTimeout("tcp", addr, dialTimeout)
	if err != nil {
		return nil, err
	}
	c := smtp.NewClient(conn)
	c.CommandTimeout, c.SubmissionTimeout = cmdTimeout, cmdTimeout
	if err := c.Hello(helo); err != nil {
		c.Close()
		return nil, err
	}
	return c, nil
}

// send transmits one small message and returns nil only on 250 after DATA.
func send(c *smtp.Client, from string, to []string, key string) error {
	return sendText(c, from, to, key, "")
}

// sendText transmits one message tagged key with text after the headers
// ("" is a one-line note) and returns nil only on 250 after DATA.
func sendText(c *smtp.Client, from string, to []string, key, text string) error {
	if text == "" {
		text = fmt.Sprintf("message %s from the system test.\r\n", key)
	}
	if err := c.Mail(from, nil); err != nil {
		return err
	}
	for _, r := range to {
		if err := c.Rcpt(r, nil); err != nil {
			return err
		}
	}
	w, err := c.Data()
	if err != nil {
		return err
	}
	fmt.Fprintf(w, "From: MFD <%s>\r\nTo: %s\r\nSubject: systest %s\r\nMessage-ID: <%s@systest>\r\n"+
		"Date: %s\r\nX-Systest-Id: %s\r\n\r\n%s",
		from, strings.Join(to, ", "), key, key, time.Now().Format(time.RFC1123Z), key, text)
	return w.Close()
}

// scanLoad drops numbered scan files into <scanDir>/<user>/ the way a careful
// scanner does (write *.part, rename), until stop.
type scanLoad struct {
	dir   string
	every time.Duration
	n     atomic.Int64
	wg    sync.WaitGroup
	stop  chan struct{}
	err   atomic.Value
}

func startScanLoad(scanDir, user string, every time.Duration) (*scanLoad, error) {
	s := &scanLoad{dir: filepath.Join(scanDir, user), every: every, stop: make(chan struct{})}
	if err := os.MkdirAll(s.dir, 0o755); err != nil {
		return nil, err
	}
	s.wg.Add(1)
	go s.run()
	return s, nil
}

func (s *scanLoad) run() {
	defer s.wg.Done()
	t := time.NewTicker(s.every)
	defer t.Stop()
	for {
		select {
		case <-s.stop:
			return
		case <-t.C:
		}
		if err := s.drop(); err != nil {
			s.err.Store(err)
			return
		}
	}
}

func (s *scanLoad) drop() error {
	i := s.n.Add(1)
	name := fmt.Sprintf("scan-%06d.pdf", i)
	part := filepath.Join(s.dir, name+".part")
	body := fmt.Sprintf("%%PDF-1.4\n%% systest %s\n%s\n%%%%EOF\n", name, strings.Repeat("x", 2048))
	if err := os.WriteFile(part, []byte(body), 0o644); err != nil {
		return err
	}
	return os.Rename(part, filepath.Join(s.dir, name))
}

// Stop stops dropping files and returns the names dropped.
func (s *scanLoad) Stop() ([]string, error) {
	close(s.stop)
	s.wg.Wait()
	var names []string
	for i := int64(1); i <= s.n.Load(); i++ {
		names = append(names, fmt.Sprintf("scan-%06d.pdf", i))
	}
	if err, ok := s.err.Load().(error); ok {
		return names, err
	}
	return names, nil
}

// remaining lists scan files still in the user folder.
func (s *scanLoad) remaining() map[string]bool { return scanFiles(s.dir) }

// scanFiles lists the scans (scan-*.pdf, not *.part) in dir.
func scanFiles(dir string) map[string]bool {
	out := map[string]bool{}
	entries, _ := os.ReadDir(dir)
	for _, e := range entries {
		if strings.HasPrefix(e.Name(), "scan-") && strings.HasSuffix(e.Name(), ".pdf") {
			out[e.Name()] = true
		}
	}
	return out
}

// waitUpstream waits until every key (messages that got a 250, scans
// that were dropped) reached the upstream at least once and no dropped scan
// is still in scanFolder, and reports those that did not and any scan moved
// to failed/. Expired leases of
// killed workers are requeued by the rescuer (every 30 s) and retried after
// retry.first, so it allows for a few rounds of it. It returns how often the
// upstream received each key.
func (n *node) waitUpstream(up *smtpfake.Server, scanFolder string, keys []string, when string) map[string]int {
	n.t.Helper()
	var got map[string]int
	var missing []string
	if !spooltest.Poll(150*time.Second, func() bool {
		got = received(up)
		left := scanFiles(scanFolder)
		missing = missing[:0]
		for _, k := range keys {
			if got[k] == 0 || left[k] {
				missing = append(missing, k)
			}
		}
		return len(missing) == 0
	}) {
		sort.Strings(missing)
		if len(missing) > 20 {
			missing = append(missing[:20], fmt.Sprintf("... %d more", len(missing)-20))
		}
		n.t.Errorf("%s, acknowledged messages or dropped scans never reached the upstream: %v", when, missing)
		n.t.Logf("queue: %v", n.status().Queue)
	}
	if failed, _ := filepath.Glob(filepath.Join(n.ScanDir, "failed", "*", "*")); len(failed) > 0 {
		n.t.Errorf("scans moved to failed/: %v", failed)
	}
	return got
}

// waitSettled waits until nothing is queued, active or deferred (messages
// whose client lost the connection before the 250 may still be stored, and
// drain too) and checks nothing ended up dead.
func (n *node) waitSettled(when string) {
	n.t.Helper()
	var counts map[wire.State]int
	if !spooltest.Poll(90*time.Second, func() bool {
		counts = n.status().Queue
		return counts[wire.StateQueued]+counts[wire.StateActive]+counts[wire.StateDeferred] == 0
	}) {
		n.t.Errorf("queue did not drain: %v", counts)
	}
	if d := n.list(wire.StateDead); len(d) > 0 {
		n.t.Errorf("%d messages dead-lettered %s, first: %s: %s", len(d), when, d[0].ID, d[0].Reason)
	}
}

// checkSpoolEmpty is checkSpool on a daemon that stopped after draining:
// no message may be left in any state but delivered.
func (n *node) checkSpoolEmpty(when string) {
	n.t.Helper()
	st := n.checkSpool()
	for _, s := range []spool.State{spool.StateQueued, spool.StateActive, spool.StateDeferred, spool.StateDead, spool.StateHeld} {
		if st[s] != 0 {
			n.t.Errorf("spool %s: %d messages %s, want 0 (stats %v)", when, st[s], s, st)
		}
	}
}

// smtpSource runs Postfix's smtp-source for count messages in one session
// stream (-s 1, so its -v transcript is sequential) with numbered recipients
// <n>src<tag>@example.com (-N), and records each message that got 250 after
// the final dot. It returns when smtp-source exits (it dies on a refused or
// reset connection, which is expected while spoold is being killed).
func smtpSource(bin, addr string, tag, count int, l *ledger) error {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, bin, "-v", "-s", "1", "-m", fmt.Sprint(count), "-N", "-c",
		"-f", "mfd@example.com", "-t", fmt.Sprintf("src%d@example.com", tag), "-S", fmt.Sprintf("smtp-source %d", tag),
		"-M", "smtpsource.systest", addr)
	out, err := cmd.StdoutPipe()
	if err != nil {
		return err
	}
	cmd.Stderr = cmd.Stdout
	if err := cmd.Start(); err != nil {
		return err
	}
	// Transcript lines look like "smtp-source: RCPT TO:<12src3@example.com>",
	// "smtp-source: .", "smtp-source: <<< 250 2.0.0 Ok: queued ...".
	var rcpt string
	inData := false
	sc := bufio.NewScanner(out)
	for sc.Scan() {
		line := sc.Text()
		if i := strings.Index(line, ": "); i >= 0 {
			line = line[i+2:]
		}
		switch {
		case strings.HasPrefix(line, "RCPT TO:<"):
			rcpt = strings.TrimSuffix(strings.TrimPrefix(line, "RCPT TO:<"), ">")
			l.try()
		case line == ".":
			inData = true
		case strings.HasPrefix(line, "<<< ") && inData:
			if strings.HasPrefix(line, "<<< 250") && rcpt != "" {
				l.ack(rcpt)
			}
			inData, rcpt = false, ""
		}
	}
	_ = cmd.Wait() // non-zero when spoold was killed under it
	return nil
}
