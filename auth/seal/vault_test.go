package seal_test

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/spoold/spoold/auth/seal"
	"github.com/spoold/spoold/spool"
)

const tokenKey = "auth.token"

func openSpool(t testing.TB, dir string) *spool.Spool {
	t.Helper()
	sp, err := spool.Open(dir, spool.Options{RescueInterval: -1})
	if err != nil {
		t.Fatal(err)
	}
	return sp
}

// putPlain stores records as a spoold without sealing did, returning the
// token strings.
func putPlain(t *testing.T, sp *spool.Spool, accounts ...string) []string {
	t.Helper()
	var toks []string
	for _, a := range accounts {
		rt, at := fmt.Sprintf("RT-%s-%x", a, rand.Uint64()), fmt.Sprintf("AT-%s-%x", a, rand.Uint64())
		rec := fmt.Sprintf(`{"v":1,"refresh_token":%q,"access_token":%q}`, rt, at)
		if err := sp.AccountPut(context.Background(), a, tokenKey, []byte(rec)); err != nil {
			t.Fatal(err)
		}
		// Rewrite a few times, as refreshes do, so old versions sit in
		// freed pages.
		for i := 0; i < 3; i++ {
			if err := sp.AccountPut(context.Background(), a, "auth.health", []byte(fmt.Sprintf(`{"v":1,"n":%d}`, i))); err != nil {
				t.Fatal(err)
			}
		}
		toks = append(toks, rt, at)
	}
	return toks
}

// scanDir fails for every token found in any file under dir.
func scanDir(t *testing.T, dir string, toks []string) (found int) {
	t.Helper()
	filepath.WalkDir(dir, func(p string, d os.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return nil
		}
		b, _ := os.ReadFile(p)
		for _, tok := range toks {
			if bytes.Contains(b, []byte(tok)) {
				t.Errorf("%s holds the token %s", p, tok)
				found++
			}
		}
		return nil
	})
	return found
}

func TestMigrationSealsPlaintextAndCompactionLeavesNoCopy(t *testing.T) {
	dir := t.TempDir()
	sp := openSpool(t, dir)
	toks := putPlain(t, sp, "m365", "gmail", "old")
	keyFile := filepath.Join(dir, "spoold.key")

	v, res, err := seal.OpenVault(context.Background(), seal.Options{Key: keyFile}, sp, tokenKey, seal.VaultOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if !res.Created || len(res.Sealed) != 3 {
		t.Fatalf("OpenVault = %+v; want the key created and 3 records sealed", res)
	}
	for _, a := range []string{"m365", "gmail", "old"} {
		b, _, _ := sp.AccountGet(context.Background(), a, tokenKey)
		plain, _, err := v.Keyring().Open(a, tokenKey, b)
		if err != nil || !bytes.Contains(plain, []byte("RT-"+a)) {
			t.Fatalf("%s after migration: %v", a, err)
		}
	}
	sp.Close()
	db, _ := os.ReadFile(filepath.Join(dir, spool.DBFile))
	left := 0
	for _, tok := range toks {
		if bytes.Contains(db, []byte(tok)) {
			left++
		}
	}
	t.Logf("before compaction %d of %d token strings remain in freed pages of spool.db", left, len(toks))
	if err := spool.Compact(dir); err != nil {
		t.Fatal(err)
	}
	if n := scanDir(t, dir, toks); n > 0 {
		t.Fatalf("%d token copies left in the data directory after sealing and compaction", n)
	}
	// The compacted spool opens with every record.
	sp = openSpool(t, dir)
	defer sp.Close()
	_, res, err = seal.OpenVault(context.Background(), seal.Options{Key: keyFile}, sp, tokenKey, seal.VaultOptions{})
	if err != nil || len(res.Current) != 3 || len(res.Sealed) != 0 {
		t.Fatalf("second start: %+v, %v", res, err)
	}
}

func TestStartWithWrongOrMissingKey(t *testing.T) {
	dir := t.TempDir()
	sp := openSpool(t, dir)
	defer sp.Close()
	putPlain(t, sp, "m365", "gmail", "gone")
	keyFile := filepath.Join(t.TempDir(), "spoold.key")
	if _, _, err := seal.OpenVault(context.Background(), seal.Options{Key: keyFile}, sp, tokenKey, seal.VaultOptions{}); err != nil {
		t.Fatal(err)
	}

	// Missing key file: never a new key while records need the old one.
	os.Rename(keyFile, keyFile+".away")
	_, _, err := seal.OpenVault(context.Background(), seal.Options{Key: keyFile}, sp, tokenKey, seal.VaultOptions{})
	if !errors.Is(err, seal.ErrMissing) || !strings.Contains(err.Error(), "gmail, gone, m365") {
		t.Fatalf("missing key: %v", err)
	}
	if _, err := os.Stat(keyFile); err == nil {
		t.Fatal("a new key file was created while sealed records need the old one")
	}

	// Wrong key: names every configured account it cannot open, and only
	// warns about the unconfigured one.
	wrong, _ := seal.GenerateText(nil)
	required := func(a string) bool { return a != "gone" }
	_, _, err = seal.OpenVault(context.Background(), seal.Options{Key: "env:K"}, sp, tokenKey,
		seal.VaultOptions{Getenv: func(string) string { return string(wrong) }, Required: required})
	var ue *seal.UnopenableError
	if !errors.As(err, &ue) || len(ue.Failed) != 2 || !strings.Contains(err.Error(), "gmail, m365") ||
		!strings.Contains(err.Error(), "which is not loaded") || strings.Contains(err.Error(), "gone") {
		t.Fatalf("wrong key: %v", err)
	}
	t.Logf("wrong key error:\n%v", err)

	// The old key as a previous key opens them, and they are re-sealed.
	os.Rename(keyFile+".away", keyFile)
	v, res, err := seal.OpenVault(context.Background(), seal.Options{Key: "env:K", PreviousKeys: []string{keyFile}}, sp, tokenKey,
		seal.VaultOptions{Getenv: func(string) string { return string(wrong) }, Required: required})
	if err != nil || len(res.Resealed) != 3 {
		t.Fatalf("with the previous key: %+v, %v", res, err)
	}
	b, _, _ := sp.AccountGet(context.Background(), "m365", tokenKey)
	if seal.KeyID(b) != v.Keyring().Primary().ID() {
		t.Fatal("record not re-sealed with the new key")
	}
}

// TestRotationSurvivesSIGKILL kills a process rotating the key again and
// again at a random record, then starts as spoold does: every record must
// open and the rotation be finished.
func TestRotationSurvivesSIGKILL(t *testing.T) {
	if dir := os.Getenv("SEAL_ROTATE_CHILD"); dir != "" {
		rotateChild(dir)
		return
	}
	if testing.Short() {
		t.Skip("kills child processes; skipped in -short")
	}
	dir := t.TempDir()
	keyFile := filepath.Join(dir, "keys", "spoold.key")
	sp := openSpool(t, dir)
	var accounts []string
	for i := 0; i < 40; i++ {
		accounts = append(accounts, fmt.Sprintf("acct%02d", i))
	}
	putPlain(t, sp, accounts...)
	if _, _, err := seal.OpenVault(context.Background(), seal.Options{Key: keyFile}, sp, tokenKey, seal.VaultOptions{}); err != nil {
		t.Fatal(err)
	}
	sp.Close()
	seen := map[string]bool{}
	for round := 0; round < 12; round++ {
		killAt := rand.IntN(3 * len(accounts))
		cmd := exec.Command(os.Args[0], "-test.run=^TestRotationSurvivesSIGKILL$")
		cmd.Env = append(os.Environ(), "SEAL_ROTATE_CHILD="+dir, "SEAL_KEY="+keyFile)
		out, err := cmd.StdoutPipe()
		if err != nil {
			t.Fatal(err)
		}
		cmd.Stderr = os.Stderr
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		sc := bufio.NewScanner(out)
		n := 0
		for n < killAt && sc.Scan() {
			if sc.Text() == "rec" {
				n++
			}
		}
		cmd.Process.Kill() // SIGKILL
		cmd.Wait()
		_, pendingErr := os.Stat(seal.PendingPath(keyFile))
		seen[fmt.Sprint("pending=", pendingErr == nil)] = true

		sp := openSpool(t, dir)
		v, res, err := seal.OpenVault(context.Background(), seal.Options{Key: keyFile}, sp, tokenKey, seal.VaultOptions{})
		if err != nil {
			t.Fatalf("round %d (killed after %d records): start-up: %v", round, n, err)
		}
		if len(res.Failed) != 0 || len(res.Current)+len(res.Resealed) != len(accounts) {
			t.Fatalf("round %d: %+v", round, res.Report)
		}
		for _, a := range accounts {
			b, _, _ := sp.AccountGet(context.Background(), a, tokenKey)
			if _, id, err := v.Keyring().Open(a, tokenKey, b); err != nil || id != v.Keyring().Primary().ID() {
				t.Fatalf("round %d: %s: key %s, %v", round, a, id, err)
			}
		}
		if _, err := os.Stat(seal.PendingPath(keyFile)); err == nil {
			t.Fatalf("round %d: the rotation was not finished at start-up", round)
		}
		if src := v.Keyring().Primary().Source; src != "file "+keyFile {
			t.Fatalf("round %d: the primary key is said to come from %q", round, src)
		}
		sp.Close()
	}
	t.Logf("kill points covered: %v", seen)
}

// countingRecords prints "rec" after every record update, so the parent
// can kill at a chosen record.
type countingRecords struct{ *spool.Spool }

func (c countingRecords) AccountUpdate(ctx context.Context, account, key string, fn func([]byte) ([]byte, error)) error {
	err := c.Spool.AccountUpdate(ctx, account, key, fn)
	fmt.Println("rec")
	return err
}

func rotateChild(dir string) {
	sp, err := spool.Open(dir, spool.Options{RescueInterval: -1})
	if err != nil {
		fmt.Fprintln(os.Stderr, "child:", err)
		os.Exit(3)
	}
	v, _, err := seal.OpenVault(context.Background(), seal.Options{Key: os.Getenv("SEAL_KEY")}, countingRecords{sp}, tokenKey, seal.VaultOptions{})
	if err != nil {
		fmt.Fprintln(os.Stderr, "child:", err)
		os.Exit(3)
	}
	for {
		if _, err := v.Rotate(context.Background()); err != nil {
			fmt.Fprintln(os.Stderr, "child:", err)
			os.Exit(3)
		}
	}
}
