package seal

import (
	"bytes"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func mustKey(t *testing.T, fill byte) *Key {
	t.Helper()
	k, err := NewKey(bytes.Repeat([]byte{fill}, KeySize), "test")
	if err != nil {
		t.Fatal(err)
	}
	return k
}

func TestSealOpenRoundTrip(t *testing.T) {
	kr := NewKeyring(nil, mustKey(t, 1))
	plain := []byte(`{"v":1,"refresh_token":"RT-secret"}`)
	b, err := kr.Seal("m365", "auth.token", plain)
	if err != nil {
		t.Fatal(err)
	}
	if !IsSealed(b) || bytes.Contains(b, []byte("RT-secret")) {
		t.Fatalf("sealed record shows its plaintext or lacks the envelope: %q", b)
	}
	got, id, err := kr.Open("m365", "auth.token", b)
	if err != nil || !bytes.Equal(got, plain) || id != kr.Primary().ID() {
		t.Fatalf("Open = %q, %s, %v", got, id, err)
	}
	b2, _ := kr.Seal("m365", "auth.token", plain)
	if bytes.Equal(b, b2) {
		t.Fatal("two seals of the same record are equal: the nonce is not random")
	}
}

// A record copied to another account (or another key of the same account)
// does not open: the account name is associated data.
func TestSwappedRecordsAreRefused(t *testing.T) {
	kr := NewKeyring(nil, mustKey(t, 1))
	a, _ := kr.Seal("alice", "auth.token", []byte(`{"refresh_token":"A"}`))
	_, _, err := kr.Open("bob", "auth.token", a)
	if !errors.Is(err, ErrOpen) || !strings.Contains(err.Error(), "bob") {
		t.Fatalf("alice's record opened as bob's: %v", err)
	}
	if _, _, err := kr.Open("alice", "auth.health", a); !errors.Is(err, ErrOpen) {
		t.Fatalf("record opened under another key: %v", err)
	}
	tampered := bytes.Clone(a)
	tampered[len(tampered)-1] ^= 1
	if _, _, err := kr.Open("alice", "auth.token", tampered); !errors.Is(err, ErrOpen) {
		t.Fatalf("tampered record opened: %v", err)
	}
}

func TestWrongKeyNamesTheKeyNeeded(t *testing.T) {
	old, other := mustKey(t, 1), mustKey(t, 2)
	b, _ := NewKeyring(nil, old).Seal("m365", "auth.token", []byte("{}"))
	_, id, err := NewKeyring(nil, other).Open("m365", "auth.token", b)
	if !errors.Is(err, ErrNoKey) || id != old.ID() || !strings.Contains(err.Error(), old.ID()) {
		t.Fatalf("Open with the wrong key = %s, %v; want ErrNoKey naming %s", id, err, old.ID())
	}
	if _, _, err := NewKeyring(nil, other).Open("m365", "auth.token", []byte(`{"v":1}`)); !errors.Is(err, ErrNotSealed) {
		t.Fatalf("plaintext record: %v", err)
	}
}

func TestKeyringRotationKeepsOldKeyUntilRetired(t *testing.T) {
	old, nk := mustKey(t, 1), mustKey(t, 2)
	kr := NewKeyring(nil, old)
	b, _ := kr.Seal("a", "k", []byte("x"))
	kr.SetPrimary(nk)
	if _, id, err := kr.Open("a", "k", b); err != nil || id != old.ID() {
		t.Fatalf("old record during rotation: %s %v", id, err)
	}
	b2, _ := kr.Seal("a", "k", []byte("x"))
	if KeyID(b2) != nk.ID() {
		t.Fatalf("new record sealed with %s, want the new primary %s", KeyID(b2), nk.ID())
	}
	kr.Retire()
	if _, _, err := kr.Open("a", "k", b); !errors.Is(err, ErrNoKey) {
		t.Fatalf("old record after Retire: %v", err)
	}
}

func TestParseKeyForms(t *testing.T) {
	want := mustKey(t, 0xab).ID()
	for _, text := range []string{
		"q6urq6urq6urq6urq6urq6urq6urq6urq6urq6urq6s=\n",
		"q6urq6urq6urq6urq6urq6urq6urq6urq6urq6urq6s",
		strings.Repeat("ab", KeySize),
	} {
		k, err := ParseKey([]byte(text), "t")
		if err != nil || k.ID() != want {
			t.Errorf("ParseKey(%q) = %v, %v", text, k, err)
		}
	}
	for _, bad := range []string{"", "short", "q6urq6ur"} {
		_, err := ParseKey([]byte(bad), "file x")
		if err == nil {
			t.Errorf("ParseKey(%q) accepted", bad)
		} else if bad != "" && strings.Contains(err.Error(), bad) {
			t.Errorf("error quotes the key text: %v", err)
		}
	}
	gen, err := GenerateText(nil)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := ParseKey(gen, "generated"); err != nil {
		t.Fatalf("a generated key does not parse: %v", err)
	}
}

func TestSources(t *testing.T) {
	dir := t.TempDir()
	for in, want := range map[string]Source{
		"/etc/spoold/spoold.key": {KindFile, "/etc/spoold/spoold.key"},
		"file:./data/spoold.key": {KindFile, "./data/spoold.key"},
		"credential:spoold.key":  {KindCredential, "spoold.key"},
		"env:SPOOLD_KEY":         {KindEnv, "SPOOLD_KEY"},
		"c:\\odd\\but\\a\\path":  {KindFile, "c:\\odd\\but\\a\\path"},
	} {
		got, err := ParseSource(in)
		if err != nil || got != want {
			t.Errorf("ParseSource(%q) = %v, %v; want %v", in, got, err, want)
		}
	}
	for _, bad := range []string{"", "env:", "credential:a/b"} {
		if _, err := ParseSource(bad); err == nil {
			t.Errorf("ParseSource(%q) accepted", bad)
		}
	}

	text, _ := GenerateText(nil)
	env := map[string]string{"SPOOLD_KEY": string(text), "CREDENTIALS_DIRECTORY": dir}
	getenv := func(k string) string { return env[k] }
	k1, _, err := Source{KindEnv, "SPOOLD_KEY"}.Load(LoadOptions{Getenv: getenv})
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "spoold.key"), text, 0o400); err != nil {
		t.Fatal(err)
	}
	k2, _, err := Source{KindCredential, "spoold.key"}.Load(LoadOptions{Getenv: getenv})
	if err != nil || k2.ID() != k1.ID() {
		t.Fatalf("credential: %v, %v", k2, err)
	}
	if _, _, err := (Source{KindCredential, "missing"}).Load(LoadOptions{Getenv: getenv}); !errors.Is(err, ErrMissing) || !strings.Contains(err.Error(), "LoadCredential") {
		t.Fatalf("missing credential: %v", err)
	}
	if _, _, err := (Source{KindCredential, "x"}).Load(LoadOptions{Getenv: func(string) string { return "" }}); !errors.Is(err, ErrMissing) || !strings.Contains(err.Error(), "CREDENTIALS_DIRECTORY") {
		t.Fatalf("no credentials directory: %v", err)
	}
	if _, _, err := (Source{KindEnv, "UNSET"}).Load(LoadOptions{Getenv: getenv}); !errors.Is(err, ErrMissing) {
		t.Fatalf("unset variable: %v", err)
	}

	// Files: created 0600 when asked, refused when others can read them.
	path := filepath.Join(dir, "sub", "spoold.key")
	if _, _, err := (Source{KindFile, path}).Load(LoadOptions{}); !errors.Is(err, ErrMissing) {
		t.Fatalf("missing file without Create: %v", err)
	}
	k3, created, err := Source{KindFile, path}.Load(LoadOptions{Create: true})
	if err != nil || !created {
		t.Fatalf("create: %v %v", created, err)
	}
	if fi, _ := os.Stat(path); fi.Mode().Perm() != 0o600 {
		t.Fatalf("created key file mode %v, want 0600", fi.Mode().Perm())
	}
	k4, created, err := Source{KindFile, path}.Load(LoadOptions{Create: true})
	if err != nil || created || k4.ID() != k3.ID() {
		t.Fatalf("reload: %v %v %v", k4, created, err)
	}
	if err := os.Chmod(path, 0o644); err != nil {
		t.Fatal(err)
	}
	if _, _, err := (Source{KindFile, path}).Load(LoadOptions{}); err == nil || !strings.Contains(err.Error(), "chmod 600") {
		t.Fatalf("group-readable key file: %v", err)
	}
}

// Key problems a restart cannot fix are told from the rest, so spoold can
// exit with a status its systemd unit does not restart.
func TestNeedsAdmin(t *testing.T) {
	dir := t.TempDir()
	load := func(spec string, o LoadOptions) error {
		t.Helper()
		src, err := ParseSource(spec)
		if err != nil {
			t.Fatal(err)
		}
		_, _, err = src.Load(o)
		return err
	}
	open := filepath.Join(dir, "open.key")
	text, _ := GenerateText(nil)
	os.WriteFile(open, text, 0o644)
	os.Chmod(open, 0o644)
	bad := filepath.Join(dir, "bad.key")
	os.WriteFile(bad, []byte("not a key\n"), 0o600)
	short := filepath.Join(dir, "short.key")
	os.WriteFile(short, []byte("AAAA\n"), 0o600)
	for name, err := range map[string]error{
		"missing file":     load("file:"+filepath.Join(dir, "none.key"), LoadOptions{}),
		"unset variable":   load("env:SPOOLD_TEST_NO_SUCH_KEY", LoadOptions{Getenv: func(string) string { return "" }}),
		"readable by all":  load("file:"+open, LoadOptions{}),
		"not a key":        load("file:"+bad, LoadOptions{}),
		"wrong length":     load("file:"+short, LoadOptions{}),
		"records unopened": &UnopenableError{Failed: map[string]error{"m365": ErrNoKey}},
	} {
		if err == nil {
			t.Errorf("%s: no error", name)
			continue
		}
		if !NeedsAdmin(err) {
			t.Errorf("%s: NeedsAdmin false for %v", name, err)
		}
	}
	if NeedsAdmin(errors.New("reading the key file: input/output error")) {
		t.Error("an I/O error counts as needing an admin; a restart may cure it")
	}
}
