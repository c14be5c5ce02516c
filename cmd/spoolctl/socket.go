package main

import (
	"errors"
	"fmt"
	"os"
	"strings"
	"syscall"

	"github.com/spoold/spoold/cmd/spoold/adminapi/wire"
)

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
//
// tried lists the paths looked at, for the "cannot reach" error.
func findSocket(getenv func(string) string, exists func(string) bool) (socket string, tried []string) {
	if v := getenv("SPOOLD_SOCKET"); v != "" {
		return v, []string{v + " (SPOOLD_SOCKET)"}
	}
	for _, p := range []string{defaultSocket, systemSocket} {
		if exists(p) {
			return p, []string{p}
		}
	}
	return defaultSocket, []string{defaultSocket, systemSocket}
}

// dialHelp turns a failed dial into what to do about it: which paths were
// tried and how to point spoolctl at the daemon's socket.
func (a *app) dialHelp(de *wire.DialError) error {
	tried := a.tried
	if len(tried) == 0 {
		tried = []string{de.Socket + " (--socket)"}
	}
	if isPermission(de.Err) {
		return fmt.Errorf("permission denied on %s: run spoolctl as root or as a member of spoold's admin group "+
			"(admin.group in its config; log in again after being added), or point it at another socket with "+
			"--socket PATH or SPOOLD_SOCKET=PATH", de.Socket)
	}
	where := "no spoold answers at " + tried[0]
	if len(tried) > 1 {
		where = "no spoold socket at " + strings.Join(tried, " or ") + " (looked in that order)"
	}
	return fmt.Errorf("cannot reach spoold: %s. Is it running? If it is, point spoolctl at its socket "+
		"(admin.socket in its config) with --socket PATH or SPOOLD_SOCKET=PATH", where)
}

func isPermission(err error) bool {
	return errors.Is(err, syscall.EACCES) || errors.Is(err, syscall.EPERM)
}

// pathExists is findSocket's exists on the real file system. Lstat, not
// Stat: a socket file left by a daemon that died still marks where it ran.
func pathExists(p string) bool {
	_, err := os.Lstat(p)
	return err == nil
}
