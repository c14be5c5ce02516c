package smtp

// Differential tests of the spoold patches against the upstream code they
// replace (copied here as the oracles): same bytes, same errors, same state.

import (
	"bufio"
	"bytes"
	"errors"
	"io"
	"net/textproto"
	"testing"
)

// upstreamDataReader is go-smtp v0.25.1's dataReader.Read with spoold's SIZE
// patch (readPastLimit), so the fuzz target compares the speed patch only.
type upstreamDataReader struct {
	r       *bufio.Reader
	state   int
	limited bool
	n       int64
}

func (r *upstreamDataReader) Read(b []byte) (n int, err error) {
	if r.limited {
		if r.n <= 0 {
			var one [1]byte
			r.limited = false
			n, err := r.Read(one[:])
			r.limited = true
			if n > 0 {
				return 0, ErrDataTooLarge
			}
			return 0, err
		}
		if int64(len(b)) > r.n {
			b = b[0:r.n]
		}
	}
	const (
		stateBeginLine = iota
		stateDot
		stateDotCR
		stateCR
		stateData
		stateEOF
	)
	for n < len(b) && r.state != stateEOF {
		var c byte
		c, err = r.r.ReadByte()
		if err != nil {
			if err == io.EOF {
				err = io.ErrUnexpectedEOF
			}
			break
		}
		switch r.state {
		case stateBeginLine:
			if c == '.' {
				r.state = stateDot
				continue
			}
			if c == '\r' {
				r.state = stateCR
				break
			}
			r.state = stateData
		case stateDot:
			if c == '\r' {
				r.state = stateDotCR
				continue
			}
			r.state = stateData
		case stateDotCR:
			if c == '\n' {
				r.state = stateEOF
				continue
			}
			r.state = stateData
		case stateCR:
			if c == '\n' {
				r.state = stateBeginLine
				break
			}
			r.state = stateData
		case stateData:
			if c == '\r' {
				r.state = stateCR
			}
		}
		b[n] = c
		n++
	}
	if err == nil && r.state == stateEOF {
		err = io.EOF
	}
	if r.limited {
		r.n -= int64(n)
	}
	return
}

// chunked reads with read sizes taken from sizes in turn.
func readAllChunked(r io.Reader, sizes []byte) ([]byte, error) {
	var out []byte
	for i := 0; ; i++ {
		n := 1
		if len(sizes) > 0 {
			n = int(sizes[i%len(sizes)])%97 + 1
		}
		buf := make([]byte, n)
		m, err := r.Read(buf)
		out = append(out, buf[:m]...)
		if err != nil {
			return out, err
		}
		if i > 1<<20 {
			return out, errors.New("no progress")
		}
	}
}

func FuzzDataReader(f *testing.F) {
	f.Add([]byte("Subject: x\r\n\r\nbody\r\n.\r\nQUIT\r\n"), []byte{7}, uint16(0), uint8(16))
	f.Add([]byte("a\n.\r\nb\r\n.\n\r\n..x\r\n.\r\n"), []byte{1, 5}, uint16(9), uint8(3))
	f.Add([]byte("\r\r\n.\r\r\n.\r\n"), []byte{200}, uint16(0), uint8(1))
	f.Add([]byte("line\r\n.\r"), []byte{3}, uint16(0), uint8(20))
	f.Fuzz(func(t *testing.T, in []byte, sizes []byte, limit uint16, bufSize uint8) {
		// A small bufio buffer makes Buffered() end inside lines.
		mk := func() *bufio.Reader { return bufio.NewReaderSize(bytes.NewReader(in), 16+int(bufSize)) }
		want := &upstreamDataReader{r: mk(), limited: limit > 0, n: int64(limit)}
		got := &dataReader{r: mk(), limited: limit > 0, n: int64(limit)}
		wb, werr := readAllChunked(want, sizes)
		gb, gerr := readAllChunked(got, sizes)
		if !bytes.Equal(wb, gb) || !errors.Is(gerr, werr) || got.state != want.state || got.n != want.n {
			t.Fatalf("in %q:\nupstream %q %v state %d n %d\npatched  %q %v state %d n %d",
				in, wb, werr, want.state, want.n, gb, gerr, got.state, got.n)
		}
		// What is left for the next command must be the same too.
		wr, _ := io.ReadAll(want.r)
		gr, _ := io.ReadAll(got.r)
		if !bytes.Equal(wr, gr) {
			t.Fatalf("in %q: rest upstream %q patched %q", in, wr, gr)
		}
	})
}

func FuzzDotWriter(f *testing.F) {
	f.Add([]byte("Subject: x\r\n\r\n.body\n..\r\nend"), []byte{4})
	f.Add([]byte("\r\r\n.\r\n.\n\n\r"), []byte{1})
	f.Add([]byte(""), []byte{})
	f.Fuzz(func(t *testing.T, in []byte, sizes []byte) {
		write := func(w io.WriteCloser) {
			for i, rest := 0, in; len(rest) > 0; i++ {
				n := 1
				if len(sizes) > 0 {
					n = int(sizes[i%len(sizes)])%53 + 1
				}
				if n > len(rest) {
					n = len(rest)
				}
				if m, err := w.Write(rest[:n]); m != n || err != nil {
					t.Fatalf("Write = %d, %v", m, err)
				}
				rest = rest[n:]
			}
			if err := w.Close(); err != nil {
				t.Fatal(err)
			}
		}
		var want, got bytes.Buffer
		tw := textproto.NewWriter(bufio.NewWriter(&want))
		write(tw.DotWriter())
		bw := bufio.NewWriter(&got)
		write(&dotWriter{w: bw})
		if !bytes.Equal(want.Bytes(), got.Bytes()) {
			t.Fatalf("in %q:\ntextproto %q\npatched   %q", in, want.Bytes(), got.Bytes())
		}
	})
}

// upstreamLineLimit is go-smtp v0.25.1's lineLimitReader.Read.
func upstreamLineLimit(cur *int, limit int, b []byte) error {
	for _, chr := range b {
		if chr == '\n' {
			*cur = 0
		}
		*cur++
		if *cur > limit {
			return ErrTooLongLine
		}
	}
	return nil
}

func FuzzLineLimitReader(f *testing.F) {
	f.Add([]byte("abc\r\ndefgh\r\n"), uint8(4), []byte{3})
	f.Add([]byte("\n\n\n"), uint8(1), []byte{1})
	f.Fuzz(func(t *testing.T, in []byte, limit uint8, sizes []byte) {
		lim := int(limit)%40 + 1
		r := &lineLimitReader{R: bytes.NewReader(in), LineLimit: lim}
		cur, pos := 0, 0
		for i := 0; ; i++ {
			n := 1
			if len(sizes) > 0 {
				n = int(sizes[i%len(sizes)])%29 + 1
			}
			// The chunk the underlying reader hands over for this Read.
			chunk := in[pos:]
			if len(chunk) > n {
				chunk = chunk[:n]
			}
			pos += len(chunk)
			m, err := r.Read(make([]byte, n))
			if err == io.EOF {
				if len(chunk) != 0 {
					t.Fatalf("in %q: EOF with %d bytes left", in, len(chunk))
				}
				return
			}
			if werr := upstreamLineLimit(&cur, lim, chunk); werr != nil {
				if !errors.Is(err, ErrTooLongLine) || m != 0 {
					t.Fatalf("in %q limit %d: upstream refuses, patched %d, %v", in, lim, m, err)
				}
				return
			}
			if err != nil || m != len(chunk) || r.curLineLength != cur {
				t.Fatalf("in %q limit %d: patched %d, %v cur %d; upstream %d cur %d", in, lim, m, err, r.curLineLength, len(chunk), cur)
			}
		}
	})
}

type countWriter struct {
	bytes.Buffer
	writes int
}

func (c *countWriter) Write(p []byte) (int, error) { c.writes++; return c.Buffer.Write(p) }

// TestDotWriterCleanBlockOneWrite: a block of clean lines (each ends in
// CRLF, none starts with a dot) reaches the connection in one write, not
// line by line through the buffer, and the bytes are textproto's.
func TestDotWriterCleanBlockOneWrite(t *testing.T) {
	block := bytes.Repeat([]byte("JVBERi0xLjQKJcfsj6IKNSAwIG9iago8PC9MZW5ndGggNiAwIFIvRmlsdGVyIC9GbGF0ZURl\r\n"), 256<<10/76)
	var got countWriter
	dw := &dotWriter{w: bufio.NewWriterSize(&got, 64<<10)}
	if _, err := dw.Write(block); err != nil {
		t.Fatal(err)
	}
	if got.writes != 1 {
		t.Fatalf("a %d-byte clean block took %d writes, want 1", len(block), got.writes)
	}
	if err := dw.Close(); err != nil {
		t.Fatal(err)
	}
	var want bytes.Buffer
	tw := textproto.NewWriter(bufio.NewWriter(&want))
	w := tw.DotWriter()
	w.Write(block)
	w.Close()
	if !bytes.Equal(got.Bytes(), want.Bytes()) {
		t.Fatal("clean block differs from textproto's dot writer output")
	}
}
