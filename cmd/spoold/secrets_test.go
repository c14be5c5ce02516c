package main

import (
	"bytes"
	"context"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/spoold/spoold/auth"
	"github.com/spoold/spoold/auth/seal"
	"github.com/spoold/spoold/spool"
	"github.com/spoold/spoold/spool/spooltest"
)

// oauthConfig writes a config with two delegated Microsoft accounts and no
// listeners, its data directory in dir.
func oauthConfig(t *testing.T, dir, extra string) string {
	t.Helper()
	path := filepath.Join(dir, "spoold.yaml")
	writeFile(t, path, fmt.Sprintf(`data_dir: %s/data
http:
  listen: ""
accounts:
  - name: m365
    provider: microsoft
    tenant: contoso.onmicrosoft.com
    client_id: 00000000-0000-0000-0000-000000000000
    mailbox: scanner@contoso.com
  - name: sales
    provider: microsoft
    tenant: contoso.onmicrosoft.com
    client_id: 00000000-0000-0000-0000-000000000000
    mailbox: sales@contoso.com
routes:
  default: m365
%s`, dir, extra))
	return path
}

func shortDir(t *testing.T) string {
	t.Helper()
	d, err := os.MkdirTemp("", "sec")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(d) })
	return d
}

// putTokens stores token records as spoold does, sealed with kr or, when
// kr is nil, in plaintext as spoold did before sealing.
func putTokens(t *testing.T, dataDir string, kr *seal.Keyring, accounts ...string) []string {
	t.Helper()
	sp, err := spool.Open(dataDir, spool.Options{RescueInterval: -1})
	if err != nil {
		t.Fatal(err)
	}
	defer sp.Close()
	var toks []string
	for _, a := range accounts {
		rt, at := "RT-"+a+"-0123456789abcdef", "AT-"+a+"-fedcba9876543210"
		rec := []byte(fmt.Sprintf(`{"v":1,"refresh_token":%q,"access_token":%q,"granted_at":"2026-01-01T00:00:00Z"}`, rt, at))
		if kr != nil {
			if rec, err = kr.Seal(a, auth.TokenKey, rec); err != nil {
				t.Fatal(err)
			}
		}
		if err := sp.AccountPut(context.Background(), a, auth.TokenKey, rec); err != nil {
			t.Fatal(err)
		}
		toks = append(toks, rt, at)
	}
	return toks
}

func newKeyring(t *testing.T) (*seal.Keyring, []byte) {
	t.Helper()
	text, err := seal.GenerateText(nil)
	if err != nil {
		t.Fatal(err)
	}
	k, err := seal.ParseKey(text, "test")
	if err != nil {
		t.Fatal(err)
	}
	return seal.NewKeyring(nil, k), text
}

// TestStartRefusesTokensItCannotOpen: a wrong or missing key stops the
// start with an error naming the accounts (exit 2, no crash, no new key
// and no sign-in asked for), and -forget-tokens is the way out.
func TestStartRefusesTokensItCannotOpen(t *testing.T) {
	dir := shortDir(t)
	cfg := oauthConfig(t, dir, "")
	data := filepath.Join(dir, "data")
	kr, _ := newKeyring(t)
	putTokens(t, data, kr, "m365", "sales")
	_, wrong := newKeyring(t)
	keyFile := filepath.Join(data, "spoold.key")
	writeFile(t, keyFile, string(wrong))

	// A wrong or missing key is the admin's to fix: exit 2, which the
	// systemd unit does not restart (RestartPreventExitStatus=2), instead
	// of a restart every few seconds with the same error.
	var stdout, stderr bytes.Buffer
	if code := run([]string{"-config", cfg}, &stdout, &stderr); code != exitUsage {
		t.Fatalf("wrong key: exit %d, want %d\n%s", code, exitUsage, stderr.String())
	}
	for _, want := range []string{"the stored tokens of account(s) m365, sales cannot be opened", "m365: sealed with key " + kr.Primary().ID() + ", which is not loaded", "-forget-tokens m365,sales", "restarting will not help"} {
		if !strings.Contains(stderr.String(), want) {
			t.Errorf("wrong-key error lacks %q:\n%s", want, stderr.String())
		}
	}

	os.Remove(keyFile)
	stderr.Reset()
	if code := run([]string{"-config", cfg}, &stdout, &stderr); code != exitUsage ||
		!strings.Contains(stderr.String(), "key file "+keyFile+" does not exist") || !strings.Contains(stderr.String(), "m365, sales are sealed with it") {
		t.Fatalf("missing key: exit %d\n%s", code, stderr.String())
	}
	if _, err := os.Stat(keyFile); err == nil {
		t.Fatal("a new key was created although the stored tokens need the old one")
	}

	stdout.Reset()
	if code := run([]string{"-config", cfg, "-forget-tokens", "m365,sales"}, &stdout, &stderr); code != exitOK ||
		!strings.Contains(stdout.String(), "m365: stored token deleted") {
		t.Fatalf("-forget-tokens: exit %d\n%s%s", code, stdout.String(), stderr.String())
	}
	sp, err := spool.Open(data, spool.Options{RescueInterval: -1})
	if err != nil {
		t.Fatal(err)
	}
	defer sp.Close()
	if accts, _ := sp.AccountsWith(context.Background(), auth.TokenKey); len(accts) != 0 {
		t.Fatalf("tokens left after -forget-tokens: %v", accts)
	}
}

// TestFirstStartSealsPlaintextTokens: a spool from before sealing, started
// with the default configuration of the key: a key is made in the data
// directory, every token is sealed, the log says what the key protects,
// and no token string is left in any file of the data directory.
func TestFirstStartSealsPlaintextTokens(t *testing.T) {
	dir := shortDir(t)
	cfg := oauthConfig(t, dir, "")
	data := filepath.Join(dir, "data")
	toks := putTokens(t, data, nil, "m365", "sales", "retired")

	p, err := loadPlan(cfg)
	if err != nil {
		t.Fatal(err)
	}
	logs := &spooltest.SyncBuffer{}
	log := slog.New(slog.NewTextHandler(logs, nil))
	d, err := startDaemon(context.Background(), p, cfg, log, new(slog.LevelVar))
	if err != nil {
		t.Fatalf("start: %v\n%s", err, logs.String())
	}
	h, err := d.auth.Health(context.Background(), "m365")
	if err != nil || h.Status != auth.StatusOK {
		t.Errorf("m365 after migration: %+v %v", h, err)
	}
	// spoolctl keys rotate, as the admin API calls it.
	keyFile := filepath.Join(data, "spoold.key")
	oldKey, _ := os.ReadFile(keyFile)
	rot, err := daemonInfo{d: d}.RotateKeys(context.Background())
	if err != nil || len(rot.Resealed) != 3 || rot.NewKeyID == rot.OldKeyID {
		t.Fatalf("rotate: %+v %v", rot, err)
	}
	if ki := (daemonInfo{d: d}).Keys(); len(ki.Keys) != 1 || ki.Keys[0].ID != rot.NewKeyID || ki.Keys[0].Source != "file "+keyFile {
		t.Fatalf("keys after rotation: %+v", ki)
	}
	d.shutdown()
	newKey, _ := os.ReadFile(keyFile)
	if bytes.Equal(oldKey, newKey) {
		t.Fatal("the key file was not replaced by the rotation")
	}
	sp, err := spool.Open(data, spool.Options{RescueInterval: -1})
	if err != nil {
		t.Fatal(err)
	}
	v, res, err := seal.OpenVault(context.Background(), p.secrets, sp, auth.TokenKey, seal.VaultOptions{})
	sp.Close()
	if err != nil || len(res.Current) != 3 || v.Keyring().Primary().ID() != rot.NewKeyID {
		t.Fatalf("after rotation: %+v %v", res, err)
	}
	for _, want := range []string{"created a new key for the stored tokens", "sealed stored tokens that were kept in plaintext",
		"it protects copies of spool.db, not copies of the whole data directory"} {
		if !strings.Contains(logs.String(), want) {
			t.Errorf("log lacks %q:\n%s", want, logs.String())
		}
	}
	if fi, err := os.Stat(filepath.Join(data, "spoold.key")); err != nil || fi.Mode().Perm() != 0o600 {
		t.Fatalf("key file: %v %v", fi, err)
	}
	filepath.WalkDir(dir, func(p string, de os.DirEntry, err error) error {
		if err != nil || de.IsDir() {
			return nil
		}
		b, _ := os.ReadFile(p)
		for _, tok := range toks {
			if bytes.Contains(b, []byte(tok)) {
				t.Errorf("%s still holds %s", p, tok)
			}
		}
		return nil
	})
}

func TestPrintConfigShowsSecretsAndAccess(t *testing.T) {
	dir := shortDir(t)
	cfg := oauthConfig(t, dir, `secrets:
  key: credential:spoold.key
  previous_keys: [env:OLD_SPOOLD_KEY]
`)
	var stdout, stderr bytes.Buffer
	if code := run([]string{"-config", cfg, "-print-config"}, &stdout, &stderr); code != exitOK {
		t.Fatalf("exit %d: %s", code, stderr.String())
	}
	for _, want := range []string{`key: "credential:spoold.key"`, `- "env:OLD_SPOOLD_KEY"`, "audit_retention: 90d", "read_group:", "admin_group:"} {
		if !strings.Contains(stdout.String(), want) {
			t.Errorf("-print-config lacks %q:\n%s", want, stdout.String())
		}
	}
	bad := oauthConfig(t, dir, `secrets:
  key: "env:"
admin:
  audit_retention: 10m
`)
	stderr.Reset()
	if code := run([]string{"-config", bad, "-check"}, &stdout, &stderr); code != exitUsage ||
		!strings.Contains(stderr.String(), "secrets.key") || !strings.Contains(stderr.String(), "admin.audit_retention") {
		t.Fatalf("-check of bad secrets/admin: exit %d\n%s", code, stderr.String())
	}
}

// TestCompactionAfterACrashBetweenSealingAndCompacting: a start that died
// after sealing plaintext tokens but before compacting left the marker; the
// next start compacts, so the plaintext in freed pages goes all the same.
func TestCompactionAfterACrashBetweenSealingAndCompacting(t *testing.T) {
	dir := shortDir(t)
	cfg := oauthConfig(t, dir, "")
	data := filepath.Join(dir, "data")
	toks := putTokens(t, data, nil, "m365", "sales")
	// What the crashed start did: the marker, then the sealing, no compaction.
	if err := writeMarker(filepath.Join(data, scrubMarker)); err != nil {
		t.Fatal(err)
	}
	sp, err := spool.Open(data, spool.Options{RescueInterval: -1})
	if err != nil {
		t.Fatal(err)
	}
	if _, res, err := seal.OpenVault(context.Background(), seal.Options{Key: filepath.Join(data, "spoold.key")}, sp, auth.TokenKey, seal.VaultOptions{}); err != nil || len(res.Sealed) != 2 {
		t.Fatalf("sealing: %+v %v", res, err)
	}
	sp.Close()
	db, _ := os.ReadFile(filepath.Join(data, spool.DBFile))
	left := 0
	for _, tok := range toks {
		if bytes.Contains(db, []byte(tok)) {
			left++
		}
	}
	t.Logf("after sealing without compaction, %d token strings remain in spool.db", left)

	p, err := loadPlan(cfg)
	if err != nil {
		t.Fatal(err)
	}
	logs := &spooltest.SyncBuffer{}
	d, err := startDaemon(context.Background(), p, cfg, slog.New(slog.NewTextHandler(logs, nil)), new(slog.LevelVar))
	if err != nil {
		t.Fatalf("start: %v\n%s", err, logs.String())
	}
	d.shutdown()
	if !strings.Contains(logs.String(), "an earlier start sealed plaintext tokens and stopped before compacting") {
		t.Errorf("log:\n%s", logs.String())
	}
	if _, err := os.Stat(filepath.Join(data, scrubMarker)); err == nil {
		t.Error("the marker is still there after the compaction")
	}
	db, _ = os.ReadFile(filepath.Join(data, spool.DBFile))
	for _, tok := range toks {
		if bytes.Contains(db, []byte(tok)) {
			t.Errorf("spool.db still holds %s", tok)
		}
	}
}
