package adminapi

import (
	"context"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"os"
	"os/user"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/spoold/spoold/cmd/spoold/adminapi/wire"
	"github.com/spoold/spoold/configs/field"
)

// Access says who may use the admin socket and how long what they did is
// remembered (the admin section of the config).
//
// The kernel tells the daemon who is on the other end of each connection
// (SO_PEERCRED, unix(7)): root and the daemon's own user may do everything;
// members of AdminGroup may do everything; members of ReadGroup may only
// look (status, list, show, accounts, alerts). SocketGroup (admin.group) is
// still the socket file's group, which decides who can connect at all.
type Access struct {
	SocketGroup string
	ReadGroup   string
	// AdminGroup defaults to SocketGroup, and with neither set to the
	// daemon's own group (the socket file's group then): whoever could use
	// the socket before these keys existed still can.
	AdminGroup     string
	AuditRetention time.Duration // default DefaultAuditRetention
}

// DefaultAuditRetention is how long audit entries are kept by default.
const DefaultAuditRetention = 90 * 24 * time.Hour

// WithDefaults fills AdminGroup and AuditRetention.
func (a Access) WithDefaults() Access {
	if a.AdminGroup == "" {
		a.AdminGroup = a.SocketGroup
	}
	if a.AuditRetention == 0 {
		a.AuditRetention = DefaultAuditRetention
	}
	return a
}

// Validate checks the values' form; whether the groups exist is checked
// when the socket is opened (Listen, NewSocketServer), on the machine that
// runs the daemon.
func (a Access) Validate() field.Problems {
	var ps field.Problems
	if a.AuditRetention < time.Hour {
		ps.Add("audit_retention", "%s is too short to be an audit trail: want at least 1h (default 90d)", a.AuditRetention)
	}
	if a.ReadGroup != "" && a.ReadGroup == a.AdminGroup {
		ps.Add("read_group", "%q is also the admin group, so its members may do everything: leave read_group empty or name another group", a.ReadGroup)
	}
	return ps
}

// Peer is what the kernel says about the process on a socket connection.
type Peer struct {
	PID, UID, GID int
}

type peerKey struct{}

// peerFrom returns the connection's peer, if the server recorded one.
func peerFrom(ctx context.Context) (Peer, bool) {
	p, ok := ctx.Value(peerKey{}).(Peer)
	return p, ok
}

// roles a peer can have.
type role int

const (
	roleNone role = iota
	roleRead
	roleAdmin
)

// authorizer decides each request's role from the peer's credentials.
type authorizer struct {
	access   Access
	selfUID  int
	adminGID int // -1: none
	readGID  int // -1: none
	log      *slog.Logger
	// groupsOf lists a user's groups (user.LookupId + GroupIds); tests
	// replace it.
	groupsOf func(uid int) ([]int, string, error)
}

func newAuthorizer(a Access, log *slog.Logger) (*authorizer, error) {
	z := &authorizer{access: a, selfUID: os.Getuid(), adminGID: -1, readGID: -1, log: log, groupsOf: lookupGroups}
	if a.AdminGroup == "" {
		z.adminGID = os.Getgid()
	} else {
		gid, err := lookupGroup(a.AdminGroup)
		if err != nil {
			return nil, fmt.Errorf("admin group %q (admin.admin_group, default admin.group): %w: create the group or fix the name", a.AdminGroup, err)
		}
		z.adminGID = gid
	}
	if a.ReadGroup != "" {
		gid, err := lookupGroup(a.ReadGroup)
		if err != nil {
			return nil, fmt.Errorf("read-only group %q (admin.read_group): %w: create the group or fix the name", a.ReadGroup, err)
		}
		z.readGID = gid
	}
	return z, nil
}

func lookupGroups(uid int) ([]int, string, error) {
	u, err := user.LookupId(strconv.Itoa(uid))
	if err != nil {
		return nil, "", err
	}
	ids, err := u.GroupIds()
	if err != nil {
		return nil, u.Username, err
	}
	var out []int
	for _, s := range ids {
		if g, err := strconv.Atoi(s); err == nil {
			out = append(out, g)
		}
	}
	return out, u.Username, nil
}

// roleOf is the peer's role and login name.
func (z *authorizer) roleOf(p Peer) (role, string) {
	groups, name, err := z.groupsOf(p.UID)
	if name == "" {
		name = "uid " + strconv.Itoa(p.UID)
	}
	if p.UID == 0 || p.UID == z.selfUID {
		return roleAdmin, name
	}
	if err != nil {
		z.log.Debug("admin socket: looking up the peer's groups", "uid", p.UID, "err", err)
	}
	groups = append(groups, p.GID)
	switch {
	case slices.Contains(groups, z.adminGID):
		return roleAdmin, name
	case z.readGID >= 0 && slices.Contains(groups, z.readGID):
		return roleRead, name
	}
	return roleNone, name
}

// readOnlyRoutes are the endpoints the read-only group may use: looking at
// the queue, accounts and alerts. Everything else (message bodies, the
// audit log, every action) needs the admin group.
var readOnlyRoutes = []string{
	"GET /v1/status",
	"GET /v1/messages",
	"GET /v1/messages/{id}",
	"GET /v1/accounts",
	"GET /v1/accounts/{name}",
	"GET /v1/alerts",
	"GET /v1/search",
	"GET /v1/waiting",
	"GET /v1/scan-files",
}

// needsAdmin reports whether r needs the admin group. Unknown paths need
// it too: a new endpoint is closed until listed here.
func needsAdmin(r *http.Request) bool {
	if r.Method != http.MethodGet && r.Method != http.MethodHead {
		return true
	}
	return !slices.Contains(readOnlyRoutes, "GET "+canonicalPath(r.URL.Path))
}

// canonicalPath replaces the variable segments of the read-only routes.
func canonicalPath(p string) string {
	seg := strings.Split(strings.TrimSuffix(p, "/"), "/")
	if len(seg) == 4 && seg[1] == "v1" && (seg[2] == "messages" || seg[2] == "accounts") {
		if seg[2] == "messages" {
			seg[3] = "{id}"
		} else {
			seg[3] = "{name}"
		}
	}
	return strings.Join(seg, "/")
}

// wrap authorizes each request by its connection's peer and puts the actor
// in its context for the audit log.
func (z *authorizer) wrap(h http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		p, ok := peerFrom(r.Context())
		if !ok {
			writeError(w, apiErrorf(wire.CodePermissionDenied, "permission denied: the admin socket could not tell who is connecting"))
			return
		}
		ro, name := z.roleOf(p)
		admin := needsAdmin(r)
		if ro == roleNone || (admin && ro != roleAdmin) {
			writeError(w, z.refusal(name, admin))
			z.log.Warn("admin request refused", "user", name, "uid", p.UID, "method", r.Method, "path", r.URL.Path)
			return
		}
		ctx := WithActor(r.Context(), Actor{Via: "socket", UID: p.UID, User: name})
		h.ServeHTTP(w, r.WithContext(ctx))
	})
}

// refusal says which group the request needs.
func (z *authorizer) refusal(name string, admin bool) *wire.APIError {
	adminGroup := z.access.AdminGroup
	if adminGroup == "" {
		adminGroup = groupName(z.adminGID)
	}
	if admin {
		return apiErrorf(wire.CodePermissionDenied, "permission denied: %s is not in the admin group %s, which this needs (admin.admin_group): ask to be added with `usermod -aG %s %s`, or run as root",
			name, adminGroup, adminGroup, name)
	}
	groups := adminGroup
	if z.access.ReadGroup != "" {
		groups = z.access.ReadGroup + " (read-only, admin.read_group) or " + adminGroup
	}
	return apiErrorf(wire.CodePermissionDenied, "permission denied: %s is in neither group that may use spoold's admin socket: this needs %s", name, groups)
}

func groupName(gid int) string {
	if g, err := user.LookupGroupId(strconv.Itoa(gid)); err == nil {
		return g.Name
	}
	return "gid " + strconv.Itoa(gid)
}

// NewSocketServer is the admin socket's HTTP server: each connection's peer
// credentials are read once when it is accepted (ConnContext), every
// request is authorized by them (Access) and carries the Actor. h is
// Service.Handler(). Leave WriteTimeout at 0 (see the package doc).
func NewSocketServer(h http.Handler, a Access, log *slog.Logger) (*http.Server, error) {
	if log == nil {
		log = slog.Default()
	}
	z, err := newAuthorizer(a.WithDefaults(), log.With("component", "admin"))
	if err != nil {
		return nil, err
	}
	return &http.Server{
		Handler:           z.wrap(h),
		ReadHeaderTimeout: 10 * time.Second,
		ConnContext: func(ctx context.Context, c net.Conn) context.Context {
			if p, err := peerCred(c); err == nil {
				return context.WithValue(ctx, peerKey{}, p)
			} else {
				log.Warn("admin socket: reading the peer's credentials", "component", "admin", "err", err)
			}
			return ctx
		},
	}, nil
}
