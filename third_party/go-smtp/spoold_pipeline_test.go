package smtp

// Differential tests of the client's PIPELINING patch (pipeline.go): against
// scripted servers, MailRcptData must have exactly the outcome of upstream's
// Mail, Rcpt..., Data sequence (the oracle below), leave the connection in
// step with the server, and, when PIPELINING is offered, send the whole
// group before it reads a reply.

import (
	"bufio"
	"fmt"
	"io"
	"net"
	"strings"
	"testing"
	"time"
)

// scriptReply is one scripted server reply.
type scriptReply struct {
	code      int
	multiline bool
	malformed bool
}

func (r scriptReply) String() string {
	if r.malformed {
		return "bogus reply\r\n"
	}
	text := fmt.Sprintf("%d.0.0 scripted %d", r.code/100, r.code)
	if r.multiline {
		return fmt.Sprintf("%d-first line\r\n%d %s\r\n", r.code, r.code, text)
	}
	return fmt.Sprintf("%d %s\r\n", r.code, text)
}

// txScript answers one transaction: MAIL, each RCPT in order, DATA, and the
// reply after the final dot.
type txScript struct {
	mail, data, final scriptReply
	rcpts             []scriptReply
}

// scriptServer serves one connection. With pipelining it advertises
// PIPELINING and holds its replies to MAIL and RCPT until it has read DATA
// (RFC 2920 allows it to): a client that waits for a reply before sending
// the rest of the group stalls until its command timeout. It reports the
// body lines of accepted DATA on bodies.
func scriptServer(t testing.TB, pipelining bool, sc txScript) (addr string, bodies chan string) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	bodies = make(chan string, 4)
	go func() {
		c, err := ln.Accept()
		ln.Close()
		if err != nil {
			return
		}
		defer c.Close()
		c.SetDeadline(time.Now().Add(10 * time.Second))
		r := bufio.NewReader(c)
		w := bufio.NewWriter(c)
		w.WriteString("220 scripted ESMTP\r\n")
		w.Flush()
		rcpt := 0
		for {
			line, err := r.ReadString('\n')
			if err != nil {
				return
			}
			verb := strings.ToUpper(strings.Fields(line + " x")[0])
			hold := false
			switch verb {
			case "EHLO":
				w.WriteString("250-scripted\r\n")
				if pipelining {
					w.WriteString("250-PIPELINING\r\n")
				}
				w.WriteString("250 8BITMIME\r\n")
			case "MAIL":
				w.WriteString(sc.mail.String())
				hold = pipelining
			case "RCPT":
				w.WriteString(sc.rcpts[rcpt%len(sc.rcpts)].String())
				rcpt++
				hold = pipelining
			case "DATA":
				w.WriteString(sc.data.String())
				if sc.data.malformed || sc.data.code != 354 {
					break
				}
				w.Flush()
				var body strings.Builder
				for {
					l, err := r.ReadString('\n')
					if err != nil {
						return
					}
					if l == ".\r\n" {
						break
					}
					body.WriteString(l)
				}
				bodies <- body.String()
				w.WriteString(sc.final.String())
			case "RSET":
				w.WriteString("250 2.0.0 reset ok\r\n")
			case "NOOP":
				w.WriteString("250 2.0.0 noop ok\r\n")
			case "QUIT":
				w.WriteString("221 2.0.0 bye\r\n")
				w.Flush()
				return
			default:
				w.WriteString("500 5.5.2 unknown\r\n")
			}
			if !hold {
				if err := w.Flush(); err != nil {
					return
				}
			}
		}
	}()
	return ln.Addr().String(), bodies
}

// upstreamTransaction is the oracle: upstream's own calls, one command and
// one reply at a time.
func upstreamTransaction(c *Client, from string, to []string) ([]error, *DataCommand, error) {
	if err := c.Mail(from, nil); err != nil {
		return nil, nil, err
	}
	errs := make([]error, len(to))
	accepted := 0
	for i, rcpt := range to {
		err := c.Rcpt(rcpt, nil)
		if _, ok := err.(*SMTPError); err != nil && !ok {
			return nil, nil, err
		}
		errs[i] = err
		if err == nil {
			accepted++
		}
	}
	if accepted == 0 {
		return errs, nil, nil
	}
	w, err := c.Data()
	return errs, w, err
}

// txOutcome is everything a caller can observe of a transaction.
type txOutcome struct {
	rcptErrs []string
	data     bool
	err      string
	final    string // the reply to the final dot
	body     string // what the server received
	after    string // the replies to RSET and NOOP sent afterwards
	rcpts    []string
	broken   bool // err is a connection error
}

func errText(err error) string {
	if err == nil {
		return "<nil>"
	}
	return err.Error()
}

func runTransaction(t testing.TB, pipelining, oracle bool, sc txScript, to []string) txOutcome {
	addr, bodies := scriptServer(t, pipelining, sc)
	conn, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	c := NewClient(conn)
	defer c.Close()
	c.CommandTimeout = 3 * time.Second
	c.SubmissionTimeout = 3 * time.Second
	if err := c.Hello("client.test"); err != nil {
		t.Fatal(err)
	}
	var (
		errs []error
		w    *DataCommand
	)
	if oracle {
		errs, w, err = upstreamTransaction(c, "from@example.com", to)
	} else {
		errs, w, err = c.MailRcptData("from@example.com", nil, to, nil)
	}
	var out txOutcome
	for _, e := range errs {
		out.rcptErrs = append(out.rcptErrs, errText(e))
	}
	out.data, out.err = w != nil, errText(err)
	out.broken = err != nil && !isSMTPErr(err)
	if out.broken {
		return out // the connection is unusable
	}
	if w != nil {
		io.WriteString(w, "Subject: x\r\n\r\n.dot line\r\n")
		resp, err := w.CloseWithResponse()
		out.final = errText(err)
		if err == nil {
			out.final = resp.StatusText
		}
		if err != nil && !isSMTPErr(err) {
			return out
		}
		select {
		case out.body = <-bodies:
		case <-time.After(5 * time.Second):
			t.Fatal("the server got no body")
		}
	}
	out.rcpts = append([]string(nil), c.rcpts...)
	// In step: the next replies are RSET's and NOOP's own.
	out.after = errText(c.Reset()) + " / " + errText(c.Noop())
	if out.after != "<nil> / <nil>" {
		t.Errorf("after the transaction the connection is out of step: %s", out.after)
	}
	return out
}

// replyFor maps a fuzz byte to a reply for a command whose success is ok.
func replyFor(b byte, ok int) scriptReply {
	codes := []int{ok, ok, ok, 450, 451, 452, 421, 503, 550, 551, 552, 553, 554, 250, 354}
	r := scriptReply{code: codes[int(b)%len(codes)], multiline: b&0x40 != 0}
	if b == 0xff {
		r = scriptReply{malformed: true}
	}
	return r
}

func checkPipelineAgainstOracle(t *testing.T, script []byte) {
	next := func() byte {
		if len(script) == 0 {
			return 0
		}
		b := script[0]
		script = script[1:]
		return b
	}
	n := int(next())%5 + 1
	sc := txScript{mail: replyFor(next(), 250), data: replyFor(next(), 354), final: replyFor(next(), 250)}
	var to []string
	for i := 0; i < n; i++ {
		sc.rcpts = append(sc.rcpts, replyFor(next(), 250))
		to = append(to, fmt.Sprintf("rcpt%d@example.com", i))
	}
	want := runTransaction(t, false, true, sc, to)
	// Pipelined, the client reads replies the oracle never asked for: after
	// a refused MAIL those of every RCPT and DATA, after refused RCPTs that
	// of DATA, and after a 354 there that of the empty message. One of them
	// malformed breaks the connection, as any malformed reply does.
	var extra []scriptReply
	if !want.broken && !want.data {
		if want.rcptErrs == nil {
			extra = append(extra, sc.rcpts...)
		}
		if want.rcptErrs == nil || want.err == "<nil>" {
			extra = append(extra, sc.data)
			if !sc.data.malformed && sc.data.code == 354 {
				extra = append(extra, sc.final)
			}
		}
	}
	extraMalformed := false
	for _, r := range extra {
		extraMalformed = extraMalformed || r.malformed
	}
	for _, pipelining := range []bool{false, true} {
		got := runTransaction(t, pipelining, false, sc, to)
		if pipelining && extraMalformed {
			if !got.broken || got.data {
				t.Fatalf("script %+v: a malformed reply the oracle did not read should break the connection, got %#v", sc, got)
			}
			continue
		}
		if fmt.Sprintf("%#v", got) != fmt.Sprintf("%#v", want) {
			t.Fatalf("pipelining offered=%v, script %+v:\n got  %#v\n want %#v", pipelining, sc, got, want)
		}
	}
}

func FuzzPipelinedTransaction(f *testing.F) {
	f.Add([]byte{0, 0, 0, 0, 0})                // one recipient, all accepted
	f.Add([]byte{2, 0, 0, 0, 0, 8, 0})          // three recipients, the second refused
	f.Add([]byte{1, 0, 0, 0, 8, 8})             // every recipient refused
	f.Add([]byte{1, 0, 14, 0, 8, 8})            // every recipient refused, DATA still 354
	f.Add([]byte{1, 8, 0, 0, 0, 0})             // MAIL refused
	f.Add([]byte{1, 8, 14, 0, 0, 0})            // MAIL refused, DATA 354 anyway
	f.Add([]byte{1, 0, 7, 0, 0, 0})             // DATA refused
	f.Add([]byte{1, 0, 0, 12, 0, 0})            // refused after the final dot
	f.Add([]byte{2, 0x40, 0x40, 0x40, 0x40, 4}) // multiline replies
	f.Add([]byte{1, 0, 0, 0, 0xff, 0})          // a malformed RCPT reply
	f.Add([]byte{1, 6, 0, 0, 0, 0})             // 421 to MAIL
	f.Fuzz(checkPipelineAgainstOracle)
}

// TestPipelineOneFlight: with PIPELINING the group needs one round trip; the
// scripted server holds its replies until DATA, so a lockstep client would
// time out here instead.
func TestPipelineOneFlight(t *testing.T) {
	sc := txScript{mail: replyFor(0, 250), data: replyFor(0, 354), final: replyFor(0, 250),
		rcpts: []scriptReply{replyFor(0, 250), {code: 550}, replyFor(0, 250)}}
	to := []string{"a@example.com", "b@example.com", "c@example.com"}
	got := runTransaction(t, true, false, sc, to)
	if !got.data || got.err != "<nil>" || got.rcptErrs[0] != "<nil>" || got.rcptErrs[1] == "<nil>" || got.rcptErrs[2] != "<nil>" {
		t.Fatalf("outcome %+v", got)
	}
	if strings.Join(got.rcpts, ",") != "a@example.com,c@example.com" {
		t.Fatalf("accepted recipients %q", got.rcpts)
	}
	if got.body != "Subject: x\r\n\r\n..dot line\r\n" {
		t.Fatalf("body %q", got.body)
	}
}

// TestPipelineInvalidRecipientSendsNothing: a recipient with a line break
// fails before MAIL is sent, with or without PIPELINING.
func TestPipelineInvalidRecipientSendsNothing(t *testing.T) {
	for _, pipelining := range []bool{false, true} {
		addr, _ := scriptServer(t, pipelining, txScript{mail: scriptReply{code: 250}, rcpts: []scriptReply{{code: 250}}, data: scriptReply{code: 354}})
		conn, err := net.Dial("tcp", addr)
		if err != nil {
			t.Fatal(err)
		}
		c := NewClient(conn)
		c.CommandTimeout = 3 * time.Second
		_, w, err := c.MailRcptData("a@example.com", nil, []string{"ok@example.com", "bad\r\nRSET@example.com"}, nil)
		if err == nil || w != nil {
			t.Fatalf("pipelining=%v: want a local error, got w=%v err=%v", pipelining, w, err)
		}
		// Nothing went out: the next command gets its own reply.
		if err := c.Noop(); err != nil {
			t.Fatalf("pipelining=%v: NOOP after the refused call: %v", pipelining, err)
		}
		c.Close()
	}
}
