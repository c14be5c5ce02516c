package main

import (
	"bytes"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// The DSN is a secret: read from dsn_file, never printed by -print-config
// or -check, and a postgres backend without one is a problem at its key.
func TestSpoolBackendConfig(t *testing.T) {
	dir := shortDir(t)
	const password = "s3cret-Pw-do-not-print"
	dsnFile := filepath.Join(dir, "dsn")
	writeFile(t, dsnFile, "host=db.example.org dbname=spoold user=spoold password="+password+"\n")
	if err := os.Chmod(dsnFile, 0o600); err != nil {
		t.Fatal(err)
	}
	cfg := oauthConfig(t, dir, "spool:\n  backend: postgres\n  dsn_file: "+dsnFile+"\n  node: node-a\n")
	var stdout, stderr bytes.Buffer
	if code := run([]string{"-config", cfg, "-print-config"}, &stdout, &stderr); code != exitOK {
		t.Fatalf("exit %d: %s", code, stderr.String())
	}
	out := stdout.String()
	if strings.Contains(out+stderr.String(), password) {
		t.Fatalf("-print-config shows the DSN's password:\n%s", out)
	}
	for _, want := range []string{"backend: postgres", `dsn: "[redacted]"`, "node: node-a"} {
		if !strings.Contains(out, want) {
			t.Errorf("-print-config lacks %q:\n%s", want, out)
		}
	}
	p := textPlan(t, "x.yaml", "data_dir: "+dir+"\naccounts: [{name: out, transport: file}]\nroutes: {default: out}\nspool: {backend: postgres, dsn: \"host=db password="+password+"\"}\n")
	if p.backend.pg.DSN == "" || p.backend.pg.Node == "" {
		t.Errorf("plan lost the DSN or the default node name: node %q", p.backend.pg.Node)
	}

	for _, tc := range []struct{ extra, key string }{
		{"spool:\n  backend: postgres\n", "spool.dsn"},
		{"spool:\n  backend: postgres\n  dsn: \"postgres://u:" + password + "@[::1\"\n", "spool.dsn"},
		{"spool:\n  backend: mysql\n", "spool.backend"},
		{"spool:\n  backend: postgres\n  dsn: host=db\n  dsn_file: " + dsnFile + "\n", "spool.dsn_file"},
	} {
		stdout.Reset()
		stderr.Reset()
		bad := oauthConfig(t, dir, tc.extra)
		code := run([]string{"-config", bad, "-check"}, &stdout, &stderr)
		if code != exitUsage || !strings.Contains(stderr.String(), tc.key) {
			t.Errorf("-check with %q: exit %d, want a problem at %s:\n%s", tc.extra, code, tc.key, stderr.String())
		}
		if strings.Contains(stderr.String(), password) {
			t.Errorf("-check printed the DSN's password:\n%s", stderr.String())
		}
	}
}

// A database that cannot be reached at start-up stops the start with an
// error naming spool.dsn and the fix, without the password.
func TestSpoolDatabaseUnreachableAtStart(t *testing.T) {
	dir := shortDir(t)
	const password = "s3cret-Pw-do-not-print"
	cfg := oauthConfig(t, dir, "spool:\n  backend: postgres\n  dsn: \"host="+dir+"/no-such-socket dbname=spoold user=spoold password="+password+"\"\n")
	var stdout, stderr bytes.Buffer
	code := run([]string{"-config", cfg}, &stdout, &stderr)
	out := stdout.String() + stderr.String()
	if code == exitOK || !strings.Contains(out, "spool.dsn cannot be reached") || !strings.Contains(out, "start the database or fix spool.dsn") {
		t.Fatalf("exit %d, want a start-up error naming spool.dsn:\n%s", code, out)
	}
	if strings.Contains(out, password) {
		t.Errorf("the start-up error shows the DSN's password:\n%s", out)
	}
}
