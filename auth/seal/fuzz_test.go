package seal

import (
	"bytes"
	"strings"
	"testing"
)

// FuzzOpen feeds arbitrary records (what a damaged or tampered spool.db
// holds) to Open: it must refuse them without panicking, and never return
// plaintext for bytes that were not sealed by the key.
func FuzzOpen(f *testing.F) {
	k, _ := NewKey(bytes.Repeat([]byte{7}, KeySize), "fuzz")
	kr := NewKeyring(nil, k)
	good, _ := kr.Seal("m365", "auth.token", []byte(`{"v":1}`))
	f.Add(good)
	f.Add([]byte(`{"v":1,"refresh_token":"x"}`))
	f.Add([]byte("SPSL"))
	f.Add(append([]byte("SPSL\x01"), good[5:20]...))
	f.Fuzz(func(t *testing.T, b []byte) {
		plain, _, err := kr.Open("m365", "auth.token", b)
		if err == nil && !bytes.Equal(b, good) {
			// Only a genuine seal opens; a forgery would be a break of
			// Poly1305, so any other success is a bug here.
			if !bytes.Equal(plain, []byte(`{"v":1}`)) {
				t.Fatalf("forged record opened: %q", plain)
			}
		}
		if err != nil && strings.Contains(err.Error(), string(b)) && len(b) > 8 {
			t.Fatalf("error quotes the record: %v", err)
		}
	})
}

// FuzzParseKey: key text comes from files, credentials and variables.
func FuzzParseKey(f *testing.F) {
	f.Add("q6urq6urq6urq6urq6urq6urq6urq6urq6urq6urq6s=")
	f.Add(strings.Repeat("ab", 32))
	f.Add("")
	f.Fuzz(func(t *testing.T, s string) {
		k, err := ParseKey([]byte(s), "fuzz")
		if err == nil && len(k.ID()) != 2*idLen {
			t.Fatalf("key ID %q", k.ID())
		}
		if err != nil && len(strings.TrimSpace(s)) > 8 && strings.Contains(err.Error(), strings.TrimSpace(s)) {
			t.Fatalf("error quotes the key text: %v", err)
		}
		_, _ = ParseSource(s)
	})
}
