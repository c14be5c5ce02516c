package adminapi

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/spoold/spoold/cmd/spoold/adminapi/wire"
	"github.com/spoold/spoold/spool"
)

// Queue is the part of *spool.Spool the admin API uses.
type Queue interface {
	Get(ctx context.Context, id string) (*spool.Message, error)
	List(ctx context.Context, f spool.Filter, cursor string, limit int) (spool.Page, error)
	Stats(ctx context.Context) (map[spool.State]int, error)
	OpenBody(id string) (io.ReadCloser, error)
	Hold(ctx context.Context, id, reason string) error
	Release(ctx context.Context, id string) error
	Requeue(ctx context.Context, id string) error
	Flush(ctx context.Context, id string) error
	FlushAll(ctx context.Context, account string) (int, error)
	Delete(ctx context.Context, id string) error
	Purge(ctx context.Context, state spool.State, olderThan time.Time) (int, error)
}

// Accounts is implemented by the daemon over its auth manager and delivery
// engine; nil in offline mode. Errors should wrap ErrUnknownAccount,
// ErrNeedsReauth, ErrUnavailable, ErrInvalidArgument or ErrNotFound (unknown
// login ID) so the API answers with the right code. Errors must not contain
// secrets.
type Accounts interface {
	Accounts(ctx context.Context) ([]wire.AccountInfo, error)
	StartLogin(ctx context.Context, account, mode string) (wire.LoginStart, error)
	CompletePaste(ctx context.Context, loginID, redirectedURL string) (wire.AccountInfo, error)
	// WaitLogin blocks until the login finishes, fails, or ctx ends.
	WaitLogin(ctx context.Context, loginID string) (wire.AccountInfo, error)
	Logout(ctx context.Context, account string) error
	TestSend(ctx context.Context, account, to string) (wire.TestSendResult, error)
}

// Info is the daemon's self-description; nil in offline mode.
type Info interface {
	Version() string
	Started() time.Time
	Listeners() []wire.ListenerInfo
	ScanFolders() []wire.FolderInfo
}

// Options configures a Service.
type Options struct {
	Logger *slog.Logger     // default slog.Default()
	Clock  func() time.Time // default time.Now
	// ReadOnly refuses every endpoint that changes state (spoolctl --spool).
	ReadOnly bool
}

// Service implements the admin API endpoints.
type Service struct {
	q     Queue
	acc   Accounts
	info  Info
	log   *slog.Logger
	clock func() time.Time
	ro    bool
}

// NewService returns the API over q; a and info may be nil (offline mode).
func NewService(q Queue, a Accounts, info Info, opts Options) *Service {
	if opts.Logger == nil {
		opts.Logger = slog.Default()
	}
	if opts.Clock == nil {
		opts.Clock = time.Now
	}
	return &Service{q: q, acc: a, info: info, log: opts.Logger.With("component", "admin"), clock: opts.Clock, ro: opts.ReadOnly}
}

// maxRequestBody bounds JSON request bodies; every request is tiny.
const maxRequestBody = 1 << 20

// bulkPage is the page size of bulk operations walking the queue.
const bulkPage = 500

// Handler returns the HTTP handler serving /v1/.
func (s *Service) Handler() http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("GET /v1/status", s.handle(s.status))
	mux.HandleFunc("GET /v1/messages", s.handle(s.list))
	mux.HandleFunc("GET /v1/messages/{id}", s.handle(s.show))
	mux.HandleFunc("GET /v1/messages/{id}/body", s.body)
	mux.HandleFunc("POST /v1/messages/{id}/hold", s.handle(s.write(s.hold)))
	mux.HandleFunc("POST /v1/messages/{id}/release", s.handle(s.write(s.msgOp("release"))))
	mux.HandleFunc("POST /v1/messages/{id}/requeue", s.handle(s.write(s.msgOp("requeue"))))
	mux.HandleFunc("POST /v1/messages/{id}/flush", s.handle(s.write(s.msgOp("flush"))))
	mux.HandleFunc("DELETE /v1/messages/{id}", s.handle(s.write(s.del)))
	mux.HandleFunc("POST /v1/flush", s.handle(s.write(s.flushAll)))
	mux.HandleFunc("POST /v1/requeue", s.handle(s.write(s.requeueAll)))
	mux.HandleFunc("POST /v1/purge", s.handle(s.write(s.purge)))
	mux.HandleFunc("POST /v1/reload", s.handle(s.write(s.reload)))
	mux.HandleFunc("POST /v1/delivery/pause", s.handle(s.write(s.setPaused(true))))
	mux.HandleFunc("POST /v1/delivery/resume", s.handle(s.write(s.setPaused(false))))
	mux.HandleFunc("GET /v1/accounts", s.handle(s.accounts))
	mux.HandleFunc("GET /v1/accounts/{name}", s.handle(s.account))
	mux.HandleFunc("POST /v1/accounts/{name}/login", s.handle(s.write(s.login)))
	mux.HandleFunc("POST /v1/accounts/{name}/logout", s.handle(s.write(s.logout)))
	mux.HandleFunc("POST /v1/accounts/{name}/test-send", s.handle(s.write(s.testSend)))
	mux.HandleFunc("POST /v1/logins/{id}/paste", s.handle(s.write(s.paste)))
	mux.HandleFunc("GET /v1/logins/{id}/wait", s.handle(s.write(s.wait)))
	mux.HandleFunc("GET /v1/alerts", s.handle(s.alerts))
	mux.HandleFunc("POST /v1/alerts/test", s.handle(s.write(s.testAlerts)))
	s.registerAudit(mux)
	s.registerConsoleSupport(mux)
	mux.HandleFunc("/", func(w http.ResponseWriter, r *http.Request) {
		writeError(w, apiErrorf(wire.CodeNotFound, "no endpoint %s %s", r.Method, r.URL.Path))
	})
	return mux
}

type endpoint func(r *http.Request) (any, error)

// handle runs ep and writes its result or error as JSON.
func (s *Service) handle(ep endpoint) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		out, err := ep(r)
		if err != nil {
			ae := toAPIError(err)
			if ae.Code == wire.CodeInternal {
				s.log.Error("request failed", "method", r.Method, "path", r.URL.Path, "err", err)
			}
			writeError(w, ae)
			return
		}
		writeJSON(w, http.StatusOK, out)
	}
}

// write guards endpoints that change state (or need the daemon).
func (s *Service) write(ep endpoint) endpoint {
	return func(r *http.Request) (any, error) {
		if s.ro {
			return nil, apiErrorf(wire.CodeReadOnly, "read-only access (spoolctl --spool): %s %s needs the running daemon; use the socket", r.Method, r.URL.Path)
		}
		// Every state change is recorded here, once, whoever asked
		// (socket or console): see audit.go.
		rec := s.auditStart(r)
		out, err := ep(r)
		s.auditFinish(r.Context(), rec, out, err)
		return out, err
	}
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	_ = enc.Encode(v) // the client went away; nothing to do
}

func writeError(w http.ResponseWriter, ae *wire.APIError) {
	writeJSON(w, httpStatus(ae.Code), wire.ErrorBody{Error: ae})
}

// decode reads a strict JSON body into v; an empty body leaves v zero.
func decode(r *http.Request, v any) error {
	dec := json.NewDecoder(io.LimitReader(r.Body, maxRequestBody))
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil && !errors.Is(err, io.EOF) {
		return apiErrorf(wire.CodeInvalidArgument, "bad request body: %v", err)
	}
	return nil
}

func (s *Service) status(r *http.Request) (any, error) {
	ctx := r.Context()
	now := s.clock()
	st, err := s.q.Stats(ctx)
	if err != nil {
		return nil, fmt.Errorf("reading queue stats: %w", err)
	}
	resp := wire.StatusResponse{Now: now, Queue: make(map[wire.State]int, len(spool.States)), ReadOnly: s.ro}
	for _, state := range spool.States {
		resp.Queue[wireState(state)] = st[state]
	}
	if s.info != nil {
		resp.Version = s.info.Version()
		resp.Started = s.info.Started()
		if !resp.Started.IsZero() {
			resp.UptimeSeconds = int64(now.Sub(resp.Started) / time.Second)
		}
		resp.Listeners = s.info.Listeners()
		resp.ScanFolders = s.info.ScanFolders()
		if rl, ok := s.info.(Reloader); ok {
			resp.LastReload = rl.LastReload()
		}
		s.addNodes(ctx, &resp) // nodes.go
	} else {
		resp.Offline = true
	}
	if dc, ok := s.acc.(DeliveryControl); ok {
		resp.DeliveryPaused = dc.DeliveryPaused()
	}
	if s.acc != nil {
		// A failing account backend must not hide the queue.
		accs, err := s.acc.Accounts(ctx)
		if err != nil {
			resp.AccountsError = err.Error()
		}
		resp.Accounts = accs
	}
	return resp, nil
}

// parseListQuery is the server side of wire.ListRequest's query encoding.
func parseListQuery(r *http.Request) (wire.ListRequest, error) {
	q := r.URL.Query()
	req := wire.ListRequest{
		State:   wire.State(q.Get("state")),
		Account: q.Get("account"),
		Cursor:  q.Get("cursor"),
	}
	if req.State != "" && !spoolState(req.State).Valid() {
		return req, apiErrorf(wire.CodeInvalidArgument, "unknown state %q (want one of %s)", req.State, statesList())
	}
	if v := q.Get("older_than"); v != "" {
		d, err := time.ParseDuration(v)
		if err != nil || d < 0 {
			return req, apiErrorf(wire.CodeInvalidArgument, "bad older_than %q: want a non-negative duration", v)
		}
		req.OlderThan = d
	}
	if v := q.Get("limit"); v != "" {
		n, err := strconv.Atoi(v)
		if err != nil || n < 0 {
			return req, apiErrorf(wire.CodeInvalidArgument, "bad limit %q: want a non-negative integer", v)
		}
		req.Limit = n
	}
	return req, nil
}

func statesList() string {
	names := make([]string, len(spool.States))
	for i, s := range spool.States {
		names[i] = string(s)
	}
	return strings.Join(names, ", ")
}

func (s *Service) list(r *http.Request) (any, error) {
	req, err := parseListQuery(r)
	if err != nil {
		return nil, err
	}
	now := s.clock()
	f := spool.Filter{State: spoolState(req.State), Account: req.Account}
	if req.OlderThan > 0 {
		f.CreatedBefore = now.Add(-req.OlderThan)
	}
	page, err := s.q.List(r.Context(), f, req.Cursor, req.Limit)
	if err != nil {
		return nil, fmt.Errorf("listing messages: %w", err)
	}
	if len(page.Messages) == 0 && req.Cursor == "" {
		if err := s.checkAccount(r.Context(), req.Account); err != nil {
			return nil, err
		}
	}
	resp := wire.ListResponse{Messages: make([]wire.MessageView, 0, len(page.Messages)), Next: page.Next, Now: now}
	for _, m := range page.Messages {
		resp.Messages = append(resp.Messages, s.view(m, now))
	}
	return resp, nil
}

// get loads a message, with a not-found error naming it.
func (s *Service) get(ctx context.Context, id string) (*spool.Message, error) {
	m, err := s.q.Get(ctx, id)
	if errors.Is(err, spool.ErrNotFound) {
		return nil, apiErrorf(wire.CodeNotFound, "message %s not found", id)
	}
	if err != nil {
		return nil, fmt.Errorf("reading message %s: %w", id, err)
	}
	return m, nil
}

// view is View plus the Subject, read from the stored body.
func (s *Service) view(m *spool.Message, now time.Time) wire.MessageView {
	v := View(m, now)
	if m.State != spool.StateDelivered {
		v.Subject = s.subject(m.ID)
	}
	return v
}

func (s *Service) show(r *http.Request) (any, error) {
	id, err := s.resolveID(r.Context(), r.PathValue("id"))
	if err != nil {
		return nil, err
	}
	m, err := s.get(r.Context(), id)
	if err != nil {
		return nil, err
	}
	v := s.view(m, s.clock())
	if rt, ok := s.q.(routes); ok && m.State == spool.StateDelivered {
		via, err := rt.DeliveredVia(r.Context(), m.ID)
		if err != nil {
			return nil, fmt.Errorf("reading which account delivered message %s: %w", m.ID, err)
		}
		v.DeliveredVia = via
	}
	return v, nil
}

// routes is the part of the spool that says which account delivered a
// message when a fallback did (*spool.Spool has it; a queue without it
// shows no route).
type routes interface {
	DeliveredVia(ctx context.Context, id string) (string, error)
}

// body streams the raw RFC 5322 message.
func (s *Service) body(w http.ResponseWriter, r *http.Request) {
	id, err := s.resolveID(r.Context(), r.PathValue("id"))
	if err != nil {
		writeError(w, toAPIError(err))
		return
	}
	m, err := s.get(r.Context(), id)
	if err != nil {
		writeError(w, toAPIError(err))
		return
	}
	f, err := s.q.OpenBody(id)
	if errors.Is(err, spool.ErrNotFound) {
		writeError(w, apiErrorf(wire.CodeNotFound, "body of message %s is no longer stored (state %s)", id, m.State))
		return
	}
	if err != nil {
		s.log.Error("opening body", "msg_id", id, "err", err)
		writeError(w, toAPIError(fmt.Errorf("opening body of %s: %w", id, err)))
		return
	}
	defer f.Close()
	w.Header().Set("Content-Type", "message/rfc822")
	w.Header().Set("Content-Length", strconv.FormatInt(m.Size, 10))
	w.WriteHeader(http.StatusOK)
	if _, err := io.Copy(w, f); err != nil {
		s.log.Debug("streaming body aborted", "msg_id", id, "err", err)
	}
}

// allowed names the states each single-message operation accepts, for errors.
var allowed = map[string]string{
	"hold":    "queued, deferred or dead",
	"release": "held",
	"requeue": "dead or held",
	"flush":   "queued or deferred",
	"delete":  "any state but active",
}

// opError turns a spool error of op on id into an API error a user can act on.
func (s *Service) opError(ctx context.Context, op, id string, err error) error {
	switch {
	case errors.Is(err, spool.ErrLeaseLost):
		return apiErrorf(wire.CodeLeaseLost, "cannot %s message %s: a delivery worker holds it right now", op, id)
	case errors.Is(err, spool.ErrWrongState):
		state := "in another state"
		if m, gerr := s.q.Get(ctx, id); gerr == nil {
			state = string(m.State)
		}
		return apiErrorf(wire.CodeWrongState, "cannot %s message %s: it is %s (%s needs %s)", op, id, state, op, allowed[op])
	case errors.Is(err, spool.ErrNotFound):
		if _, gerr := s.q.Get(ctx, id); gerr == nil {
			return apiErrorf(wire.CodeNotFound, "cannot %s message %s: its body file is missing", op, id)
		}
		return apiErrorf(wire.CodeNotFound, "message %s not found", id)
	case errors.Is(err, spool.ErrReadOnly):
		return apiErrorf(wire.CodeReadOnly, "cannot %s message %s: the spool is open read-only", op, id)
	}
	return fmt.Errorf("cannot %s message %s: %w", op, id, err)
}

// afterOp returns the message's view after a successful operation.
func (s *Service) afterOp(ctx context.Context, id string) (any, error) {
	m, err := s.get(ctx, id)
	if err != nil {
		return nil, err
	}
	return s.view(m, s.clock()), nil
}

func (s *Service) hold(r *http.Request) (any, error) {
	id, err := s.resolveID(r.Context(), r.PathValue("id"))
	if err != nil {
		return nil, err
	}
	var req wire.HoldRequest
	if err := decode(r, &req); err != nil {
		return nil, err
	}
	if req.Reason == "" {
		req.Reason = "held by admin"
	}
	if err := s.q.Hold(r.Context(), id, req.Reason); err != nil {
		return nil, s.opError(r.Context(), "hold", id, err)
	}
	s.log.Info("message held", "msg_id", id, "reason", req.Reason)
	return s.afterOp(r.Context(), id)
}

func (s *Service) msgOp(op string) endpoint {
	return func(r *http.Request) (any, error) {
		ctx := r.Context()
		id, err := s.resolveID(ctx, r.PathValue("id"))
		if err != nil {
			return nil, err
		}
		switch op {
		case "release":
			err = s.q.Release(ctx, id)
		case "requeue":
			err = s.q.Requeue(ctx, id)
		case "flush":
			err = s.q.Flush(ctx, id)
		}
		if err != nil {
			return nil, s.opError(ctx, op, id, err)
		}
		s.log.Info("message "+op, "msg_id", id)
		return s.afterOp(ctx, id)
	}
}

func (s *Service) del(r *http.Request) (any, error) {
	id, err := s.resolveID(r.Context(), r.PathValue("id"))
	if err != nil {
		return nil, err
	}
	if err := s.q.Delete(r.Context(), id); err != nil {
		return nil, s.opError(r.Context(), "delete", id, err)
	}
	s.log.Info("message deleted", "msg_id", id)
	return wire.CountResponse{Count: 1}, nil
}

func (s *Service) flushAll(r *http.Request) (any, error) {
	var req wire.FlushRequest
	if err := decode(r, &req); err != nil {
		return nil, err
	}
	n, err := s.q.FlushAll(r.Context(), req.Account)
	if err != nil {
		return nil, fmt.Errorf("flushing the queue: %w", err)
	}
	if n == 0 {
		if err := s.checkAccount(r.Context(), req.Account); err != nil {
			return nil, err
		}
	}
	s.log.Info("queue flushed", "account", req.Account, "count", n)
	return wire.CountResponse{Count: n}, nil
}

// requeueAll walks the state index page by page; a message that moved on in
// the meantime (delivered by a release race, deleted) is counted as skipped.
func (s *Service) requeueAll(r *http.Request) (any, error) {
	var req wire.RequeueRequest
	if err := decode(r, &req); err != nil {
		return nil, err
	}
	if st := spoolState(req.State); st != spool.StateDead && st != spool.StateHeld {
		return nil, apiErrorf(wire.CodeInvalidArgument, "requeue needs state dead or held, not %q", req.State)
	}
	ctx := r.Context()
	var resp wire.CountResponse
	cursor := ""
	for {
		page, err := s.q.List(ctx, spool.Filter{State: spoolState(req.State), Account: req.Account}, cursor, bulkPage)
		if err != nil {
			return nil, fmt.Errorf("listing %s messages: %w", req.State, err)
		}
		for _, m := range page.Messages {
			err := s.q.Requeue(ctx, m.ID)
			switch {
			case err == nil:
				resp.Count++
				s.log.Info("message requeue", "msg_id", m.ID, "account", m.Account)
			case errors.Is(err, spool.ErrWrongState), errors.Is(err, spool.ErrNotFound):
				resp.Skipped++
			default:
				return nil, s.opError(ctx, "requeue", m.ID, err)
			}
		}
		if page.Next == "" {
			if resp.Count+resp.Skipped == 0 {
				if err := s.checkAccount(ctx, req.Account); err != nil {
					return nil, err
				}
			}
			return resp, nil
		}
		cursor = page.Next
	}
}

func (s *Service) purge(r *http.Request) (any, error) {
	var req wire.PurgeRequest
	if err := decode(r, &req); err != nil {
		return nil, err
	}
	if st := spoolState(req.State); st != spool.StateDead && st != spool.StateDelivered {
		return nil, apiErrorf(wire.CodeInvalidArgument, "purge needs state dead or delivered, not %q", req.State)
	}
	if req.OlderThanSeconds < 0 {
		return nil, apiErrorf(wire.CodeInvalidArgument, "older_than_seconds must not be negative")
	}
	before := s.clock().Add(-time.Duration(req.OlderThanSeconds) * time.Second)
	if req.DryRun {
		n, err := s.purgeCount(r.Context(), spoolState(req.State), before)
		if err != nil {
			return nil, err
		}
		return wire.CountResponse{Count: n}, nil
	}
	n, err := s.q.Purge(r.Context(), spoolState(req.State), before)
	if err != nil {
		return nil, fmt.Errorf("purging %s messages: %w", req.State, err)
	}
	s.log.Info("purged", "state", string(req.State), "count", n)
	return wire.CountResponse{Count: n}, nil
}

// needAccounts reports the offline case clearly.
func (s *Service) needAccounts() error {
	if s.acc == nil {
		return apiErrorf(wire.CodeUnavailable, "accounts are only available from the running daemon")
	}
	return nil
}

func (s *Service) accounts(r *http.Request) (any, error) {
	if err := s.needAccounts(); err != nil {
		return nil, err
	}
	accs, err := s.acc.Accounts(r.Context())
	if err != nil {
		return nil, fmt.Errorf("reading accounts: %w", err)
	}
	if accs == nil {
		accs = []wire.AccountInfo{}
	}
	return wire.AccountsResponse{Accounts: accs, Now: s.clock()}, nil
}

func (s *Service) account(r *http.Request) (any, error) {
	if err := s.needAccounts(); err != nil {
		return nil, err
	}
	name := r.PathValue("name")
	accs, err := s.acc.Accounts(r.Context())
	if err != nil {
		return nil, fmt.Errorf("reading accounts: %w", err)
	}
	for _, a := range accs {
		if a.Name == name {
			return a, nil
		}
	}
	return nil, unknownAccount(name, accs)
}

func (s *Service) login(r *http.Request) (any, error) {
	if err := s.needAccounts(); err != nil {
		return nil, err
	}
	name := r.PathValue("name")
	var req wire.LoginRequest
	if err := decode(r, &req); err != nil {
		return nil, err
	}
	// An empty mode leaves the choice to the account's configured flow
	// (device accounts sign in with the device code).
	switch req.Mode {
	case "", wire.LoginBrowser, wire.LoginPaste, wire.LoginDevice:
	default:
		return nil, apiErrorf(wire.CodeInvalidArgument, "unknown login mode %q (want browser, paste or device)", req.Mode)
	}
	ls, err := s.acc.StartLogin(r.Context(), name, req.Mode)
	if err != nil {
		return nil, accountError(name, "starting login for", err)
	}
	s.log.Info("login started", "account", name, "mode", req.Mode)
	return ls, nil
}

// accountError adds the account name to errors of the Accounts backend.
func accountError(name, doing string, err error) error {
	if errors.Is(err, ErrUnknownAccount) {
		return apiErrorf(wire.CodeUnknownAccount, "unknown account %q", name)
	}
	ae := toAPIError(err)
	if strings.Contains(ae.Message, "account "+name) {
		return ae // the backend named the account already: once is enough
	}
	return &wire.APIError{Code: ae.Code, Message: fmt.Sprintf("%s account %s: %s", doing, name, ae.Message)}
}

func (s *Service) paste(r *http.Request) (any, error) {
	if err := s.needAccounts(); err != nil {
		return nil, err
	}
	id := r.PathValue("id")
	var req wire.PasteRequest
	if err := decode(r, &req); err != nil {
		return nil, err
	}
	if strings.TrimSpace(req.RedirectedURL) == "" {
		return nil, apiErrorf(wire.CodeInvalidArgument, "empty redirected URL")
	}
	ai, err := s.acc.CompletePaste(r.Context(), id, strings.TrimSpace(req.RedirectedURL))
	if err != nil {
		return nil, loginError(id, err)
	}
	s.log.Info("login completed", "account", ai.Name)
	return ai, nil
}

func loginError(id string, err error) error {
	if errors.Is(err, ErrNotFound) {
		return apiErrorf(wire.CodeNotFound, "login %s not found (expired or already finished)", id)
	}
	return err
}

func (s *Service) wait(r *http.Request) (any, error) {
	if err := s.needAccounts(); err != nil {
		return nil, err
	}
	id := r.PathValue("id")
	ai, err := s.acc.WaitLogin(r.Context(), id)
	if err != nil {
		return nil, loginError(id, err)
	}
	s.log.Info("login completed", "account", ai.Name)
	return ai, nil
}

// DeliveryControl is implemented by a daemon whose Accounts can also pause
// and resume delivery (spoolctl pause/resume). Ingest is not affected: mail
// is still accepted and queued.
type DeliveryControl interface {
	SetDeliveryPaused(ctx context.Context, paused bool) error
	DeliveryPaused() bool
}

func (s *Service) setPaused(paused bool) endpoint {
	return func(r *http.Request) (any, error) {
		dc, ok := s.acc.(DeliveryControl)
		if !ok {
			return nil, apiErrorf(wire.CodeUnavailable, "this daemon cannot pause or resume delivery")
		}
		if err := dc.SetDeliveryPaused(r.Context(), paused); err != nil {
			return nil, fmt.Errorf("setting delivery paused=%t: %w", paused, err)
		}
		s.log.Info("delivery paused changed", "paused", paused)
		return wire.DeliveryState{Paused: dc.DeliveryPaused()}, nil
	}
}

func (s *Service) logout(r *http.Request) (any, error) {
	if err := s.needAccounts(); err != nil {
		return nil, err
	}
	name := r.PathValue("name")
	if err := s.acc.Logout(r.Context(), name); err != nil {
		return nil, accountError(name, "logging out", err)
	}
	s.log.Info("logged out", "account", name)
	return struct{}{}, nil
}

func (s *Service) testSend(r *http.Request) (any, error) {
	if err := s.needAccounts(); err != nil {
		return nil, err
	}
	name := r.PathValue("name")
	var req wire.TestSendRequest
	if err := decode(r, &req); err != nil {
		return nil, err
	}
	to := strings.TrimSpace(req.To)
	if to == "" || strings.ContainsAny(to, "\r\n<>") || !strings.Contains(to, "@") {
		return nil, apiErrorf(wire.CodeInvalidArgument, "bad recipient %q: want an address like user@example.com", req.To)
	}
	res, err := s.acc.TestSend(r.Context(), name, to)
	if err != nil {
		return nil, accountError(name, "test-send through", err)
	}
	s.log.Info("test message sent", "account", name, "code", res.Code)
	return res, nil
}

// wireState maps a spool state to the API's; spoolState is its inverse. The
// names are the same strings (TestStatesMatchSpool), so the mapping is a
// conversion, but only this package may make it.
func wireState(s spool.State) wire.State { return wire.State(s) }

func spoolState(s wire.State) spool.State { return spool.State(s) }

// View converts a spool message into its API view; now gives the age.
func View(m *spool.Message, now time.Time) wire.MessageView {
	v := wire.MessageView{
		ID: m.ID, State: wireState(m.State), From: m.From, Account: m.Account, Size: m.Size,
		Created: m.Created, Updated: m.Updated, Attempts: m.Attempts, NextAttempt: m.NextAttempt,
		LeaseOwner: m.LeaseOwner, LeaseUntil: m.LeaseUntil, LastError: errInfo(m.LastError),
		Reason: m.Reason, DeliveredAt: m.DeliveredAt,
		Source: wire.SourceInfo{
			Kind: string(m.Source.Kind), Listener: m.Source.Listener, PeerIP: m.Source.PeerIP,
			AuthUser: m.Source.AuthUser, HELO: m.Source.HELO, Folder: m.Source.Folder, Path: m.Source.Path,
			SHA256: m.Source.SHA256, NoticeFor: m.Source.NoticeFor,
		},
		Recipients: make([]wire.RecipientInfo, 0, len(m.Recipients)),
	}
	if !m.Created.IsZero() && now.After(m.Created) {
		v.AgeSeconds = int64(now.Sub(m.Created) / time.Second)
	}
	for _, r := range m.Recipients {
		v.Recipients = append(v.Recipients, wire.RecipientInfo{
			Addr: r.Addr, State: string(r.State), Error: errInfo(r.Error), DeliveredAt: r.DeliveredAt,
		})
	}
	for _, a := range m.History {
		v.History = append(v.History, wire.AttemptInfo{
			Start: a.Start, End: a.End, Owner: a.Owner, Result: a.Result, Error: errInfo(a.Error),
		})
	}
	return v
}

func errInfo(e *spool.ErrorRecord) *wire.ErrorInfo {
	if e == nil {
		return nil
	}
	return &wire.ErrorInfo{Time: e.Time, Class: e.Class, Code: e.Code, Enhanced: e.Enhanced, Command: e.Command, Text: e.Text}
}
