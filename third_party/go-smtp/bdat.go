package smtp

import (
	"bytes"
	"fmt"
	"sync"
	"time"
)

// spoold patch: client CHUNKING (RFC 3030). This whole file is new.

// maxPendingBdat bounds the BDAT replies left unread while pipelining, so the
// server's replies never fill the socket buffers while the client writes.
const maxPendingBdat = 16

// MailRcptBdat is MailRcptData with the message sent in BDAT chunks (RFC
// 3030) instead of DATA: MAIL and every RCPT go out as in MailRcptData
// (pipelined when the server advertises PIPELINING), and w, non-nil when a
// recipient was accepted, sends what is written to it in chunks of chunkSize
// octets. The body is not dot-stuffed; a bare LF becomes CRLF and a missing
// final line end is added, as Data does, so the server receives the same
// message. With PIPELINING the chunks follow each other without waiting for
// their replies, which are read as they accumulate and on Close. The caller
// checks that the server advertises CHUNKING.
//
// Errors are as in MailRcptData. A refused chunk ends the transaction: no
// further chunk is sent and Close (or CloseWithResponse) returns the refusal
// after reading every outstanding reply; send RSET before the next one.
func (c *Client) MailRcptBdat(from string, opts *MailOptions, to []string, rcptOpts *RcptOptions, chunkSize int) (rcptErrs []error, w *DataCommand, err error) {
	if chunkSize <= 0 {
		return nil, nil, fmt.Errorf("smtp: BDAT chunk size %d is not positive", chunkSize)
	}
	rcptErrs, err = c.mailRcpt(from, opts, to, rcptOpts)
	if err != nil || rcptErrs == nil {
		return rcptErrs, nil, err
	}
	for _, e := range rcptErrs {
		if e == nil {
			_, pipelined := c.ext["PIPELINING"]
			bw := &bdatWriter{c: c, size: chunkSize, pipelined: pipelined}
			return rcptErrs, &DataCommand{client: c, wc: bw}, nil
		}
	}
	return rcptErrs, nil, nil
}

// bdatWriter sends what is written to it as BDAT chunks.
type bdatWriter struct {
	c         *Client
	size      int
	pipelined bool
	buf       []byte
	state     int // wstate* of dotWriter, for the same line-end conversion
	pending   int // chunk replies not read yet
	err       error
}

func (b *bdatWriter) Write(p []byte) (int, error) {
	if b.err != nil {
		return 0, b.err
	}
	if b.buf == nil {
		b.buf = getChunkBuf(b.size + 1)
	}
	n := 0
	for n < len(p) {
		// Copy up to the chunk's end or the next LF, whichever is first,
		// in one append; only a bare LF (no CR before it) gets a CR, as
		// dotWriter does; no leading-dot escape.
		seg := p[n:]
		if room := b.size - len(b.buf); len(seg) > room {
			seg = seg[:room]
		}
		if b.state == wstateBegin || b.state == wstateBeginLine {
			// Whole lines ending in a lone CR before the LF need no change:
			// one append for all of them instead of one per line.
			if k := crlfLines(seg); k > 0 {
				b.buf = append(b.buf, seg[:k]...)
				b.state = wstateBeginLine
				n += k
				if len(b.buf) >= b.size {
					if err := b.chunk(false); err != nil {
						return n, err
					}
				}
				continue
			}
		}
		if i := bytes.IndexByte(seg, '\n'); i >= 0 {
			bare := crState(b.state, seg[:i]) != wstateCR
			b.buf = append(b.buf, seg[:i]...)
			if bare {
				b.buf = append(b.buf, '\r')
			}
			b.buf = append(b.buf, '\n')
			b.state = wstateBeginLine
			n += i + 1
		} else {
			b.buf = append(b.buf, seg...)
			b.state = crState(b.state, seg)
			n += len(seg)
		}
		if len(b.buf) >= b.size {
			if err := b.chunk(false); err != nil {
				return n, err
			}
		}
	}
	return n, nil
}

// crlfLines returns the length of the longest prefix of p made of whole
// lines whose LF follows exactly one CR: from a line's start, Write copies
// them unchanged.
func crlfLines(p []byte) int {
	end := 0
	for end < len(p) {
		i := bytes.IndexByte(p[end:], '\n')
		if i < 1 || p[end+i-1] != '\r' || (i >= 2 && p[end+i-2] == '\r') {
			break
		}
		end += i + 1
	}
	return end
}

// crState is dotWriter's state after seg (which holds no LF) from state
// start: wstateCR when it ends in a CR that dotWriter takes as a line end's
// first half. dotWriter treats a CR after such a CR as content, so in a run
// of CRs every second one counts.
func crState(start int, seg []byte) int {
	if len(seg) == 0 {
		return start
	}
	k := 0
	for k < len(seg) && seg[len(seg)-1-k] == '\r' {
		k++
	}
	if k == len(seg) && start == wstateCR {
		k++
	}
	if k%2 == 1 {
		return wstateCR
	}
	return wstateData
}

// chunkBufs keeps chunk buffers between messages: allocating (and zeroing)
// a whole chunk per message cost more CPU than the dot-stuffing BDAT saves.
var chunkBufs sync.Pool

func getChunkBuf(n int) []byte {
	if p, ok := chunkBufs.Get().(*[]byte); ok && cap(*p) >= n {
		return (*p)[:0]
	}
	return make([]byte, 0, n)
}

func (b *bdatWriter) releaseBuf() {
	if b.buf != nil {
		buf := b.buf[:0]
		chunkBufs.Put(&buf)
		b.buf = nil
	}
}

// chunk sends the buffered octets as one BDAT.
func (b *bdatWriter) chunk(last bool) error {
	w := b.c.text.W
	if last {
		fmt.Fprintf(w, "BDAT %d LAST\r\n", len(b.buf))
	} else {
		fmt.Fprintf(w, "BDAT %d\r\n", len(b.buf))
	}
	if _, err := w.Write(b.buf); err != nil {
		b.err = err
		return err
	}
	b.buf = b.buf[:0]
	if last {
		return nil
	}
	b.pending++
	if b.pipelined && b.pending < maxPendingBdat {
		return nil
	}
	if err := w.Flush(); err != nil {
		b.err = err
		return err
	}
	return b.readPending(1)
}

// readPending reads n chunk replies; the first refusal is kept in b.err.
func (b *bdatWriter) readPending(n int) error {
	for ; n > 0 && b.pending > 0; n-- {
		b.c.conn.SetDeadline(time.Now().Add(b.c.SubmissionTimeout))
		_, _, err := b.c.readResponse(250)
		b.pending--
		if err != nil && b.err == nil {
			b.err = err
		}
		if err != nil && !isSMTPErr(err) {
			return err
		}
	}
	return b.err
}

// Close sends the last chunk and reads the replies to the earlier ones; the
// reply to the last chunk is left for CloseWithResponse, unless an earlier
// chunk was refused: then it is read too and the refusal returned.
func (b *bdatWriter) Close() error {
	if b.err != nil {
		if isSMTPErr(b.err) {
			if err := b.readPending(b.pending); err != nil && !isSMTPErr(err) {
				return err
			}
		}
		return b.err
	}
	switch b.state {
	case wstateBeginLine:
	case wstateCR:
		b.buf = append(b.buf, '\n')
	default:
		b.buf = append(b.buf, '\r', '\n')
	}
	if b.buf == nil {
		b.buf = getChunkBuf(b.size + 1)
	}
	err := b.chunk(true)
	b.releaseBuf() // the last chunk is in the bufio.Writer or sent
	if err != nil {
		return err
	}
	if err := b.c.text.W.Flush(); err != nil {
		b.err = err
		return err
	}
	if err := b.readPending(b.pending); err != nil {
		if isSMTPErr(err) {
			// The last chunk went out too: read its reply to stay in step.
			b.c.conn.SetDeadline(time.Now().Add(b.c.SubmissionTimeout))
			if _, _, rerr := b.c.readResponse(250); rerr != nil && !isSMTPErr(rerr) {
				return rerr
			}
		}
		return err
	}
	return nil
}
