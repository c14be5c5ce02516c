package notice

import (
	"bytes"
	"io"
	"slices"
	"strings"
	"testing"
	"time"

	gomail "github.com/emersion/go-message/mail"
)

var testDate = time.Date(2026, 3, 4, 5, 6, 7, 0, time.UTC)

func baseNotice() Notice {
	return Notice{
		From: "scanner@office.example", FromName: "Mail Delivery System", To: "alice@office.example",
		Subject: "Undeliverable: Scan 42", Date: testDate, MessageID: MessageID("notice:m1", "spoold.test"),
		Reply: true, InReplyTo: "orig.1@mfd.example",
		Text: "Your message could not be delivered.", OrigSubject: "Scan 42",
		Details: []Detail{{"Created", "Wed, 04 Mar 2026 05:00:00 +0000"}, {"Queue ID", "01ABC"}},
		Failed:  []Failure{{Recipient: "bob@dest.example"}},
		Reason:  "550 5.1.1 User unknown",
		Footer:  "An administrator can see the message with: spoolctl show 01ABC",
	}
}

type parsed struct {
	raw    string
	header gomail.Header
	text   string
}

// parse reads a notice back with go-message, as a mail client would.
func parse(t testing.TB, b []byte) parsed {
	t.Helper()
	r, err := gomail.CreateReader(bytes.NewReader(b))
	if err != nil {
		t.Fatalf("parsing notice: %v\n%s", err, b)
	}
	p, err := r.NextPart()
	if err != nil {
		t.Fatalf("reading the text: %v\n%s", err, b)
	}
	text, err := io.ReadAll(p.Body)
	if err != nil {
		t.Fatalf("reading the text: %v", err)
	}
	if _, err := r.NextPart(); err != io.EOF {
		t.Fatalf("more than one part: %v", err)
	}
	return parsed{raw: string(b), header: r.Header, text: string(text)}
}

func build(t testing.TB, n Notice) parsed {
	t.Helper()
	b, err := Bytes(n)
	if err != nil {
		t.Fatalf("Write: %v", err)
	}
	return parse(t, b)
}

var allowed = []string{"From", "To", "Subject", "Date", "Message-Id", "In-Reply-To", "References", "Auto-Submitted",
	"X-Auto-Response-Suppress", "Mime-Version", "Content-Type", "Content-Transfer-Encoding"}

// checkFields fails on any header field Write does not set: an injection.
func checkFields(t testing.TB, h gomail.Header) {
	t.Helper()
	f := h.Fields()
	for f.Next() {
		if !slices.Contains(allowed, f.Key()) {
			t.Fatalf("unexpected header field %q (injection?)", f.Key())
		}
	}
}

func TestWriteParses(t *testing.T) {
	p := build(t, baseNotice())
	checkFields(t, p.header)
	if a, err := p.header.AddressList("From"); err != nil || len(a) != 1 || a[0].Address != "scanner@office.example" || a[0].Name != "Mail Delivery System" {
		t.Errorf("From %v %v", a, err)
	}
	if a, err := p.header.AddressList("To"); err != nil || len(a) != 1 || a[0].Address != "alice@office.example" {
		t.Errorf("To %v %v", a, err)
	}
	if s, _ := p.header.Subject(); s != "Undeliverable: Scan 42" {
		t.Errorf("Subject %q", s)
	}
	if d, err := p.header.Date(); err != nil || !d.Equal(testDate) {
		t.Errorf("Date %v %v", d, err)
	}
	if id, _ := p.header.MessageID(); id != MessageID("notice:m1", "spoold.test") {
		t.Errorf("Message-ID %q", id)
	}
	if l, _ := p.header.MsgIDList("In-Reply-To"); !slices.Equal(l, []string{"orig.1@mfd.example"}) {
		t.Errorf("In-Reply-To %v", l)
	}
	if l, _ := p.header.MsgIDList("References"); !slices.Equal(l, []string{"orig.1@mfd.example"}) {
		t.Errorf("References %v", l)
	}
	if v := p.header.Get("Auto-Submitted"); v != "auto-replied" {
		t.Errorf("Auto-Submitted %q", v)
	}
	if ct, params, _ := p.header.ContentType(); ct != "text/plain" || params["charset"] != "utf-8" {
		t.Errorf("Content-Type %q %v", ct, params)
	}
	want := "Your message could not be delivered.\r\n\r\n" +
		"Subject:    Scan 42\r\n" +
		"Created:    Wed, 04 Mar 2026 05:00:00 +0000\r\n" +
		"Queue ID:   01ABC\r\n" +
		"Recipients: bob@dest.example\r\n" +
		"Reason:     550 5.1.1 User unknown\r\n\r\n" +
		"An administrator can see the message with: spoolctl show 01ABC\r\n"
	if p.text != want {
		t.Errorf("text\n%q\nwant\n%q", p.text, want)
	}
	// Plain ASCII goes as is: what a user reads in the raw message too.
	if !strings.Contains(p.raw, "Content-Transfer-Encoding: 7bit") || !strings.Contains(p.raw, want) {
		t.Errorf("raw message not 7bit:\n%s", p.raw)
	}
}

func TestGeneratedNotice(t *testing.T) {
	n := Notice{From: "postmaster@spoold.test", FromName: "spoold scan folder", To: "alice@office.example",
		Subject: "Scan failed: a.pdf", Date: testDate, MessageID: MessageID("k", "spoold.test"),
		Text: "Your scan \"a.pdf\" could not be sent.", Reason: "too big", Footer: "The file was moved."}
	p := build(t, n)
	if v := p.header.Get("Auto-Submitted"); v != "auto-generated" {
		t.Errorf("Auto-Submitted %q", v)
	}
	if p.header.Has("In-Reply-To") || p.header.Has("References") {
		t.Error("In-Reply-To without an original message")
	}
	want := "Your scan \"a.pdf\" could not be sent.\r\n\r\nReason: too big\r\n\r\nThe file was moved.\r\n"
	if p.text != want {
		t.Errorf("text %q, want %q", p.text, want)
	}
}

func TestFailuresWithOwnReasons(t *testing.T) {
	n := baseNotice()
	n.Reason = "upstream refused some recipients: 550 5.1.1 no such user"
	n.Failed = []Failure{
		{Recipient: "gone@dest.example", Reason: "upstream refused some recipients: 550 5.1.1 no such user"},
		{Recipient: "late@dest.example", Reason: "552 5.2.2 mailbox full"},
	}
	p := build(t, n)
	want := "Recipients: gone@dest.example\r\n            late@dest.example: 552 5.2.2 mailbox full\r\n" +
		"Reason:     upstream refused some recipients: 550 5.1.1 no such user\r\n"
	if !strings.Contains(p.text, want) {
		t.Errorf("text\n%s\nlacks\n%s", p.text, want)
	}
	n.Failed = []Failure{{Recipient: "a@x.example"}, {Recipient: "b@x.example", Reason: n.Reason}}
	if p := build(t, n); !strings.Contains(p.text, "Recipients: a@x.example, b@x.example\r\n") {
		t.Errorf("shared reason not on one line:\n%s", p.text)
	}
}

func TestNonASCII(t *testing.T) {
	n := baseNotice()
	n.FromName = "Zustellsystem Müller"
	n.To = "jürgen@bücher.example"
	n.Subject = "Unzustellbar: Grüße aus Köln — " + strings.Repeat("sehr lang ", 12)
	n.OrigSubject = "Grüße aus Köln"
	n.Reason = "550 5.1.1 Empfänger unbekannt"
	p := build(t, n)
	checkFields(t, p.header)
	if s, _ := p.header.Subject(); s != strings.TrimSpace(n.Subject) {
		t.Errorf("Subject %q, want %q", s, n.Subject)
	}
	if a, err := p.header.AddressList("From"); err != nil || len(a) != 1 || a[0].Name != "Zustellsystem Müller" {
		t.Errorf("From %v %v", a, err)
	}
	if a, err := p.header.AddressList("To"); err != nil || len(a) != 1 || a[0].Address != n.To {
		t.Errorf("To %v %v", a, err)
	}
	if !strings.Contains(p.text, "Subject:    Grüße aus Köln\r\n") || !strings.Contains(p.text, "Empfänger unbekannt") {
		t.Errorf("text %q", p.text)
	}
	if !strings.Contains(p.raw, "Content-Transfer-Encoding: quoted-printable") {
		t.Error("non-ASCII text not quoted-printable")
	}
	// Headers are ASCII: non-ASCII text is RFC 2047 encoded.
	head, _, _ := strings.Cut(p.raw, "\r\n\r\n")
	for i := 0; i < len(head); i++ {
		if head[i] >= 0x80 && !strings.Contains(n.To, "ü") {
			t.Fatalf("raw byte %#x in the header", head[i])
		}
	}
	if strings.Contains(head, "Grüße") || strings.Contains(head, "Müller") {
		t.Errorf("unencoded header text:\n%s", head)
	}
}

func TestSubjectLooksEncoded(t *testing.T) {
	n := baseNotice()
	for _, subj := range []string{"=?utf-8?q?x?=", "Re: =?utf-8?b?w7w=?= und " + strings.Repeat("Grüße ", 20)} {
		n.Subject = subj
		p := build(t, n)
		if s, _ := p.header.Subject(); s != strings.TrimSpace(subj) {
			t.Errorf("Subject %q, want %q", s, subj)
		}
	}
}

func TestHeaderInjection(t *testing.T) {
	evil := "x\r\nBcc: victim@evil.example\r\n\r\nbody"
	n := baseNotice()
	n.FromName = evil
	n.Subject = evil
	n.OrigSubject = evil
	n.Reason = evil
	n.InReplyTo = "a@b>\r\nBcc: victim@evil.example"
	n.Details = []Detail{{evil, evil}}
	n.Failed = []Failure{{Recipient: evil, Reason: evil}, {Recipient: "ok@dest.example", Reason: "lf\nBcc: v@e.example"}}
	p := build(t, n)
	checkFields(t, p.header)
	if p.header.Has("Bcc") || p.header.Has("In-Reply-To") {
		t.Errorf("injected header:\n%s", p.raw)
	}
	if s, _ := p.header.Subject(); strings.ContainsAny(s, "\r\n") {
		t.Errorf("Subject %q", s)
	}
	for _, line := range strings.Split(p.text, "\r\n") {
		if strings.HasPrefix(line, "Bcc:") {
			t.Errorf("a reason made its own line %q", line)
		}
	}

	for _, bad := range []Notice{
		func() Notice { n := baseNotice(); n.To = "a@b.example\r\nBcc: v@e.example"; return n }(),
		func() Notice { n := baseNotice(); n.To = "Eve <a@b.example>"; return n }(),
		func() Notice { n := baseNotice(); n.To = "a@b.example, c@d.example"; return n }(),
		func() Notice { n := baseNotice(); n.From = "a@b.example\nX: y"; return n }(),
		func() Notice { n := baseNotice(); n.MessageID = "x@y>\r\nBcc: v@e.example"; return n }(),
		func() Notice { n := baseNotice(); n.MessageID = ""; return n }(),
		func() Notice { n := baseNotice(); n.Date = time.Time{}; return n }(),
	} {
		if _, err := Bytes(bad); err == nil {
			t.Errorf("accepted %+v", bad)
		}
	}
}

func TestMessageID(t *testing.T) {
	seen := map[string]bool{}
	for i := 0; i < 100000; i++ {
		id := MessageID("", "spoold.test")
		if seen[id] {
			t.Fatalf("random Message-ID %q repeated after %d", id, i)
		}
		seen[id] = true
	}
	for i := 0; i < 10000; i++ {
		id := MessageID("notice:"+string(rune('a'+i%26))+strings.Repeat("x", i/26), "spoold.test")
		if seen[id] {
			t.Fatalf("keyed Message-ID %q repeated", id)
		}
		seen[id] = true
	}
	a, b := MessageID("scan:k", "h.example"), MessageID("scan:k", "h.example")
	if a != b {
		t.Errorf("same key, different IDs %q %q", a, b)
	}
	if !validMsgID(a) || len(a) != 26+len("@h.example") || !strings.HasSuffix(a, "@h.example") {
		t.Errorf("Message-ID %q", a)
	}
	for _, host := range []string{"", "bad host", "a>b", "x\r\ny", "ümlaut.example", "..", ".a"} {
		if id := MessageID("k", host); !strings.HasSuffix(id, "@localhost") || !validMsgID(id) {
			t.Errorf("host %q: %q", host, id)
		}
	}
	if id := MessageID("k", "mail.example."); !strings.HasSuffix(id, "@mail.example") {
		t.Errorf("trailing dot kept: %q", id)
	}
}

func FuzzWrite(f *testing.F) {
	f.Add("Mail Delivery System", "Undeliverable: x", "Scan", "550 no", "bob@dest.example", "own", "orig@x.example", "Text\nline")
	f.Add("x\r\nBcc: v@e.example", "s\r\nBcc: v@e.example", "\r\n", "a\nb", "c\rd", "\x00", "a@b>\r\nX: y", "\r\n.\r\n")
	f.Add("Müller", "Grüße", "日本語", "Empfänger unbekannt", "jürgen@bücher.example", "", "", "\xff\xfe")
	f.Add("", "", "", strings.Repeat("long ", 400), "", "", "=?utf-8?q?x?=", strings.Repeat("y", 2000))
	f.Fuzz(func(t *testing.T, name, subject, origSubject, reason, rcpt, rcptReason, inReplyTo, text string) {
		n := Notice{
			From: "postmaster@spoold.test", FromName: name, To: "alice@office.example", Subject: subject,
			Date: testDate, MessageID: MessageID(subject, "spoold.test"), InReplyTo: inReplyTo,
			Text: text, OrigSubject: origSubject, Reason: reason, Footer: text,
			Details: []Detail{{name, reason}}, Failed: []Failure{{rcpt, rcptReason}},
		}
		p := build(t, n)
		checkFields(t, p.header)
		if a, err := p.header.AddressList("To"); err != nil || len(a) != 1 || a[0].Address != n.To {
			t.Fatalf("To %v %v", a, err)
		}
		if s, err := p.header.Subject(); err != nil || s != oneLine(subject) {
			t.Fatalf("Subject %q (%v), want %q", s, err, oneLine(subject))
		}
		if id, _ := p.header.MessageID(); id != n.MessageID {
			t.Fatalf("Message-ID %q", id)
		}
		if want := oneLine(reason); want != "" && !strings.Contains(p.text, want) {
			t.Fatalf("reason %q missing from\n%s", want, p.text)
		}
		for _, line := range strings.Split(p.text, "\r\n") {
			if strings.ContainsAny(line, "\r\n") {
				t.Fatalf("bare line break in %q", line)
			}
		}
	})
}
