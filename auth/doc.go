// Package auth owns upstream accounts' OAuth2 side: provider presets
// (Microsoft global and US Gov, Google, generic), the authorization flows,
// persisted refreshing token sources, account health and the XOAUTH2 SASL
// client. It stores tokens through a small Store interface that the spool
// satisfies; it imports neither delivery nor ingest.
package auth
