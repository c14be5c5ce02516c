package delivery

import (
	"errors"
	"fmt"
	"testing"
	"time"

	"github.com/emersion/go-smtp"
)

func TestNextRetry(t *testing.T) {
	created := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	mid := func() float64 { return 0.5 } // no jitter
	low := func() float64 { return 0 }   // -20 %
	high := func() float64 { return 0.75 }
	def := RetryPolicy{}
	cases := []struct {
		name     string
		p        RetryPolicy
		attempts int
		now      time.Time
		rnd      func() float64
		want     time.Duration // from now; -1 = expired
	}{
		{"first", def, 1, created, mid, time.Minute},
		{"second", def, 2, created.Add(time.Minute), mid, 2 * time.Minute},
		{"third", def, 3, created.Add(3 * time.Minute), mid, 4 * time.Minute},
		{"seventh capped at 1h", def, 7, created.Add(time.Hour), mid, time.Hour},
		{"hundredth capped", def, 100, created.Add(48 * time.Hour), mid, time.Hour},
		{"zero attempts treated as one", def, 0, created, mid, time.Minute},
		{"jitter low", def, 1, created, low, 48 * time.Second},
		{"jitter high", def, 1, created, high, 66 * time.Second},
		{"no jitter", RetryPolicy{Jitter: -1}, 1, created, low, time.Minute},
		{"custom", RetryPolicy{First: 5 * time.Minute, Multiplier: 3, Max: 30 * time.Minute, Jitter: -1}, 2, created, mid, 15 * time.Minute},
		{"custom capped", RetryPolicy{First: 5 * time.Minute, Multiplier: 3, Max: 30 * time.Minute, Jitter: -1}, 3, created, mid, 30 * time.Minute},
		{"clamped to lifetime end", def, 50, created.Add(5*24*time.Hour - 10*time.Minute), mid, 10 * time.Minute},
		{"expired at lifetime", def, 50, created.Add(5 * 24 * time.Hour), mid, -1},
		{"expired after lifetime", RetryPolicy{Lifetime: time.Hour}, 2, created.Add(2 * time.Hour), mid, -1},
		{"bad rnd ignored", def, 1, created, func() float64 { return 7 }, time.Minute},
	}
	for _, c := range cases {
		next, expired := NextRetry(c.p, c.attempts, created, c.now, c.rnd)
		if c.want < 0 {
			if !expired {
				t.Errorf("%s: not expired (next %v)", c.name, next)
			}
			continue
		}
		if expired || next.Sub(c.now) != c.want {
			t.Errorf("%s: next in %v (expired %v), want %v", c.name, next.Sub(c.now), expired, c.want)
		}
	}
}

func TestClassification(t *testing.T) {
	cases := []struct {
		code     int
		enh, cmd string
		text     string
		class    string
	}{
		{451, "4.3.0", "MAIL", "later", ClassTransient},
		{421, "4.4.2", "MAIL", "closing", ClassThrottled},
		{432, "4.3.2", "MAIL", "thread limit", ClassThrottled},
		{451, "4.7.500", "MAIL", "server busy", ClassThrottled},
		{454, "4.7.0", "AUTH", "temporary", ClassThrottled},
		{535, "5.7.3", "AUTH", "unsuccessful", ClassAuth},
		{535, "5.7.8", "AUTH", "bad", ClassAuth},
		{535, "5.7.139", "AUTH", "disabled", ClassConfig},
		{530, "5.7.57", "MAIL", "not authenticated", ClassConfig},
		{550, "5.7.60", "MAIL", "SendAs", ClassPermanent},
		{552, "5.3.4", "DATA", "too big", ClassPermanent},
		{550, "5.1.1", "RCPT", "unknown", ClassPermanent},
	}
	for _, c := range cases {
		err := convErr(c.cmd, &smtp.SMTPError{Code: c.code, EnhancedCode: parseEnh(c.enh), Message: c.text})
		if err.Class != c.class || err.Enhanced != c.enh || err.Command != c.cmd || err.Code != c.code {
			t.Errorf("%d %s: %+v, want class %s", c.code, c.enh, err, c.class)
		}
		if err.Temporary() != (c.class == ClassTransient || c.class == ClassThrottled) {
			t.Errorf("%d %s: Temporary() = %v", c.code, c.enh, err.Temporary())
		}
	}
	if !isSendAsDenied(&SMTPError{Code: 550, Enhanced: "5.7.60"}) ||
		!isSendAsDenied(&SMTPError{Code: 554, Enhanced: "5.2.0", Text: "STOREDRV.Submission.Exception:SendAsDeniedException"}) ||
		isSendAsDenied(&SMTPError{Code: 554, Enhanced: "5.2.0", Text: "other"}) {
		t.Error("isSendAsDenied")
	}
	net := convErr("DATA", errors.New("connection reset"))
	if net.Code != 0 || net.Class != ClassTransient || !net.Temporary() {
		t.Errorf("network error %+v", net)
	}
}

func parseEnh(s string) smtp.EnhancedCode {
	var e smtp.EnhancedCode
	var a, b, c int
	if _, err := fmtSscanf(s, &a, &b, &c); err == nil {
		e = smtp.EnhancedCode{a, b, c}
	}
	return e
}

func fmtSscanf(s string, a, b, c *int) (int, error) { return fmt.Sscanf(s, "%d.%d.%d", a, b, c) }
