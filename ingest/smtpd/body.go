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
// (reject) or becomes CRLF (normalize). It keeps one byte of state across
// reads so a CR at the end of one read is judged by the next byte.
type lineEndings struct {
	r         io.Reader
	normalize bool
	in        []byte
	out       []byte
	off       int
	pendingCR bool
	err       error
}

// bodyBufs are one DATA's buffers, pooled per Server: a fresh set per
// message was most of the listener's garbage.
type bodyBufs struct {
	in, out []byte
	br      *bufio.Reader
}

func newBodyBufs() *bodyBufs {
	return &bodyBufs{in: make([]byte, 16<<10), out: make([]byte, 0, 32<<10), br: bufio.NewReaderSize(nil, 8<<10)}
}

func newLineEndings(r io.Reader, normalize bool, bufs *bodyBufs) *lineEndings {
	return &lineEndings{r: r, normalize: normalize, in: bufs.in, out: bufs.out[:0]}
}

func (f *lineEndings) Read(p []byte) (int, error) {
	for f.off == len(f.out) {
		if f.err != nil {
			return 0, f.err
		}
		f.out, f.off = f.out[:0], 0
		n, err := f.r.Read(f.in)
		if perr := f.process(f.in[:n]); perr != nil {
			f.err = perr
			return 0, perr
		}
		if err != nil {
			if err == io.EOF && f.pendingCR {
				f.pendingCR = false
				if !f.normalize {
					f.err = errBareLF
					return 0, f.err
				}
				f.out = append(f.out, '\r', '\n')
			}
			f.err = err
		}
	}
	n := copy(p, f.out[f.off:])
	f.off += n
	return n, nil
}

func (f *lineEndings) process(b []byte) error {
	for len(b) > 0 {
		if f.pendingCR {
			f.pendingCR = false
			if b[0] == '\n' {
				f.out = append(f.out, '\r', '\n')
				b = b[1:]
				continue
			}
			if !f.normalize {
				return errBareLF
			}
			f.out = append(f.out, '\r', '\n') // bare CR becomes a line break
		}
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
			f.out = append(f.out, b...)
			return nil
		}
		f.out = append(f.out, b[:i]...)
		if b[i] == '\r' {
			f.pendingCR = true
		} else {
			if !f.normalize {
				return errBareLF
			}
			f.out = append(f.out, '\r', '\n')
		}
		b = b[i+1:]
	}
	return nil
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
