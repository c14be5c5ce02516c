// Package auth owns upstream accounts' OAuth2 side: provider presets
// (Microsoft global and US Gov, Google, generic), the authorization flows,
// persisted refreshing token sources, account health and the XOAUTH2 SASL
// client. It stores tokens through a small Store interface that the spool
// satisfies; it imports neither delivery nor ingest.
//
// Flows: authorization code with PKCE (S256) and state, completed by
// CallbackHandler or by pasting the redirected URL; device code (RFC 8628,
// slow_down aware); client credentials with a secret or a certificate (RS256
// client assertion with x5t); Google service account with domain-wide
// delegation (JWT bearer, sub = mailbox). Token requests are made by this
// package directly rather than through x/oauth2's token sources so that
// every request has a context timeout, expiries use the injected clock and
// error answers are classified (needs_reauth, misconfigured, transient)
// without ever quoting a response body. x/oauth2 builds the authorize URL.
//
// The sub-package authtest is a fake authorization server for tests.
package auth
