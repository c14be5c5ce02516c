package console

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"html/template"
	"io"
	"net/http"
	"net/textproto"
	"net/url"
	"path"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/spoold/spoold/cmd/spoold/adminapi/wire"
)

// page is what every template gets: the layout's parts and the page's data.
type page struct {
	Title   string
	Nav     string
	User    string
	CSRF    string
	Flash   string
	FlashOK bool
	Logout  bool // a login is required, so offer to sign out
	Now     time.Time
	Data    any
}

var pageNames = []string{"overview", "queue", "confirm", "message", "accounts", "authorize", "scans", "settings", "login", "error"}

func parsePages() (map[string]*template.Template, error) {
	out := map[string]*template.Template{}
	for _, name := range pageNames {
		t, err := template.New("layout.html").Funcs(funcs).ParseFS(templateFS, "templates/layout.html", "templates/"+name+".html")
		if err != nil {
			return nil, fmt.Errorf("console: template %s: %w", name, err)
		}
		out[name] = t
	}
	return out, nil
}

// render writes a whole page; the session's flash message is shown once.
func (c *Console) render(w http.ResponseWriter, r *http.Request, se *session, name, title string, data any) {
	p := page{Title: title, Nav: name, Now: c.opts.Clock(), Data: data, Logout: c.loginRequired()}
	if se != nil {
		c.sessions.update(func() {
			p.User, p.CSRF, p.Flash, p.FlashOK = se.user, se.csrf, se.flash, se.flashOK
			se.flash = ""
		})
	}
	c.execute(w, name, "layout.html", p)
}

// fragment writes one named template of a page (the live parts).
func (c *Console) fragment(w http.ResponseWriter, se *session, name, tmpl string, data any) {
	p := page{Now: c.opts.Clock(), Data: data}
	if se != nil {
		c.sessions.update(func() { p.User, p.CSRF = se.user, se.csrf })
	}
	c.execute(w, name, tmpl, p)
}

func (c *Console) execute(w http.ResponseWriter, name, tmpl string, p page) {
	var b strings.Builder
	if err := c.pages[name].ExecuteTemplate(&b, tmpl, p); err != nil {
		c.log.Error("rendering a page", "page", name, "err", err)
		http.Error(w, "The page could not be rendered; the log has the details.", http.StatusInternalServerError)
		return
	}
	w.Header().Set("Content-Type", "text/html; charset=utf-8")
	_, _ = io.WriteString(w, b.String())
}

// fail shows an error page for a failed read.
func (c *Console) fail(w http.ResponseWriter, r *http.Request, se *session, what string, err error) {
	status := http.StatusBadGateway
	var ae *wire.APIError
	if errors.As(err, &ae) && ae.Status != 0 {
		status = ae.Status
	}
	w.WriteHeader(status)
	c.render(w, r, se, "error", "Error", map[string]string{"What": what, "Err": errText(err)})
}

// errText is an error as the page shows it: the service's message, which
// never holds a secret (adminapi's rule).
func errText(err error) string {
	var ae *wire.APIError
	if errors.As(err, &ae) {
		return ae.Message
	}
	return err.Error()
}

// flash sets the message the next page shows.
func (c *Console) flash(se *session, ok bool, format string, args ...any) {
	c.sessions.update(func() { se.flash, se.flashOK = fmt.Sprintf(format, args...), ok })
}

// back redirects to a console path from the form's "return" field (only
// local paths, never another site).
func back(w http.ResponseWriter, r *http.Request, def string) {
	to := r.PostForm.Get("return")
	if !strings.HasPrefix(to, "/") || strings.HasPrefix(to, "//") || strings.HasPrefix(to, "/\\") {
		to = def
	}
	http.Redirect(w, r, to, http.StatusSeeOther)
}

// ---- overview ----

type overviewData struct {
	Status      wire.StatusResponse
	StatusErr   string
	States      []stateCount
	Waiting     []accountCount
	OldestAge   time.Duration
	OldestID    string
	Dead        []wire.MessageView
	ScanFailed  []wire.ScanFile
	ScanErr     string
	AccountsBad int
}

type stateCount struct {
	State wire.State
	N     int
}

type accountCount struct {
	Account string
	N       int
}

func (c *Console) overviewData(ctx context.Context) overviewData {
	var d overviewData
	st, err := c.api.Status(ctx)
	if err != nil {
		d.StatusErr = errText(err)
		return d
	}
	d.Status = st
	for _, s := range wire.States {
		d.States = append(d.States, stateCount{s, st.Queue[s]})
	}
	if w, err := c.api.Waiting(ctx); err == nil {
		for a, n := range w.Accounts {
			d.Waiting = append(d.Waiting, accountCount{a, n})
		}
		slices.SortFunc(d.Waiting, func(a, b accountCount) int { return strings.Compare(a.Account, b.Account) })
	}
	if p, err := c.api.Search(ctx, wire.SearchRequest{State: wire.StateQueued, Limit: 1}); err == nil && len(p.Messages) > 0 {
		d.OldestAge = time.Duration(p.Messages[0].AgeSeconds) * time.Second
		d.OldestID = p.Messages[0].ID
	}
	if p, err := c.api.Search(ctx, wire.SearchRequest{State: wire.StateDead, Order: wire.OrderNewest, Limit: 10}); err == nil {
		d.Dead = p.Messages
	}
	if len(st.ScanFolders) > 0 {
		if sf, err := c.api.ScanFiles(ctx, "", 50); err == nil {
			for _, f := range sf.Files {
				if f.Failed && len(d.ScanFailed) < 10 {
					d.ScanFailed = append(d.ScanFailed, f)
				}
			}
		} else {
			d.ScanErr = errText(err)
		}
	}
	for _, a := range st.Accounts {
		if a.Status != "ok" {
			d.AccountsBad++
		}
	}
	return d
}

func (c *Console) overview(w http.ResponseWriter, r *http.Request, se *session) {
	c.render(w, r, se, "overview", "Overview", c.overviewData(r.Context()))
}

func (c *Console) overviewLive(w http.ResponseWriter, r *http.Request, se *session) {
	c.fragment(w, se, "overview", "live", c.overviewData(r.Context()))
}

// ---- queue ----

type queueData struct {
	Req      wire.SearchRequest
	Resp     wire.SearchResponse
	Err      string
	Accounts []string
	States   []wire.State
	Return   string
	// NextURL and FirstURL page through the results.
	NextURL, FirstURL string
}

func (c *Console) queue(w http.ResponseWriter, r *http.Request, se *session) {
	q := r.URL.Query()
	req := wire.SearchRequest{
		State: wire.State(q.Get("state")), Account: q.Get("account"), Source: q.Get("source"),
		Query: q.Get("q"), Order: q.Get("order"), Cursor: q.Get("cursor"), Limit: 50,
	}
	d := queueData{Req: req, States: wire.States, Return: r.URL.RequestURI()}
	resp, err := c.api.Search(r.Context(), req)
	if err != nil {
		d.Err = errText(err)
	}
	d.Resp = resp
	if accs, err := c.api.Accounts(r.Context()); err == nil {
		for _, a := range accs.Accounts {
			d.Accounts = append(d.Accounts, a.Name)
		}
	}
	if resp.Next != "" {
		nq := url.Values{}
		for k, v := range q {
			nq[k] = v
		}
		nq.Set("cursor", resp.Next)
		d.NextURL = "/queue?" + nq.Encode()
	}
	if req.Cursor != "" {
		fq := url.Values{}
		for k, v := range q {
			fq[k] = v
		}
		fq.Del("cursor")
		d.FirstURL = "/queue?" + fq.Encode()
	}
	c.render(w, r, se, "queue", "Queue", d)
}

// maxBulk bounds the messages one bulk action names.
const maxBulk = 500

// queueAction runs hold, release, requeue, flush or delete on the selected
// messages ("one" = "op:id" for a row's own button). Delete asks first.
func (c *Console) queueAction(w http.ResponseWriter, r *http.Request, se *session) {
	op, ids := r.PostForm.Get("op"), r.PostForm["id"]
	if one := r.PostForm.Get("one"); one != "" {
		var id string
		op, id, _ = strings.Cut(one, ":")
		ids = []string{id}
	}
	ids = slices.DeleteFunc(slices.Compact(ids), func(s string) bool { return s == "" })
	switch {
	case !slices.Contains([]string{"hold", "release", "requeue", "flush", "delete"}, op):
		c.flash(se, false, "Unknown action %q.", op)
		back(w, r, "/queue")
		return
	case len(ids) == 0:
		c.flash(se, false, "Select at least one message first.")
		back(w, r, "/queue")
		return
	case len(ids) > maxBulk:
		c.flash(se, false, "Select at most %d messages at a time.", maxBulk)
		back(w, r, "/queue")
		return
	}
	if op == "delete" && r.PostForm.Get("confirm") != "yes" {
		c.render(w, r, se, "confirm", "Delete messages?", map[string]any{"IDs": ids, "Return": r.PostForm.Get("return")})
		return
	}
	ctx := r.Context()
	var failed []string
	done := 0
	for _, id := range ids {
		var err error
		switch op {
		case "hold":
			_, err = c.api.Hold(ctx, id, "held in the web console by "+se.user)
		case "release":
			_, err = c.api.Release(ctx, id)
		case "requeue":
			_, err = c.api.Requeue(ctx, id)
		case "flush":
			_, err = c.api.Flush(ctx, id)
		case "delete":
			err = c.api.Delete(ctx, id)
		}
		if err != nil {
			failed = append(failed, errText(err))
			continue
		}
		done++
	}
	c.audit(r, se, op, "messages", strings.Join(ids, ","), "done", done, "failed", len(failed))
	if op == "delete" && done > 0 && strings.HasPrefix(r.PostForm.Get("return"), "/messages/") {
		r.PostForm.Set("return", "/queue") // the message page is gone
	}
	if len(failed) > 0 {
		c.flash(se, false, "%s: %d done, %d failed: %s", op, done, len(failed), strings.Join(failed[:min(3, len(failed))], "; "))
	} else {
		c.flash(se, true, "%s: %d message(s) done.", op, done)
	}
	back(w, r, "/queue")
}

func (c *Console) flushAll(w http.ResponseWriter, r *http.Request, se *session) {
	account := r.PostForm.Get("account")
	res, err := c.api.FlushAll(r.Context(), account)
	c.audit(r, se, "flush all", "account", account)
	if err != nil {
		c.flash(se, false, "Flush failed: %s", errText(err))
	} else {
		c.flash(se, true, "%d waiting message(s) are due now.", res.Count)
	}
	back(w, r, "/queue")
}

// ---- message ----

type messageData struct {
	M       wire.MessageView
	Headers []header
	HdrErr  string
	Return  string
}

type header struct{ Name, Value string }

// maxHeaderBytes bounds what is read of a body to show its header.
const maxHeaderBytes = 64 << 10

func (c *Console) message(w http.ResponseWriter, r *http.Request, se *session) {
	id := r.PathValue("id")
	m, err := c.api.Get(r.Context(), id)
	if err != nil {
		c.fail(w, r, se, "Reading message "+id, err)
		return
	}
	d := messageData{M: m, Return: "/messages/" + url.PathEscape(m.ID)}
	if m.State != wire.StateDelivered {
		d.Headers, err = c.headers(r.Context(), m.ID)
		if err != nil {
			d.HdrErr = errText(err)
		}
	}
	c.render(w, r, se, "message", "Message "+m.ID, d)
}

func (c *Console) headers(ctx context.Context, id string) ([]header, error) {
	body, err := c.api.Body(ctx, id)
	if err != nil {
		return nil, err
	}
	defer body.Close()
	tr := textproto.NewReader(bufio.NewReader(io.LimitReader(body, maxHeaderBytes)))
	var out []header
	for {
		line, err := tr.ReadContinuedLine()
		if line == "" || err != nil {
			break
		}
		name, value, ok := strings.Cut(line, ":")
		if !ok {
			break
		}
		out = append(out, header{Name: name, Value: strings.TrimSpace(value)})
	}
	return out, nil
}

func (c *Console) eml(w http.ResponseWriter, r *http.Request, se *session) {
	id := r.PathValue("id")
	body, err := c.api.Body(r.Context(), id)
	if err != nil {
		c.fail(w, r, se, "Downloading message "+id, err)
		return
	}
	defer body.Close()
	c.audit(r, se, "download", "msg_id", id)
	// An attachment, never rendered by the browser: the message is
	// untrusted content.
	w.Header().Set("Content-Type", "message/rfc822")
	w.Header().Set("Content-Disposition", "attachment; filename=\""+safeName(id)+".eml\"")
	_, _ = io.Copy(w, body)
}

func safeName(s string) string {
	return strings.Map(func(r rune) rune {
		if r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || r == '-' || r == '_' {
			return r
		}
		return '_'
	}, s)
}

// ---- accounts ----

type accountsData struct {
	Accounts []accountView
	Err      string
	Paused   bool
	Test     *wire.TestSendResult
	TestErr  string
	TestAcct string
}

type accountView struct {
	wire.AccountInfo
	CanLogin, CanDevice bool
}

// canLogin mirrors spoolctl auth login's loginMode: flows that sign in by
// themselves or use a password have nothing to authorize.
func canLogin(a wire.AccountInfo) bool {
	switch a.Flow {
	case "client_credentials", "service_account", "password", "none":
		return false
	}
	return a.Provider != "" && a.Provider != "password" && (a.Transport == "" || a.Transport == "smtp")
}

// allowsDevice: Google does not allow the device flow for Gmail's scope.
func allowsDevice(provider string) bool { return strings.HasPrefix(provider, "microsoft") }

func (c *Console) accountsData(ctx context.Context) accountsData {
	var d accountsData
	accs, err := c.api.Accounts(ctx)
	if err != nil {
		d.Err = errText(err)
	}
	for _, a := range accs.Accounts {
		d.Accounts = append(d.Accounts, accountView{AccountInfo: a, CanLogin: canLogin(a), CanDevice: canLogin(a) && allowsDevice(a.Provider)})
	}
	if st, err := c.api.Status(ctx); err == nil {
		d.Paused = st.DeliveryPaused
	}
	return d
}

func (c *Console) accounts(w http.ResponseWriter, r *http.Request, se *session) {
	c.render(w, r, se, "accounts", "Accounts", c.accountsData(r.Context()))
}

func (c *Console) accountsLive(w http.ResponseWriter, r *http.Request, se *session) {
	c.fragment(w, se, "accounts", "live", c.accountsData(r.Context()))
}

type authorizeData struct {
	Account  string
	Start    wire.LoginStart
	Mailbox  string
	Redirect string // where the provider sends the browser after sign-in
	Local    bool   // Redirect is a localhost address
}

func (c *Console) authorize(w http.ResponseWriter, r *http.Request, se *session) {
	name := r.PathValue("name")
	mode := r.PostForm.Get("mode")
	if mode != wire.LoginDevice && mode != wire.LoginPaste {
		mode = wire.LoginBrowser
	}
	acct, err := c.api.Account(r.Context(), name)
	if err != nil {
		c.flash(se, false, "Authorize %s: %s", name, errText(err))
		back(w, r, "/accounts")
		return
	}
	if acct.Flow == "device" && mode == wire.LoginBrowser {
		mode = wire.LoginDevice // the account's configured flow, as spoolctl does
	}
	ls, err := c.api.StartLogin(r.Context(), name, mode)
	c.audit(r, se, "authorize", "account", name, "mode", mode)
	if err != nil {
		c.flash(se, false, "Authorize %s: %s", name, errText(err))
		back(w, r, "/accounts")
		return
	}
	c.sessions.update(func() { se.logins[ls.LoginID] = name })
	d := authorizeData{Account: name, Start: ls, Mailbox: acct.Mailbox}
	if u, err := url.Parse(ls.URL); err == nil && ls.URL != "" {
		if ru, err := url.Parse(u.Query().Get("redirect_uri")); err == nil && ru.Host != "" {
			d.Redirect = ru.Scheme + "://" + ru.Host + ru.Path
			h := ru.Hostname()
			d.Local = h == "localhost" || h == "127.0.0.1" || h == "::1"
		}
	}
	c.render(w, r, se, "authorize", "Authorize "+name, d)
}

func (c *Console) ownLogin(se *session, id string) (string, bool) {
	var acct string
	var ok bool
	c.sessions.update(func() { acct, ok = se.logins[id] })
	return acct, ok
}

func (c *Console) paste(w http.ResponseWriter, r *http.Request, se *session) {
	id := r.PathValue("id")
	acct, ok := c.ownLogin(se, id)
	if !ok {
		c.flash(se, false, "That sign-in was not started in this browser session; press Authorize again.")
		back(w, r, "/accounts")
		return
	}
	ai, err := c.api.CompletePaste(r.Context(), id, r.PostForm.Get("url"))
	c.audit(r, se, "authorize paste", "account", acct)
	if err != nil {
		c.flash(se, false, "Sign-in of %s not completed: %s", acct, errText(err))
	} else {
		c.flash(se, ai.Status == "ok", "Account %s signed in as %s; status %s.", ai.Name, orDash(ai.Identity), ai.Status)
	}
	http.Redirect(w, r, "/accounts", http.StatusSeeOther)
}

// loginWait is the answer of GET /logins/{id}/wait.
type loginWait struct {
	Done   bool   `json:"done"`
	OK     bool   `json:"ok"`
	Status string `json:"status,omitempty"`
	Text   string `json:"text"`
}

// waitPoll bounds one long poll; the page asks again.
const waitPoll = 25 * time.Second

func (c *Console) waitLogin(w http.ResponseWriter, r *http.Request, se *session) {
	id := r.PathValue("id")
	var out loginWait
	if acct, ok := c.ownLogin(se, id); !ok {
		out = loginWait{Done: true, Text: "This sign-in was not started in this browser session."}
	} else {
		ctx, cancel := context.WithTimeout(r.Context(), waitPoll)
		ai, err := c.api.WaitLogin(ctx, id)
		cancel()
		switch {
		case err == nil:
			out = loginWait{Done: true, OK: ai.Status == "ok", Status: ai.Status,
				Text: fmt.Sprintf("Account %s signed in as %s; status %s.", ai.Name, orDash(ai.Identity), ai.Status)}
			c.log.Info("console sign-in finished", "user", se.user, "account", acct, "status", ai.Status)
		case ctx.Err() != nil && r.Context().Err() == nil:
			out = loginWait{Text: "Waiting for the sign-in to finish…"}
		default:
			out = loginWait{Done: true, Text: "Sign-in of " + acct + " failed: " + errText(err)}
		}
	}
	w.Header().Set("Content-Type", "application/json")
	_ = json.NewEncoder(w).Encode(out)
}

func orDash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}

func (c *Console) testSend(w http.ResponseWriter, r *http.Request, se *session) {
	name := r.PathValue("name")
	to := strings.TrimSpace(r.PostForm.Get("to"))
	ctx, cancel := context.WithTimeout(r.Context(), 2*time.Minute)
	defer cancel()
	res, err := c.api.TestSend(ctx, name, to)
	c.audit(r, se, "test send", "account", name, "to", to)
	d := c.accountsData(r.Context())
	d.TestAcct = name
	if err != nil {
		d.TestErr = errText(err)
	} else {
		d.Test = &res
	}
	c.render(w, r, se, "accounts", "Accounts", d)
}

func (c *Console) delivery(w http.ResponseWriter, r *http.Request, se *session) {
	op := r.PathValue("op")
	if op != "pause" && op != "resume" {
		http.NotFound(w, r)
		return
	}
	st, err := c.api.SetDeliveryPaused(r.Context(), op == "pause")
	c.audit(r, se, "delivery "+op)
	switch {
	case err != nil:
		c.flash(se, false, "Delivery %s failed: %s", op, errText(err))
	case st.Paused:
		c.flash(se, true, "Delivery is paused: mail is still accepted and queued.")
	default:
		c.flash(se, true, "Delivery resumed.")
	}
	back(w, r, "/")
}

// ---- scan folders ----

type scansData struct {
	Folders []wire.FolderInfo
	Files   []wire.ScanFile
	Err     string
}

func (c *Console) scans(w http.ResponseWriter, r *http.Request, se *session) {
	var d scansData
	st, err := c.api.Status(r.Context())
	if err != nil {
		c.fail(w, r, se, "Reading the daemon's status", err)
		return
	}
	d.Folders = st.ScanFolders
	if len(d.Folders) > 0 {
		sf, err := c.api.ScanFiles(r.Context(), r.URL.Query().Get("folder"), 100)
		if err != nil {
			d.Err = errText(err)
		}
		d.Files = sf.Files
		if len(sf.Errors) > 0 {
			d.Err = strings.Join(sf.Errors, "; ")
		}
	}
	c.render(w, r, se, "scans", "Scan folders", d)
}

func (c *Console) retryScan(w http.ResponseWriter, r *http.Request, se *session) {
	folder, p := r.PostForm.Get("folder"), r.PostForm.Get("path")
	_, err := c.api.RetryScanFile(r.Context(), folder, p)
	c.audit(r, se, "retry scan", "folder", folder, "path", p)
	if err != nil {
		c.flash(se, false, "Retry of %s failed: %s", path.Base(p), errText(err))
	} else {
		c.flash(se, true, "%s is back in folder %s and will be taken like a new scan.", path.Base(p), folder)
	}
	back(w, r, "/scans")
}

// ---- settings ----

func (c *Console) settings(w http.ResponseWriter, r *http.Request, se *session) {
	cfg, err := c.api.Config(r.Context())
	if err != nil {
		c.fail(w, r, se, "Reading the effective configuration", err)
		return
	}
	c.render(w, r, se, "settings", "Settings", cfg)
}

// ---- login ----

func (c *Console) loginPage(w http.ResponseWriter, r *http.Request) {
	se := c.ensureSession(w, r)
	if se.user != "" {
		http.Redirect(w, r, "/", http.StatusSeeOther)
		return
	}
	c.render(w, r, se, "login", "Sign in", map[string]string{"Next": localPath(r.URL.Query().Get("next"))})
}

func localPath(p string) string {
	if !strings.HasPrefix(p, "/") || strings.HasPrefix(p, "//") || strings.HasPrefix(p, "/\\") {
		return "/"
	}
	return p
}

func (c *Console) login(w http.ResponseWriter, r *http.Request) {
	old := c.session(r)
	name, pw := r.PostForm.Get("user"), r.PostForm.Get("password")
	next := localPath(r.PostForm.Get("next"))
	now := c.opts.Clock()
	if !c.throttle.allow(clientIP(r), name, now) {
		c.log.Warn("console login throttled", "user", name, "client", clientIP(r))
		c.flash(old, false, "Too many sign-in attempts: wait a minute, then try again.")
		w.WriteHeader(http.StatusTooManyRequests)
		c.render(w, r, old, "login", "Sign in", map[string]string{"Next": next})
		return
	}
	if !checkPassword(c.users(), name, pw) {
		c.log.Warn("console login failed", "user", name, "client", clientIP(r))
		c.flash(old, false, "Wrong user name or password.")
		w.WriteHeader(http.StatusUnauthorized)
		c.render(w, r, old, "login", "Sign in", map[string]string{"Next": next})
		return
	}
	// A new session ID on login: one planted before it is worth nothing.
	c.sessions.drop(old.id)
	se := c.sessions.create(name, c.ttl(), now)
	c.sessions.update(func() { se.signedIn = true })
	c.setCookie(w, se)
	c.log.Info("console login", "user", name, "client", clientIP(r))
	http.Redirect(w, r, next, http.StatusSeeOther)
}

func (c *Console) logout(w http.ResponseWriter, r *http.Request, se *session) {
	c.sessions.drop(se.id)
	c.log.Info("console logout", "user", se.user, "client", clientIP(r))
	http.SetCookie(w, &http.Cookie{Name: c.cookie, Value: "", Path: "/", MaxAge: -1, HttpOnly: true, Secure: c.secure, SameSite: http.SameSiteStrictMode})
	http.Redirect(w, r, "/login", http.StatusSeeOther)
}

// ---- template helpers ----

var funcs = template.FuncMap{
	"ago":     ago,
	"until":   until,
	"dur":     func(d time.Duration) string { return humanDur(d) },
	"secs":    func(s int64) string { return humanDur(time.Duration(s) * time.Second) },
	"size":    humanSize,
	"short":   func(id string) string { return id[:min(len(id), 12)] },
	"clock":   func(t time.Time) string { return t.Local().Format("2006-01-02 15:04:05") },
	"join":    strings.Join,
	"pathesc": url.PathEscape,
	"days": func(t, now time.Time) int {
		return int(t.Sub(now).Hours() / 24)
	},
	"itoa": strconv.Itoa,
}

func ago(t, now time.Time) string {
	if t.IsZero() {
		return "never"
	}
	if t.After(now) {
		return "in " + humanDur(t.Sub(now))
	}
	return humanDur(now.Sub(t)) + " ago"
}

func until(t, now time.Time) string {
	if t.IsZero() {
		return "-"
	}
	if t.Before(now) {
		return humanDur(now.Sub(t)) + " ago"
	}
	return "in " + humanDur(t.Sub(now))
}

func humanDur(d time.Duration) string {
	switch {
	case d < time.Minute:
		return strconv.Itoa(int(d/time.Second)) + "s"
	case d < time.Hour:
		return strconv.Itoa(int(d/time.Minute)) + "m"
	case d < 48*time.Hour:
		return fmt.Sprintf("%dh%02dm", int(d/time.Hour), int(d%time.Hour/time.Minute))
	}
	return strconv.Itoa(int(d/(24*time.Hour))) + "d"
}

func humanSize(n int64) string {
	switch {
	case n < 1000:
		return strconv.FormatInt(n, 10) + " B"
	case n < 1000*1000:
		return fmt.Sprintf("%.1f kB", float64(n)/1000)
	}
	return fmt.Sprintf("%.1f MB", float64(n)/1e6)
}
