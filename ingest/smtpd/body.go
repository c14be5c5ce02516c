package smtpd

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"io"
	"net"

	"github.com/emersion/go-smtp"
)

// bodyError is a refusal decided while reading DATA. The reply is what the
// client gets; reason labels the rejection metric.
type bodyError struct {
	reply  *smtp.SMTPError
	reason string
}

func (e *bodyError) Error() string { return "smtpd: " + e.reply.Message }

var (
	errBareLF = &bodyError{reason: "bare_lf", reply: &smtp.SMTPError{Code: 550, EnhancedCode: smtp.EnhancedCode{5, 6, 11},
		Message: "Bare LF or bare CR in message; lines must end with CRLF"}}
	errTooLarge = &bodyError{reason: "size", reply: &smtp.SMTPError{Code: 552, EnhancedCode: smtp.EnhancedCode{5, 3, 4},
		Message: "Message size exceeds fixed maximum message size"}}
)

// sizeLimiter fails with errTooLarge once more than max bytes were read.
type sizeLimiter struct {
	r   io.Reader
	max int64
	n   int64
}

func (l *sizeLimiter) Read(p []byte) (int, error) {
	if l.n > l.max {
		return 0, errTooLarge
	}
	// Read at most one byte beyond the limit: enough to know it was crossed.
	if rem := l.max - l.n + 1; int64(len(p)) > rem {
		p = p[:rem]
	}
	n, err := l.r.Read(p)
	l.n += int64(n)
	if l.n > l.max {
		return 0, errTooLarge
	}
	return n, err
}

// lineEndings enforces CRLF line endings: a bare LF or bare CR is an error
// (reject) or becomes CRLF (normalize). Clean data, the usual case, is
// checked where the caller's buffer holds it and returned as is: one scan and
// no copy. Only a read holding a bare line end in normalize mode is rewritten,
// through out. A CR that ends one read is passed on at once and judged by the
// first byte of the next.
type lineEndings struct {
	r         io.Reader
	normalize bool
	out       []byte
	off       int
	pendingCR bool // the last byte passed on was a CR; its LF is still due
	err       error
}

// bodyBufs are one DATA's buffers, pooled per Server: a fresh set per
// message was most of the listener's garbage.
type bodyBufs struct {
	out []byte
	br  *bufio.Reader
}

func newBodyBufs() *bodyBufs {
	return &bodyBufs{out: make([]byte, 0, 16<<10), br: bufio.NewReaderSize(nil, 8<<10)}
}

func newLineEndings(r io.Reader, normalize bool, bufs *bodyBufs) *lineEndings {
	return &lineEndings{r: r, normalize: normalize, out: bufs.out[:0]}
}

func (f *lineEndings) Read(p []byte) (int, error) {
	if f.off < len(f.out) {
		n := copy(p, f.out[f.off:])
		f.off += n
		return n, nil
	}
	if f.err != nil {
		return 0, f.err
	}
	if len(p) == 0 {
		return 0, nil
	}
	n, err := f.r.Read(p)
	c := p[:n]
	if n > 0 {
		if crlfClean(c, f.pendingCR) {
			f.pendingCR = c[n-1] == '\r'
		} else {
			if !f.normalize {
				f.err = errBareLF
				return 0, f.err
			}
			f.out, f.off = f.rewrite(f.out[:0], c), 0
			n = copy(p, f.out)
			f.off = n
		}
	}
	if err != nil {
		if err == io.EOF && f.pendingCR {
			// The message ends in a CR.
			f.pendingCR = false
			if !f.normalize {
				f.err = errBareLF
				return 0, f.err
			}
			if f.off == len(f.out) {
				f.out, f.off = f.out[:0], 0
			}
			f.out = append(f.out, '\n')
		}
		f.err = err
		if f.off < len(f.out) {
			return n, nil // the rest, then err
		}
	}
	return n, err
}

// crlfClean reports whether every CR and LF of c belongs to a CRLF pair; cr
// says a CR ended the previous read, so c must start with its LF. A CR at
// the end of c is allowed (the next read judges it). One IndexByte per line
// checks each LF's CR; one Count over all of c then shows there is no other
// CR: each checked LF has its own CR before it, so any CR beyond those (and
// the one at the end) is a bare one.
func crlfClean(c []byte, cr bool) bool {
	if cr && c[0] != '\n' {
		return false
	}
	lf := 0
	for off := 0; off < len(c); {
		i := bytes.IndexByte(c[off:], '\n')
		if i < 0 {
			break
		}
		i += off
		if i == 0 {
			if !cr {
				return false
			}
		} else if c[i-1] != '\r' {
			return false
		}
		lf++
		off = i + 1
	}
	want := lf
	if cr {
		want-- // the LF at c[0] belongs to the previous read's CR
	}
	if c[len(c)-1] == '\r' {
		want++
	}
	return bytes.Count(c, []byte{'\r'}) == want
}

// rewrite appends c to out with every bare LF and bare CR turned into CRLF,
// where the CR that ended the previous read (already passed on) gets its LF
// if c does not start with one.
func (f *lineEndings) rewrite(out, b []byte) []byte {
	if f.pendingCR {
		f.pendingCR = false
		out = append(out, '\n')
		if b[0] == '\n' {
			b = b[1:]
		}
	}
	for len(b) > 0 {
		// The first CR or LF, as bytes.IndexAny(b, "\r\n") but with two
		// vectorised scans: IndexAny walks byte by byte.
		i := bytes.IndexByte(b, '\n')
		lim := len(b)
		if i >= 0 {
			lim = i
		}
		if j := bytes.IndexByte(b[:lim], '\r'); j >= 0 {
			i = j
		}
		if i < 0 {
			return append(out, b...)
		}
		out = append(out, b[:i]...)
		switch {
		case b[i] == '\n': // bare LF
			out = append(out, '\r', '\n')
			b = b[i+1:]
		case i+1 == len(b): // a CR ends the read: pass it on, judge it later
			out = append(out, '\r')
			f.pendingCR = true
			b = b[i+1:]
		case b[i+1] == '\n':
			out = append(out, '\r', '\n')
			b = b[i+2:]
		default: // bare CR
			out = append(out, '\r', '\n')
			b = b[i+1:]
		}
	}
	return out
}

// headerFixer prepends a Received: header and adds Message-ID and Date at
// the end of the header section when the message has none. It looks at the
// header section line by line (a line is bounded by the listener's line
// limit and by the bufio buffer), so memory stays constant.
type headerFixer struct {
	br       *bufio.Reader
	pending  []byte
	inHeader bool
	midLine  bool
	hasMsgID bool
	hasDate  bool
	missing  func(hasMsgID, hasDate bool) []byte
	done     bool
}

func newHeaderFixer(r io.Reader, received []byte, missing func(hasMsgID, hasDate bool) []byte, bufs *bodyBufs) *headerFixer {
	bufs.br.Reset(r)
	return &headerFixer{br: bufs.br, pending: received, inHeader: true, missing: missing}
}

func (h *headerFixer) Read(p []byte) (int, error) {
	for len(h.pending) == 0 {
		if h.done {
			return 0, io.EOF
		}
		if !h.inHeader {
			return h.br.Read(p)
		}
		if err := h.step(); err != nil {
			return 0, err
		}
	}
	n := copy(p, h.pending)
	h.pending = h.pending[n:]
	return n, nil
}

// step consumes one header line (or line fragment) into pending.
func (h *headerFixer) step() error {
	line, err := h.br.ReadSlice('\n')
	switch {
	case err == bufio.ErrBufferFull:
		// A long header line: only its first fragment is classified.
		if !h.midLine && !h.classify(line) {
			return nil
		}
		h.midLine = true
		h.pending = append(h.pending[:0], line...)
		return nil
	case err == io.EOF:
		// End of message inside the header section (headers only, or empty).
		var b []byte
		if len(line) > 0 {
			if !h.midLine && !h.classify(line) {
				return nil
			}
			b = append(b, line...)
			b = append(b, '\r', '\n')
		}
		b = append(b, h.missing(h.hasMsgID, h.hasDate)...)
		h.pending, h.done = b, true
		return nil
	case err != nil:
		return err
	}
	if h.midLine {
		h.midLine = false
		h.pending = append(h.pending[:0], line...)
		return nil
	}
	if !h.classify(line) {
		return nil
	}
	h.pending = append(h.pending[:0], line...)
	return nil
}

// classify looks at the start of a header line. At the end of the header
// section (blank line, or a line that is not a header field) it queues the
// missing headers, switches to body mode and returns false.
func (h *headerFixer) classify(line []byte) bool {
	if len(line) > 0 && (line[0] == ' ' || line[0] == '\t') {
		return true // folded continuation
	}
	name, ok := fieldName(line)
	if ok {
		switch {
		case bytes.EqualFold(name, []byte("Message-ID")):
			h.hasMsgID = true
		case bytes.EqualFold(name, []byte("Date")):
			h.hasDate = true
		}
		return true
	}
	b := h.missing(h.hasMsgID, h.hasDate)
	if !bytes.Equal(line, []byte("\r\n")) {
		// Not a header field: the header section ended without a blank
		// line. Add one so the line stays body text.
		b = append(b, '\r', '\n')
	}
	h.pending = append(b, line...)
	h.inHeader = false
	return false
}

// fieldName returns the field name of a header line "Name: value" (RFC 5322
// ftext: printable ASCII except colon; white space before the colon is
// obsolete syntax but tolerated).
func fieldName(line []byte) ([]byte, bool) {
	i := bytes.IndexByte(line, ':')
	if i <= 0 {
		return nil, false
	}
	name := bytes.TrimRight(line[:i], " \t")
	if len(name) == 0 {
		return nil, false
	}
	for _, c := range name {
		if c < 33 || c > 126 {
			return nil, false
		}
	}
	return name, true
}

// errTracker remembers the first read error other than EOF, so the session
// can tell a body problem from a storage problem whatever the spool wraps.
type errTracker struct {
	r   io.Reader
	err error
}

func (t *errTracker) Read(p []byte) (int, error) {
	n, err := t.r.Read(p)
	if err != nil && err != io.EOF && t.err == nil {
		t.err = err
	}
	return n, err
}

// bodyReply maps a body read error to the SMTP reply and metric reason.
func bodyReply(err error, maxLine int) (*smtp.SMTPError, string) {
	var be *bodyError
	var ne net.Error
	switch {
	case errors.As(err, &be):
		return be.reply, be.reason
	case errors.Is(err, errDataTooSlow):
		return errDataTooSlow, "data_too_slow"
	case errors.Is(err, smtp.ErrDataTooLarge):
		return errTooLarge.reply, errTooLarge.reason
	case errors.Is(err, smtp.ErrTooLongLine):
		return &smtp.SMTPError{Code: 500, EnhancedCode: smtp.EnhancedCode{5, 5, 2},
			Message: fmt.Sprintf("Line too long (limit %d bytes)", maxLine)}, "line_too_long"
	case errors.As(err, &ne) && ne.Timeout():
		return &smtp.SMTPError{Code: 421, EnhancedCode: smtp.EnhancedCode{4, 4, 2},
			Message: "Timeout reading message data"}, "timeout"
	default:
		return &smtp.SMTPError{Code: 451, EnhancedCode: smtp.EnhancedCode{4, 3, 0},
			Message: "Error reading message data"}, "read_error"
	}
}
