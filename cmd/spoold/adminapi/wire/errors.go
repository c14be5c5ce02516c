package wire

import (
	"errors"
	"fmt"
	"syscall"
)

// Stable error codes of the API. Scripts match on them; never rename.
const (
	CodeNotFound        = "not_found"
	CodeWrongState      = "wrong_state"
	CodeLeaseLost       = "lease_lost"
	CodeInvalidArgument = "invalid_argument"
	CodeUnavailable     = "unavailable"
	CodeNeedsReauth     = "needs_reauth"
	CodeUnknownAccount  = "unknown_account"
	CodeReadOnly        = "read_only"
	// CodePermissionDenied: the socket's peer is not in the group the
	// request needs; the message names it.
	CodePermissionDenied = "permission_denied"
	CodeInternal         = "internal"
)

// APIError is an error answered by the API: a stable Code and a human Message.
type APIError struct {
	Code    string `json:"code"`
	Message string `json:"message"`
	// Status is the HTTP status it came with (client side only).
	Status int `json:"-"`
}

func (e *APIError) Error() string { return e.Message }

// Is lets errors.Is(err, &APIError{Code: CodeNotFound}) match by code.
func (e *APIError) Is(target error) bool {
	t, ok := target.(*APIError)
	return ok && t.Code == e.Code && t.Message == ""
}

// HasCode reports whether err is an *APIError with code.
func HasCode(err error, code string) bool {
	var ae *APIError
	return errors.As(err, &ae) && ae.Code == code
}

// DialError is returned by the Client when the socket cannot be reached.
type DialError struct {
	Socket string
	Err    error
}

func (e *DialError) Error() string {
	if isPermission(e.Err) {
		return fmt.Sprintf("permission denied on %s: run as root or as a member of the socket's group", e.Socket)
	}
	return fmt.Sprintf("cannot reach spoold at %s: is it running?", e.Socket)
}

func (e *DialError) Unwrap() error { return e.Err }

func isPermission(err error) bool {
	return errors.Is(err, syscall.EACCES) || errors.Is(err, syscall.EPERM)
}
