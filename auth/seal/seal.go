// Package seal owns the encryption of credentials at rest: the keys that
// protect the OAuth token records spoold keeps in spool.db, where those keys
// come from (a file, a systemd credential, an environment variable), the
// sealed record format, and re-sealing every record (migration of plaintext
// records, key rotation).
//
// A sealed record is XChaCha20-Poly1305 (RFC 8439 AEAD with the extended
// 24-byte nonce, golang.org/x/crypto/chacha20poly1305) over the record, with
// the account name and record key as associated data, so a record copied
// from one account to another does not open. The envelope names the key that
// sealed it by a short ID derived from the key, so a keyring holding the old
// and the new key during a rotation opens both and says which key a record
// needs when it is missing.
//
// Envelope (binary, stored as the record value):
//
//	"SPSL" | version 1 | key ID (6 bytes) | nonce (24 bytes) | ciphertext+tag
//
// A plaintext record (JSON, starts with '{') never starts with the magic.
package seal

import (
	"bytes"
	"crypto/cipher"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"strings"
	"sync"

	"golang.org/x/crypto/chacha20poly1305"
)

// KeySize is the length of a key in bytes (256 bits).
const KeySize = chacha20poly1305.KeySize

const (
	magic   = "SPSL"
	version = 1
	idLen   = 6
	header  = len(magic) + 1 + idLen
)

// Errors callers test for.
var (
	// ErrNoKey: the record was sealed under a key the keyring does not hold.
	ErrNoKey = errors.New("sealed under a key that is not loaded")
	// ErrOpen: the key is right but the record does not open: it was
	// tampered with, damaged, or belongs to another account.
	ErrOpen = errors.New("does not open with its key (damaged, or copied from another account)")
	// ErrNotSealed: a record that should be sealed is plaintext.
	ErrNotSealed = errors.New("is not sealed")
)

// Key is one loaded key. Its ID is safe to print; the key bytes are not
// reachable from outside the package.
type Key struct {
	id     string
	aead   cipher.AEAD
	Source string // where it came from, for messages ("file /etc/spoold/keys/spoold.key")
}

// ID names the key in envelopes, logs and `spoolctl keys`: 12 hex digits of
// a hash of the key, which reveals nothing usable about the key.
func (k *Key) ID() string { return k.id }

// NewKey makes a Key from KeySize raw bytes.
func NewKey(raw []byte, source string) (*Key, error) {
	if len(raw) != KeySize {
		return nil, adminError{fmt.Errorf("the key from %s has %d bytes, want %d: generate one with `spoolctl keys generate`", source, len(raw), KeySize)}
	}
	aead, err := chacha20poly1305.NewX(raw)
	if err != nil {
		return nil, fmt.Errorf("the key from %s cannot be used: %w", source, err)
	}
	h := sha256.Sum256(append([]byte("spoold seal key id\x00"), raw...))
	return &Key{id: hex.EncodeToString(h[:idLen]), aead: aead, Source: source}, nil
}

// ParseKey reads a key's text form: 32 bytes as base64 (standard or URL
// alphabet, padded or not; what `spoolctl keys generate` and
// `openssl rand -base64 32` print) or as 64 hex digits. Surrounding white
// space is ignored. Errors never quote the text.
func ParseKey(text []byte, source string) (*Key, error) {
	s := strings.TrimSpace(string(text))
	if s == "" {
		return nil, adminError{fmt.Errorf("the key from %s is empty: generate one with `spoolctl keys generate`", source)}
	}
	var raw []byte
	if len(s) == 2*KeySize {
		if b, err := hex.DecodeString(s); err == nil {
			raw = b
		}
	}
	if raw == nil {
		for _, enc := range []*base64.Encoding{base64.StdEncoding, base64.RawStdEncoding, base64.URLEncoding, base64.RawURLEncoding} {
			if b, err := enc.DecodeString(s); err == nil {
				raw = b
				break
			}
		}
	}
	if raw == nil {
		return nil, adminError{fmt.Errorf("the key from %s is not base64 or hex text (%d characters): generate one with `spoolctl keys generate`", source, len(s))}
	}
	return NewKey(raw, source)
}

// GenerateText returns a new random key in its text form (base64 and a
// newline), reading randomness from r (crypto/rand when nil).
func GenerateText(r io.Reader) ([]byte, error) {
	if r == nil {
		r = rand.Reader
	}
	raw := make([]byte, KeySize)
	if _, err := io.ReadFull(r, raw); err != nil {
		return nil, fmt.Errorf("reading randomness for a new key: %w", err)
	}
	return []byte(base64.StdEncoding.EncodeToString(raw) + "\n"), nil
}

// AD is the associated data binding a record to its account and key: a
// record moved to another account or key does not open.
func AD(account, key string) []byte {
	return []byte("spoold sealed record\x00" + account + "\x00" + key)
}

// IsSealed reports whether b is a sealed envelope (of any version).
func IsSealed(b []byte) bool { return bytes.HasPrefix(b, []byte(magic)) }

// KeyID returns the ID of the key that sealed b, or "" if b is not sealed.
func KeyID(b []byte) string {
	if !IsSealed(b) || len(b) < header {
		return ""
	}
	return hex.EncodeToString(b[len(magic)+1 : header])
}

// Keyring holds the key new records are sealed with (the primary) and older
// keys that still open records (during a rotation, or listed as previous
// keys). It is safe for concurrent use; SetPrimary switches keys while
// records are being sealed.
type Keyring struct {
	rand io.Reader

	mu      sync.RWMutex
	primary *Key
	others  []*Key
}

// NewKeyring returns a keyring sealing with primary and opening with primary
// and others. r supplies nonces (crypto/rand when nil).
func NewKeyring(r io.Reader, primary *Key, others ...*Key) *Keyring {
	if r == nil {
		r = rand.Reader
	}
	kr := &Keyring{rand: r, primary: primary}
	for _, k := range others {
		if k != nil && k.id != primary.id {
			kr.others = append(kr.others, k)
		}
	}
	return kr
}

// Primary is the key new records are sealed with.
func (kr *Keyring) Primary() *Key {
	kr.mu.RLock()
	defer kr.mu.RUnlock()
	return kr.primary
}

// Keys lists every loaded key, the primary first.
func (kr *Keyring) Keys() []*Key {
	kr.mu.RLock()
	defer kr.mu.RUnlock()
	return append([]*Key{kr.primary}, kr.others...)
}

// SetPrimary makes k the key new records are sealed with; the old primary
// keeps opening records until Retire drops it.
func (kr *Keyring) SetPrimary(k *Key) {
	kr.mu.Lock()
	defer kr.mu.Unlock()
	if k.id == kr.primary.id {
		return
	}
	old := kr.primary
	kr.primary = k
	kept := []*Key{old}
	for _, o := range kr.others {
		if o.id != k.id && o.id != old.id {
			kept = append(kept, o)
		}
	}
	kr.others = kept
}

// relabel says the primary key now comes from source (a rotation's new
// key, moved into the key file). The Key is replaced, not changed: callers
// may hold the old one.
func (kr *Keyring) relabel(source string) {
	kr.mu.Lock()
	defer kr.mu.Unlock()
	k := *kr.primary
	k.Source = source
	kr.primary = &k
}

// Retire drops every key but the primary.
func (kr *Keyring) Retire() {
	kr.mu.Lock()
	defer kr.mu.Unlock()
	kr.others = nil
}

func (kr *Keyring) find(id string) *Key {
	kr.mu.RLock()
	defer kr.mu.RUnlock()
	if kr.primary.id == id {
		return kr.primary
	}
	for _, k := range kr.others {
		if k.id == id {
			return k
		}
	}
	return nil
}

// Seal seals plain as the record key of account under the primary key.
func (kr *Keyring) Seal(account, key string, plain []byte) ([]byte, error) {
	k := kr.Primary()
	nonce := make([]byte, chacha20poly1305.NonceSizeX)
	if _, err := io.ReadFull(kr.rand, nonce); err != nil {
		return nil, fmt.Errorf("sealing the %s record of account %s: reading randomness: %w", key, account, err)
	}
	id, _ := hex.DecodeString(k.id)
	out := make([]byte, 0, header+len(nonce)+len(plain)+k.aead.Overhead())
	out = append(out, magic...)
	out = append(out, version)
	out = append(out, id...)
	out = append(out, nonce...)
	return k.aead.Seal(out, nonce, plain, AD(account, key)), nil
}

// Open opens the sealed record key of account and returns the plaintext and
// the ID of the key that opened it. Errors wrap ErrNotSealed, ErrNoKey or
// ErrOpen and never contain the record.
func (kr *Keyring) Open(account, key string, b []byte) ([]byte, string, error) {
	if !IsSealed(b) {
		return nil, "", fmt.Errorf("the %s record of account %s %w", key, account, ErrNotSealed)
	}
	if len(b) < header+chacha20poly1305.NonceSizeX || b[len(magic)] != version {
		return nil, "", fmt.Errorf("the %s record of account %s is a damaged or unknown envelope (%d bytes): %w", key, account, len(b), ErrOpen)
	}
	id := KeyID(b)
	k := kr.find(id)
	if k == nil {
		return nil, id, fmt.Errorf("the %s record of account %s is %w (key %s; loaded: %s)", key, account, ErrNoKey, id, strings.Join(kr.ids(), ", "))
	}
	nonce := b[header : header+chacha20poly1305.NonceSizeX]
	plain, err := k.aead.Open(nil, nonce, b[header+chacha20poly1305.NonceSizeX:], AD(account, key))
	if err != nil {
		return nil, id, fmt.Errorf("the %s record of account %s %w", key, account, ErrOpen)
	}
	return plain, id, nil
}

func (kr *Keyring) ids() []string {
	var ids []string
	for _, k := range kr.Keys() {
		ids = append(ids, k.id)
	}
	return ids
}
