package main

import "os"

// systemSocket is the admin socket of an installed daemon: the packaged
// /etc/spoold/spoold.yaml sets admin.socket to it, and the packaged unit's
// RuntimeDirectory=spoold creates /run/spoold for it.
const systemSocket = "/run/spoold/spoold.sock"

// socketHelp describes where spoolctl looks without --socket; the help text,
// and so the man page, must not depend on which sockets exist where they
// are generated.
const socketHelp = "admin socket of the running daemon (default: $SPOOLD_SOCKET, else the first that exists of " +
	defaultSocket + " and " + systemSocket + ")"

// findSocket picks the admin socket when --socket is not given: the
// environment first; then the quick start's ./data/spoold.sock, so spoolctl
// next to `go run ./cmd/spoold` keeps working; then the installed daemon's
// socket, so an admin reaches a packaged spoold from any directory without
// flags. When neither exists the quick start path is kept, as before, and
// the "cannot reach spoold" error names it.
func findSocket(getenv func(string) string, exists func(string) bool) string {
	if v := getenv("SPOOLD_SOCKET"); v != "" {
		return v
	}
	for _, p := range []string{defaultSocket, systemSocket} {
		if exists(p) {
			return p
		}
	}
	return defaultSocket
}

// pathExists is findSocket's exists on the real file system. Lstat, not
// Stat: a socket file left by a daemon that died still marks where it ran.
func pathExists(p string) bool {
	_, err := os.Lstat(p)
	return err == nil
}
