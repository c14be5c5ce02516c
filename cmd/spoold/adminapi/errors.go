package adminapi

import (
	"context"
	"errors"
	"fmt"
	"net/http"

	"github.com/spoold/spoold/cmd/spoold/adminapi/wire"
	"github.com/spoold/spoold/spool"
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

// httpStatus maps a code to its HTTP status.
func httpStatus(code string) int {
	switch code {
	case wire.CodeNotFound, wire.CodeUnknownAccount:
		return http.StatusNotFound
	case wire.CodeWrongState, wire.CodeLeaseLost, wire.CodeNeedsReauth:
		return http.StatusConflict
	case wire.CodeInvalidArgument:
		return http.StatusBadRequest
	case wire.CodeReadOnly, wire.CodePermissionDenied:
		return http.StatusForbidden
	case wire.CodeUnavailable:
		return http.StatusServiceUnavailable
	default:
		return http.StatusInternalServerError
	}
}

// toAPIError classifies err. The message is err's text unless the caller
// already built an *wire.APIError with a better one.
func toAPIError(err error) *wire.APIError {
	var ae *wire.APIError
	if errors.As(err, &ae) {
		return ae
	}
	code := wire.CodeInternal
	switch {
	case errors.Is(err, spool.ErrLeaseLost):
		code = wire.CodeLeaseLost
	case errors.Is(err, spool.ErrWrongState):
		code = wire.CodeWrongState
	case errors.Is(err, spool.ErrNotFound), errors.Is(err, ErrNotFound):
		code = wire.CodeNotFound
	case errors.Is(err, spool.ErrReadOnly):
		code = wire.CodeReadOnly
	case errors.Is(err, spool.ErrInvalid), errors.Is(err, ErrInvalidArgument):
		code = wire.CodeInvalidArgument
	case errors.Is(err, ErrUnknownAccount):
		code = wire.CodeUnknownAccount
	case errors.Is(err, ErrNeedsReauth):
		code = wire.CodeNeedsReauth
	case errors.Is(err, spool.ErrClosed), errors.Is(err, spool.ErrNoSpace), errors.Is(err, ErrUnavailable),
		errors.Is(err, context.DeadlineExceeded), errors.Is(err, context.Canceled):
		code = wire.CodeUnavailable
	}
	return &wire.APIError{Code: code, Message: err.Error()}
}

func apiErrorf(code, format string, args ...any) *wire.APIError {
	return &wire.APIError{Code: code, Message: fmt.Sprintf(format, args...)}
}
