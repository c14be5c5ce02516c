package adminapi

import (
	"context"
	"errors"
	"fmt"
	"net/http"

	"github.com/spoold/spoold/spool"
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
	CodeInternal        = "internal"
)

// Sentinels the daemon's Accounts implementation wraps (fmt.Errorf("...: %w",
// adminapi.ErrNeedsReauth)) so the API reports the right code.
var (
	ErrUnknownAccount  = errors.New("unknown account")
	ErrNeedsReauth     = errors.New("account needs re-authorization")
	ErrUnavailable     = errors.New("unavailable")
	ErrInvalidArgument = errors.New("invalid argument")
	ErrNotFound        = errors.New("not found")
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

// httpStatus maps a code to its HTTP status.
func httpStatus(code string) int {
	switch code {
	case CodeNotFound, CodeUnknownAccount:
		return http.StatusNotFound
	case CodeWrongState, CodeLeaseLost, CodeNeedsReauth:
		return http.StatusConflict
	case CodeInvalidArgument:
		return http.StatusBadRequest
	case CodeReadOnly:
		return http.StatusForbidden
	case CodeUnavailable:
		return http.StatusServiceUnavailable
	default:
		return http.StatusInternalServerError
	}
}

// toAPIError classifies err. The message is err's text unless the caller
// already built an *APIError with a better one.
func toAPIError(err error) *APIError {
	var ae *APIError
	if errors.As(err, &ae) {
		return ae
	}
	code := CodeInternal
	switch {
	case errors.Is(err, spool.ErrLeaseLost):
		code = CodeLeaseLost
	case errors.Is(err, spool.ErrWrongState):
		code = CodeWrongState
	case errors.Is(err, spool.ErrNotFound), errors.Is(err, ErrNotFound):
		code = CodeNotFound
	case errors.Is(err, spool.ErrReadOnly):
		code = CodeReadOnly
	case errors.Is(err, spool.ErrInvalid), errors.Is(err, ErrInvalidArgument):
		code = CodeInvalidArgument
	case errors.Is(err, ErrUnknownAccount):
		code = CodeUnknownAccount
	case errors.Is(err, ErrNeedsReauth):
		code = CodeNeedsReauth
	case errors.Is(err, spool.ErrClosed), errors.Is(err, spool.ErrNoSpace), errors.Is(err, ErrUnavailable),
		errors.Is(err, context.DeadlineExceeded), errors.Is(err, context.Canceled):
		code = CodeUnavailable
	}
	return &APIError{Code: code, Message: err.Error()}
}

func apiErrorf(code, format string, args ...any) *APIError {
	return &APIError{Code: code, Message: fmt.Sprintf(format, args...)}
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
