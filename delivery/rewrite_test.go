package delivery

import (
	"bufio"
	"bytes"
	"errors"
	"flag"
	"net/mail"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"testing/iotest"
)

var update = flag.Bool("update", false, "rewrite the golden files under testdata/delivery")

const goldenMailbox = "scanner@tenant.example"

var goldenCases = []struct {
	name, rule, in string
}{
	{"rewrite_named_from", "rewrite", "From: Alice Example <alice@office.example>\r\nTo: bob@dest.example\r\nSubject: Scan\r\n\r\nbody\r\n"},
	{"rewrite_bare_address", "rewrite", "From: mfd@office.example\r\nSubject: Scan\r\n\r\nbody\r\n"},
	{"rewrite_keeps_reply_to", "rewrite", "Reply-To: helpdesk@office.example\r\nFrom: \"Alice\" <alice@office.example>\r\n\r\nbody\r\n"},
	{"rewrite_no_from", "rewrite", "To: bob@dest.example\r\nSubject: none\r\n\r\nbody\r\n"},
	{"rewrite_drops_sender", "rewrite", "Sender: mfd@office.example\r\nFrom: Alice <alice@office.example>\r\n\r\nbody\r\n"},
	{"rewrite_encoded_name", "rewrite", "From: =?utf-8?q?J=C3=BCrgen_M=C3=BCller?= <jm@office.example>\r\n\r\nbody\r\n"},
	{"rewrite_folded_from", "rewrite", "From: \"Alice\r\n Example\"\r\n <alice@office.example>\r\nSubject: x\r\n\r\nbody\r\n"},
	{"rewrite_multiple_from", "rewrite", "From: a@office.example, Bob <b@office.example>\r\n\r\nbody\r\n"},
	{"rewrite_unparsable_from", "rewrite", "From: <<<not an address\r\nSubject: x\r\n\r\nbody\r\n"},
	{"rewrite_duplicate_from", "rewrite", "From: a@office.example\r\nFrom: evil@office.example\r\n\r\nbody\r\n"},
	{"rewrite_bare_lf", "rewrite", "From: Alice <alice@office.example>\nSubject: lf\n\nline1\nline2\r\nline3\n"},
	{"rewrite_header_only", "rewrite", "From: alice@office.example\r\nSubject: no body"},
	{"rewrite_name_with_quotes", "rewrite", "From: \"O'Brien, \\\"Pat\\\"\" <pat@office.example>\r\n\r\nx\r\n"},
	{"keep", "keep", "From: Alice <alice@office.example>\nSender: mfd@office.example\n\nbody\n"},
}

func TestSenderRuleGolden(t *testing.T) {
	dir := filepath.Join("..", "testdata", "delivery")
	for _, c := range goldenCases {
		t.Run(c.name, func(t *testing.T) {
			p, err := prepare(strings.NewReader(c.in), c.rule, goldenMailbox)
			if err != nil {
				t.Fatal(err)
			}
			var out bytes.Buffer
			if _, err := p.WriteTo(&out); err != nil {
				t.Fatal(err)
			}
			file := filepath.Join(dir, c.name+".eml")
			if *update {
				if err := os.MkdirAll(dir, 0o755); err != nil {
					t.Fatal(err)
				}
				if err := os.WriteFile(file, out.Bytes(), 0o644); err != nil {
					t.Fatal(err)
				}
			}
			want, err := os.ReadFile(file)
			if err != nil {
				t.Fatalf("%v (run go test -update to create it)", err)
			}
			if !bytes.Equal(out.Bytes(), want) {
				t.Errorf("output differs from %s:\ngot:\n%s\nwant:\n%s", file, out.Bytes(), want)
			}
			checkHeaderSafe(t, out.Bytes(), c.rule)
		})
	}
}

// checkHeaderSafe asserts the invariants a user relies on: CRLF only, one
// From which (under rewrite) is the mailbox, no Sender, at most one Reply-To.
func checkHeaderSafe(t testing.TB, out []byte, rule string) {
	t.Helper()
	end := bytes.Index(out, []byte("\r\n\r\n"))
	var hdr []byte
	switch {
	case bytes.HasPrefix(out, []byte("\r\n")):
		hdr = nil
	case end < 0:
		t.Fatalf("no end of header in %q", out)
	default:
		hdr = out[:end+2]
	}
	for i, b := range hdr {
		if b == '\n' && (i == 0 || hdr[i-1] != '\r') {
			t.Fatalf("bare LF in header %q", hdr)
		}
		if b == '\r' && (i+1 >= len(hdr) || hdr[i+1] != '\n') {
			t.Fatalf("bare CR in header %q", hdr)
		}
	}
	if rule != "rewrite" {
		return
	}
	var froms, senders, replyTos []string
	lines := strings.Split(strings.TrimSuffix(string(hdr), "\r\n"), "\r\n")
	for i := 0; i < len(lines); i++ {
		l := lines[i]
		for i+1 < len(lines) && len(lines[i+1]) > 0 && (lines[i+1][0] == ' ' || lines[i+1][0] == '\t') {
			i++
			l += lines[i]
		}
		name, val, _ := strings.Cut(l, ":")
		switch strings.ToLower(name) {
		case "from":
			froms = append(froms, val)
		case "sender":
			senders = append(senders, val)
		case "reply-to":
			replyTos = append(replyTos, val)
		}
	}
	if len(froms) != 1 || len(senders) != 0 || len(replyTos) > 1 {
		t.Fatalf("From %q Sender %q Reply-To %q in %q", froms, senders, replyTos, hdr)
	}
	a, err := mail.ParseAddress(froms[0])
	if err != nil || a.Address != goldenMailbox {
		t.Fatalf("From %q: %v %v", froms[0], a, err)
	}
}

func TestPrepareRefusesBadHeaders(t *testing.T) {
	cases := map[string]string{
		"malformed line":       "From: a@b.example\r\nthis is not a header\r\n\r\nbody",
		"leading continuation": " folded\r\nFrom: a@b.example\r\n\r\n",
		"space in field name":  "From : a@b.example\r\n\r\n",
		"too big":              "X-Big: " + strings.Repeat("a", MaxHeaderBytes) + "\r\n\r\n",
		"too many lines":       strings.Repeat("X-A: b\r\n", MaxHeaderBytes/8+1) + "\r\n",
	}
	for name, in := range cases {
		_, err := prepare(strings.NewReader(in), "rewrite", goldenMailbox)
		var ce *ContentError
		if !errors.As(err, &ce) {
			t.Errorf("%s: err = %v, want a ContentError", name, err)
		}
	}
}

func TestPrepareStreamsLargeBody(t *testing.T) {
	body := "From: a@b.example\n\n" + strings.Repeat("0123456789abcdef\n", 1<<16)
	p, err := prepare(iotest.OneByteReader(strings.NewReader(body)), "rewrite", goldenMailbox)
	if err != nil {
		t.Fatal(err)
	}
	var out bytes.Buffer
	if _, err := p.WriteTo(&out); err != nil {
		t.Fatal(err)
	}
	want := strings.Repeat("0123456789abcdef\r\n", 1<<16)
	if !strings.HasSuffix(out.String(), "\r\n\r\n"+want) {
		t.Error("body not normalised to CRLF")
	}
}

func TestCRLFWriterAcrossWrites(t *testing.T) {
	var out bytes.Buffer
	w := &crlfWriter{w: &out}
	for _, chunk := range []string{"a\r", "\nb\n", "\n", "c\r", "d\n"} {
		w.Write([]byte(chunk))
	}
	if got, want := out.String(), "a\r\nb\r\n\r\nc\rd\r\n"; got != want {
		t.Errorf("got %q want %q", got, want)
	}
}

// FuzzRewriteHeader: arbitrary bytes never panic, and whatever is accepted
// comes out with CRLF-only headers, exactly one From (the mailbox), no Sender
// and at most one Reply-To: no header injection through names or addresses.
func FuzzRewriteHeader(f *testing.F) {
	for _, c := range goldenCases {
		f.Add([]byte(c.in))
	}
	f.Add([]byte("From: =?utf-8?q?a=0D=0ABcc:_x@evil.example?= <a@b.example>\r\n\r\n"))
	f.Add([]byte("From: \"a\rBcc: x@evil\" <a@b.example>\r\n\r\n"))
	f.Add([]byte("From: a@b.example\rSender: x@y\r\n\r\n"))
	f.Fuzz(func(t *testing.T, in []byte) {
		p, err := prepare(bytes.NewReader(in), "rewrite", goldenMailbox)
		if err != nil {
			var ce *ContentError
			if !errors.As(err, &ce) {
				t.Fatalf("non-content error %v", err)
			}
			return
		}
		var out bytes.Buffer
		if _, err := p.WriteTo(&out); err != nil {
			t.Fatal(err)
		}
		checkHeaderSafe(t, out.Bytes(), "rewrite")
		// The prepared header must also survive a standard parser.
		if _, err := mail.ReadMessage(bufio.NewReader(bytes.NewReader(p.header))); err != nil && len(p.header) > 2 {
			t.Fatalf("rewritten header does not parse: %v\n%q", err, p.header)
		}
	})
}

// FuzzCRLFWriter: whatever the chunking, every LF not preceded by CR gets
// one, and nothing else changes.
func FuzzCRLFWriter(f *testing.F) {
	f.Add([]byte("a\r\nb\nc\r\rd\n\n"), uint8(1))
	f.Add([]byte("\n\r\n\n"), uint8(2))
	f.Fuzz(func(t *testing.T, in []byte, chunk uint8) {
		var want bytes.Buffer
		for i, c := range in {
			if c == '\n' && (i == 0 || in[i-1] != '\r') {
				want.WriteByte('\r')
			}
			want.WriteByte(c)
		}
		n := int(chunk)%17 + 1
		var out bytes.Buffer
		w := &crlfWriter{w: &out}
		for b := in; len(b) > 0; {
			k := min(n, len(b))
			if m, err := w.Write(b[:k]); m != k || err != nil {
				t.Fatalf("Write = %d, %v", m, err)
			}
			b = b[k:]
		}
		if !bytes.Equal(out.Bytes(), want.Bytes()) {
			t.Fatalf("in %q: got %q want %q", in, out.Bytes(), want.Bytes())
		}
	})
}
