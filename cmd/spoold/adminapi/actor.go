package adminapi

import (
	"context"
	"strconv"
)

// Actor is who asked for an admin action: a local user on the admin socket
// (known from the peer's credentials) or a user signed in to the web
// console. The service records it with every state-changing action, so the
// CLI and the console are accountable in the same way.
type Actor struct {
	Via  string // "socket", "console" or "offline" (spoolctl --spool)
	UID  int    // the peer's uid on the socket; -1 when not a local user
	User string // login name, or the console user
}

// String is the actor as logs and the audit list show it, e.g.
// "alice (uid 1000) via socket" or "admin via console".
func (a Actor) String() string {
	who := a.User
	if who == "" {
		who = "unknown"
	}
	if a.UID >= 0 && a.Via == "socket" {
		who += " (uid " + strconv.Itoa(a.UID) + ")"
	}
	if a.Via != "" {
		who += " via " + a.Via
	}
	return who
}

type actorKey struct{}

// WithActor returns ctx carrying a, for the service's handlers to read.
func WithActor(ctx context.Context, a Actor) context.Context {
	return context.WithValue(ctx, actorKey{}, a)
}

// ActorFrom returns the actor ctx carries, if any.
func ActorFrom(ctx context.Context) (Actor, bool) {
	a, ok := ctx.Value(actorKey{}).(Actor)
	return a, ok
}
