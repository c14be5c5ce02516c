package main

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/spoold/spoold/spool/spooltest"
)

// TestReloadIsAllOrNothing: a reload that one subsystem refuses changes no
// subsystem. Before, auth applied the new accounts (here: a new OAuth
// account) and only then did delivery refuse the file.
func TestReloadIsAllOrNothing(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "spoold.yaml")
	base := fmt.Sprintf(`data_dir: %s/data
http: {listen: ""}
accounts:
  - name: relay
    provider: generic
    auth: xoauth2
    host: smtp.example.com
    mailbox: scans@example.com
    client_id: first
    auth_url: https://login.example.com/auth
    token_url: https://login.example.com/token
    scopes: [smtp]
  - name: out
    transport: file
routes:
  default: out
`, dir)
	writeFile(t, path, base)
	p, err := loadPlan(path)
	if err != nil {
		t.Fatal(err)
	}
	var logs spooltest.SyncBuffer
	log := slog.New(slog.NewTextHandler(io.MultiWriter(&logs, io.Discard), nil))
	d, err := startDaemon(context.Background(), p, path, log, new(slog.LevelVar))
	if err != nil {
		t.Fatal(err)
	}
	defer d.shutdown()
	accounts := func() []string {
		var names []string
		for _, h := range d.auth.AllHealth(context.Background()) {
			names = append(names, h.Account)
		}
		slices.Sort(names)
		return names
	}
	before := accounts()

	// configs accepts this file; delivery refuses XOAUTH2 without TLS.
	next := strings.Replace(base, "client_id: first", "client_id: second", 1)
	next = strings.Replace(next, "  - name: out\n", `  - name: second
    provider: generic
    auth: xoauth2
    host: smtp2.example.com
    port: 25
    tls: none
    mailbox: other@example.com
    client_id: x
    auth_url: https://login.example.com/auth
    token_url: https://login.example.com/token
    scopes: [smtp]
  - name: out
`, 1)
	writeFile(t, path, next)
	d.reload()
	if !strings.Contains(logs.String(), "keeping the running configuration") || !strings.Contains(logs.String(), "accounts[1].tls: auth xoauth2 would send credentials in clear text") {
		t.Fatalf("refused reload not logged:\n%s", logs.String())
	}
	if got := accounts(); !slices.Equal(got, before) {
		t.Errorf("auth accounts after a refused reload: %v, want %v", got, before)
	}
	if id := d.cfg.Accounts[0].ClientID; id != "first" {
		t.Errorf("running client_id %q after a refused reload", id)
	}
}
