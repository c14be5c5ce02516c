package systest

import (
	"fmt"
	"math/rand/v2"
	"os"
	"os/exec"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/spoold/spoold/delivery/smtpfake"
	"github.com/spoold/spoold/spool/spooltest"
)

// relayAccount is a plain SMTP relay account (no TLS, no AUTH) on port with
// short retries so the suite finishes quickly.
func relayAccount(name string, port int, extra string) string {
	return fmt.Sprintf(`  - name: %s
    transport: smtp
    host: 127.0.0.1
    port: %d
    tls: none
    auth: none
%s    retry: {first: 1s, multiplier: 2, max: 4s, jitter: 0.2, lifetime: 1h}
`, name, port, extra)
}

// TestKill9Loop SIGKILLs spoold at random moments (-systest.kills times, 50
// by default) while Go SMTP clients, smtp-source (every fourth round) and a
// scanner feed it, restarting it each time; then lets it drain to an
// in-process upstream and asserts: every message that got a 250 and every
// scan that left the folder arrived upstream at least once, no scan failed,
// nothing was dead-lettered (a lost body would be), the queue drained, the
// daemon stops cleanly and the spool database passes bbolt's check.
func TestKill9Loop(t *testing.T) {
	needSuite(t)
	killLoop(t, *flagKills, killOutage{})
}

// killOutage puts the upstream down (Modes in turn, one per round) for the
// rounds From..To-1 of a kill loop.
type killOutage struct {
	From, To int
	Modes    []smtpfake.Outage
}

// TestKill9LoopUpstreamOutage is the kill loop with the upstream down for
// its middle third (connections reset, or 421 at the greeting): while it is
// down the account shows upstream_down and spoold connects a few times per
// restart, not once per message; afterwards every acknowledged message
// arrives, nothing is dead-lettered, and the parked messages drain at once
// after restarts (the next process probes at start).
func TestKill9LoopUpstreamOutage(t *testing.T) {
	needSuite(t)
	kills := max(*flagKills/3, 18)
	killLoop(t, kills, killOutage{From: kills / 3, To: 2 * kills / 3,
		Modes: []smtpfake.Outage{smtpfake.Greet421, smtpfake.Greet421, smtpfake.Reset, smtpfake.Reset}})
}

func killLoop(t *testing.T, kills int, outage killOutage) {
	if kills < 1 {
		t.Fatalf("-systest.kills must be at least 1")
	}
	var sourceBin string
	if p := findTool("smtp-source", "/usr/sbin/smtp-source"); p != "" {
		sourceBin = p
	} else if os.Getenv("CI") != "" {
		t.Fatal("smtp-source is not installed; .ci/run should have installed postfix")
	} else {
		t.Log("smtp-source not installed: rounds use only the Go clients and the scanner")
	}

	up := startFake(t, nil)
	n := newNode(t, nodeConfig{
		Scan:     true,
		Accounts: relayAccount("relay", up.Port, ""),
		Routes:   "  default: relay\n",
	})
	var addr atomic.Value
	addr.Store(n.SMTPAddr())

	goLedger, srcLedger := newLedger(), newLedger()
	p := n.start()
	addr.Store(n.SMTPAddr())
	load := startGoLoad(4, 120, func() string { return addr.Load().(string) }, goLedger)
	scans, err := startScanLoad(n.ScanDir, "alice@example.com", 150*time.Millisecond)
	if err != nil {
		t.Fatal(err)
	}
	var sources sync.WaitGroup
	rng := rand.New(rand.NewPCG(uint64(time.Now().UnixNano()), 8))
	start := time.Now()
	earlyKills := 0
	var outageConns, outageRounds int
	sawDown := false
	for round := 1; round <= kills; round++ {
		inOutage := round >= outage.From && round < outage.To
		if inOutage {
			if round == outage.From {
				outageConns = up.Accepted()
			}
			up.SetOutage(outage.Modes[(round-outage.From)%len(outage.Modes)])
			outageRounds++
		}
		if round == outage.To && outage.To > 0 {
			outageConns = up.Accepted() - outageConns
			up.SetOutage(smtpfake.Up)
		}
		if sourceBin != "" && round%4 == 1 {
			sources.Add(1)
			go func(tag int, a string) {
				defer sources.Done()
				_ = smtpSource(sourceBin, a, tag, 60, srcLedger)
			}(round, n.SMTPAddr())
		}
		// The random moment: anywhere from mid-commit to mid-delivery.
		time.Sleep(time.Duration(100+rng.IntN(900)) * time.Millisecond)
		if inOutage && round == outage.To-1 {
			// Once per outage, let the daemon see it and show it.
			sawDown = spooltest.Poll(20*time.Second, func() bool {
				return n.account("relay").Status == "upstream_down"
			})
			out, _, _ := n.ctl("accounts")
			if !sawDown || !strings.Contains(out, "upstream_down") {
				t.Errorf("during the outage spoolctl accounts shows no upstream_down:\n%s", out)
			}
		}
		p.Kill()
		if code := p.cmd.ProcessState.ExitCode(); code != -1 {
			t.Fatalf("round %d: spoold exited with %d before it was killed; log:\n%s", round, code, tail(n.LogPath, 40))
		}
		if round == kills {
			break
		}
		if rng.IntN(5) == 0 {
			// Kill again during start-up and recovery, before it is ready.
			early := n.spawn()
			time.Sleep(time.Duration(rng.IntN(300)) * time.Millisecond)
			early.Kill()
			earlyKills++
		}
		p = n.start()
		addr.Store(n.SMTPAddr())
	}
	loopTime := time.Since(start)

	// Final run: no more kills; stop the load and let everything drain.
	p = n.start()
	addr.Store(n.SMTPAddr())
	load.Stop()
	sources.Wait()
	dropped, err := scans.Stop()
	if err != nil {
		t.Fatalf("scanner: %v", err)
	}
	goAcked, goTried := goLedger.snapshot()
	srcAcked, srcTried := srcLedger.snapshot()
	if len(goAcked) == 0 || len(dropped) == 0 {
		t.Fatalf("the load produced nothing: %d Go messages acknowledged, %d scans dropped", len(goAcked), len(dropped))
	}

	keys := append(append(goAcked, srcAcked...), dropped...)
	got := n.waitUpstream(up, scans.dir, keys, "after the final restart")
	n.waitSettled("after crashes")
	if code, err := p.Stop(60 * time.Second); err != nil || code != 0 {
		t.Errorf("spoold after the loop: SIGTERM exit %d, %v", code, err)
	}
	n.checkSpoolEmpty("after shutdown")

	dups, dupKeys := 0, 0
	for _, c := range got {
		if c > 1 {
			dups += c - 1
			dupKeys++
		}
	}
	if outage.To > 0 {
		t.Logf("outage: %d rounds (restarts), %d connections accepted by the upstream during them (%.1f per round); upstream_down shown: %v",
			outageRounds, outageConns, float64(outageConns)/float64(max(outageRounds, 1)), sawDown)
		// Per restart: the start-up probe (or up to three failures before
		// the state), and a probe every 10 s or more; once per message
		// would be hundreds.
		if outageConns > 6*outageRounds {
			t.Errorf("%d connections during %d outage rounds", outageConns, outageRounds)
		}
	}
	t.Logf("kill loop: %d kills (%d of them during start-up) in %s; Go clients: %d acknowledged of %d tried; "+
		"smtp-source: %d acknowledged of %d tried; scans: %d dropped and delivered; upstream received %d messages; "+
		"duplicates: %d extra copies of %d messages",
		kills+earlyKills, earlyKills, loopTime.Round(time.Second), len(goAcked), goTried, len(srcAcked), srcTried,
		len(dropped), up.Count(), dups, dupKeys)
}

func findTool(name string, extra ...string) string {
	if p, err := exec.LookPath(name); err == nil {
		return p
	}
	for _, p := range extra {
		if _, err := os.Stat(p); err == nil {
			return p
		}
	}
	return ""
}
