package smtpd

import (
	"context"
	"errors"
	"fmt"
	"os"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/spoold/spoold/spool"
)

var testCertDir string

func TestMain(m *testing.M) {
	dir, err := os.MkdirTemp("", "smtpd-test-")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	testCertDir = dir
	code := m.Run()
	os.RemoveAll(dir)
	os.Exit(code)
}

func TestAcceptsAndStoresMessage(t *testing.T) {
	fs := &fakeSpool{}
	now := time.Date(2026, 11, 27, 8, 0, 0, 0, time.UTC)
	s := startServer(t, []ListenerConfig{baseListener()}, Routes{}, fs, Options{Clock: func() time.Time { return now }})
	c := dial(t, addrOf(t, s, "mfd"))
	c.greet()
	ehlo := c.ehlo()
	for _, want := range []string{"PIPELINING", "8BITMIME", "SIZE 35000000"} {
		if !strings.Contains(ehlo, want) {
			t.Errorf("EHLO reply lacks %q: %q", want, ehlo)
		}
	}
	if strings.Contains(ehlo, "AUTH") {
		t.Errorf("AUTH advertised on a listener without users: %q", ehlo)
	}
	code, msg := c.send("scanner@corp.example", "boss@corp.example", simpleBody)
	if code != 250 || !strings.HasPrefix(msg, "2.0.0 OK queued as MSG0001") {
		t.Fatalf("end of DATA: %d %q", code, msg)
	}
	c.expect(221, "", "QUIT")

	msgs := fs.all()
	if len(msgs) != 1 {
		t.Fatalf("stored %d messages, want 1", len(msgs))
	}
	m := msgs[0]
	if m.Req.From != "scanner@corp.example" || len(m.Req.To) != 1 || m.Req.To[0] != "boss@corp.example" {
		t.Errorf("envelope = %q -> %q", m.Req.From, m.Req.To)
	}
	if m.Req.Account != "outbox" {
		t.Errorf("account = %q, want outbox (listener route)", m.Req.Account)
	}
	want := spool.Source{Kind: spool.SourceSMTP, Listener: "mfd", PeerIP: "127.0.0.1", HELO: "scanner.lan"}
	if m.Req.Source != want {
		t.Errorf("source = %+v, want %+v", m.Req.Source, want)
	}
	body := string(m.Body)
	wantReceived := "Received: from scanner.lan ([127.0.0.1])\r\n\tby spoold.test (spoold) with ESMTP\r\n\tfor <boss@corp.example>; Fri, 27 Nov 2026 08:00:00 +0000\r\n"
	if !strings.HasPrefix(body, wantReceived) {
		t.Errorf("body does not start with the Received header:\n%q", body)
	}
	rest := strings.TrimPrefix(body, wantReceived)
	re := regexp.MustCompile(`^Subject: scan\r\nFrom: scanner@corp.example\r\nMessage-ID: <[0-9a-hjkmnp-tv-z]{26}@spoold.test>\r\nDate: Fri, 27 Nov 2026 08:00:00 \+0000\r\n\r\nHello.\r\n$`)
	if !re.MatchString(rest) {
		t.Errorf("headers not added as expected:\n%q", rest)
	}
}

func TestKeepsExistingMessageIDAndDate(t *testing.T) {
	fs := &fakeSpool{}
	c := startSession(t, baseListener(), fs)
	in := "Message-Id: <a@b>\r\nDATE: Thu, 26 Nov 2026 10:00:00 +0100\r\nSubject: x\r\n\r\n..dot stuffed\r\nbody\r\n.\r\n"
	if code, msg := c.send("a@corp.example", "b@corp.example", in); code != 250 {
		t.Fatalf("DATA: %d %s", code, msg)
	}
	body := string(fs.all()[0].Body)
	_, after, ok := strings.Cut(body, "Message-Id: <a@b>\r\n")
	if !ok || after != "DATE: Thu, 26 Nov 2026 10:00:00 +0100\r\nSubject: x\r\n\r\n.dot stuffed\r\nbody\r\n" {
		t.Errorf("body changed beyond the Received header:\n%q", body)
	}
	if strings.Count(body, "Message-ID:") != 0 || strings.Count(strings.ToLower(body), "date:") != 1 {
		t.Errorf("headers duplicated:\n%q", body)
	}
}

func TestRefusals(t *testing.T) {
	user := User{Name: "mfd1", PasswordHash: mustHash(t, "secret-pw")}
	tests := []struct {
		name  string
		cfg   func(*ListenerConfig)
		run   func(c *client)
		stats func(t *testing.T, fs *fakeSpool)
	}{
		{name: "auth required outside allowed networks", cfg: func(l *ListenerConfig) {
			l.AllowedNetworks = []netipPrefix{mustPrefix("10.0.0.0/8")}
			l.Users = []User{user}
			l.TLS = TLSStartTLS
		}, run: func(c *client) {
			c.expect(530, "5.7.0", "MAIL FROM:<a@corp.example>")
		}},
		{name: "require auth even inside allowed networks", cfg: func(l *ListenerConfig) {
			l.RequireAuth = true
			l.Users = []User{user}
			l.TLS = TLSStartTLS
		}, run: func(c *client) {
			c.expect(530, "5.7.0", "MAIL FROM:<a@corp.example>")
		}},
		{name: "bad sender syntax", run: func(c *client) {
			c.expect(553, "5.1.7", "MAIL FROM:<a..b@corp.example>")
			c.expect(553, "5.1.7", "MAIL FROM:<a@-corp.example>")
			c.expect(553, "5.1.7", "MAIL FROM:<a@corp_example.com>")
		}},
		{name: "bad recipient syntax", run: func(c *client) {
			c.expect(250, "", "MAIL FROM:<a@corp.example>")
			c.expect(501, "5.1.3", "RCPT TO:<b@corp..example>")
			c.expect(501, "5.1.3", "RCPT TO:<\"b c\"@corp.example>")
			c.expect(501, "5.1.3", "RCPT TO:<b@[300.1.1.1]>")
			c.expect(501, "", "RCPT TO:<nodomain>")
		}},
		{name: "sender domain not allowed", cfg: func(l *ListenerConfig) {
			l.AllowedSenderDomains = []string{"Corp.Example"}
		}, run: func(c *client) {
			c.expect(553, "5.7.1", "MAIL FROM:<a@evil.example>")
			c.expect(553, "5.7.1", "MAIL FROM:<>")
			c.expect(250, "", "MAIL FROM:<a@CORP.example>")
		}},
		{name: "recipient domain not allowed", cfg: func(l *ListenerConfig) {
			l.AllowedRecipientDomains = []string{"corp.example"}
		}, run: func(c *client) {
			c.expect(250, "", "MAIL FROM:<a@corp.example>")
			c.expect(550, "5.7.1", "RCPT TO:<x@gmail.com>")
			c.expect(250, "", "RCPT TO:<x@corp.example>")
		}},
		{name: "too many recipients", cfg: func(l *ListenerConfig) { l.MaxRecipients = 2 }, run: func(c *client) {
			c.expect(250, "", "MAIL FROM:<a@corp.example>")
			c.expect(250, "", "RCPT TO:<x1@corp.example>")
			c.expect(250, "", "RCPT TO:<x2@corp.example>")
			c.expect(452, "4.5.3", "RCPT TO:<x3@corp.example>")
		}},
		{name: "SIZE above limit at MAIL", cfg: func(l *ListenerConfig) { l.MaxMessageSize = 1000 }, run: func(c *client) {
			c.expect(552, "5.3.4", "MAIL FROM:<a@other.example> SIZE=1001")
			c.expect(250, "", "MAIL FROM:<a@other.example> SIZE=999")
		}},
		{name: "SIZE above account limit at MAIL", run: func(c *client) {
			c.expect(552, "5.3.4", "MAIL FROM:<a@corp.example> SIZE=600")
		}},
		{name: "size exceeded while streaming", cfg: func(l *ListenerConfig) { l.MaxMessageSize = 1000 }, run: func(c *client) {
			code, msg := c.send("a@corp.example", "b@corp.example", "Subject: big\r\n\r\n"+strings.Repeat("0123456789\r\n", 200)+".\r\n")
			if code != 552 || !strings.HasPrefix(msg, "5.3.4") {
				c.t.Errorf("oversized DATA: %d %s", code, msg)
			}
			// The session goes on.
			code, msg = c.send("a@corp.example", "b@corp.example", simpleBody)
			if code != 250 {
				c.t.Errorf("next message: %d %s", code, msg)
			}
		}, stats: func(t *testing.T, fs *fakeSpool) {
			if n := len(fs.all()); n != 1 {
				t.Errorf("stored %d messages, want only the small one", n)
			}
		}},
		{name: "bare LF rejected", run: func(c *client) {
			code, msg := c.send("a@corp.example", "b@corp.example", "Subject: x\r\n\r\nline one\nline two\r\n.\r\n")
			if code != 550 || !strings.HasPrefix(msg, "5.6.11") {
				c.t.Errorf("bare LF: %d %s", code, msg)
			}
		}, stats: func(t *testing.T, fs *fakeSpool) {
			if n := len(fs.all()); n != 0 {
				t.Errorf("stored %d messages, want 0", n)
			}
		}},
		{name: "unroutable", cfg: func(l *ListenerConfig) { l.Account = "" }, run: func(c *client) {
			c.expect(451, "4.3.0", "MAIL FROM:<a@nowhere.example>")
		}},
		{name: "nested MAIL", run: func(c *client) {
			c.expect(250, "", "MAIL FROM:<a@corp.example>")
			c.expect(503, "5.5.1", "MAIL FROM:<a@corp.example>")
		}},
		{name: "line too long", cfg: func(l *ListenerConfig) { l.MaxLineLength = 1000 }, run: func(c *client) {
			code, msg := c.send("a@corp.example", "b@corp.example", "Subject: x\r\n\r\n"+strings.Repeat("x", 1200)+"\r\n.\r\n")
			if code != 500 || !strings.Contains(msg, "too long") {
				c.t.Errorf("long line: %d %s", code, msg)
			}
		}, stats: func(t *testing.T, fs *fakeSpool) {
			if n := len(fs.all()); n != 0 {
				t.Errorf("stored %d messages, want 0", n)
			}
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			lc := baseListener()
			if tt.cfg != nil {
				tt.cfg(&lc)
			}
			fs := &fakeSpool{}
			routes := Routes{BySenderDomain: map[string]string{"corp.example": "small"}, AccountMaxSize: map[string]int64{"small": 500}}
			s := startServer(t, []ListenerConfig{lc}, routes, fs, Options{})
			c := dial(t, addrOf(t, s, "mfd"))
			c.greet()
			c.ehlo()
			tt.run(c)
			if tt.stats != nil {
				tt.stats(t, fs)
			}
		})
	}
}

func TestSpoolCannotAccept(t *testing.T) {
	for _, fail := range []error{spool.ErrNoSpace, spool.ErrClosed, errors.New("fsync: input/output error")} {
		t.Run(fail.Error(), func(t *testing.T) {
			fs := &fakeSpool{}
			fs.setFail(fail)
			c := startSession(t, baseListener(), fs)
			code, msg := c.send("a@corp.example", "b@corp.example", simpleBody)
			if code != 452 || !strings.HasPrefix(msg, "4.3.1") {
				t.Fatalf("DATA with failing spool: %d %s, want 452 4.3.1", code, msg)
			}
			if strings.Contains(msg, "fsync") {
				t.Errorf("storage detail leaked to the client: %q", msg)
			}
			fs.setFail(nil)
			if code, msg := c.send("a@corp.example", "b@corp.example", simpleBody); code != 250 {
				t.Fatalf("after recovery: %d %s", code, msg)
			}
		})
	}
}

func TestClientOutsideNetworksWithoutUsersRefusedAtConnect(t *testing.T) {
	lc := baseListener()
	lc.AllowedNetworks = []netipPrefix{mustPrefix("10.1.0.0/16")}
	s := startServer(t, []ListenerConfig{lc}, Routes{}, &fakeSpool{}, Options{})
	c := dial(t, addrOf(t, s, "mfd"))
	c.expectReply(554, "5.7.1")
	c.expectClosed()
}

func TestRouting(t *testing.T) {
	pw := "pw-123"
	lc := baseListener()
	lc.TLS = TLSNone
	lc.Legacy = true
	lc.Users = []User{
		{Name: "withacct", PasswordHash: mustHash(t, pw), Account: "user-acct"},
		{Name: "mapped", PasswordHash: mustHash(t, pw)},
		{Name: "plain", PasswordHash: mustHash(t, pw)},
	}
	lc.Account = ""
	routes := Routes{
		ByUser:         map[string]string{"mapped": "byuser-acct"},
		BySenderDomain: map[string]string{"Sales.Example": "domain-acct"},
		Default:        "default-acct",
	}
	fs := &fakeSpool{}
	s := startServer(t, []ListenerConfig{lc}, routes, fs, Options{})
	send := func(user, from string) string {
		c := dial(t, addrOf(t, s, "mfd"))
		c.greet()
		c.ehlo()
		if user != "" {
			c.expect(235, "", "AUTH PLAIN %s", plainIR(user, pw))
		}
		if code, msg := c.send(from, "x@corp.example", simpleBody); code != 250 {
			t.Fatalf("send as %q from %s: %d %s", user, from, code, msg)
		}
		all := fs.all()
		return all[len(all)-1].Req.Account
	}
	cases := []struct{ user, from, want string }{
		{"withacct", "a@sales.example", "user-acct"},
		{"mapped", "a@sales.example", "byuser-acct"},
		{"plain", "a@sales.example", "domain-acct"},
		{"", "a@SALES.example", "domain-acct"},
		{"", "a@other.example", "default-acct"},
	}
	for _, c := range cases {
		if got := send(c.user, c.from); got != c.want {
			t.Errorf("user %q from %s routed to %q, want %q", c.user, c.from, got, c.want)
		}
	}
	// The listener account beats the default; SetRoutes applies to new mail.
	s.SetRoutes(Routes{Default: "new-default"})
	if got := send("", "a@sales.example"); got != "new-default" {
		t.Errorf("after SetRoutes: routed to %q, want new-default", got)
	}
	if all := fs.all(); all[2].Req.Source.AuthUser != "plain" {
		t.Errorf("AuthUser not recorded: %+v", all[2].Req.Source)
	}
}

func TestNewRejectsUnsafeConfig(t *testing.T) {
	hash := mustHash(t, "x")
	cases := []struct {
		name string
		cfg  func(*ListenerConfig)
		want string
	}{
		{"open relay", func(l *ListenerConfig) { l.AllowedNetworks = nil }, "open relay"},
		{"legacy without networks", func(l *ListenerConfig) {
			l.AllowedNetworks = nil
			l.Legacy = true
			l.Users = []User{{Name: "u", PasswordHash: hash}}
		}, "legacy"},
		{"users without TLS", func(l *ListenerConfig) { l.Users = []User{{Name: "u", PasswordHash: hash}} }, "without TLS"},
		{"bad hash", func(l *ListenerConfig) {
			l.Legacy = true
			l.Users = []User{{Name: "u", PasswordHash: "plaintext"}}
		}, "bcrypt"},
		{"bad tls mode", func(l *ListenerConfig) { l.TLS = "ssl" }, "tls mode"},
		{"min tls", func(l *ListenerConfig) { l.TLS = TLSStartTLS; l.MinTLSVersion = 0x0300 }, "min tls"},
		{"require auth without users", func(l *ListenerConfig) { l.RequireAuth = true }, "require_auth"},
		{"short lines", func(l *ListenerConfig) { l.MaxLineLength = 200 }, "max_line_length"},
		{"bad bare lf", func(l *ListenerConfig) { l.BareLF = "ignore" }, "bare_lf"},
		{"bad domain", func(l *ListenerConfig) { l.AllowedSenderDomains = []string{"a b"} }, "allowed_sender_domains[0]"},
		{"cert without key", func(l *ListenerConfig) { l.TLS = TLSStartTLS; l.CertFile = "x.pem" }, "without key_file"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			lc := baseListener()
			c.cfg(&lc)
			_, err := New([]ListenerConfig{lc}, Routes{}, &fakeSpool{}, Options{DataDir: testCertDir})
			if err == nil || !strings.Contains(err.Error(), c.want) {
				t.Fatalf("New: %v, want an error mentioning %q", err, c.want)
			}
		})
	}
	if _, err := New([]ListenerConfig{baseListener(), baseListener()}, Routes{}, &fakeSpool{}, Options{}); err == nil {
		t.Error("New accepted two listeners with the same name")
	}
}

func TestStartFailsWhenAnyBindFails(t *testing.T) {
	first := startServer(t, []ListenerConfig{baseListener()}, Routes{}, &fakeSpool{}, Options{})
	taken := addrOf(t, first, "mfd")
	a, b := baseListener(), baseListener()
	a.Name, b.Name = "a", "b"
	b.Addr = taken
	s, err := New([]ListenerConfig{a, b}, Routes{}, &fakeSpool{}, Options{Logger: testLogger(t)})
	if err != nil {
		t.Fatal(err)
	}
	if err := s.Start(); err == nil || !strings.Contains(err.Error(), `"b"`) {
		t.Fatalf("Start: %v, want a bind error for listener b", err)
	}
	if len(s.Addrs()) != 0 {
		t.Errorf("listeners left bound after a failed Start: %v", s.Addrs())
	}
	_ = s.Shutdown(context.Background())
}
