// Package wire is spoold's admin API as its clients see it: the request and
// response types of HTTP+JSON over the daemon's unix socket (versioned under
// /v1/), the stable error codes, the message State type, and the Client that
// spoolctl uses.
//
// It imports neither the spool nor bbolt, nor anything that does
// (TestNoSpoolDeps): a client of the daemon does not link its storage. The
// server side, package adminapi, maps spool types to these; State is the
// API's own type, with the same names as the spool's states.
//
// Endpoints (all JSON unless noted):
//
//	GET    /v1/status                       StatusResponse
//	GET    /v1/messages?state=&account=&older_than=&cursor=&limit=   ListResponse
//	GET    /v1/messages/{id}                MessageView ({id}: exact, any case, or a unique prefix)
//	GET    /v1/messages/{id}/body           message/rfc822 stream
//	POST   /v1/messages/{id}/hold           HoldRequest -> MessageView
//	POST   /v1/messages/{id}/release|requeue|flush           -> MessageView
//	DELETE /v1/messages/{id}                CountResponse
//	POST   /v1/flush                        FlushRequest -> CountResponse
//	POST   /v1/requeue                      RequeueRequest -> CountResponse
//	POST   /v1/purge                        PurgeRequest -> CountResponse (dry_run: count only)
//	POST   /v1/reload                       ReloadInfo (re-read the config file)
//	POST   /v1/delivery/pause|resume                         -> DeliveryState
//	GET    /v1/accounts                     AccountsResponse
//	GET    /v1/accounts/{name}              AccountInfo
//	POST   /v1/accounts/{name}/login        LoginRequest -> LoginStart
//	POST   /v1/accounts/{name}/logout       {}
//	POST   /v1/accounts/{name}/test-send    TestSendRequest -> TestSendResult
//	POST   /v1/logins/{id}/paste            PasteRequest -> AccountInfo
//	GET    /v1/logins/{id}/wait             AccountInfo (long poll)
//	GET    /v1/alerts                       AlertsResponse
//	POST   /v1/alerts/test                  AlertTestResponse
//	GET    /v1/search, /v1/waiting, /v1/scan-files, /v1/config; POST /v1/scan-files/retry
//	                                        the web console's reads (see console.go)
//	GET    /v1/audit?since=&limit=          AuditResponse (newest first)
//	GET    /v1/keys                         KeysInfo
//	POST   /v1/keys/rotate                  KeysRotateResponse
//
// On the socket the peer's user decides (SO_PEERCRED): admin.read_group may
// use the status, message list and view, accounts and alerts GETs; every
// other endpoint needs admin.admin_group (code permission_denied).
//
// Errors are ErrorBody, {"error":{"code":...,"message":...}}, with a stable
// code and an HTTP status (see the Code* constants); the Client returns them
// as *APIError, and *DialError when the socket cannot be reached.
package wire
