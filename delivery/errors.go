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
	ClassBlocked   = "blocked"   // the provider blocks the account (quota, spam block); held, messages wait
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
	case ClassTransient, ClassThrottled, ClassUnknown, ClassInternal, ClassBlocked:
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
	case blockedReply(e) != nil:
		e.Class = ClassBlocked
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

// blocked is what a "the account is blocked" answer means: why, the fix,
// and how long the account waits before it tries again.
type blocked struct {
	why, fix string
	quota    bool // a rolling quota: the wait is quotaHold, not the engine's HoldInterval
}

// quotaHold is how long an account waits after a daily-quota refusal: the
// providers' windows roll, so capacity comes back piecemeal.
const quotaHold = time.Hour

// blockedReply recognises the answers that mean "this account may not send
// now", not "this message is bad": they hold the account and leave its
// messages queued instead of dead-lettering them. nil for any other answer.
func blockedReply(e *SMTPError) *blocked {
	if b := graphBlocked(e); b != nil {
		return b
	}
	text := strings.ToLower(e.Text)
	switch {
	// Exchange Online's sending limits: "554 5.2.0 STOREDRV.Submission.
	// Exception:SubmissionQuotaExceededException" (recipient rate limit,
	// 10,000 a day: learn.microsoft.com/en-us/office365/servicedescriptions/
	// exchange-online-service-description/exchange-online-limits#sending-limits-1).
	case e.Code == 554 && e.Enhanced == "5.2.0" && strings.Contains(text, "submissionquotaexceeded"):
		return &blocked{why: "the mailbox reached Exchange Online's sending limit (SubmissionQuotaExceeded)",
			fix: "mail waits until the rolling 24-hour window frees; spread the sending or send part of it through another account", quota: true}
	// "554 5.2.2 ... QuotaExceededException" on submission: the sending
	// mailbox is full (Exchange saves every sent message in Sent Items).
	// At RCPT a 5.2.2 is the recipient's full mailbox, a per-recipient answer.
	case e.Enhanced == "5.2.2" && e.Code == 554 && e.Command != "RCPT":
		return &blocked{why: "the sending mailbox is full (Exchange keeps a copy of each message in Sent Items)",
			fix: "empty the mailbox's Sent Items or raise its quota"}
	// "550 5.7.30 Basic authentication is not supported for Client Submission."
	case e.Enhanced == "5.7.30":
		return &blocked{why: "the tenant refuses basic authentication for SMTP submission",
			fix: "use OAuth for the account (a provider preset, auth xoauth2)"}
	// learn.microsoft.com/en-us/exchange/mail-flow-best-practices/
	// non-delivery-reports-in-exchange-online/fix-error-code-5-7-700-through-5-7-750:
	// "550 5.7.705 Access denied, tenant has exceeded threshold",
	// "550 5.7.708 Access denied, traffic not accepted from this IP",
	// "550 5.7.750 Service unavailable. Client blocked from sending from
	// unregistered domains".
	case e.Enhanced == "5.7.705":
		return &blocked{why: "Exchange Online blocked the tenant's outgoing mail (5.7.705: tenant has exceeded threshold)",
			fix: "an admin secures the tenant and asks Microsoft Support to lift the block"}
	case e.Enhanced == "5.7.708":
		return &blocked{why: "Exchange Online refuses mail from this IP address (5.7.708)",
			fix: "an admin requests delisting at sender.office.com or relays through another route"}
	case e.Enhanced == "5.7.750":
		return &blocked{why: "Exchange Online blocks sending from an unregistered domain (5.7.750)",
			fix: "add and verify the sender's domain as an accepted domain in Microsoft 365"}
	// "550 5.1.8 Access denied, bad outbound sender": the mailbox is on
	// Microsoft's Restricted entities list as a suspected spam source.
	case e.Code == 550 && e.Enhanced == "5.1.8" && e.Command != "RCPT":
		return &blocked{why: "Microsoft restricted the mailbox as a suspected spam source (5.1.8 bad outbound sender)",
			fix: "an admin secures the mailbox and releases it under Defender > Review > Restricted entities"}
	// Gmail: "550 5.4.5 Daily user sending limit exceeded" (and "...quota
	// exceeded"; support.google.com/a/answer/166852): a rolling 24 hours.
	case e.Enhanced == "5.4.5" && e.Code >= 500:
		return &blocked{why: "the Google account reached its daily sending limit (5.4.5)",
			fix: "mail waits until the rolling 24-hour window frees; spread the sending or send part of it through another account", quota: true}
	}
	return nil
}
