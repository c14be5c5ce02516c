package smtp

import (
	"bufio"
	"bytes"
)

// dotWriter is net/textproto's DotWriter with bulk copies (a spoold patch):
// it converts LF to CRLF, escapes a dot at the start of a line and ends the
// data with ".\r\n" on Close, writing runs of line content in one call, and
// at the start of a line a run of whole lines that need no change (see
// cleanLines) in one call.
type dotWriter struct {
	w     *bufio.Writer
	state int
}

const (
	wstateBegin     = iota // initial state; must be zero
	wstateBeginLine        // beginning of line
	wstateCR               // wrote \r (possibly at end of line)
	wstateData             // writing data in middle of line
)

func (d *dotWriter) Write(b []byte) (n int, err error) {
	bw := d.w
	for n < len(b) {
		if d.state == wstateBegin || d.state == wstateBeginLine {
			// Lines the state machine would pass unchanged go out
			// together, and the state after them is a line's start again.
			if k := cleanLines(b[n:]); k > 0 {
				m, err := bw.Write(b[n : n+k])
				n += m
				if err != nil {
					return n, err
				}
				d.state = wstateBeginLine
				continue
			}
		}
		if d.state == wstateData {
			// Everything up to the next CR or LF passes unchanged.
			rest := b[n:]
			k := len(rest)
			if i := bytes.IndexByte(rest, '\n'); i >= 0 {
				k = i
			}
			if i := bytes.IndexByte(rest[:k], '\r'); i >= 0 {
				k = i
			}
			if k > 0 {
				m, err := bw.Write(rest[:k])
				n += m
				if err != nil {
					return n, err
				}
				continue
			}
		}
		c := b[n]
		switch d.state {
		case wstateBegin, wstateBeginLine:
			d.state = wstateData
			if c == '.' {
				// escape leading dot
				bw.WriteByte('.')
			}
			fallthrough

		case wstateData:
			if c == '\r' {
				d.state = wstateCR
			}
			if c == '\n' {
				bw.WriteByte('\r')
				d.state = wstateBeginLine
			}

		case wstateCR:
			d.state = wstateData
			if c == '\n' {
				d.state = wstateBeginLine
			}
		}
		if err = bw.WriteByte(c); err != nil {
			break
		}
		n++
	}
	return
}

// cleanLines returns the length of the longest prefix of p made of whole
// lines that dotWriter, starting at a line's start, writes unchanged: each
// line ends in CRLF, holds no other CR or LF and does not start with a dot.
// (An empty line, CRLF alone, is one of them.)
func cleanLines(p []byte) int {
	end := 0
	for end < len(p) && p[end] != '.' {
		i := bytes.IndexByte(p[end:], '\n')
		if i < 1 || p[end+i-1] != '\r' || bytes.IndexByte(p[end:end+i-1], '\r') >= 0 {
			break
		}
		end += i + 1
	}
	return end
}

var dotcrnl = []byte(".\r\n")

func (d *dotWriter) Close() error {
	bw := d.w
	switch d.state {
	default:
		bw.WriteByte('\r')
		fallthrough
	case wstateCR:
		bw.WriteByte('\n')
		fallthrough
	case wstateBeginLine:
		bw.Write(dotcrnl)
	}
	return bw.Flush()
}
