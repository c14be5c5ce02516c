package auth

import "errors"

// Errors returned by token operations; match with errors.Is. Delivery uses
// them to decide whether messages wait (needs re-authorization or
// misconfiguration: no attempts used) or retry (transient).
var (
	// ErrNeedsReauth: the grant is gone (invalid_grant, revoked, expired); an
	// admin must run `spoolctl auth login`. No refresh is attempted until then.
	ErrNeedsReauth = errors.New("auth: account needs re-authorization")
	// ErrMisconfigured: the account or tenant is misconfigured (for example
	// SMTP AUTH disabled for the tenant); the status says how to fix it.
	ErrMisconfigured = errors.New("auth: account is misconfigured")
	// ErrTransient: the token endpoint is unreachable, slow, rate-limiting or
	// failing (network error, 429, 5xx); retried with backoff.
	ErrTransient = errors.New("auth: token endpoint temporarily unavailable")
	// ErrUnknownAccount: no account by that name is configured.
	ErrUnknownAccount = errors.New("auth: unknown account")
	// ErrLoginExpired: the login ID is unknown or its time ran out; the
	// admin starts the login again.
	ErrLoginExpired = errors.New("login unknown or expired")
)
