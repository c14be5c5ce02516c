package systest

import (
	"crypto/rand"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"sort"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/spoold/spoold/auth/authtest"
	"github.com/spoold/spoold/delivery/graph/graphtest"
	"github.com/spoold/spoold/spool/spooltest"
)

// TestKill9LoopGraph is the kill loop once with a Microsoft Graph account:
// app-only tokens from the fake identity provider, the fake Graph server
// (TLS, checking tokens, scopes and request shapes), Go clients and the
// scanner feeding spoold, and every other round one 4 MB scan that takes
// the draft path (draft, upload session, send). It is short (a fifth of
// -systest.kills, at least 6) to keep CI quick. Afterwards every message
// that got a 250 and every dropped scan reached Graph, nothing was
// dead-lettered, Graph saw no malformed request, and the spool drained.
// Duplicates are counted: sendMail is at-least-once like SMTP; a large
// scan is sent again only when the kill fell between Graph's answer to
// the send and the spool's commit.
func TestKill9LoopGraph(t *testing.T) {
	needSuite(t)
	kills := max(*flagKills/5, 6)
	idp := authtest.New("systest-graph", "scanner@example.com")
	t.Cleanup(idp.Close)
	idp.SetClientSecret("graph-app-secret")
	g := graphtest.New("scanner@example.com")
	t.Cleanup(g.Close)
	g.SetTokenCheck(idp.TokenScope)
	g.SetKeepData(false)
	ca := filepath.Join(t.TempDir(), "graph-ca.pem")
	if err := os.WriteFile(ca, g.CertificatePEM(), 0o600); err != nil {
		t.Fatal(err)
	}
	n := newNode(t, nodeConfig{
		Scan: true,
		Env:  []string{"SYSTEST_GRAPH_SECRET=graph-app-secret"},
		Accounts: fmt.Sprintf(`  - name: m365
    transport: graph
    provider: microsoft
    flow: client_credentials
    tenant: contoso.com
    client_id: systest-graph
    client_secret: ${SYSTEST_GRAPH_SECRET}
    token_url: %s
    graph_endpoint: %s
    ca_file: %s
    mailbox: scanner@example.com
    rate_per_minute: -1
    retry: {first: 1s, multiplier: 2, max: 4s, jitter: 0.2, lifetime: 1h}
`, idp.TokenURL(), g.URL(), ca),
		Routes: "  default: m365\n",
	})
	var addr atomic.Value
	goLedger := newLedger()
	p := n.start()
	addr.Store(n.SMTPAddr())
	load := startGoLoad(4, 60, func() string { return addr.Load().(string) }, goLedger)
	scans, err := startScanLoad(n.ScanDir, "alice@example.com", 300*time.Millisecond)
	if err != nil {
		t.Fatal(err)
	}
	var large []string
	start := time.Now()
	for round := 1; round <= kills; round++ {
		if round%2 == 1 {
			large = append(large, dropLargeScan(t, filepath.Join(n.ScanDir, "alice@example.com"), 900000+round))
		}
		time.Sleep(time.Duration(300+round*173%900) * time.Millisecond)
		p.Kill()
		if round < kills {
			p = n.start()
			addr.Store(n.SMTPAddr())
		}
	}
	loopTime := time.Since(start)
	p = n.start()
	addr.Store(n.SMTPAddr())
	load.Stop()
	dropped, err := scans.Stop()
	if err != nil {
		t.Fatalf("scanner: %v", err)
	}
	goAcked, _ := goLedger.snapshot()
	keys := append(append(goAcked, dropped...), large...)
	var got map[string]int
	var missing []string
	if !spooltest.Poll(150*time.Second, func() bool {
		got = receivedGraph(g)
		left := scanFiles(filepath.Join(n.ScanDir, "alice@example.com"))
		missing = missing[:0]
		for _, k := range keys {
			if got[k] == 0 || left[k] {
				missing = append(missing, k)
			}
		}
		return len(missing) == 0
	}) {
		sort.Strings(missing)
		t.Errorf("acknowledged messages or dropped scans never reached Graph: %d, first %v", len(missing), missing[:min(len(missing), 10)])
	}
	n.waitSettled("after crashes with a Graph account")
	// spoolctl works for the Graph account as for SMTP: health and a test send.
	if st := n.account("m365"); st.Status != "ok" || st.Transport != "graph" {
		t.Errorf("spoolctl accounts: %s account m365 is %q (%s), want ok", st.Transport, st.Status, st.Reason)
	}
	sentBefore := len(g.Sent())
	if out, errOut, code := n.ctl("test-send", "m365", "--to", "admin@example.com"); code != 0 || !strings.Contains(out, "Microsoft Graph") {
		t.Errorf("spoolctl test-send m365: exit %d\n%s%s", code, out, errOut)
	}
	if len(g.Sent()) != sentBefore+1 {
		t.Errorf("test-send sent %d messages through Graph, want 1", len(g.Sent())-sentBefore)
	}
	if code, err := p.Stop(60 * time.Second); err != nil || code != 0 {
		t.Errorf("spoold after the loop: SIGTERM exit %d, %v", code, err)
	}
	n.checkSpoolEmpty("after shutdown")
	if ps := g.Problems(); len(ps) > 0 {
		t.Errorf("requests that break Graph's documented shape: %q", ps)
	}
	dups, largeDups := 0, 0
	for k, c := range got {
		if c > 1 {
			dups += c - 1
			if largeKey.MatchString(k) {
				largeDups += c - 1
			}
		}
	}
	t.Logf("graph kill loop: %d kills in %s; %d Go messages acknowledged, %d scans and %d large scans dropped; Graph sent %d messages "+
		"(%d by draft); duplicates: %d extra copies, %d of them large scans; drafts left: %d",
		kills, loopTime.Round(time.Second), len(goAcked), len(dropped), len(large), len(g.Sent()), g.Calls(graphtest.OpSend), dups, largeDups, g.Drafts())
}

var largeKey = regexp.MustCompile(`^scan-9[0-9]{5}\.pdf$`)

// dropLargeScan writes a 4 MB scan (too large for one sendMail request) the
// way a careful scanner does and returns its name.
func dropLargeScan(t *testing.T, dir string, i int) string {
	t.Helper()
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	name := fmt.Sprintf("scan-%06d.pdf", i)
	data := make([]byte, 4_000_000)
	rand.Read(data)
	copy(data, "%PDF-1.7\n")
	copy(data[len(data)-7:], "\n%%EOF\n") // the scan folder waits for a PDF's end marker
	part := filepath.Join(dir, name+".part")
	if err := os.WriteFile(part, data, 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(part, filepath.Join(dir, name)); err != nil {
		t.Fatal(err)
	}
	return name
}

// receivedGraph counts, per key, how many messages Graph sent carrying it
// (in the MIME, or as an uploaded attachment's name).
func receivedGraph(g *graphtest.Server) map[string]int {
	got := map[string]int{}
	for _, s := range g.Sent() {
		keys := map[string]bool{}
		if k := goKeyRe.FindSubmatch(s.MIME); k != nil {
			keys[string(k[1])] = true
		}
		for _, k := range scanKeyRe.FindAll(s.MIME, -1) {
			keys[string(k)] = true
		}
		for _, a := range s.Attachments {
			if scanKeyRe.MatchString(a.Name) {
				keys[a.Name] = true
			}
		}
		for k := range keys {
			got[k]++
		}
	}
	return got
}
