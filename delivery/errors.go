package delivery

import (
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/spoold/spoold/spool"
)

// Error classes stored in spool.ErrorRecord.Class and used as the metric label.
const (
	ClassTransient = "transient" // retried with the schedule
	ClassThrottled = "throttled" // transient; the account is slowed down
	ClassPermanent = "permanent" // dead-lettered
	ClassAuth      = "auth"      // token rejected; refresh once, then needs_reauth
	ClassConfig    = "config"    // tenant/account misconfiguration; messages wait
	ClassUnknown   = "unknown"   // outcome unknown (timeout after the final dot); retried
	ClassInternal  = "internal"  // a bug (recovered panic); retried
)

// SMTPError is an answer from the upstream server, or a local failure given an
// SMTP-like shape. Code is 0 for network errors.
type SMTPError struct {
	Code     int    // reply code, e.g. 550; 0 when there was no reply
	Enhanced string // enhanced status code, e.g. "5.7.60"; "" if none
	Command  string // command that got the answer: CONNECT, TLS, EHLO, AUTH, MAIL, RCPT, DATA, DOT, RSET
	Text     string // server text or local description; never contains secrets
	Class    string // one of the Class* constants
	Err      error  // underlying network error, if any
}

func (e *SMTPError) Error() string {
	// No package prefix: this text is what people read as a message's last
	// error, in dead-letter reasons and in failure notices.
	var b strings.Builder
	if e.Command != "" {
		b.WriteString(e.Command)
		b.WriteString(": ")
	}
	if e.Code != 0 {
		fmt.Fprintf(&b, "%d ", e.Code)
	}
	if e.Enhanced != "" {
		b.WriteString(e.Enhanced)
		b.WriteString(" ")
	}
	b.WriteString(e.Text)
	return strings.TrimSpace(b.String())
}

func (e *SMTPError) Unwrap() error { return e.Err }

// Temporary reports whether retrying later may succeed.
func (e *SMTPError) Temporary() bool {
	switch e.Class {
	case ClassTransient, ClassThrottled, ClassUnknown, ClassInternal:
		return true
	}
	return false
}

// Record converts the error into its stored form.
func (e *SMTPError) Record(now time.Time) *spool.ErrorRecord {
	return &spool.ErrorRecord{Time: now, Class: e.Class, Code: e.Code, Enhanced: e.Enhanced, Command: e.Command, Text: e.Text}
}

// Reasons shown to admins for well-known permanent failures.
const (
	ReasonSendAsDenied  = "From not permitted: use sender rewrite"
	fixSMTPAuthDisabled = "enable authenticated SMTP for the mailbox / tenant: Exchange admin center > mailbox > " +
		"Manage email apps > Authenticated SMTP, and tenant-wide Set-TransportConfig -SmtpClientAuthenticationDisabled $false"
)

// classify sets e.Class from the reply according to DESIGN.md section 5.
func classify(e *SMTPError) *SMTPError {
	if e.Class != "" {
		return e
	}
	switch {
	case e.Code == 0:
		e.Class = ClassTransient
	case isThrottle(e.Code, e.Enhanced):
		e.Class = ClassThrottled
	case e.Code == 535 && (e.Enhanced == "5.7.139"), e.Code == 530 && e.Enhanced == "5.7.57":
		e.Class = ClassConfig
	case e.Code == 535 || (e.Command == "AUTH" && e.Code == 530):
		e.Class = ClassAuth
	case e.Code >= 400 && e.Code < 500:
		e.Class = ClassTransient
	case e.Code >= 500:
		e.Class = ClassPermanent
	default:
		e.Class = ClassTransient
	}
	return e
}

// isThrottle reports the answers that mean "this account sends too much":
// Exchange's thread limit (432 4.3.2), 451 4.7.500 (server busy / rate),
// 454 4.7.0 (temporary auth throttling) and 421 (service closing channel).
func isThrottle(code int, enh string) bool {
	switch {
	case code == 421:
		return true
	case code == 432 && enh == "4.3.2":
		return true
	case code == 451 && enh == "4.7.500":
		return true
	case code == 454 && enh == "4.7.0":
		return true
	}
	return false
}

// isSendAsDenied recognises Exchange refusing the From address.
func isSendAsDenied(e *SMTPError) bool {
	return (e.Code == 550 && e.Enhanced == "5.7.60") ||
		(e.Code == 554 && e.Enhanced == "5.2.0" && strings.Contains(strings.ToLower(e.Text), "sendasdenied"))
}

// isAuthRejected is the "token believed valid was refused" answer.
func isAuthRejected(e *SMTPError) bool {
	return e.Code == 535 && (e.Enhanced == "5.7.3" || e.Enhanced == "5.7.8" || e.Enhanced == "")
}

// asSMTPError extracts an *SMTPError from err, or nil.
func asSMTPError(err error) *SMTPError {
	var se *SMTPError
	if errors.As(err, &se) {
		return se
	}
	return nil
}
