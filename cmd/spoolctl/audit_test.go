package main

import (
	"context"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/spoold/spoold/auth/seal"
	"github.com/spoold/spoold/cmd/spoold/adminapi/wire"
	"github.com/spoold/spoold/spool"
)

// keyInfo is a daemon that seals stored tokens.
type keyInfo struct{ fakeInfo }

func (keyInfo) Keys() wire.KeysInfo {
	return wire.KeysInfo{Keys: []wire.KeyInfo{{ID: "0123456789ab", Source: "file /etc/spoold/keys/spoold.key", Primary: true}}}
}
func (keyInfo) RotateKeys(context.Context) (wire.KeysRotateResponse, error) {
	return wire.KeysRotateResponse{OldKeyID: "0123456789ab", NewKeyID: "ba9876543210", KeyFile: "/etc/spoold/keys/spoold.key", Resealed: []string{"m365", "gmail"}}, nil
}

func TestAuditCommand(t *testing.T) {
	e := newEnvInfo(t, keyInfo{})
	if r := e.run(t, "audit"); r.code != 0 || !strings.Contains(r.stdout, "no audit entries") {
		t.Fatalf("empty: exit %d\n%s%s", r.code, r.stdout, r.stderr)
	}
	ctx := context.Background()
	for i, en := range []spool.AuditEntry{
		{Time: tEnd.Add(-26 * time.Hour), Via: "socket", UID: 1000, User: "alice", Action: "purge", Detail: "state=dead count=4", Result: "ok"},
		{Time: tEnd.Add(-time.Hour), Via: "console", UID: -1, User: "helpdesk", Action: "hold", Target: "message 01ABC", Detail: "reason=check", Result: "ok"},
		{Time: tEnd.Add(-time.Minute), Via: "socket", UID: 0, User: "root", Action: "logout", Target: "account m365", Result: "unknown account \"m365\"", Code: "unknown_account"},
	} {
		if err := e.sp.AuditAppend(ctx, en); err != nil {
			t.Fatal(i, err)
		}
	}
	r := e.run(t, "audit")
	if r.code != 0 {
		t.Fatalf("exit %d: %s", r.code, r.stderr)
	}
	lines := strings.Split(strings.TrimSpace(r.stdout), "\n")
	if len(lines) != 4 || !strings.Contains(lines[1], "root (uid 0)") || !strings.Contains(lines[1], "unknown_account: unknown account") ||
		!strings.Contains(lines[2], "helpdesk via console") || !strings.Contains(lines[2], "message 01ABC") || !strings.Contains(lines[3], "alice (uid 1000)") {
		t.Fatalf("audit output:\n%s", r.stdout)
	}
	if r := e.run(t, "audit", "--since", tEnd.Add(-2*time.Hour).Format(time.RFC3339)); strings.Count(r.stdout, "\n") != 3 {
		t.Errorf("--since two hours before:\n%s", r.stdout)
	}
	if r := e.run(t, "audit", "--since", "2h"); r.code != 0 {
		t.Errorf("--since 2h: exit %d %s", r.code, r.stderr)
	}
	r = e.run(t, "audit", "--limit", "1", "--json")
	var back wire.AuditResponse
	if err := json.Unmarshal([]byte(r.stdout), &back); err != nil || len(back.Entries) != 1 || back.Entries[0].Action != "logout" {
		t.Errorf("--json --limit 1: %v\n%s", err, r.stdout)
	}
	if r := e.run(t, "audit", "--since", "yesterday"); r.code != 2 || !strings.Contains(r.stderr, "want a duration") {
		t.Errorf("bad --since: exit %d %s", r.code, r.stderr)
	}
}

func TestKeysCommands(t *testing.T) {
	e := newEnvInfo(t, keyInfo{})
	r := e.run(t, "keys")
	if r.code != 0 || !strings.Contains(r.stdout, "0123456789ab  primary (seals)  file /etc/spoold/keys/spoold.key") {
		t.Fatalf("keys: exit %d\n%s%s", r.code, r.stdout, r.stderr)
	}
	r = e.run(t, "keys", "rotate")
	if r.code != 0 || !strings.Contains(r.stdout, "key ba9876543210 replaced key 0123456789ab") || !strings.Contains(r.stdout, "2 stored token(s) re-sealed") {
		t.Fatalf("keys rotate: exit %d\n%s%s", r.code, r.stdout, r.stderr)
	}
	// The rotation is in the audit log.
	es, _ := e.sp.AuditList(context.Background(), time.Time{}, 0)
	if len(es) != 1 || es[0].Action != "keys-rotate" || !strings.Contains(es[0].Detail, "new_key=ba9876543210") {
		t.Fatalf("audit after rotate: %+v", es)
	}
	// Offline (a daemon without keys) says so.
	if r := newEnv(t).run(t, "keys"); r.code != 1 || !strings.Contains(r.stderr, "running daemon") {
		t.Errorf("keys without KeyControl: exit %d %s", r.code, r.stderr)
	}

	// generate: printed, or written 0600 and never over an existing file.
	r = e.run(t, "keys", "generate")
	if _, err := seal.ParseKey([]byte(r.stdout), "out"); r.code != 0 || err != nil {
		t.Fatalf("keys generate: %v\n%s", err, r.stdout)
	}
	path := filepath.Join(t.TempDir(), "spoold.key")
	if r := e.run(t, "keys", "generate", path); r.code != 0 {
		t.Fatalf("generate FILE: %s", r.stderr)
	}
	fi, err := os.Stat(path)
	if err != nil || fi.Mode().Perm() != 0o600 {
		t.Fatalf("key file: %v %v", fi, err)
	}
	before, _ := os.ReadFile(path)
	if r := e.run(t, "keys", "generate", path); r.code == 0 || !strings.Contains(r.stderr, "not overwriting") {
		t.Fatalf("second generate: exit %d %s", r.code, r.stderr)
	}
	if after, _ := os.ReadFile(path); string(after) != string(before) {
		t.Fatal("an existing key file was overwritten")
	}
}
