// Package console is spoold's web console: server-rendered pages on the
// daemon's HTTP listener (overview, queue, message, accounts, scan folders,
// settings) over the same admin service the unix socket serves. Every read
// and action goes through a wire.Client whose transport calls the
// service's handler in process, with the console user as the request's
// adminapi.Actor, so the page and spoolctl run the same code and are
// accountable in the same way.
//
// It owns the console's security: a login (bcrypt hashes from the config,
// throttled per client address and per user) whenever the listener is not
// loopback or users are configured, session cookies (HttpOnly,
// SameSite=Strict, Secure under TLS), a CSRF token on every POST, and a
// strict Content-Security-Policy (no inline script or style; the one script
// refreshes the live parts of pages). It also owns the HTTP listener's
// web-facing options (TLS, console users, metrics token): their defaults
// and checks are in Options.
//
// Templates and assets are embedded; there is no build step.
package console
