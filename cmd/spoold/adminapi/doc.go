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
//	srv := &http.Server{Handler: svc.Handler(), ReadHeaderTimeout: 10 * time.Second}
//	go srv.Serve(ln)
//
// Leave the server's WriteTimeout at 0: GET /v1/logins/{id}/wait long-polls
// for an interactive sign-in and /v1/messages/{id}/body streams up to the
// largest message.
package adminapi
