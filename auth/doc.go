// Package auth owns upstream accounts' OAuth2 side: provider presets
// (Microsoft global and US Gov, Google, generic: endpoints, scopes, SMTP
// host and sending limits), each account's defaults and validation
// (AccountConfig.WithDefaults and Validate), the authorization flows,
// persisted refreshing token sources, account health and the XOAUTH2 SASL
// client. It stores tokens through a small Store interface that the spool
// satisfies; it imports neither delivery nor ingest.
//
// Flows: authorization code with PKCE (S256) and state, completed by
// CallbackHandler or by pasting the redirected URL; device code (RFC 8628,
// slow_down aware); client credentials with a secret or a certificate (RS256
// client assertion with x5t); Google service account with domain-wide
// delegation (JWT bearer, sub = mailbox).
//
// Every request to a token or device endpoint, and the authorize URL, is
// built here; golang.org/x/oauth2 is not used. Its token sources and
// Exchange would need wrapping for what spoold requires of every token
// request: a context timeout of its own (token_timeout), expiries from the
// injected clock, a single shared refresh with rotation persisted before
// use, a PKCE verifier from the injected randomness, and error answers
// classified (needs_reauth, misconfigured, transient) without quoting a
// response body that may echo a token. It has no certificate client
// assertion and its device polling sleeps in real seconds. Wrapped, it
// would add code rather than remove it.
//
// The sub-package authtest is a fake authorization server for tests.
package auth
