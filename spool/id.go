package spool

import (
	"crypto/rand"
	"fmt"
	"io"
	"strings"
	"sync"
	"time"
	"unicode/utf8"
)

// crockford is the Crockford base32 alphabet used by ULIDs: IDs sort
// lexically in creation order and avoid ambiguous letters.
const crockford = "0123456789ABCDEFGHJKMNPQRSTVWXYZ"

// idLen is the length of IDs made by the default generator.
const idLen = 26

// idGen makes ULID-style IDs: 48-bit millisecond timestamp + 80 random bits.
type idGen struct {
	mu   sync.Mutex // Options.Rand need not be safe for concurrent use
	rand io.Reader
}

func newIDGen(r io.Reader) *idGen {
	if r == nil {
		r = rand.Reader
	}
	return &idGen{rand: r}
}

func (g *idGen) next(t time.Time) (string, error) {
	var b [16]byte
	ms := uint64(t.UnixMilli())
	if t.UnixMilli() < 0 {
		ms = 0
	}
	ms &= (1 << 48) - 1
	for i := 0; i < 6; i++ {
		b[i] = byte(ms >> (40 - 8*i))
	}
	g.mu.Lock()
	_, err := io.ReadFull(g.rand, b[6:])
	g.mu.Unlock()
	if err != nil {
		return "", fmt.Errorf("spool: generating id: %w", err)
	}
	return encodeULID(b), nil
}

// encodeULID encodes 128 bits as 26 Crockford base32 characters (the first
// character carries only 3 bits, as in ULID).
func encodeULID(b [16]byte) string {
	var out [idLen]byte
	// Treat b as a 130-bit number with two leading zero bits.
	var bits uint
	var acc uint64
	pos := 0
	// Leading 2 zero bits so that 130 = 26*5.
	bits = 2
	acc = 0
	for _, c := range b {
		acc = acc<<8 | uint64(c)
		bits += 8
		for bits >= 5 {
			bits -= 5
			out[pos] = crockford[(acc>>bits)&31]
			pos++
		}
	}
	return string(out[:])
}

// validID reports whether id is safe to use as a file name and index key part.
func validID(id string) bool {
	if id == "" || len(id) > 200 || id[0] == '.' || !utf8.ValidString(id) {
		return false
	}
	return !strings.ContainsAny(id, "/\\\x00\r\n")
}
