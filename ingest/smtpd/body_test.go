package smtpd

import (
	"bytes"
	"errors"
	"io"
	"math/rand"
	"testing"
)

// TestLineEndingsMatchModel checks the in-place line-end filter against the
// byte-by-byte model (normalizeLineEndings) over random bodies made of the
// bytes that matter (CR, LF, dot, text) and random read sizes on both sides,
// so a CR at the end of one read is judged by the next in every position:
// reject mode refuses exactly the bodies with a bare CR or LF, normalize mode
// produces the model's bytes.
func TestLineEndingsMatchModel(t *testing.T) {
	rng := rand.New(rand.NewSource(1))
	alpha := []byte("ab\r\n.")
	for it := 0; it < 30000; it++ {
		in := make([]byte, rng.Intn(40))
		for i := range in {
			in[i] = alpha[rng.Intn(len(alpha))]
		}
		n := rng.Intn(7) + 1
		for _, norm := range []bool{false, true} {
			le := newLineEndings(&chunkReader{r: bytes.NewReader(in), n: n}, norm, newBodyBufs())
			out, err := io.ReadAll(&chunkReader{r: le, n: rng.Intn(9) + 1})
			if !norm && hasBareLineEnding(string(in)) {
				if !errors.Is(err, errBareLF) {
					t.Fatalf("%q (reads of %d): bare line end not refused, err %v", in, n, err)
				}
				continue
			}
			if err != nil {
				t.Fatalf("%q (reads of %d, normalize %v): %v", in, n, norm, err)
			}
			if want := normalizeLineEndings(in); !bytes.Equal(out, want) {
				t.Fatalf("%q (reads of %d, normalize %v): got %q, want %q", in, n, norm, out, want)
			}
		}
	}
}

// TestLineEndingsCleanInPlace checks that clean data is passed on in the
// caller's buffer, one read per read: the filter adds no copy.
func TestLineEndingsCleanInPlace(t *testing.T) {
	body := bytes.Repeat([]byte("0123456789ABCDEF0123456789ABCDEF0123456789ABCDEF0123456789ABCDEF\r\n"), 4000)
	le := newLineEndings(bytes.NewReader(body), false, newBodyBufs())
	p := make([]byte, 64<<10)
	var got []byte
	for {
		n, err := le.Read(p)
		got = append(got, p[:n]...)
		if err == io.EOF {
			break
		}
		if err != nil {
			t.Fatal(err)
		}
		if n != len(p) && len(got) != len(body) {
			t.Fatalf("read %d of %d bytes from a full source", n, len(p))
		}
	}
	if !bytes.Equal(got, body) {
		t.Fatal("clean body changed")
	}
	if le.off != 0 || len(le.out) != 0 {
		t.Fatalf("clean body went through the rewrite buffer (%d bytes)", len(le.out))
	}
}
