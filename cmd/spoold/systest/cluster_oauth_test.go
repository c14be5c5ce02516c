package systest

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/spoold/spoold/auth/authtest"
	"github.com/spoold/spoold/auth/seal"
	"github.com/spoold/spoold/delivery/smtpfake"
	"github.com/spoold/spoold/spool/pgspool/pgtest"
	"github.com/spoold/spoold/spool/spooltest"
)

// TestClusterOAuthOneRefreshAtATime: three spoold processes on one
// PostgreSQL spool deliver through one delegated grant whose access
// tokens live 4 seconds and whose refresh tokens rotate, against a token
// server that revokes the grant when a refresh token is used twice (as
// Microsoft and Google do). Mail sent through every node for half a minute
// is all delivered, the grant survives many refreshes, and the account is
// ok on every node. The sign-in is made through one node, and mail goes
// to every node right after it: none is held for the authorization hold.
func TestClusterOAuthOneRefreshAtATime(t *testing.T) {
	needSuite(t)
	dsn := pgtest.Start(t).NewDatabase(t)
	userSecret := randHex(t, "usersecret-")
	as := authtest.New("systest-user", "alice@example.com")
	t.Cleanup(as.Close)
	as.SetClientSecret(userSecret)
	as.SetRotate(true)
	as.SetAccessTTL(4 * time.Second)
	up, err := smtpfake.Start(smtpfake.Options{TLS: "starttls", Auth: "xoauth2", Dir: t.TempDir()})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(up.Close)

	// One token key for every node: the records they share are sealed with it.
	keyFile := filepath.Join(tempDir(t), "spoold.key")
	text, err := seal.GenerateText(nil)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(keyFile, append(text, '\n'), 0o600); err != nil {
		t.Fatal(err)
	}
	var nodes []*node
	for i := range 3 {
		nodes = append(nodes, newNode(t, nodeConfig{
			Routes: "  default: user\n",
			Env:    []string{"SYSTEST_USER_SECRET=" + userSecret},
			// The spool block, then the top-level secrets block.
			Spool: fmt.Sprintf("  backend: postgres\n  dsn: %q\n  node: node-%d\nsecrets:\n  key: file:%s\n", dsn, i, keyFile),
		}))
	}
	// One redirect URL (node 0's callback) in every node's config: the
	// grant is the account's, whichever node signed it in.
	for _, n := range nodes {
		n.cfg.Accounts = fmt.Sprintf(`  - name: user
    provider: generic
    flow: authcode
    client_id: systest-user
    client_secret: ${SYSTEST_USER_SECRET}
    auth_url: %s
    token_url: %s
    redirect_url: http://127.0.0.1:%d/oauth2/callback
    scopes: [https://outlook.office.com/SMTP.Send, offline_access]
    mailbox: alice@example.com
    refresh_before: 2s
    max_messages_per_connection: 1   # every message a new connection: a token each time
    host: 127.0.0.1
    port: %d
    tls: starttls
    ca_file: %s
    retry: {first: 1s, multiplier: 2, max: 4s, jitter: 0.2, lifetime: 1h}
`, as.AuthURL(), as.TokenURL(), nodes[0].HTTPPort, up.Port, up.CAFile)
		n.writeConfig()
	}
	var procs []*proc
	for _, n := range nodes {
		procs = append(procs, n.start())
	}
	nodes[0].login(t, "user")
	// Mail goes to every node at once after the sign-in, without waiting
	// for the other nodes to re-read the shared account record (every 5 s):
	// a node that has not seen the sign-in yet must look before it holds
	// the account's mail for the 15-minute authorization hold.

	var wg sync.WaitGroup
	var mu sync.Mutex
	var keys []string
	sendErrs := 0
	deadline := time.Now().Add(30 * time.Second)
	for i, n := range nodes {
		wg.Go(func() {
			for j := 0; time.Now().Before(deadline); j++ {
				key := fmt.Sprintf("n%dm%d", i, j)
				if err := sendTo(n.SMTPAddr(), "mfd@example.com", []string{"bob@example.com"}, key); err != nil {
					mu.Lock()
					sendErrs++
					mu.Unlock()
					continue
				}
				mu.Lock()
				keys = append(keys, key)
				mu.Unlock()
				time.Sleep(300 * time.Millisecond) // a device's pace; tokens expire under it
			}
		})
	}
	wg.Wait()
	if sendErrs > 0 {
		t.Errorf("%d submissions refused", sendErrs)
	}
	var missing []string
	if !spooltest.Poll(60*time.Second, func() bool {
		got := received(up)
		missing = missing[:0]
		for _, k := range keys {
			if got[k] == 0 {
				missing = append(missing, k)
			}
		}
		return len(missing) == 0
	}) {
		t.Errorf("%d of %d messages never delivered (first: %v)", len(missing), len(keys), missing[:min(5, len(missing))])
	}
	refreshes := as.Calls("token:refresh_token")
	if refreshes < 4 {
		t.Errorf("%d refreshes in 30 s of 4-second tokens: the test did not exercise refreshing", refreshes)
	}
	for i, n := range nodes {
		if a := n.account("user"); a.Status != "ok" {
			t.Errorf("node %d: account status %q (%s); a refresh token used twice revokes the grant", i, a.Status, a.Reason)
		}
		logs, _ := os.ReadFile(n.LogPath)
		if strings.Contains(string(logs), "reuse detected") {
			t.Errorf("node %d logged a refresh-token reuse", i)
		}
		if held := holdLines(string(logs)); len(held) > 0 {
			t.Errorf("node %d held the signed-in account's mail (%d times), first: %s", i, len(held), held[0])
		}
	}
	for i, p := range procs {
		if code, err := p.Stop(30 * time.Second); err != nil || code != 0 {
			t.Errorf("node %d: SIGTERM exit %d, %v", i, code, err)
		}
	}
	t.Logf("three nodes, one grant: %d messages delivered, %d refreshes with rotation", len(keys), refreshes)
}

// holdLines are a node's log lines that put the account on hold or park
// its mail for one.
func holdLines(logs string) []string {
	var out []string
	for _, l := range strings.Split(logs, "\n") {
		if strings.Contains(l, "account on hold") || (strings.Contains(l, "message waits") && strings.Contains(l, "re-authorization")) {
			out = append(out, l)
		}
	}
	return out
}
