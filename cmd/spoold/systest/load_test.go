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
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/emersion/go-smtp"
	"golang.org/x/time/rate"

	"github.com/spoold/spoold/delivery/smtpfake"
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
	addr    func() string
	ledger  *ledger
	limiter *rate.Limiter
	seq     atomic.Int64
	wg      sync.WaitGroup
	stop    chan struct{}
}

func startGoLoad(clients int, perSecond float64, addr func() string, l *ledger) *goLoad {
	g := &goLoad{addr: addr, ledger: l, limiter: rate.NewLimiter(rate.Limit(perSecond), clients), stop: make(chan struct{})}
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

// session sends up to 8 messages over one connection.
func (g *goLoad) session() error {
	conn, err := net.DialTimeout("tcp", g.addr(), 2*time.Second)
	if err != nil {
		return err
	}
	c := smtp.NewClient(conn)
	c.CommandTimeout = 15 * time.Second
	c.SubmissionTimeout = 15 * time.Second
	defer c.Close()
	if err := c.Hello("loadgen.systest"); err != nil {
		return err
	}
	for i := 0; i < 8 && !g.stopped(); i++ {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		err := g.limiter.Wait(ctx)
		cancel()
		if err != nil {
			continue
		}
		key := fmt.Sprintf("g%d", g.seq.Add(1))
		g.ledger.try()
		if err := send(c, "mfd@example.com", []string{"bob@example.com"}, key); err != nil {
			return err
		}
		g.ledger.ack(key)
	}
	_ = c.Quit()
	return nil
}

// send transmits one small message and returns nil only on 250 after DATA.
func send(c *smtp.Client, from string, to []string, key string) error {
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
		"Date: %s\r\nX-Systest-Id: %s\r\n\r\nmessage %s from the system test.\r\n",
		from, strings.Join(to, ", "), key, key, time.Now().Format(time.RFC1123Z), key, key)
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
func (s *scanLoad) remaining() map[string]bool {
	out := map[string]bool{}
	entries, _ := os.ReadDir(s.dir)
	for _, e := range entries {
		if strings.HasPrefix(e.Name(), "scan-") && strings.HasSuffix(e.Name(), ".pdf") {
			out[e.Name()] = true
		}
	}
	return out
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
