package auth

import (
	"errors"
	"fmt"
)

// Errors returned by token operations; match with errors.Is. Delivery uses
// them to decide whether messages wait (needs re-authorization or
// misconfiguration: no attempts used) or retry (transient). Their texts are
// not repeated in the errors that wrap them: those read as one sentence that
// names the account once, says what happened and how to fix it.
var (
	// ErrNeedsReauth: the grant is gone (invalid_grant, revoked, expired); an
	// admin must run `spoolctl auth login`. No refresh is attempted until then.
	ErrNeedsReauth = errors.New("account needs re-authorization")
	// ErrMisconfigured: the account or tenant is misconfigured (for example
	// SMTP AUTH disabled for the tenant); the status says how to fix it.
	ErrMisconfigured = errors.New("account is misconfigured")
	// ErrTransient: the token endpoint is unreachable, slow, rate-limiting or
	// failing (network error, 429, 5xx); retried with backoff.
	ErrTransient = errors.New("token endpoint temporarily unavailable")
	// ErrUnknownAccount: no account by that name is configured.
	ErrUnknownAccount = errors.New("unknown account")
	// ErrLoginExpired: the login ID is unknown or its time ran out; the
	// admin starts the login again.
	ErrLoginExpired = errors.New("login unknown or expired")
	// ErrIdentityMismatch: the user signed in as someone other than the
	// account's expected sign-in identity (sign_in_as, else the mailbox).
	// The grant is not stored.
	ErrIdentityMismatch = errors.New("signed-in identity does not match the account")
	// ErrLoginUnsupported: the account cannot sign in that way (a device
	// login for Google, a browser login without a redirect URL); the
	// message names the ways it can.
	ErrLoginUnsupported = errors.New("login mode not supported for the account")
)

// accountError is an error about one account, worded as one sentence: the
// account named once, what happened, the fix. errors.Is and errors.As see
// its kind (one of the errors above, or nil) and its cause, whose text msg
// already includes where it helps.
type accountError struct {
	msg   string
	kind  error
	cause error
}

func (e *accountError) Error() string { return e.msg }

func (e *accountError) Unwrap() []error {
	var errs []error
	for _, err := range []error{e.kind, e.cause} {
		if err != nil {
			errs = append(errs, err)
		}
	}
	return errs
}

// acctErr formats an accountError.
func acctErr(kind, cause error, format string, args ...any) error {
	return &accountError{msg: fmt.Sprintf(format, args...), kind: kind, cause: cause}
}
