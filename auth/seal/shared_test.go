package seal_test

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"testing"

	"github.com/spoold/spoold/auth/seal"
)

// TestRotationRefusedOnASharedSpool: with several nodes on one PostgreSQL
// spool, `keys rotate` on one of them would seal every token under a key
// the others lack, and they would fail at their next token read. The
// rotation is refused with the rolling procedure, and nothing changes: no
// new key file, the tokens still open with the old key.
func TestRotationRefusedOnASharedSpool(t *testing.T) {
	dir := t.TempDir()
	sp := openSpool(t, filepath.Join(dir, "data"))
	defer sp.Close()
	putPlain(t, sp, "m365")
	keyFile := filepath.Join(dir, "spoold.key")
	opts := seal.Options{Key: keyFile}
	v, _, err := seal.OpenVault(context.Background(), opts, sp, tokenKey, seal.VaultOptions{Shared: true})
	if err != nil {
		t.Fatal(err)
	}
	before, err := os.ReadFile(keyFile)
	if err != nil {
		t.Fatal(err)
	}
	_, err = v.Rotate(context.Background())
	if !errors.Is(err, seal.ErrSharedRotation) {
		t.Fatalf("Rotate on a shared spool: %v, want the refusal", err)
	}
	if _, err := os.Stat(seal.PendingPath(keyFile)); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("a pending key was written: %v", err)
	}
	after, _ := os.ReadFile(keyFile)
	if string(after) != string(before) {
		t.Error("the key file changed")
	}
	// Another node with the same key still opens every token.
	if _, _, err := seal.OpenVault(context.Background(), opts, sp, tokenKey, seal.VaultOptions{}); err != nil {
		t.Errorf("after the refused rotation the old key no longer opens the tokens: %v", err)
	}
}
