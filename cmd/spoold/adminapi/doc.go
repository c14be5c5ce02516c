// Package adminapi is the server side of spoold's admin API: the Service
// that implements the endpoints over small consumer-declared interfaces (the
// spool, the daemon's accounts and info), Listen for the daemon's unix
// socket, and InProcess for serving it in memory (spoolctl --spool, tests).
//
// The wire types, error codes and the Client live in package wire, which
// links neither the spool nor bbolt; this package maps spool types to them
// (View, the message states, the spool's errors to stable codes). Endpoints
// are listed in package wire.
//
// Wiring in the daemon:
//
//	ln, err := adminapi.Listen(filepath.Join(dataDir, "spoold.sock"), 0o660, group)
//	svc := adminapi.NewService(sp, accounts, info, adminapi.Options{Logger: log})
//	srv, err := adminapi.NewSocketServer(svc.Handler(), access, log)
//	go srv.Serve(ln)
//
// NewSocketServer reads each connection's peer credentials (SO_PEERCRED),
// refuses what the peer's groups do not allow (Access) and puts the Actor in
// the request's context; the service's write wrapper records every state
// change with that actor in the spool's audit log (audit.go), so the socket
// and the web console, which calls the handler in-process with its own
// Actor, are recorded by the same code.
//
// Leave the server's WriteTimeout at 0: GET /v1/logins/{id}/wait long-polls
// for an interactive sign-in and /v1/messages/{id}/body streams up to the
// largest message.
package adminapi
