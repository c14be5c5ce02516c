package console

import (
	"context"
	"embed"
	"errors"
	"fmt"
	"html/template"
	"io/fs"
	"log/slog"
	"net"
	"net/http"
	"net/netip"
	"net/url"
	"strings"
	"sync"
	"time"

	"github.com/spoold/spoold/cmd/spoold/adminapi"
	"github.com/spoold/spoold/cmd/spoold/adminapi/wire"
	"github.com/spoold/spoold/configs/field"
)

//go:embed templates/*.html
var templateFS embed.FS

//go:embed static
var staticFS embed.FS

// Console serves the web console. Create it with New; it is an
// http.Handler for the listener's "/".
type Console struct {
	usersMu  sync.RWMutex // guards opts.Users, which a reload replaces
	opts     Options
	api      *wire.Client
	log      *slog.Logger
	mux      *http.ServeMux
	pages    map[string]*template.Template
	sessions *sessions
	throttle *throttle
	secure   bool
	cookie   string
}

// sessionCookie is the cookie's name; under TLS the __Host- prefix makes the
// browser refuse it unless it is Secure, host-only and for path /.
const sessionCookie = "spoold_console"

// New returns the console over api, the admin service's handler (the one
// the socket serves).
func New(api http.Handler, opts Options) (*Console, error) {
	opts = opts.WithDefaults()
	if ps := opts.Validate(); len(ps) > 0 {
		return nil, fmt.Errorf("console: %w", ps.Err())
	}
	c := &Console{
		opts:     opts,
		api:      wire.NewClientTransport("the admin service", handlerTransport{h: api}),
		log:      opts.Logger.With("component", "console"),
		sessions: &sessions{m: map[string]*session{}},
		throttle: newThrottle(opts),
		secure:   opts.TLS,
		cookie:   sessionCookie,
	}
	if c.secure {
		c.cookie = "__Host-" + sessionCookie
	}
	var err error
	if c.pages, err = parsePages(); err != nil {
		return nil, err
	}
	c.routes()
	return c, nil
}

func (c *Console) routes() {
	m := http.NewServeMux()
	static, _ := fs.Sub(staticFS, "static")
	m.Handle("GET /static/", http.StripPrefix("/static/", http.FileServerFS(static)))
	m.HandleFunc("GET /login", c.loginPage)
	m.HandleFunc("POST /login", c.login)
	m.HandleFunc("POST /logout", c.authed(c.logout))
	m.HandleFunc("GET /{$}", c.authed(c.overview))
	m.HandleFunc("GET /live/overview", c.authed(c.overviewLive))
	m.HandleFunc("GET /queue", c.authed(c.queue))
	m.HandleFunc("POST /queue/action", c.authed(c.queueAction))
	m.HandleFunc("POST /queue/flush", c.authed(c.flushAll))
	m.HandleFunc("GET /messages/{id}", c.authed(c.message))
	m.HandleFunc("GET /messages/{id}/eml", c.authed(c.eml))
	m.HandleFunc("GET /accounts", c.authed(c.accounts))
	m.HandleFunc("GET /live/accounts", c.authed(c.accountsLive))
	m.HandleFunc("POST /accounts/{name}/authorize", c.authed(c.authorize))
	m.HandleFunc("POST /logins/{id}/paste", c.authed(c.paste))
	m.HandleFunc("GET /logins/{id}/wait", c.authed(c.waitLogin))
	m.HandleFunc("POST /accounts/{name}/test-send", c.authed(c.testSend))
	m.HandleFunc("POST /delivery/{op}", c.authed(c.delivery))
	m.HandleFunc("GET /scans", c.authed(c.scans))
	m.HandleFunc("POST /scans/retry", c.authed(c.retryScan))
	m.HandleFunc("GET /settings", c.authed(c.settings))
	c.mux = m
}

// csp allows the console's own script, style and images and nothing else:
// no inline script or style, no framing, forms only to the console.
const csp = "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self'; connect-src 'self'; " +
	"form-action 'self'; frame-ancestors 'none'; base-uri 'none'"

// ServeHTTP sets the security headers, refuses a POST without this
// session's CSRF token (and one from another origin), and routes.
func (c *Console) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	h := w.Header()
	h.Set("Content-Security-Policy", csp)
	h.Set("X-Frame-Options", "DENY")
	h.Set("X-Content-Type-Options", "nosniff")
	h.Set("Referrer-Policy", "no-referrer")
	h.Set("Cross-Origin-Opener-Policy", "same-origin")
	if !strings.HasPrefix(r.URL.Path, "/static/") {
		h.Set("Cache-Control", "no-store")
	}
	if !c.loginRequired() && !loopbackHost(r.Host) {
		// Without a login, a page elsewhere could rebind its own name to
		// 127.0.0.1 and use the console as same-origin, CSRF token and all;
		// the Host header is what that page cannot fake.
		c.log.Warn("refused a request for a foreign host name", "host", field.Clip(r.Host), "client", clientIP(r))
		http.Error(w, "Misdirected request: without console_users this console answers only to localhost or a loopback address (open http://127.0.0.1 or http://localhost on its port).", http.StatusMisdirectedRequest)
		return
	}
	if r.Method == http.MethodPost {
		if err := c.checkPost(r); err != nil {
			c.log.Warn("refused a console POST", "path", r.URL.Path, "client", clientIP(r), "why", err.Error())
			http.Error(w, "Forbidden: "+err.Error()+". Reload the page and try again.", http.StatusForbidden)
			return
		}
	}
	c.mux.ServeHTTP(w, r)
}

// loopbackHost reports whether a request's Host names this machine's
// loopback: "localhost" or a loopback IP, with or without a port.
func loopbackHost(host string) bool {
	if h, _, err := net.SplitHostPort(host); err == nil {
		host = h
	}
	host = strings.TrimSuffix(strings.TrimPrefix(host, "["), "]")
	if strings.EqualFold(host, "localhost") {
		return true
	}
	ip, err := netip.ParseAddr(host)
	return err == nil && ip.IsLoopback()
}

// checkPost is the CSRF check: the form's token must be this session's,
// and a browser that names the request's origin must name this host.
func (c *Console) checkPost(r *http.Request) error {
	if o := r.Header.Get("Origin"); o != "" && o != "null" {
		u, err := url.Parse(o)
		if err != nil || u.Host != r.Host {
			return errors.New("the request came from another site")
		}
	}
	if sfs := r.Header.Get("Sec-Fetch-Site"); sfs != "" && sfs != "same-origin" && sfs != "none" {
		return errors.New("the request came from another site")
	}
	r.Body = http.MaxBytesReader(nil, r.Body, 1<<20)
	if err := r.ParseForm(); err != nil {
		return errors.New("unreadable form")
	}
	if !validCSRF(c.session(r), r.PostForm.Get("csrf")) {
		return errors.New("missing or stale form token (CSRF)")
	}
	return nil
}

// session returns the request's live session, if any.
func (c *Console) session(r *http.Request) *session {
	ck, err := r.Cookie(c.cookie)
	if err != nil {
		return nil
	}
	return c.sessions.get(ck.Value, c.opts.Clock())
}

func (c *Console) setCookie(w http.ResponseWriter, se *session) {
	http.SetCookie(w, &http.Cookie{
		Name: c.cookie, Value: se.id, Path: "/", HttpOnly: true, Secure: c.secure,
		SameSite: http.SameSiteStrictMode, Expires: se.expires,
	})
}

// ensureSession returns the request's session, starting one when there is
// none (a signed-in "local" one where no login is required).
func (c *Console) ensureSession(w http.ResponseWriter, r *http.Request) *session {
	required := c.loginRequired()
	// An anonymous session is replaced when no login is asked any more
	// (a reload removed the users).
	if se := c.session(r); se != nil && (se.user != "" || required) {
		return se
	}
	user, ttl := "", anonTTL
	if !required {
		user, ttl = "local", c.opts.SessionTTL
	}
	se := c.sessions.create(user, ttl, c.opts.Clock())
	c.setCookie(w, se)
	return se
}

type ctxKey struct{}

// authed runs h for a signed-in session, with the console user as the
// admin service's actor; others go to the login page.
func (c *Console) authed(h func(w http.ResponseWriter, r *http.Request, se *session)) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		se := c.ensureSession(w, r)
		if se.user == "" {
			if r.Method == http.MethodGet && !strings.HasPrefix(r.URL.Path, "/live/") && !strings.HasPrefix(r.URL.Path, "/logins/") {
				http.Redirect(w, r, "/login?next="+url.QueryEscape(r.URL.RequestURI()), http.StatusSeeOther)
				return
			}
			http.Error(w, "Unauthorized: sign in again.", http.StatusUnauthorized)
			return
		}
		ctx := adminapi.WithActor(r.Context(), adminapi.Actor{Via: "console", UID: -1, User: se.user})
		ctx = context.WithValue(ctx, ctxKey{}, clientIP(r))
		h(w, r.WithContext(ctx), se)
	}
}

// audit logs an action with who did it and from where.
func (c *Console) audit(r *http.Request, se *session, action string, attrs ...any) {
	c.log.Info("console action", append([]any{"user", se.user, "client", clientIP(r), "action", action}, attrs...)...)
}

// Session lifetime of a signed-in user.
func (c *Console) ttl() time.Duration { return c.opts.SessionTTL }

// loginRequired is Options.LoginRequired with the current users.
func (c *Console) loginRequired() bool {
	c.usersMu.RLock()
	defer c.usersMu.RUnlock()
	return c.opts.LoginRequired()
}

func (c *Console) users() []User {
	c.usersMu.RLock()
	defer c.usersMu.RUnlock()
	return c.opts.Users
}

// SetUsers replaces the console users (a configuration reload; the daemon
// validated them with Options.Validate). Sessions of a user who is gone or
// whose password changed end, and so do the loopback "local" sessions when
// the new users make the console ask for a login.
func (c *Console) SetUsers(users []User) {
	c.usersMu.Lock()
	old := map[string]string{}
	for _, u := range c.opts.Users {
		old[u.Name] = u.PasswordHash.Reveal()
	}
	c.opts.Users = users
	required := c.opts.LoginRequired()
	c.usersMu.Unlock()
	same := map[string]bool{}
	for _, u := range users {
		same[u.Name] = old[u.Name] != "" && old[u.Name] == u.PasswordHash.Reveal()
	}
	ended := 0
	c.sessions.update(func() {
		for id, se := range c.sessions.m {
			if (se.signedIn && !same[se.user]) || (!se.signedIn && se.user != "" && required) {
				delete(c.sessions.m, id)
				ended++
			}
		}
	})
	c.log.Info("console users replaced", "users", len(users), "sessions_ended", ended)
}
