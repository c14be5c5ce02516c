package main

import (
	"strings"
	"testing"

	"golang.org/x/crypto/bcrypt"
)

func TestHashPassword(t *testing.T) {
	notTTY := func() bool { return false }
	r := runCLI(t, &deps{Stdin: strings.NewReader("s3cret pass\n"), StdinIsTTY: notTTY}, "hash-password")
	if r.code != 0 {
		t.Fatalf("exit %d: %s", r.code, r.stderr)
	}
	hash := strings.TrimSpace(r.stdout)
	if err := bcrypt.CompareHashAndPassword([]byte(hash), []byte("s3cret pass")); err != nil {
		t.Fatalf("printed hash %q does not verify the password: %v", hash, err)
	}
	if strings.Contains(r.stdout+r.stderr, "s3cret") {
		t.Error("the password itself was printed")
	}
	for name, in := range map[string]string{"empty line": "\n", "no input": "", "too long": strings.Repeat("x", 73) + "\n"} {
		r := runCLI(t, &deps{Stdin: strings.NewReader(in), StdinIsTTY: notTTY}, "hash-password")
		if r.code != 2 || r.stdout != "" {
			t.Errorf("%s: exit %d stdout %q, want usage error 2 and no output", name, r.code, r.stdout)
		}
	}
}
