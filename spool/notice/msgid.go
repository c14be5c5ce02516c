package notice

import (
	"crypto/rand"
	"crypto/sha256"
	"encoding/base32"
	"strings"
)

// idEncoding is lower-case Crockford base32 (the alphabet of spool IDs):
// no padding, no ambiguous letters.
var idEncoding = base32.NewEncoding("0123456789abcdefghjkmnpqrstvwxyz").WithPadding(base32.NoPadding)

// MessageID returns the Message-ID for a message spoold creates or
// completes, without angle brackets (as go-message's SetMessageID takes it):
// 26 base32 characters (128 bits), "@", host. With a seed, the bits are the
// start of its SHA-256: callers pass the message's idempotency key, which the
// spool keeps unique, so a message rebuilt after a crash keeps its ID and no
// file name or key shows in the header. With seed "", they are random
// (crypto/rand), for messages that have no key (SMTP submissions lacking a
// Message-ID). A host that is not a plain domain becomes "localhost".
func MessageID(seed, host string) string {
	var b [16]byte
	if seed != "" {
		sum := sha256.Sum256([]byte(seed))
		copy(b[:], sum[:])
	} else {
		_, _ = rand.Read(b[:]) // crypto/rand.Read never returns an error
	}
	return idEncoding.EncodeToString(b[:]) + "@" + idHost(host)
}

// idHost keeps host if it is a plain domain name (letters, digits, '-',
// '.'), which is all a Message-ID's right side needs.
func idHost(host string) string {
	host = strings.TrimSuffix(host, ".")
	if host == "" || len(host) > 253 || strings.HasPrefix(host, ".") || strings.Contains(host, "..") {
		return "localhost"
	}
	for _, c := range []byte(host) {
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '-' || c == '.') {
			return "localhost"
		}
	}
	return host
}

// validMsgID reports whether id is a plain msg-id without brackets:
// printable ASCII, no white space, angle brackets or quotes, one "@" with
// text on both sides.
func validMsgID(id string) bool {
	if len(id) < 3 || len(id) > 250 || strings.Count(id, "@") != 1 {
		return false
	}
	left, right, _ := strings.Cut(id, "@")
	if left == "" || right == "" {
		return false
	}
	for _, c := range []byte(id) {
		if c <= ' ' || c >= 0x7f || strings.IndexByte(`<>"\()[],;:`, c) >= 0 {
			return false
		}
	}
	return true
}
