package delivery

import (
	"bytes"
	"io"
	"strings"
	"testing"
	"time"

	gomail "github.com/emersion/go-message/mail"

	"github.com/spoold/spoold/delivery/smtpfake"
	"github.com/spoold/spoold/spool"
	"github.com/spoold/spoold/spool/notice"
)

// TestFailureNoticeMessage reads a dead-letter notice as a mail client does:
// it answers the original (In-Reply-To, auto-replied), decodes the original
// subject, and names each refused recipient with its own reply when the
// notice's reason does not already say it.
func TestFailureNoticeMessage(t *testing.T) {
	h := newHarness(t, hopt{up: smtpfake.Options{Script: func(c smtpfake.Command) smtpfake.Reply {
		switch {
		case c.Name == "RCPT" && c.Arg == "gone@dest.example":
			return smtpfake.Reply{Code: 550, Enhanced: "5.1.1", Text: "no such user"}
		case c.Name == "RCPT" && c.Arg == "full@dest.example":
			return smtpfake.Reply{Code: 552, Enhanced: "5.2.2", Text: "mailbox full"}
		}
		return smtpfake.Reply{}
	}}})
	body := "From: =?utf-8?q?J=C3=BCrgen?= <user@office.example>\r\nSubject: =?utf-8?q?Gr=C3=BC=C3=9Fe?=\r\n" +
		"Message-ID: <orig.1@mfd.example>\r\n\r\nx\r\n"
	id := h.sp.add(spool.EnqueueRequest{From: "mfd@office.example", To: []string{"gone@dest.example", "full@dest.example"},
		Account: "m365", Source: spool.Source{Kind: spool.SourceScan}}, body)
	h.waitState(id, spool.StateDead)
	var data []byte
	waitFor(t, "notice to the sender", func() bool {
		for _, m := range h.up.Messages() {
			if len(m.To) == 1 && m.To[0] == "user@office.example" {
				data = m.Data
				return true
			}
		}
		return false
	})
	r, err := gomail.CreateReader(bytes.NewReader(data))
	if err != nil {
		t.Fatalf("parsing the notice: %v\n%s", err, data)
	}
	if s, _ := r.Header.Subject(); s != "Undeliverable: Grüße" {
		t.Errorf("Subject %q", s)
	}
	if l, _ := r.Header.MsgIDList("In-Reply-To"); len(l) != 1 || l[0] != "orig.1@mfd.example" {
		t.Errorf("In-Reply-To %v", l)
	}
	if v := r.Header.Get("Auto-Submitted"); v != "auto-replied" {
		t.Errorf("Auto-Submitted %q", v)
	}
	if mid, _ := r.Header.MessageID(); mid != notice.MessageID(noticeKey(id), "spoold.test") {
		t.Errorf("Message-ID %q", mid)
	}
	p, err := r.NextPart()
	if err != nil {
		t.Fatal(err)
	}
	text, _ := io.ReadAll(p.Body)
	for _, want := range []string{
		"Subject:    Grüße\r\n",
		"Queue ID:   " + id + "\r\n",
		"Recipients: gone@dest.example\r\n            full@dest.example: 552 5.2.2 mailbox full\r\n",
		"Reason:     upstream refused every remaining recipient: RCPT: 550", // no package prefix in what people read
		"no such user",
		// Times in the server's local time with its zone, as people read them.
		" " + time.Now().Format("MST") + "\r\n",
	} {
		if !strings.Contains(string(text), want) {
			t.Errorf("notice text lacks %q:\n%s", want, text)
		}
	}
}
