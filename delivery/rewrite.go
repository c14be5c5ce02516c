package delivery

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"io"
	"mime"
	"net/mail"
	"strings"
	"sync"
	"unicode"
	"unicode/utf8"
)

// MaxHeaderBytes caps the header block parsed in memory per message.
const MaxHeaderBytes = 256 << 10

// maxDisplayRunes caps the display name copied into the rewritten From.
const maxDisplayRunes = 128

// ContentError is a message that cannot be sent as stored (permanent).
type ContentError struct{ Reason string }

func (e *ContentError) Error() string { return "delivery: message content: " + e.Reason }

// headerField is one parsed header field.
type headerField struct {
	name string // as written
	raw  []byte // the field's lines, each ending in CRLF, bare CR replaced
}

// value returns the unfolded value of the field.
func (f headerField) value() string {
	v := f.raw[len(f.name)+1:]
	v = bytes.ReplaceAll(v, []byte("\r\n"), nil)
	return strings.TrimSpace(string(v))
}

// readHeader reads the header block (bounded by max bytes) up to and including
// the blank line. A message without a blank line is all header.
func readHeader(br *bufio.Reader, max int) ([]headerField, error) {
	var fields []headerField
	total := 0
	var line []byte
	for {
		line = line[:0]
		for {
			chunk, err := br.ReadSlice('\n')
			line = append(line, chunk...)
			total += len(chunk)
			if total > max {
				return nil, &ContentError{Reason: fmt.Sprintf("header block exceeds %d KiB", max>>10)}
			}
			if err == bufio.ErrBufferFull {
				continue
			}
			if err != nil && err != io.EOF {
				return nil, fmt.Errorf("delivery: reading message header: %w", err)
			}
			if err == io.EOF && len(line) == 0 {
				return fields, nil
			}
			break
		}
		// Strip the line ending; any CR left inside is replaced so it can never
		// act as a line break upstream (header injection).
		l := bytes.TrimSuffix(line, []byte("\n"))
		l = bytes.TrimSuffix(l, []byte("\r"))
		if len(l) == 0 {
			if line[len(line)-1] == '\n' || len(fields) > 0 {
				return fields, nil
			}
			return fields, nil
		}
		clean := bytes.ReplaceAll(l, []byte("\r"), []byte(" "))
		if clean[0] == ' ' || clean[0] == '\t' {
			if len(fields) == 0 {
				return nil, &ContentError{Reason: "header starts with a continuation line"}
			}
			f := &fields[len(fields)-1]
			f.raw = append(append(f.raw, clean...), '\r', '\n')
		} else {
			colon := bytes.IndexByte(clean, ':')
			if colon <= 0 || !validFieldName(clean[:colon]) {
				return nil, &ContentError{Reason: fmt.Sprintf("malformed header line %q", truncate(string(clean), 60))}
			}
			raw := make([]byte, 0, len(clean)+2)
			raw = append(append(raw, clean...), '\r', '\n')
			fields = append(fields, headerField{name: string(clean[:colon]), raw: raw})
		}
		if line[len(line)-1] != '\n' { // EOF without a newline
			return fields, nil
		}
	}
}

func validFieldName(b []byte) bool {
	for _, c := range b {
		if c < 33 || c > 126 || c == ':' {
			return false
		}
	}
	return true
}

func truncate(s string, n int) string {
	if len(s) <= n {
		return s
	}
	for n > 0 && !utf8.RuneStart(s[n]) {
		n--
	}
	return s[:n] + "..."
}

// parseAddrs parses an address-list header value; nil if unparsable or empty.
func parseAddrs(v string) []*mail.Address {
	if v == "" {
		return nil
	}
	p := mail.AddressParser{WordDecoder: &mime.WordDecoder{}}
	l, err := p.ParseList(v)
	if err != nil || len(l) == 0 {
		return nil
	}
	return l
}

// prepared is a message ready to stream: the (rewritten) header block and the
// rest of the stored body, normalised to CRLF while it is written.
type prepared struct {
	header   []byte
	rest     *bufio.Reader
	from     []*mail.Address // original From, nil if absent or unparsable
	replyTo  []*mail.Address
	subject  string
	rewrites bool
}

// prepare parses the header of body and applies the sender rule. With rule
// "rewrite", From becomes mailbox with the original sender's display name (or
// address), Reply-To is set to the original From unless one exists, and
// Sender is dropped (it would name the original sender again). With "keep"
// the header is only normalised. The stored body is never modified.
func prepare(body io.Reader, rule, mailbox string) (*prepared, error) {
	br, ok := body.(*bufio.Reader)
	if !ok || br.Size() < 32<<10 {
		br = bufio.NewReaderSize(body, 64<<10)
	}
	fields, err := readHeader(br, MaxHeaderBytes)
	if err != nil {
		return nil, err
	}
	p := &prepared{rest: br, rewrites: rule == "rewrite"}
	hasReplyTo := false
	fromSeen := false
	for _, f := range fields {
		switch strings.ToLower(f.name) {
		case "from":
			if !fromSeen {
				p.from = parseAddrs(f.value())
				fromSeen = true
			}
		case "reply-to":
			hasReplyTo = true
			if p.replyTo == nil {
				p.replyTo = parseAddrs(f.value())
			}
		case "subject":
			if p.subject == "" {
				p.subject = f.value()
			}
		}
	}
	var out bytes.Buffer
	out.Grow(1024)
	if !p.rewrites {
		for _, f := range fields {
			out.Write(f.raw)
		}
		out.WriteString("\r\n")
		p.header = out.Bytes()
		return p, nil
	}
	fromDone := false
	writeFrom := func() {
		display := ""
		if len(p.from) > 0 {
			display = p.from[0].Name
			if display == "" {
				display = p.from[0].Address
			}
		}
		display = cleanDisplay(display)
		a := &mail.Address{Name: display, Address: mailbox}
		writeFolded(&out, "From: "+a.String())
		if !hasReplyTo && len(p.from) > 0 {
			parts := make([]string, len(p.from))
			for i, fa := range p.from {
				parts[i] = (&mail.Address{Name: cleanDisplay(fa.Name), Address: fa.Address}).String()
			}
			writeFolded(&out, "Reply-To: "+strings.Join(parts, ", "))
		}
		fromDone = true
	}
	for _, f := range fields {
		switch strings.ToLower(f.name) {
		case "from":
			if !fromDone {
				writeFrom()
			}
		case "sender":
		default:
			out.Write(f.raw)
		}
	}
	if !fromDone {
		writeFrom()
	}
	out.WriteString("\r\n")
	p.header = out.Bytes()
	return p, nil
}

// cleanDisplay drops control characters and caps the length of a display name.
func cleanDisplay(s string) string {
	s = strings.Map(func(r rune) rune {
		if unicode.IsControl(r) || r == utf8.RuneError {
			return -1
		}
		return r
	}, s)
	s = strings.TrimSpace(s)
	if utf8.RuneCountInString(s) > maxDisplayRunes {
		r := []rune(s)
		s = string(r[:maxDisplayRunes])
	}
	return s
}

// writeFolded writes one generated field, folded at spaces so lines stay
// short (RFC 5322 2.2.3: unfolding restores the same value).
func writeFolded(w *bytes.Buffer, line string) {
	const limit = 76
	for len(line) > limit {
		i := strings.LastIndexByte(line[:limit], ' ')
		if i <= 0 {
			i = strings.IndexByte(line[limit:], ' ')
			if i < 0 {
				break
			}
			i += limit
		}
		w.WriteString(line[:i])
		w.WriteString("\r\n")
		line = line[i:] // keeps the space as the continuation's leading WSP
	}
	w.WriteString(line)
	w.WriteString("\r\n")
}

// bodyBlock is the size of the reads of a stored body while it is sent: a
// 1 MB message is four reads and four writes to the session, which passes
// each block on whole (see go-smtp's dotWriter and bdatWriter).
const bodyBlock = 256 << 10

var blockBufs = sync.Pool{New: func() any { b := make([]byte, bodyBlock); return &b }}

// WriteTo streams the header block then the rest of the body, in blocks of
// bodyBlock, with bare LF turned into CRLF.
func (p *prepared) WriteTo(w io.Writer) (int64, error) { return p.writeTo(w, true) }

// writeTo is WriteTo; without crlf, bare LFs are left to w (go-smtp's DATA
// and BDAT writers turn them into CRLF themselves, exactly as crlfWriter
// does, so a second scan of every line would change nothing).
func (p *prepared) writeTo(w io.Writer, crlf bool) (int64, error) {
	n, err := w.Write(p.header)
	total := int64(n)
	if err != nil {
		return total, err
	}
	cw := w
	if crlf {
		cw = &crlfWriter{w: w}
	}
	bp := blockBufs.Get().(*[]byte)
	defer blockBufs.Put(bp)
	buf := *bp
	for {
		// rest first returns what the header parse read ahead, then reads
		// the stored body straight into buf.
		m, rerr := io.ReadFull(p.rest, buf)
		if m > 0 {
			k, err := cw.Write(buf[:m])
			total += int64(k)
			if err != nil {
				return total, err
			}
		}
		switch rerr {
		case nil:
		case io.EOF, io.ErrUnexpectedEOF:
			return total, nil
		default:
			return total, rerr
		}
	}
}

// crlfWriter normalises bare LF to CRLF (Exchange rejects bare LF with 5.6.11).
type crlfWriter struct {
	w      io.Writer
	lastCR bool
}

func (c *crlfWriter) Write(b []byte) (int, error) {
	start := 0
	// IndexByte is vectorised; a byte loop costs about 1 ms per MB here.
	for off := 0; ; {
		j := bytes.IndexByte(b[off:], '\n')
		if j < 0 {
			break
		}
		i := off + j
		off = i + 1
		prevCR := c.lastCR
		if i > 0 {
			prevCR = b[i-1] == '\r'
		}
		if prevCR {
			continue
		}
		if _, err := c.w.Write(b[start:i]); err != nil {
			return start, err
		}
		if _, err := c.w.Write([]byte("\r\n")); err != nil {
			return i, err
		}
		start = i + 1
	}
	if start < len(b) {
		if _, err := c.w.Write(b[start:]); err != nil {
			return start, err
		}
	}
	if len(b) > 0 {
		c.lastCR = b[len(b)-1] == '\r'
	}
	return len(b), nil
}

var errNoSender = errors.New("delivery: no sender address for a notice")
