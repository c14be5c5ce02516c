package smtp

import (
	"bufio"
	"bytes"
	"fmt"
	"io"
)

type EnhancedCode [3]int

// SMTPError specifies the error code, enhanced error code (if any) and
// message returned by the server.
type SMTPError struct {
	Code         int
	EnhancedCode EnhancedCode
	Message      string
}

// NoEnhancedCode is used to indicate that enhanced error code should not be
// included in response.
//
// Note that RFC 2034 requires an enhanced code to be included in all 2xx, 4xx
// and 5xx responses. This constant is exported for use by extensions, you
// should probably use EnhancedCodeNotSet instead.
var NoEnhancedCode = EnhancedCode{-1, -1, -1}

// EnhancedCodeNotSet is a nil value of EnhancedCode field in SMTPError, used
// to indicate that backend failed to provide enhanced status code. X.0.0 will
// be used (X is derived from error code).
var EnhancedCodeNotSet = EnhancedCode{0, 0, 0}

func (err *SMTPError) Error() string {
	s := fmt.Sprintf("SMTP error %03d", err.Code)
	if err.Message != "" {
		s += ": " + err.Message
	}
	return s
}

func (err *SMTPError) Temporary() bool {
	return err.Code/100 == 4
}

var ErrDataTooLarge = &SMTPError{
	Code:         552,
	EnhancedCode: EnhancedCode{5, 3, 4},
	Message:      "Maximum message size exceeded",
}

type dataReader struct {
	r     *bufio.Reader
	state int

	limited bool
	n       int64 // Maximum bytes remaining
}

func newDataReader(c *Conn) *dataReader {
	dr := &dataReader{
		r: c.text.R,
	}

	if c.server.MaxMessageBytes > 0 {
		dr.limited = true
		dr.n = int64(c.server.MaxMessageBytes)
	}

	return dr
}

func (r *dataReader) Read(b []byte) (n int, err error) {
	if r.limited {
		if r.n <= 0 {
			return r.readPastLimit()
		}
		if int64(len(b)) > r.n {
			b = b[0:r.n]
		}
	}

	// Code below is taken from net/textproto with only one modification to
	// not rewrite CRLF -> LF.

	// Run data through a simple state machine to
	// elide leading dots and detect End-of-Data (<CR><LF>.<CR><LF>) line.
	const (
		stateBeginLine = iota // beginning of line; initial state; must be zero
		stateDot              // read . at beginning of line
		stateDotCR            // read .\r at beginning of line
		stateCR               // read \r (possibly at end of line)
		stateData             // reading data in middle of line
		stateEOF              // reached .\r\n end marker line
	)
	for n < len(b) && r.state != stateEOF {
		// spoold patch: at a line's start, copy the buffered whole lines
		// the state machine passes unchanged and ends at a line's start
		// again: a line that does not start with a dot and whose first CR
		// is followed by LF (bare LFs before it are content). One
		// IndexByte per line instead of a ReadByte for its CR, LF and
		// first byte.
		if r.state == stateBeginLine {
			if buf, _ := r.r.Peek(r.r.Buffered()); len(buf) > 0 {
				if room := len(b) - n; len(buf) > room {
					buf = buf[:room]
				}
				k := 0
				for k < len(buf) && buf[k] != '.' {
					i := bytes.IndexByte(buf[k:], '\r')
					if i < 0 || k+i+1 >= len(buf) || buf[k+i+1] != '\n' {
						break
					}
					k += i + 2
				}
				if k > 0 {
					copy(b[n:], buf[:k])
					r.r.Discard(k)
					n += k
					continue
				}
			}
		}
		// spoold patch: in the middle of a line, copy everything up to the
		// next CR straight from the buffer; only CR, LF and a line's first
		// bytes go through the state machine below. Same output, same
		// states, without a ReadByte call per byte.
		if r.state == stateData {
			if buf, _ := r.r.Peek(r.r.Buffered()); len(buf) > 0 {
				k := bytes.IndexByte(buf, '\r')
				if k < 0 {
					k = len(buf)
				}
				k = copy(b[n:], buf[:k])
				if k > 0 {
					r.r.Discard(k)
					n += k
					continue
				}
			}
		}
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

// readPastLimit is Read once MaxMessageBytes octets have been read. A spoold
// patch: v0.25.1 failed here at once, so a message of exactly the advertised
// SIZE was refused, which RFC 1870 forbids. The end-of-data line yields no
// octets, so read on until the first octet of content (too large) or the
// end of data (the message fits).
func (r *dataReader) readPastLimit() (int, error) {
	var one [1]byte
	r.limited = false
	n, err := r.Read(one[:])
	r.limited = true
	if n > 0 {
		return 0, ErrDataTooLarge
	}
	return 0, err
}
