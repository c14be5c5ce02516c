// Package delivery owns getting spooled messages upstream: the scheduler that
// claims due messages from the spool with leases, the global and per-account
// worker, connection and rate limits, the transports (SMTP with STARTTLS or
// implicit TLS and XOAUTH2/PLAIN/LOGIN, Microsoft Graph through package
// delivery/graph (graphtransport.go), and a file transport), the sender
// rewrite applied while streaming, the classification of upstream answers
// (DESIGN.md section 5), the retry schedule, dead-lettering and failure
// notices. It logs with the attribute component=delivery; a delivery and a
// dead letter are logged once, by the spool as it commits them (this package
// adds a line only for what the spool cannot know, such as refused
// recipients of a partial delivery).
//
// Configuration: AccountConfig, RetryPolicy, OutagePolicy and Options each
// own their defaults (WithDefaults, which fills zero fields) and their
// validation (Validate, field.Problems keyed by the YAML names), so spoold
// -check approves exactly what New runs. Provider limits (Microsoft's 3
// connections, 30 messages a minute) are auth's presets, put into
// AccountConfig by the daemon; delivery's own defaults are generic.
//
// The scheduler sleeps until the spool's earliest due time, a Notify signal,
// a recovered account or a finished worker; it never polls while idle. Each
// connection worker serves one account: it claims due messages, commits the
// attempt before dialing (in the claim itself, ClaimAccountStart, for
// accounts without a rate limit; StartAttempt just before sending for the
// others), sends over one connection (RSET between messages, at most
// MaxMessagesPerConnection) and keeps an idle
// connection for Options.IdleTimeout in case more mail arrives.
//
// Each attempt ends in a disposition (disposition.go): a value saying
// whether the message is delivered, deferred, dead-lettered, postponed or
// waits on a connection failure, which apply then carries out.
//
// Accounts that cannot send (needs re-authorization, misconfigured tenant,
// token endpoint down, not configured) are held (hold.go): their messages
// are postponed without using attempts, and drained at once when the token
// source reports the account recovered. The account's health status is
// auth's; delivery keeps only the hold. A throttling answer halves the
// account's connections and rate and pauses it (Options.ThrottlePause); both
// step back up after quiet periods (Options.ThrottleRecover).
//
// An account whose upstream cannot be reached (connection refused or timed
// out, TLS handshake failure, 421 at the greeting) several times in a row is
// upstream_down: its messages wait without using attempts, one probe
// connection at a time checks the upstream on a backoff of its own, and the
// first connection that succeeds makes the waiting messages due at once
// (outage.go, issue 23).
//
// An account with a DailyRecipientLimit (the daemon puts auth's provider
// budget there) counts its delivered recipients in a rolling 24 hours kept
// in the spool, and is held, not refused, when the next message would pass
// the limit; an account with a Fallback sends its mail through that account
// while it has been held for FallbackAfter, and the spool records the route
// (budget.go, issue 19).
//
// Header rewrite decision: the header block is parsed bounded (MaxHeaderBytes,
// 256 KiB). A header block that is larger, or that contains a line which is
// neither a field nor a continuation, is refused before dialing and the
// message is dead-lettered with a reason saying so: sending it unchanged could
// leak a From the account may not use, and guessing where the header ends
// could turn body text into headers. A From field whose address cannot be
// parsed (including RFC 2047 names in charsets other than UTF-8, US-ASCII and
// ISO-8859-1) is still rewritten safely: From becomes the bare account mailbox
// and no Reply-To is added. Bare CR inside header lines becomes a space.
//
// Metrics: spoold_delivery_attempts_total{account,result,class} (result:
// delivered, partial, deferred, dead, postponed; class none when the
// attempt had no error), the histogram
// spoold_delivery_duration_seconds{account} (enqueue to delivery), the
// gauge spoold_delivery_inflight, the gauge
// spoold_delivery_upstream_down{account} (1 while upstream_down) and
// spoold_delivery_upstream_probes_total{account,result} (up, down, error),
// spoold_delivery_recipients_24h{account} and
// spoold_delivery_budget_held{account} (accounts with a daily limit), and
// spoold_delivery_fallback_messages_total{account,via}.
package delivery
