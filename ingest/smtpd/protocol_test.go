package smtpd

import (
	"context"
	"crypto/tls"
	"encoding/base64"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/emersion/go-sasl"
	"github.com/emersion/go-smtp"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
)

// TestSmuggling sends each smuggling sequence inside DATA followed by a
// smuggled second transaction; none may end DATA, and with the default policy
// the message is refused as a whole.
func TestSmuggling(t *testing.T) {
	seqs := map[string]string{
		"LF.CRLF":   "\n.\r\n",
		"CRLF.LF":   "\r\n.\n",
		"LF.LF":     "\n.\n",
		"CR.CR":     "\r.\r",
		"CR.CRLF":   "\r.\r\n",
		"CRLF.CR":   "\r\n.\r",
		"CR.LF":     "\r.\n",
		"LF.CR":     "\n.\r",
		"CRLF.CRCR": "\r\n.\r\r\n",
	}
	smuggled := "MAIL FROM:<evil@corp.example>\r\nRCPT TO:<victim@corp.example>\r\nDATA\r\nSubject: smuggled\r\n\r\nowned\r\n"
	for _, policy := range []BareLFPolicy{BareLFReject, BareLFNormalize} {
		for name, seq := range seqs {
			t.Run(string(policy)+"/"+name, func(t *testing.T) {
				lc := baseListener()
				lc.BareLF = policy
				fs := &fakeSpool{}
				c := startSession(t, lc, fs)
				c.beginData("a@corp.example", "b@corp.example")
				c.raw("Subject: first\r\n\r\nhello" + seq + smuggled + ".\r\n")
				code, msg := c.reply()
				msgs := fs.all()
				switch policy {
				case BareLFReject:
					if swallowedByGoSMTP[name] {
						// go-smtp drops the CR after a line-leading dot, so
						// no bare CR reaches us: DATA must still not end and
						// the body must be clean.
						if code != 250 || len(msgs) != 1 || hasBareLineEnding(string(msgs[0].Body)) ||
							!strings.Contains(string(msgs[0].Body), "Subject: smuggled") {
							t.Fatalf("got %d %s and %d messages", code, msg, len(msgs))
						}
						break
					}
					if code != 550 || !strings.HasPrefix(msg, "5.6.11") {
						t.Fatalf("got %d %s, want 550 5.6.11", code, msg)
					}
					if len(msgs) != 0 {
						t.Fatalf("stored %d messages, want none", len(msgs))
					}
				case BareLFNormalize:
					if code != 250 {
						t.Fatalf("got %d %s, want 250", code, msg)
					}
					if len(msgs) != 1 {
						t.Fatalf("stored %d messages, want exactly 1 (no smuggled second)", len(msgs))
					}
					body := string(msgs[0].Body)
					if !strings.Contains(body, "Subject: smuggled") || msgs[0].Req.From != "a@corp.example" {
						t.Fatalf("smuggled text should be body of the first message:\n%q", body)
					}
					if hasBareLineEnding(body) {
						t.Fatalf("stored body has bare CR or LF:\n%q", body)
					}
				}
				// The connection is still in sync: the next command is a command.
				c.expect(250, "", "NOOP")
			})
		}
	}
}

// swallowedByGoSMTP are sequences where go-smtp's DATA reader elides ".\r"
// at the start of a line, so the bare CR never reaches the body.
var swallowedByGoSMTP = map[string]bool{"CRLF.CR": true, "CRLF.CRCR": true}

func hasBareLineEnding(s string) bool {
	for i := 0; i < len(s); i++ {
		switch s[i] {
		case '\r':
			if i+1 >= len(s) || s[i+1] != '\n' {
				return true
			}
		case '\n':
			if i == 0 || s[i-1] != '\r' {
				return true
			}
		}
	}
	return false
}

func TestNormalizeBareLF(t *testing.T) {
	lc := baseListener()
	lc.BareLF = BareLFNormalize
	fs := &fakeSpool{}
	c := startSession(t, lc, fs)
	if code, msg := c.send("a@corp.example", "b@corp.example", "Subject: x\nX-A: 1\r\n\nline1\nline2\rline3\r\n.\r\n"); code != 250 {
		t.Fatalf("DATA: %d %s", code, msg)
	}
	body := string(fs.all()[0].Body)
	if !strings.HasSuffix(body, "Subject: x\r\nX-A: 1\r\nMessage-ID: "+between(body, "Message-ID: ", "\r\n")+"\r\nDate: "+between(body, "Date: ", "\r\n")+"\r\n\r\nline1\r\nline2\r\nline3\r\n") {
		t.Fatalf("normalised body wrong:\n%q", body)
	}
}

func between(s, start, end string) string {
	_, after, _ := strings.Cut(s, start)
	v, _, _ := strings.Cut(after, end)
	return v
}

func TestPipelining(t *testing.T) {
	fs := &fakeSpool{}
	s := startServer(t, []ListenerConfig{baseListener()}, Routes{}, fs, Options{})
	c := dial(t, addrOf(t, s, "mfd"))
	c.greet()
	// Everything up to DATA in one write, then the body and the next
	// transaction in another (RFC 2920).
	c.raw("EHLO scanner.lan\r\nMAIL FROM:<a@corp.example>\r\nRCPT TO:<b@corp.example>\r\nRCPT TO:<bad@@x>\r\nRCPT TO:<c@corp.example>\r\nDATA\r\n")
	want := []int{250, 250, 250, 501, 250, 354}
	for i, w := range want {
		if code, msg := c.reply(); code != w {
			t.Fatalf("pipelined reply %d: %d %s, want %d", i, code, msg, w)
		}
	}
	c.raw("Subject: one\r\n\r\nbody\r\n.\r\nMAIL FROM:<a@corp.example>\r\nRCPT TO:<d@corp.example>\r\nDATA\r\n")
	for i, w := range []int{250, 250, 250, 354} {
		if code, msg := c.reply(); code != w {
			t.Fatalf("second batch reply %d: %d %s, want %d", i, code, msg, w)
		}
	}
	c.raw("Subject: two\r\n\r\nbody\r\n.\r\nQUIT\r\n")
	for i, w := range []int{250, 221} {
		if code, msg := c.reply(); code != w {
			t.Fatalf("third batch reply %d: %d %s, want %d", i, code, msg, w)
		}
	}
	msgs := fs.all()
	if len(msgs) != 2 || len(msgs[0].Req.To) != 2 || msgs[1].Req.To[0] != "d@corp.example" {
		t.Fatalf("stored %+v", msgs)
	}
}

func authListener(t *testing.T, mode TLSMode) ListenerConfig {
	lc := baseListener()
	lc.TLS = mode
	lc.AllowedNetworks = []netipPrefix{mustPrefix("10.9.0.0/16")} // the test client is outside
	lc.Users = []User{{Name: "scanner", PasswordHash: mustHash(t, "s3cret!"), Account: "scan-acct"}}
	return lc
}

func TestAuthOverSTARTTLSWithGoClient(t *testing.T) {
	for _, mech := range []string{"PLAIN", "LOGIN"} {
		t.Run(mech, func(t *testing.T) {
			fs := &fakeSpool{}
			s := startServer(t, []ListenerConfig{authListener(t, TLSStartTLS)}, Routes{}, fs, Options{})
			c, err := smtp.DialStartTLS(addrOf(t, s, "mfd"), &tls.Config{InsecureSkipVerify: true})
			if err != nil {
				t.Fatalf("STARTTLS: %v", err)
			}
			defer c.Close()
			if ok, params := c.Extension("AUTH"); !ok || params != "PLAIN LOGIN" {
				t.Fatalf("AUTH after TLS = %v %q, want PLAIN LOGIN", ok, params)
			}
			var a sasl.Client = sasl.NewPlainClient("", "scanner", "s3cret!")
			if mech == "LOGIN" {
				a = sasl.NewLoginClient("scanner", "s3cret!")
			}
			if err := c.Auth(a); err != nil {
				t.Fatalf("AUTH %s: %v", mech, err)
			}
			if err := c.SendMail("scanner@corp.example", []string{"b@corp.example"}, strings.NewReader("Subject: x\r\n\r\nhi\r\n")); err != nil {
				t.Fatalf("SendMail: %v", err)
			}
			m := fs.all()[0]
			if m.Req.Source.AuthUser != "scanner" || m.Req.Account != "scan-acct" {
				t.Errorf("source %+v account %q", m.Req.Source, m.Req.Account)
			}
			if !strings.Contains(string(m.Body), "with ESMTPSA\r\n\t(version=TLS 1.3") {
				t.Errorf("Received header does not show TLS and AUTH:\n%q", m.Body)
			}
		})
	}
}

func TestAuthRefusals(t *testing.T) {
	fs := &fakeSpool{}
	s := startServer(t, []ListenerConfig{authListener(t, TLSStartTLS)}, Routes{}, fs, Options{})
	c := dial(t, addrOf(t, s, "mfd"))
	c.greet()
	c.ehlo()
	// Before TLS: no AUTH and no mail. 538 5.7.11 is RFC 4954's reply (and
	// what the README documents); go-smtp v0.25.1 answered 523 5.7.10.
	c.expect(538, "5.7.11", "AUTH PLAIN %s", plainIR("scanner", "s3cret!"))
	c.expect(530, "5.7.0", "MAIL FROM:<a@corp.example>")

	// Over TLS: a wrong password is 535 5.7.8, a LOGIN exchange works step by step.
	tc := dialTLSAfterStartTLS(t, addrOf(t, s, "mfd"))
	tc.expect(535, "5.7.8", "AUTH PLAIN %s", plainIR("scanner", "wrong"))
	tc.expect(535, "5.7.8", "AUTH PLAIN %s", plainIR("nobody", "s3cret!"))
	tc.expect(504, "5.7.4", "AUTH CRAM-MD5")
	tc.expect(334, "VXNlcm5hbWU6", "AUTH LOGIN")
	tc.expect(334, "UGFzc3dvcmQ6", "%s", base64.StdEncoding.EncodeToString([]byte("scanner")))
	tc.expect(235, "2.0.0", "%s", base64.StdEncoding.EncodeToString([]byte("s3cret!")))
	tc.expect(250, "", "MAIL FROM:<a@corp.example>")
}

// dialTLSAfterStartTLS returns a raw client that has done EHLO, STARTTLS and EHLO again.
func dialTLSAfterStartTLS(t *testing.T, addr string) *client {
	c := dial(t, addr)
	c.greet()
	c.ehlo()
	c.expect(220, "", "STARTTLS")
	tlsc := tls.Client(c.conn, &tls.Config{InsecureSkipVerify: true})
	if err := tlsc.Handshake(); err != nil {
		t.Fatalf("TLS handshake: %v", err)
	}
	tc := &client{t: t, conn: tlsc, text: newTextConn(tlsc)}
	if !strings.Contains(tc.ehlo(), "AUTH PLAIN LOGIN") {
		t.Fatal("no AUTH after STARTTLS")
	}
	return tc
}

func TestLegacyAuthOnlyInsideAllowedNetworks(t *testing.T) {
	lc := baseListener()
	lc.Legacy = true
	lc.Users = []User{{Name: "u", PasswordHash: mustHash(t, "pw")}}
	lc.RequireAuth = true
	s := startServer(t, []ListenerConfig{lc}, Routes{}, &fakeSpool{}, Options{})
	c := dial(t, addrOf(t, s, "mfd"))
	c.greet()
	if !strings.Contains(c.ehlo(), "AUTH PLAIN LOGIN") {
		t.Fatal("legacy listener does not offer AUTH without TLS to an allowed network")
	}
	c.expect(235, "", "AUTH PLAIN %s", plainIR("u", "pw"))
	c.expect(250, "", "MAIL FROM:<a@corp.example>")

	lc2 := baseListener()
	lc2.Name = "other"
	lc2.Legacy = true
	lc2.TLS = TLSStartTLS
	lc2.AllowedNetworks = []netipPrefix{mustPrefix("10.0.0.0/8")}
	lc2.Users = lc.Users
	s2 := startServer(t, []ListenerConfig{lc2}, Routes{}, &fakeSpool{}, Options{})
	c2 := dial(t, addrOf(t, s2, "other"))
	c2.greet()
	if strings.Contains(c2.ehlo(), "AUTH") {
		t.Fatal("AUTH without TLS offered to a client outside the allowed networks")
	}
	c2.expect(538, "5.7.11", "AUTH PLAIN %s", plainIR("u", "pw"))
}

func TestAuthFailureThrottle(t *testing.T) {
	lc := authListener(t, TLSStartTLS)
	lc.AuthFailureLimit = 3
	reg := prometheus.NewRegistry()
	s := startServer(t, []ListenerConfig{lc}, Routes{}, &fakeSpool{}, Options{Registerer: reg, AuthFailureDelay: 50 * time.Millisecond})
	addr := addrOf(t, s, "mfd")
	c := dialTLSAfterStartTLS(t, addr)
	start := time.Now()
	c.expect(535, "5.7.8", "AUTH PLAIN %s", plainIR("scanner", "guess1"))
	if time.Since(start) < 50*time.Millisecond {
		t.Error("failed AUTH answered without the configured delay")
	}
	c.expect(535, "5.7.8", "AUTH PLAIN %s", plainIR("scanner", "guess2"))
	c.expect(421, "4.7.0", "AUTH PLAIN %s", plainIR("scanner", "guess3"))
	c.expectClosed()
	// A new connection from the same IP is refused while the window lasts.
	c2 := dial(t, addr)
	if code, msg, err := c2.replyErr(); err != nil || code != 421 || !strings.Contains(msg, "authentication failures") {
		t.Fatalf("new connection: %d %q %v, want 421", code, msg, err)
	}
	if got := testutil.ToFloat64(s.metrics.rejections.WithLabelValues("mfd", "auth_throttled")); got < 2 {
		t.Errorf("auth_throttled rejections = %v, want >= 2", got)
	}
}

func TestAuthThrottleWindowExpires(t *testing.T) {
	th := newAuthThrottle(2, time.Minute)
	ip := mustPrefix("192.0.2.1/32").Addr()
	t0 := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	th.fail(ip, t0)
	if th.blocked(ip, t0) {
		t.Fatal("blocked after one failure with limit 2")
	}
	th.fail(ip, t0.Add(time.Second))
	if !th.blocked(ip, t0.Add(2*time.Second)) {
		t.Fatal("not blocked at the limit")
	}
	if th.blocked(ip, t0.Add(61*time.Second)) {
		t.Fatal("still blocked after the window")
	}
}

func TestPasswordsNeverLogged(t *testing.T) {
	var logs logBuf
	lc := authListener(t, TLSStartTLS)
	lc.AuthFailureLimit = 10
	s := startServer(t, []ListenerConfig{lc}, Routes{}, &fakeSpool{}, Options{Logger: slogTo(&logs)})
	c := dialTLSAfterStartTLS(t, addrOf(t, s, "mfd"))
	c.expect(535, "", "AUTH PLAIN %s", plainIR("scanner", "Hunter2-wrong"))
	c.expect(334, "", "AUTH LOGIN")
	c.expect(334, "", "%s", base64.StdEncoding.EncodeToString([]byte("scanner")))
	c.expect(535, "", "%s", base64.StdEncoding.EncodeToString([]byte("Hunter2-login")))
	c.expect(235, "", "AUTH PLAIN %s", plainIR("scanner", "s3cret!"))
	out := logs.String()
	for _, secret := range []string{"Hunter2", "s3cret!", plainIR("scanner", "s3cret!"), base64.StdEncoding.EncodeToString([]byte("Hunter2-login"))} {
		if strings.Contains(out, secret) {
			t.Errorf("log contains secret %q", secret)
		}
	}
	if !strings.Contains(out, "auth failed") || !strings.Contains(out, "auth succeeded") {
		t.Errorf("auth outcomes not logged:\n%s", out)
	}
}

func TestImplicitTLS(t *testing.T) {
	fs := &fakeSpool{}
	s := startServer(t, []ListenerConfig{authListener(t, TLSImplicit)}, Routes{}, fs, Options{})
	c, err := smtp.DialTLS(addrOf(t, s, "mfd"), &tls.Config{InsecureSkipVerify: true})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if err := c.Auth(sasl.NewPlainClient("", "scanner", "s3cret!")); err != nil {
		t.Fatalf("AUTH: %v", err)
	}
	if err := c.SendMail("a@corp.example", []string{"b@corp.example"}, strings.NewReader(simpleBody[:len(simpleBody)-3])); err != nil {
		t.Fatalf("SendMail: %v", err)
	}
	if len(fs.all()) != 1 {
		t.Fatal("message not stored")
	}
}

func TestMinTLSVersion(t *testing.T) {
	lc := authListener(t, TLSImplicit)
	lc.MinTLSVersion = tls.VersionTLS10
	var logs logBuf
	s := startServer(t, []ListenerConfig{lc}, Routes{}, &fakeSpool{}, Options{Logger: slogTo(&logs)})
	if !strings.Contains(logs.String(), "level=WARN") || !strings.Contains(logs.String(), "TLS 1.0") {
		t.Errorf("no warning about TLS 1.0:\n%s", logs.String())
	}
	// TLS 1.1 is accepted by this listener (the default listener would refuse it).
	conn, err := tls.Dial("tcp", addrOf(t, s, "mfd"), &tls.Config{InsecureSkipVerify: true, MinVersion: tls.VersionTLS10, MaxVersion: tls.VersionTLS11})
	if err != nil {
		t.Fatalf("TLS 1.1 handshake: %v", err)
	}
	conn.Close()
	s2 := startServer(t, []ListenerConfig{authListener(t, TLSImplicit)}, Routes{}, &fakeSpool{}, Options{})
	if conn, err := tls.Dial("tcp", addrOf(t, s2, "mfd"), &tls.Config{InsecureSkipVerify: true, MinVersion: tls.VersionTLS10, MaxVersion: tls.VersionTLS11}); err == nil {
		conn.Close()
		t.Fatal("default listener accepted TLS 1.1")
	}
}

func TestSelfSignedCertificatePersisted(t *testing.T) {
	dir := t.TempDir()
	var logs logBuf
	lc := authListener(t, TLSStartTLS)
	if _, err := New([]ListenerConfig{lc}, Routes{}, &fakeSpool{}, Options{DataDir: dir, Logger: slogTo(&logs)}); err != nil {
		t.Fatal(err)
	}
	fi, err := os.Stat(filepath.Join(dir, selfSignedKey))
	if err != nil {
		t.Fatal(err)
	}
	if fi.Mode().Perm() != 0o600 {
		t.Errorf("key mode %v, want 0600", fi.Mode().Perm())
	}
	fp := between(logs.String(), "sha256_fingerprint=", "\n")
	if len(fp) != 64 || !strings.Contains(logs.String(), "generated") {
		t.Fatalf("fingerprint not logged on generation:\n%s", logs.String())
	}
	logs.Reset()
	if _, err := New([]ListenerConfig{lc}, Routes{}, &fakeSpool{}, Options{DataDir: dir, Logger: slogTo(&logs)}); err != nil {
		t.Fatal(err)
	}
	if got := between(logs.String(), "sha256_fingerprint=", "\n"); got != fp || !strings.Contains(logs.String(), "loaded") {
		t.Fatalf("second start: fingerprint %q, want the persisted %q", got, fp)
	}
}

func TestConnectionLimits(t *testing.T) {
	lc := baseListener()
	lc.MaxConnectionsPerIP = 2
	lc.MaxConnections = 3
	reg := prometheus.NewRegistry()
	s := startServer(t, []ListenerConfig{lc}, Routes{}, &fakeSpool{}, Options{Registerer: reg})
	addr := addrOf(t, s, "mfd")
	a, b := dial(t, addr), dial(t, addr)
	a.greet()
	b.greet()
	c := dial(t, addr)
	c.expectReply(421, "4.7.0 Too many connections")
	c.expectClosed()
	// A slot frees when a client leaves.
	a.expect(221, "", "QUIT")
	_ = a.waitClosed()
	eventually(t, "slot released", func() bool {
		d := dial(t, addr)
		code, _, _ := d.replyErr()
		d.conn.Close()
		return code == 220
	})
	// Total cap: another loopback address is a different IP.
	b2, err := net.DialTimeout("tcp", addr, 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	defer b2.Close()
	if got := testutil.ToFloat64(s.metrics.rejections.WithLabelValues("mfd", "too_many_connections")); got < 1 {
		t.Errorf("too_many_connections rejections = %v", got)
	}
	if got := testutil.ToFloat64(s.metrics.sessions.WithLabelValues("mfd")); got < 3 {
		t.Errorf("sessions = %v, want >= 3", got)
	}
}

func TestTotalConnectionLimit(t *testing.T) {
	lc := baseListener()
	lc.Addr = "0.0.0.0:0"
	lc.MaxConnections = 1
	s := startServer(t, []ListenerConfig{lc}, Routes{}, &fakeSpool{}, Options{})
	port := s.Addrs()["mfd"].(*net.TCPAddr).Port
	a := dial(t, fmt.Sprintf("127.0.0.1:%d", port))
	a.greet()
	b := dial(t, fmt.Sprintf("127.0.0.2:%d", port))
	if code, msg, err := b.replyErr(); err != nil || code != 421 || msg != "4.7.0 Too many connections, try again later" {
		t.Fatalf("second connection: %d %q %v", code, msg, err)
	}
}

func TestIdleTimeout(t *testing.T) {
	lc := baseListener()
	lc.ReadTimeout = 300 * time.Millisecond
	c := startSession(t, lc, &fakeSpool{})
	c.expectReply(421, "4.4.2")
}

func TestDataTimeoutStoresNothing(t *testing.T) {
	lc := baseListener()
	lc.ReadTimeout = 300 * time.Millisecond
	fs := &fakeSpool{}
	c := startSession(t, lc, fs)
	c.beginData("a@corp.example", "b@corp.example")
	c.raw("Subject: half\r\n\r\nand then the scanner hangs")
	c.expectReply(421, "4.4.2")
	c.expectClosed()
	if n := len(fs.all()); n != 0 {
		t.Fatalf("stored %d messages from a stalled DATA", n)
	}
}

// TestSlowDataWithinTimeout: ReadTimeout bounds silence, not the transfer.
func TestSlowDataWithinTimeout(t *testing.T) {
	lc := baseListener()
	lc.ReadTimeout = 2 * time.Second
	lc.DataMinRate = -1 // this test is about the read timeout alone (the rate check has its own tests)
	fs := &fakeSpool{}
	c := startSession(t, lc, fs)
	c.beginData("a@corp.example", "b@corp.example")
	c.raw("Subject: slow\r\n\r\n")
	// 8 x 400ms > ReadTimeout, each gap well below it: a loaded machine
	// stretching one pause by a second does not make it silence.
	for i := 0; i < 8; i++ {
		time.Sleep(400 * time.Millisecond)
		c.raw("chunk\r\n")
	}
	c.raw(".\r\n")
	if code, msg := c.reply(); code != 250 {
		t.Fatalf("slow but steady DATA: %d %s", code, msg)
	}
}

func TestShutdownLetsDataFinish(t *testing.T) {
	fs := &fakeSpool{started: make(chan struct{}, 1), block: make(chan struct{})}
	s := startServer(t, []ListenerConfig{baseListener()}, Routes{}, fs, Options{})
	addr := addrOf(t, s, "mfd")
	busy, idle := dial(t, addr), dial(t, addr)
	busy.greet()
	idle.greet()
	busy.ehlo()
	idle.ehlo()
	busy.beginData("a@corp.example", "b@corp.example")
	busy.raw(simpleBody)
	<-fs.started // the busy session is inside Enqueue

	done := make(chan error, 1)
	go func() {
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		done <- s.Shutdown(ctx)
	}()
	idle.expectReply(421, "4.3.2")
	eventually(t, "listener closed", func() bool {
		c, err := net.DialTimeout("tcp", addr, time.Second)
		if err != nil {
			return true
		}
		c.Close()
		return false
	})
	close(fs.block) // the spool commits
	if code, msg := busy.reply(); code != 250 {
		t.Fatalf("session in DATA: %d %s, want 250", code, msg)
	}
	if code, msg, err := busy.replyErr(); err != nil || code != 421 {
		t.Fatalf("after DATA: %d %q %v, want 421", code, msg, err)
	}
	if err := <-done; err != nil {
		t.Fatalf("Shutdown: %v", err)
	}
	if len(fs.all()) != 1 {
		t.Fatal("message in DATA during shutdown not stored")
	}
}

func TestShutdownTimeoutAbortsData(t *testing.T) {
	fs := &fakeSpool{started: make(chan struct{}, 1), block: make(chan struct{})}
	s := startServer(t, []ListenerConfig{baseListener()}, Routes{}, fs, Options{})
	c := dial(t, addrOf(t, s, "mfd"))
	c.greet()
	c.ehlo()
	c.beginData("a@corp.example", "b@corp.example")
	c.raw(simpleBody)
	<-fs.started
	ctx, cancel := context.WithTimeout(context.Background(), 200*time.Millisecond)
	defer cancel()
	if err := s.Shutdown(ctx); err == nil {
		t.Fatal("Shutdown returned nil although a session never finished")
	}
	if code, _, _ := c.replyErr(); code == 250 {
		t.Fatal("aborted message acknowledged with 250")
	}
	if len(fs.all()) != 0 {
		t.Fatal("aborted message stored")
	}
}

func TestSetUsers(t *testing.T) {
	lc := authListener(t, TLSStartTLS)
	lc.AllowedNetworks = nil
	s := startServer(t, []ListenerConfig{lc}, Routes{}, &fakeSpool{}, Options{})
	addr := addrOf(t, s, "mfd")
	c := dialTLSAfterStartTLS(t, addr) // connected before the change
	if err := s.SetUsers("mfd", []User{{Name: "new", PasswordHash: mustHash(t, "newpw")}}); err != nil {
		t.Fatal(err)
	}
	c.expect(535, "", "AUTH PLAIN %s", plainIR("scanner", "s3cret!"))
	c.expect(235, "", "AUTH PLAIN %s", plainIR("new", "newpw"))
	if err := s.SetUsers("mfd", nil); err == nil {
		t.Error("SetUsers accepted no users on a listener without allowed clients (open relay or nobody)")
	}
	if err := s.SetUsers("nope", nil); err == nil {
		t.Error("SetUsers accepted an unknown listener")
	}
}

func TestMetricsSharedRegistry(t *testing.T) {
	reg := prometheus.NewRegistry()
	fs := &fakeSpool{}
	s := startServer(t, []ListenerConfig{baseListener()}, Routes{}, fs, Options{Registerer: reg})
	// A second server (e.g. after a restart in-process) reuses the collectors.
	lc := baseListener()
	if _, err := New([]ListenerConfig{lc}, Routes{}, fs, Options{Registerer: reg, Logger: testLogger(t)}); err != nil {
		t.Fatalf("second New on the same registry: %v", err)
	}
	c := dial(t, addrOf(t, s, "mfd"))
	c.greet()
	c.ehlo()
	c.send("a@corp.example", "b@corp.example", simpleBody)
	// spoold_enqueued_total is the spool's (counted on commit), not ours.
	n, err := testutil.GatherAndCount(reg, "spoold_enqueued_total", "spoold_smtp_sessions_total")
	if err != nil || n != 1 {
		t.Errorf("gathered %d series (%v), want 1", n, err)
	}
}

func TestBDAT(t *testing.T) {
	fs := &fakeSpool{}
	c := startSession(t, baseListener(), fs)
	c.expect(250, "", "MAIL FROM:<a@corp.example>")
	c.expect(250, "", "RCPT TO:<b@corp.example>")
	part1, part2 := "Subject: chunked\r\n\r\n", "one\r\n.two\r\n"
	c.raw(fmt.Sprintf("BDAT %d\r\n%s", len(part1), part1))
	if code, msg := c.reply(); code != 250 {
		t.Fatalf("first chunk: %d %s", code, msg)
	}
	c.raw(fmt.Sprintf("BDAT %d LAST\r\n%s", len(part2), part2))
	if code, msg := c.reply(); code != 250 || !strings.Contains(msg, "queued as") {
		t.Fatalf("last chunk: %d %s", code, msg)
	}
	if body := string(fs.all()[0].Body); !strings.HasSuffix(body, "\r\n\r\none\r\n.two\r\n") {
		t.Fatalf("BDAT body:\n%q", body)
	}
	// Bare LF is refused in BDAT too.
	c.expect(250, "", "MAIL FROM:<a@corp.example>")
	c.expect(250, "", "RCPT TO:<b@corp.example>")
	bad := "Subject: x\n\nbody\n"
	c.raw(fmt.Sprintf("BDAT %d LAST\r\n%s", len(bad), bad))
	if code, msg := c.reply(); code != 550 {
		t.Fatalf("bare LF in BDAT: %d %s", code, msg)
	}
	if len(fs.all()) != 1 {
		t.Fatal("bare-LF BDAT message stored")
	}
	// RSET in the middle of a chunked transfer aborts it cleanly.
	c.expect(250, "", "MAIL FROM:<a@corp.example>")
	c.expect(250, "", "RCPT TO:<b@corp.example>")
	c.raw("BDAT 12\r\nSubject: y\r\n")
	if code, msg := c.reply(); code != 250 {
		t.Fatalf("chunk: %d %s", code, msg)
	}
	c.expect(250, "", "RSET")
	if code, msg := c.send("a@corp.example", "b@corp.example", simpleBody); code != 250 {
		t.Fatalf("after RSET: %d %s", code, msg)
	}
	if n := len(fs.all()); n != 2 {
		t.Fatalf("stored %d messages, want 2 (the aborted BDAT is not one)", n)
	}
}

func TestImplicitTLSRefusalIsReadable(t *testing.T) {
	lc := authListener(t, TLSImplicit)
	lc.MaxConnectionsPerIP = 1
	s := startServer(t, []ListenerConfig{lc}, Routes{}, &fakeSpool{}, Options{})
	a := dialTLS(t, addrOf(t, s, "mfd"))
	a.greet()
	b := dialTLS(t, addrOf(t, s, "mfd"))
	b.expectReply(421, "4.7.0 Too many connections")
}

func TestSanitizeHELO(t *testing.T) {
	for in, want := range map[string]string{
		"mfd.lan":                "mfd.lan",
		"evil)(by x; for <y>":    "evil__by_x__for_<y>",
		"ünïcode":                "__n__code",
		"":                       "unknown",
		strings.Repeat("a", 300): strings.Repeat("a", 255),
	} {
		if got := sanitizeHELO(in); got != want {
			t.Errorf("sanitizeHELO(%q) = %q, want %q", in, got, want)
		}
	}
}
