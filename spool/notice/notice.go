// Package notice builds the messages spoold writes itself: the failure
// notices that delivery (dead-lettered mail, to its sender) and the scan
// folder (files that could not be sent, to the scanning user) queue, and the
// Message-ID of every message spoold creates or completes (MessageID).
//
// It sits under spool because both ingest and delivery may import spool,
// while neither may import the other. It imports none of spoold's packages
// and does no I/O beyond the writer it is given.
package notice

import (
	"bytes"
	"encoding/base64"
	"errors"
	"fmt"
	"io"
	"mime"
	"net/mail"
	"strings"
	"time"
	"unicode"
	"unicode/utf8"

	gomail "github.com/emersion/go-message/mail"
)

// Failure is one recipient a notice reports as failed.
type Failure struct {
	Recipient string // envelope address
	Reason    string // why this recipient failed; "" when Notice.Reason says it
}

// Detail is one "Label: value" line of a notice's summary.
type Detail struct {
	Label, Value string
}

// Notice is what a failure notice says. Write turns it into a message.
// Every text field may hold anything a user or an upstream server sent
// (names, subjects, SMTP replies): Write keeps header values on one line and
// encodes non-ASCII text, so nothing here can add a header field.
type Notice struct {
	From     string // address the notice comes from: the account's mailbox or postmaster@host
	FromName string // its display name, e.g. "Mail Delivery System"
	To       string // the one recipient: the original sender or the scanning user
	Subject  string
	Date     time.Time
	// MessageID is the notice's own Message-ID without angle brackets (see
	// MessageID).
	MessageID string
	// Reply says the notice answers a message its recipient sent (a
	// dead-letter notice): Auto-Submitted: auto-replied. Otherwise it is
	// auto-generated (RFC 3834); either way, responders do not answer it.
	Reply bool
	// InReplyTo is the Message-ID of the message the notice is about, if
	// known: it becomes In-Reply-To and References, so mail clients show the
	// notice with that message. A value that is not a plain msg-id is left out.
	InReplyTo string

	// The body: Text, then a summary of one "Label: value" per line
	// (OrigSubject as "Subject", the Details in order, the Failed recipients,
	// Reason), then Footer. Empty parts are left out.
	Text        string
	OrigSubject string // subject of the message the notice is about
	Details     []Detail
	Failed      []Failure
	Reason      string
	Footer      string
}

// maxLine is the longest body line sent as 7bit; longer lines, or any
// non-ASCII text, make the body quoted-printable (RFC 5322's 998 limit).
const maxLine = 998

// Write writes n as an RFC 5322 message (text/plain; charset=utf-8) to w.
// It fails only on what the caller must get right: the addresses, the date
// and the Message-ID; text is cleaned, never refused.
func Write(w io.Writer, n Notice) error {
	from, err := plainAddress("From", n.From)
	if err != nil {
		return err
	}
	to, err := plainAddress("To", n.To)
	if err != nil {
		return err
	}
	if n.Date.IsZero() {
		return errors.New("notice: no Date")
	}
	if !validMsgID(n.MessageID) {
		return fmt.Errorf("notice: Message-ID %q is not a plain id@host", n.MessageID)
	}
	body := n.body()
	cte := "7bit"
	if !sevenBit(body) {
		cte = "quoted-printable"
	}

	// go-message writes the last field set first: set them bottom-up so the
	// header reads From, To, Subject, ... MIME-Version sets the part header.
	var h gomail.Header
	h.Set("Content-Transfer-Encoding", cte)
	h.Set("Content-Type", "text/plain; charset=utf-8")
	h.Set("MIME-Version", "1.0")
	// Exchange honours this instead of Auto-Submitted: no out-of-office
	// replies or read receipts answer a notice.
	h.Set("X-Auto-Response-Suppress", "All")
	if n.Reply {
		h.Set("Auto-Submitted", "auto-replied")
	} else {
		h.Set("Auto-Submitted", "auto-generated")
	}
	if orig := strings.TrimSuffix(strings.TrimPrefix(strings.TrimSpace(n.InReplyTo), "<"), ">"); validMsgID(orig) {
		h.SetMsgIDList("References", []string{orig})
		h.SetMsgIDList("In-Reply-To", []string{orig})
	}
	h.SetMessageID(n.MessageID)
	h.SetDate(n.Date)
	h.Set("Subject", encodeText(oneLine(n.Subject)))
	h.SetAddressList("To", []*gomail.Address{{Address: to}})
	h.SetAddressList("From", []*gomail.Address{{Name: oneLine(n.FromName), Address: from}})

	tw, err := gomail.CreateSingleInlineWriter(w, h)
	if err != nil {
		return fmt.Errorf("notice: writing header: %w", err)
	}
	if _, err := tw.Write(body); err != nil {
		return fmt.Errorf("notice: writing text: %w", err)
	}
	if err := tw.Close(); err != nil {
		return fmt.Errorf("notice: writing text: %w", err)
	}
	return nil
}

// Bytes is Write into a new buffer.
func Bytes(n Notice) ([]byte, error) {
	var b bytes.Buffer
	if err := Write(&b, n); err != nil {
		return nil, err
	}
	return b.Bytes(), nil
}

// body renders the text with CRLF line ends.
func (n Notice) body() []byte {
	var rows []Detail
	if s := oneLine(n.OrigSubject); s != "" {
		rows = append(rows, Detail{"Subject", s})
	}
	for _, d := range n.Details {
		rows = append(rows, Detail{oneLine(d.Label), oneLine(d.Value)})
	}
	reason := oneLine(n.Reason)
	if len(n.Failed) > 0 {
		// One line for the recipients while they share the notice's reason
		// (the common case); one line each when some have their own.
		own := false
		lines := make([]string, len(n.Failed))
		for i, f := range n.Failed {
			lines[i] = oneLine(f.Recipient)
			if r := oneLine(f.Reason); r != "" && r != reason {
				lines[i] += ": " + r
				own = true
			}
		}
		if own {
			rows = append(rows, Detail{"Recipients", strings.Join(lines, "\n")})
		} else {
			rows = append(rows, Detail{"Recipients", strings.Join(lines, ", ")})
		}
	}
	if reason != "" {
		rows = append(rows, Detail{"Reason", reason})
	}

	var b bytes.Buffer
	para := func(s string) {
		if s = strings.TrimRight(multiLine(s), "\r\n"); s == "" {
			return
		}
		if b.Len() > 0 {
			b.WriteString("\r\n")
		}
		b.WriteString(s)
		b.WriteString("\r\n")
	}
	para(n.Text)
	if len(rows) > 0 {
		width := 0
		for _, r := range rows {
			width = max(width, len(r.Label)+2)
		}
		var s strings.Builder
		for _, r := range rows {
			for i, v := range strings.Split(r.Value, "\n") {
				if i == 0 {
					s.WriteString(r.Label + ":" + strings.Repeat(" ", width-len(r.Label)-1))
				} else {
					s.WriteString(strings.Repeat(" ", width))
				}
				s.WriteString(v)
				s.WriteString("\n")
			}
		}
		para(s.String())
	}
	para(n.Footer)
	return b.Bytes()
}

// oneLine makes s safe for one header value or summary line: control
// characters (CR and LF above all) become spaces, invalid UTF-8 becomes
// U+FFFD, and the ends are trimmed.
func oneLine(s string) string {
	s = strings.ToValidUTF8(s, "\uFFFD")
	return strings.TrimSpace(strings.Map(func(r rune) rune {
		if unicode.IsControl(r) {
			return ' '
		}
		return r
	}, s))
}

// encodeText encodes s for an unstructured header field (RFC 2047) as
// go-message's SetText does, except that text which looks like an encoded
// word ("=?...?=", e.g. in a forwarded subject) is always encoded, so readers
// show it as written instead of decoding it. The words are base64 and hold
// whole UTF-8 characters.
func encodeText(s string) string {
	if !strings.Contains(s, "=?") {
		return mime.QEncoding.Encode("utf-8", s)
	}
	const prefix, suffix = "=?utf-8?b?", "?="
	const maxRaw = (75 - len(prefix) - len(suffix)) / 4 * 3 // 45 bytes -> 60 base64 characters
	var words []string
	for len(s) > 0 {
		n := min(len(s), maxRaw)
		for n < len(s) && n > 0 && !utf8.RuneStart(s[n]) {
			n--
		}
		words = append(words, prefix+base64.StdEncoding.EncodeToString([]byte(s[:n]))+suffix)
		s = s[n:]
	}
	return strings.Join(words, " ")
}

// multiLine normalises text to CRLF line ends and drops other control
// characters except tab.
func multiLine(s string) string {
	s = strings.ToValidUTF8(s, "\uFFFD")
	s = strings.ReplaceAll(s, "\r\n", "\n")
	s = strings.ReplaceAll(s, "\r", "\n")
	s = strings.Map(func(r rune) rune {
		if r != '\n' && r != '\t' && unicode.IsControl(r) {
			return -1
		}
		return r
	}, s)
	return strings.ReplaceAll(s, "\n", "\r\n")
}

// sevenBit reports whether body may go as 7bit: ASCII and no line longer
// than maxLine.
func sevenBit(body []byte) bool {
	line := 0
	for _, c := range body {
		switch {
		case c >= utf8.RuneSelf:
			return false
		case c == '\n':
			line = 0
		default:
			if line++; line > maxLine {
				return false
			}
		}
	}
	return true
}

// plainAddress checks that addr is one bare address (what an envelope
// holds), so it cannot smuggle a display name, a second address or a line
// break into the header.
func plainAddress(field, addr string) (string, error) {
	a, err := mail.ParseAddress(addr)
	if err != nil || a.Address != addr || a.Name != "" || strings.ContainsAny(addr, "<>\r\n\t ") {
		return "", fmt.Errorf("notice: %s %q is not a plain address", field, addr)
	}
	return addr, nil
}
