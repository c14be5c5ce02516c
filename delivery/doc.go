// Package delivery owns getting spooled messages upstream: the scheduler that
// claims due messages from the spool with leases, the global and per-account
// worker, connection and rate limits, the transports (SMTP with STARTTLS or
// implicit TLS and XOAUTH2/PLAIN/LOGIN, and a file transport), the sender
// rewrite applied while streaming, the classification of upstream answers
// (DESIGN.md section 5), the retry schedule, dead-lettering and failure
// notices.
//
// Header rewrite decision: the header block is parsed bounded (MaxHeaderBytes,
// 256 KiB). A header block that is larger, or that contains a line which is
// neither a field nor a continuation, is refused before dialing and the
// message is dead-lettered with a reason saying so: sending it unchanged could
// leak a From the account may not use, and guessing where the header ends
// could turn body text into headers. A From field whose address cannot be
// parsed is still rewritten safely: From becomes the bare account mailbox and
// no Reply-To is added.
package delivery
