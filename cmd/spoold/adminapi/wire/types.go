package wire

import (
	"time"
)

// AccountInfo is one upstream account's configuration summary and health.
type AccountInfo struct {
	Name      string `json:"name"`
	Transport string `json:"transport"`          // smtp, file, ...
	Provider  string `json:"provider,omitempty"` // microsoft, microsoft-usgov, google, generic, password
	Flow      string `json:"flow,omitempty"`     // authcode, device, client_credentials, service_account, password
	Mailbox   string `json:"mailbox,omitempty"`
	// Status is ok, needs_reauth, misconfigured, refresh_failing or
	// upstream_down (connections to the upstream failed several times in a
	// row; an auth problem is shown instead when there is one).
	Status string `json:"status"`
	// Reason says what broke and how to fix it (empty when ok).
	Reason              string    `json:"reason,omitempty"`
	Identity            string    `json:"identity,omitempty"` // who signed in
	TokenExpiry         time.Time `json:"token_expiry,omitzero"`
	GrantedAt           time.Time `json:"granted_at,omitzero"` // grant age = now - GrantedAt
	LastRefresh         time.Time `json:"last_refresh,omitzero"`
	LastDelivery        time.Time `json:"last_delivery,omitzero"`
	LastError           string    `json:"last_error,omitempty"`
	LastErrorTime       time.Time `json:"last_error_time,omitzero"`
	ClientSecretExpires time.Time `json:"client_secret_expires,omitzero"`
	Warnings            []string  `json:"warnings,omitempty"`
	// UpstreamDownSince is set while the account is upstream_down: its
	// messages wait without using attempts, one probe connection at a time
	// (the next at NextProbe; zero while one runs) checks the upstream, and
	// the first connection that succeeds sends them all.
	UpstreamDownSince time.Time `json:"upstream_down_since,omitzero"`
	NextProbe         time.Time `json:"next_probe,omitzero"`
	// RecipientsToday of DailyRecipientLimit were sent in the last 24 hours
	// (both 0 without a limit); past the limit the account's mail waits
	// and Reason says until when.
	RecipientsToday     int `json:"recipients_today,omitempty"`
	DailyRecipientLimit int `json:"daily_recipient_limit,omitempty"`
	// FallbackVia names the account sending this one's mail while it is held.
	FallbackVia string `json:"fallback_via,omitempty"`
}

// Login modes accepted by StartLogin.
const (
	LoginBrowser = "browser" // authorization code through the daemon's /oauth2/callback
	LoginPaste   = "paste"   // authorization code; the admin pastes the redirected URL
	LoginDevice  = "device"  // device code (Microsoft)
)

// LoginStart is the first step of an interactive login.
type LoginStart struct {
	LoginID string `json:"login_id"`
	Account string `json:"account"`
	Mode    string `json:"mode"`
	// URL to open in a browser (browser and paste modes).
	URL string `json:"url,omitempty"`
	// UserCode and VerificationURI for the device flow.
	UserCode        string    `json:"user_code,omitempty"`
	VerificationURI string    `json:"verification_uri,omitempty"`
	ExpiresAt       time.Time `json:"expires_at,omitzero"`
	// Message is an optional provider instruction to show as is.
	Message string `json:"message,omitempty"`
}

// TestSendResult is the upstream's answer to a test message.
type TestSendResult struct {
	Account    string `json:"account"`
	To         string `json:"to"`
	MessageID  string `json:"message_id,omitempty"`
	Code       int    `json:"code"`
	Enhanced   string `json:"enhanced,omitempty"`
	Text       string `json:"text"`
	DurationMS int64  `json:"duration_ms"`
}

// ListenerInfo describes one of the daemon's listeners.
type ListenerInfo struct {
	Name  string `json:"name"`
	Kind  string `json:"kind"` // smtp, http, admin
	Addr  string `json:"addr"`
	TLS   string `json:"tls,omitempty"` // none, starttls, implicit
	Error string `json:"error,omitempty"`
}

// FolderInfo describes one watched scan folder.
type FolderInfo struct {
	Name      string    `json:"name"`
	Path      string    `json:"path"`
	Mode      string    `json:"mode"` // watch, poll
	Pending   int       `json:"pending"`
	LastScan  time.Time `json:"last_scan,omitzero"`
	LastError string    `json:"last_error,omitempty"`
}

// StatusResponse is GET /v1/status.
type StatusResponse struct {
	Version       string    `json:"version,omitempty"`
	Started       time.Time `json:"started,omitzero"`
	UptimeSeconds int64     `json:"uptime_seconds,omitempty"`
	// Now is the daemon's clock; relative times are computed against it.
	Now time.Time `json:"now"`
	// Offline is true when spoolctl reads a spool directly (--spool).
	Offline  bool `json:"offline,omitempty"`
	ReadOnly bool `json:"read_only,omitempty"`
	// DeliveryPaused is true while the daemon claims no messages
	// (delivery.paused or spoolctl pause); ingest still accepts.
	DeliveryPaused bool `json:"delivery_paused,omitempty"`
	// Queue counts messages per state; every state is present.
	Queue         map[State]int  `json:"queue"`
	Accounts      []AccountInfo  `json:"accounts,omitempty"`
	AccountsError string         `json:"accounts_error,omitempty"`
	Listeners     []ListenerInfo `json:"listeners,omitempty"`
	ScanFolders   []FolderInfo   `json:"scan_folders,omitempty"`
	// LastReload is the outcome of the last configuration reload (SIGHUP
	// or spoolctl reload); nil when there was none since the start.
	LastReload *ReloadInfo `json:"last_reload,omitempty"`
	// Nodes sharing the spool (PostgreSQL backend only; nodes.go).
	Nodes      []NodeInfo `json:"nodes,omitempty"`
	NodesError string     `json:"nodes_error,omitempty"`
}

// ReloadInfo is the outcome of a configuration reload: the answer of
// POST /v1/reload and StatusResponse.LastReload.
type ReloadInfo struct {
	Time   time.Time `json:"time"`
	Config string    `json:"config,omitempty"` // the file read
	// OK is true when the new configuration was applied. A failed reload
	// keeps the running configuration unchanged.
	OK bool `json:"ok"`
	// Problems say why it failed, one per line ("file:line: key: why" for
	// configuration problems).
	Problems []string `json:"problems,omitempty"`
	// Warnings are parts an applied reload could not change (settings that
	// need a restart, a scan folder that failed to reload).
	Warnings []string `json:"warnings,omitempty"`
}

// DeliveryState is the answer of the pause and resume endpoints.
type DeliveryState struct {
	Paused bool `json:"paused"`
}

// ErrorInfo is a stored delivery error or reason.
type ErrorInfo struct {
	Time     time.Time `json:"time,omitzero"`
	Class    string    `json:"class,omitempty"`
	Code     int       `json:"code,omitempty"`
	Enhanced string    `json:"enhanced,omitempty"`
	Command  string    `json:"command,omitempty"`
	Text     string    `json:"text"`
}

// RecipientInfo is one envelope recipient and its delivery status.
type RecipientInfo struct {
	Addr        string     `json:"addr"`
	State       string     `json:"state"` // pending, delivered, failed
	Error       *ErrorInfo `json:"error,omitempty"`
	DeliveredAt time.Time  `json:"delivered_at,omitzero"`
}

// SourceInfo says where a message came from.
type SourceInfo struct {
	Kind      string `json:"kind"` // smtp, scan, notice, admin
	Listener  string `json:"listener,omitempty"`
	PeerIP    string `json:"peer_ip,omitempty"`
	AuthUser  string `json:"auth_user,omitempty"`
	HELO      string `json:"helo,omitempty"`
	Folder    string `json:"folder,omitempty"`
	Path      string `json:"path,omitempty"`
	SHA256    string `json:"sha256,omitempty"`
	NoticeFor string `json:"notice_for,omitempty"`
}

// AttemptInfo is one delivery attempt.
type AttemptInfo struct {
	Start  time.Time  `json:"start"`
	End    time.Time  `json:"end,omitzero"`
	Owner  string     `json:"owner,omitempty"`
	Result string     `json:"result,omitempty"`
	Error  *ErrorInfo `json:"error,omitempty"`
}

// MessageView is the admin view of one spooled message.
type MessageView struct {
	ID          string          `json:"id"`
	State       State           `json:"state"`
	From        string          `json:"from"`
	Recipients  []RecipientInfo `json:"recipients"`
	Account     string          `json:"account"`
	Source      SourceInfo      `json:"source"`
	Size        int64           `json:"size"`
	Created     time.Time       `json:"created"`
	Updated     time.Time       `json:"updated"`
	AgeSeconds  int64           `json:"age_seconds"`
	Attempts    int             `json:"attempts"`
	NextAttempt time.Time       `json:"next_attempt,omitzero"`
	LeaseOwner  string          `json:"lease_owner,omitempty"`
	LeaseUntil  time.Time       `json:"lease_until,omitzero"`
	LastError   *ErrorInfo      `json:"last_error,omitempty"`
	Reason      string          `json:"reason,omitempty"`
	// Subject is the message's decoded Subject header ("" when it has none
	// or its body is no longer stored).
	Subject     string        `json:"subject,omitempty"`
	History     []AttemptInfo `json:"history,omitempty"`
	DeliveredAt time.Time     `json:"delivered_at,omitzero"`
	// DeliveredVia names the account that delivered the message when it was
	// not its own Account (a fallback route); shown by spoolctl show.
	DeliveredVia string `json:"delivered_via,omitempty"`
}

// ListRequest selects messages for GET /v1/messages.
type ListRequest struct {
	State   State
	Account string
	// OlderThan keeps messages created more than this long ago (0 = all).
	OlderThan time.Duration
	Cursor    string
	Limit     int // 0 = server default; capped by the server
}

// ListResponse is one page of messages.
type ListResponse struct {
	Messages []MessageView `json:"messages"`
	// Next is the cursor of the next page; "" when this is the last.
	Next string    `json:"next,omitempty"`
	Now  time.Time `json:"now"`
}

// HoldRequest is the body of POST /v1/messages/{id}/hold.
type HoldRequest struct {
	Reason string `json:"reason,omitempty"`
}

// FlushRequest is the body of POST /v1/flush (all due-later messages).
type FlushRequest struct {
	Account string `json:"account,omitempty"` // "" = every account
}

// RequeueRequest is the body of POST /v1/requeue: every message in State
// (dead or held), optionally of one account, goes back to queued.
type RequeueRequest struct {
	State   State  `json:"state"`
	Account string `json:"account,omitempty"`
}

// PurgeRequest is the body of POST /v1/purge.
type PurgeRequest struct {
	State State `json:"state"` // dead or delivered
	// OlderThanSeconds purges messages last updated at least this long ago.
	OlderThanSeconds int64 `json:"older_than_seconds"`
	// DryRun counts the messages that would be purged and deletes nothing
	// (spoolctl purge asks with the count).
	DryRun bool `json:"dry_run,omitempty"`
}

// CountResponse answers bulk operations.
type CountResponse struct {
	Count int `json:"count"`
	// Skipped counts messages that changed state while the operation ran.
	Skipped int `json:"skipped,omitempty"`
}

// AccountsResponse is GET /v1/accounts.
type AccountsResponse struct {
	Accounts []AccountInfo `json:"accounts"`
	Now      time.Time     `json:"now"`
}

// LoginRequest is the body of POST /v1/accounts/{name}/login.
type LoginRequest struct {
	Mode string `json:"mode"` // browser, paste, device
}

// PasteRequest is the body of POST /v1/logins/{id}/paste. The URL carries a
// one-time authorization code; it is never logged or echoed.
type PasteRequest struct {
	RedirectedURL string `json:"redirected_url"`
}

// TestSendRequest is the body of POST /v1/accounts/{name}/test-send.
type TestSendRequest struct {
	To string `json:"to"`
}

// ErrorBody is the JSON error envelope: {"error":{"code":...,"message":...}}.
type ErrorBody struct {
	Error *APIError `json:"error"`
}
