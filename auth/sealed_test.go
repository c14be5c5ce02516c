package auth_test

import (
	"bytes"
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/spoold/spoold/auth"
	"github.com/spoold/spoold/auth/seal"
	"github.com/spoold/spoold/spool"
)

// startOn starts the env's Manager on another store (a real spool).
func (e *env) startOn(store auth.Store, sealer auth.Sealer) *auth.Manager {
	e.t.Helper()
	if e.m != nil {
		_ = e.m.Close()
	}
	opts := e.opts
	opts.Sealer = sealer
	m, err := auth.NewManager([]auth.AccountConfig{e.cfg()}, store, opts)
	if err != nil {
		e.t.Fatal(err)
	}
	e.m = m
	e.hmu.Lock()
	e.handler = m.CallbackHandler()
	e.hmu.Unlock()
	e.t.Cleanup(func() { _ = m.Close() })
	return m
}

// useTokens signs in and refreshes a few times with rotating refresh
// tokens, so that many tokens pass through the store.
func (e *env) useTokens(n int) {
	e.t.Helper()
	e.srv.SetRotate(true)
	e.mustLogin()
	for i := 0; i < n; i++ {
		e.clock.Advance(2 * time.Hour)
		if _, err := e.token(); err != nil {
			e.t.Fatalf("refresh %d: %v", i, err)
		}
	}
}

// tokensIn lists the issued tokens found anywhere under dir (raw bytes of
// every file: spool.db with its free pages, the key, everything).
func tokensIn(t *testing.T, dir string, issued []string) []string {
	t.Helper()
	var found []string
	filepath.WalkDir(dir, func(p string, d os.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return nil
		}
		b, err := os.ReadFile(p)
		if err != nil {
			t.Fatal(err)
		}
		for _, tok := range issued {
			if len(tok) >= 8 && bytes.Contains(b, []byte(tok)) {
				found = append(found, filepath.Base(p)+": "+tok)
			}
		}
		return nil
	})
	return found
}

// TestSealedSpoolHoldsNoToken: with a key, no access or refresh token the
// provider issued is anywhere in the data directory, and a restart reads
// the grant back without a new sign-in.
func TestSealedSpoolHoldsNoToken(t *testing.T) {
	e := newEnv(t)
	dir := t.TempDir()
	sp, err := spool.Open(dir, spool.Options{RescueInterval: -1})
	if err != nil {
		t.Fatal(err)
	}
	v, _, err := seal.OpenVault(context.Background(), seal.Options{Key: filepath.Join(dir, "spoold.key")}, sp, auth.TokenKey, seal.VaultOptions{})
	if err != nil {
		t.Fatal(err)
	}
	e.startOn(sp, v.Keyring())
	e.useTokens(5)
	issued := e.srv.Issued()
	if len(issued) < 10 {
		t.Fatalf("the fake issued only %d tokens", len(issued))
	}
	e.startOn(sp, v.Keyring()) // a restart
	if h := e.health(); h.Status != auth.StatusOK {
		t.Fatalf("after restart: %s (%s)", h.Status, h.Reason)
	}
	if _, err := e.token(); err != nil {
		t.Fatal(err)
	}
	e.m.Close()
	sp.Close()
	if found := tokensIn(t, dir, e.srv.Issued()); len(found) > 0 {
		t.Fatalf("tokens in the data directory: %v", found)
	}
}

// TestPlaintextSpoolIsSealedAndScrubbed: tokens an older spoold stored in
// plaintext are sealed at the first start with a key and, after the
// compaction spoold runs then, gone from every byte of spool.db.
func TestPlaintextSpoolIsSealedAndScrubbed(t *testing.T) {
	e := newEnv(t)
	dir := t.TempDir()
	sp, err := spool.Open(dir, spool.Options{RescueInterval: -1})
	if err != nil {
		t.Fatal(err)
	}
	e.startOn(sp, nil) // as before sealing existed
	e.useTokens(5)
	e.m.Close()
	issued := e.srv.Issued()
	if found := tokensIn(t, dir, issued); len(found) == 0 {
		t.Fatal("the plaintext spool holds no token: the scan cannot see them")
	}

	v, res, err := seal.OpenVault(context.Background(), seal.Options{Key: filepath.Join(t.TempDir(), "spoold.key")}, sp, auth.TokenKey, seal.VaultOptions{})
	if err != nil || len(res.Sealed) != 1 {
		t.Fatalf("first start with a key: %+v, %v", res, err)
	}
	sp.Close()
	before := tokensIn(t, dir, issued)
	t.Logf("sealed, before compaction: %d token copies left in freed pages", len(before))
	if err := spool.Compact(dir); err != nil {
		t.Fatal(err)
	}
	if found := tokensIn(t, dir, issued); len(found) > 0 {
		t.Fatalf("tokens left after sealing and compaction: %v", found)
	}
	sp, err = spool.Open(dir, spool.Options{RescueInterval: -1})
	if err != nil {
		t.Fatal(err)
	}
	defer sp.Close()
	e.startOn(sp, v.Keyring())
	if h := e.health(); h.Status != auth.StatusOK {
		t.Fatalf("after migration: %s (%s)", h.Status, h.Reason)
	}
}

// TestSwappedTokenRecordIsRefused: a record copied from one account to
// another does not open, and the account is not sent to a new sign-in
// for it (the daemon refuses to start on it; see auth/seal).
func TestSwappedTokenRecordIsRefused(t *testing.T) {
	e := newEnv(t)
	kr := seal.NewKeyring(nil, mustSealKey(t))
	e.startOn(e.store, kr)
	e.mustLogin()
	rec := e.store.get(testAccount, auth.TokenKey)
	if !seal.IsSealed(rec) {
		t.Fatal("the token record is not sealed")
	}
	other := e.cfg()
	other.Name = "other"
	if err := e.store.AccountPut(context.Background(), "other", auth.TokenKey, rec); err != nil {
		t.Fatal(err)
	}
	opts := e.opts
	opts.Sealer = kr
	m, err := auth.NewManager([]auth.AccountConfig{other}, e.store, opts)
	if err != nil {
		t.Fatal(err)
	}
	defer m.Close()
	_, err = m.AccessToken(context.Background(), "other")
	if err == nil || !strings.Contains(err.Error(), "copied from another account") {
		t.Fatalf("the swapped record gave a token or an unclear error: %v", err)
	}
}

func mustSealKey(t *testing.T) *seal.Key {
	t.Helper()
	text, err := seal.GenerateText(nil)
	if err != nil {
		t.Fatal(err)
	}
	k, err := seal.ParseKey(text, "test")
	if err != nil {
		t.Fatal(err)
	}
	return k
}
