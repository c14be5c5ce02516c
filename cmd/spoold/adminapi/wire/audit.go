package wire

import (
	"context"
	"net/http"
	"net/url"
	"strconv"
	"time"
)

// The audit and key endpoints (admin group only):
//
//	GET  /v1/audit?since=RFC3339&limit=N   AuditResponse, newest first
//	GET  /v1/keys                          KeysInfo
//	POST /v1/keys/rotate                   KeysRotateResponse

// AuditEntry is one state-changing admin action.
type AuditEntry struct {
	Time   time.Time `json:"time"`
	Via    string    `json:"via"`            // socket or console
	UID    int       `json:"uid"`            // the socket peer's uid; -1 when not a local user
	User   string    `json:"user,omitempty"` // login name or console user
	Action string    `json:"action"`
	Target string    `json:"target,omitempty"` // message ID(s) or account
	Detail string    `json:"detail,omitempty"` // the request's options (reason, state, count...)
	Result string    `json:"result"`           // "ok" or the error
	Code   string    `json:"code,omitempty"`   // the error's code
}

// AuditRequest filters GET /v1/audit.
type AuditRequest struct {
	Since time.Time // zero: from the oldest kept
	Limit int       // 0: the server's default (100); negative: every entry kept
}

// AuditResponse is the audit log, newest first.
type AuditResponse struct {
	Entries []AuditEntry `json:"entries"`
}

// KeyInfo describes one loaded key; never the key itself.
type KeyInfo struct {
	ID      string `json:"id"`
	Source  string `json:"source"`
	Primary bool   `json:"primary"`
}

// KeysInfo is the keys sealing the stored tokens.
type KeysInfo struct {
	Keys []KeyInfo `json:"keys"`
}

// KeysRotateResponse is the result of a key rotation.
type KeysRotateResponse struct {
	OldKeyID string   `json:"old_key_id"`
	NewKeyID string   `json:"new_key_id"`
	KeyFile  string   `json:"key_file"`
	Resealed []string `json:"resealed"` // accounts whose stored token now uses the new key
}

// Audit reads the audit log.
func (c *Client) Audit(ctx context.Context, req AuditRequest) (AuditResponse, error) {
	q := url.Values{}
	if !req.Since.IsZero() {
		q.Set("since", req.Since.UTC().Format(time.RFC3339Nano))
	}
	switch {
	case req.Limit > 0:
		q.Set("limit", strconv.Itoa(req.Limit))
	case req.Limit < 0:
		q.Set("limit", "0") // the server's "all"
	}
	path := "/v1/audit"
	if len(q) > 0 {
		path += "?" + q.Encode()
	}
	var out AuditResponse
	err := c.call(ctx, http.MethodGet, path, nil, &out)
	return out, err
}

// Keys lists the loaded keys.
func (c *Client) Keys(ctx context.Context) (KeysInfo, error) {
	var out KeysInfo
	err := c.call(ctx, http.MethodGet, "/v1/keys", nil, &out)
	return out, err
}

// RotateKeys re-seals every stored token under a new key.
func (c *Client) RotateKeys(ctx context.Context) (KeysRotateResponse, error) {
	var out KeysRotateResponse
	err := c.call(ctx, http.MethodPost, "/v1/keys/rotate", struct{}{}, &out)
	return out, err
}
