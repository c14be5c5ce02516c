package smtpd

import (
	"bufio"
	"bytes"
	"errors"
	"io"
	"net"
	"regexp"
	"strings"
	"testing"
	"time"
)

// chunkReader returns at most n bytes per Read, to exercise state carried
// across reads.
type chunkReader struct {
	r io.Reader
	n int
}

func (c *chunkReader) Read(p []byte) (int, error) {
	if len(p) > c.n {
		p = p[:c.n]
	}
	return c.r.Read(p)
}

func normalizeLineEndings(in []byte) []byte {
	var out []byte
	for i := 0; i < len(in); i++ {
		switch in[i] {
		case '\r':
			out = append(out, '\r', '\n')
			if i+1 < len(in) && in[i+1] == '\n' {
				i++
			}
		case '\n':
			out = append(out, '\r', '\n')
		default:
			out = append(out, in[i])
		}
	}
	return out
}

func FuzzBodyFilter(f *testing.F) {
	f.Add([]byte("Subject: x\r\n\r\nbody\r\n"), uint8(7), false)
	f.Add([]byte("Subject: x\nDate: y\n\nbody\n"), uint8(1), true)
	f.Add([]byte("no header line\r\nmore\r\n"), uint8(3), true)
	f.Add([]byte("\r\n\r\n"), uint8(1), false)
	f.Add([]byte("A: b\r\n c\r\nMessage-ID: <x>\r"), uint8(2), true)
	f.Add([]byte(strings.Repeat("X-Long: "+strings.Repeat("y", 300), 100)), uint8(200), true)
	const recv = "Received: test\r\n"
	const added = "X-Added: 1\r\n"
	f.Fuzz(func(t *testing.T, in []byte, chunk uint8, normalize bool) {
		n := int(chunk)%64 + 1
		bufs := newBodyBufs()
		le := newLineEndings(&chunkReader{r: bytes.NewReader(in), n: n}, normalize, bufs)
		hf := newHeaderFixer(le, []byte(recv), func(bool, bool) []byte { return []byte(added) }, bufs)
		out, err := io.ReadAll(&chunkReader{r: hf, n: n + 3})
		bare := hasBareLineEnding(string(in))
		if !normalize {
			if bare {
				if !errors.Is(err, errBareLF) {
					t.Fatalf("bare line ending not refused: err %v", err)
				}
				return
			}
		}
		if err != nil {
			t.Fatalf("unexpected error %v", err)
		}
		if hasBareLineEnding(string(out)) {
			t.Fatalf("output has bare line endings: %q", out)
		}
		rest, ok := strings.CutPrefix(string(out), recv)
		if !ok {
			t.Fatalf("no Received prefix: %q", out)
		}
		i := strings.Index(rest, added)
		if i < 0 {
			t.Fatalf("missing headers not added: %q", out)
		}
		want := string(normalizeLineEndings(in))
		got := rest[:i] + rest[i+len(added):]
		if got != want {
			// An inserted blank line ends a header section that had none.
			got2 := rest[:i] + strings.TrimPrefix(rest[i+len(added):], "\r\n")
			// At EOF inside the header section a last line without CRLF is completed.
			completed := rest[i+len(added):] == "" && strings.TrimSuffix(rest[:i], "\r\n") == want
			if got2 != want && !completed {
				t.Fatalf("content changed:\n in %q\nout %q", in, out)
			}
		}
	})
}

func FuzzAddress(f *testing.F) {
	for _, s := range []string{"a@b.example", "a..b@c", "@x", "a@[127.0.0.1]", "a@[IPv6:::1]", "x@-a.com", strings.Repeat("a", 70) + "@b"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, addr string) {
		if err := checkAddress(addr); err != nil {
			return
		}
		if len(addr) > 254 || domainOf(addr) == "" || strings.ContainsAny(addr, " \t\r\n<>\"") {
			t.Fatalf("accepted bad address %q", addr)
		}
	})
}

var replyLine = regexp.MustCompile(`^[2-5][0-9][0-9][ -]`)

// FuzzSession feeds arbitrary command streams to a real listener. The server
// must never crash, every reply line must be well formed, and whatever gets
// stored has valid envelope addresses and clean line endings.
func FuzzSession(f *testing.F) {
	f.Add("EHLO x\r\nMAIL FROM:<a@b.example>\r\nRCPT TO:<c@d.example>\r\nDATA\r\nSubject: s\r\n\r\nhi\r\n.\r\nQUIT\r\n")
	f.Add("HELO x\r\nMAIL FROM:<a@b.example> SIZE=99999999999\r\nRCPT TO:<@x:c@d>\r\n")
	f.Add("EHLO x\r\nAUTH PLAIN AGEAYg==\r\nAUTH LOGIN\r\n*\r\nSTARTTLS\r\n")
	f.Add("EHLO x\r\nMAIL FROM:<>\r\nRCPT TO:<\"q\"@d.example>\r\nDATA\r\nx\n.\nz\r\n.\r\n")
	f.Add("EHLO x\r\nMAIL FROM:<a@b.example>\r\nRCPT TO:<c@d.example>\r\nBDAT 5 LAST\r\nab\ncdRSET\r\n")
	fs := &fakeSpool{}
	lc := baseListener()
	lc.MaxMessageSize = 1 << 20
	lc.ReadTimeout = 2 * time.Second
	lc.MaxConnectionsPerIP = 1000
	lc.MaxConnections = 1000
	s := startServer(f, []ListenerConfig{lc}, Routes{}, fs, Options{Logger: discardLogger()})
	addr := addrOf(f, s, "mfd")
	f.Fuzz(func(t *testing.T, input string) {
		c, err := net.DialTimeout("tcp", addr, 5*time.Second)
		if err != nil {
			t.Fatalf("server stopped accepting: %v", err)
		}
		defer c.Close()
		_ = c.SetDeadline(time.Now().Add(10 * time.Second))
		go func() {
			_, _ = io.WriteString(c, input)
			_ = c.(*net.TCPConn).CloseWrite()
		}()
		sc := bufio.NewScanner(c)
		sc.Buffer(make([]byte, 64<<10), 64<<10)
		for sc.Scan() {
			if line := sc.Text(); !replyLine.MatchString(line) {
				t.Fatalf("malformed reply line %q", line)
			}
		}
		for _, m := range fs.all() {
			if m.Req.From != "" && checkAddress(m.Req.From) != nil {
				t.Fatalf("stored bad sender %q", m.Req.From)
			}
			for _, to := range m.Req.To {
				if checkAddress(to) != nil {
					t.Fatalf("stored bad recipient %q", to)
				}
			}
			if hasBareLineEnding(string(m.Body)) {
				t.Fatalf("stored body with bare line endings: %q", m.Body)
			}
		}
	})
}
