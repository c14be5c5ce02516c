package adminapi

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/spoold/spoold/cmd/spoold/adminapi/wire"
	"github.com/spoold/spoold/spool"
)

// Auditor is the spool's audit log (*spool.Spool has it). A Queue without
// it records nothing and lists nothing.
type Auditor interface {
	AuditAppend(ctx context.Context, e spool.AuditEntry) error
	AuditList(ctx context.Context, since time.Time, limit int) ([]spool.AuditEntry, error)
}

// KeyControl is implemented by a daemon that seals stored tokens
// (spoolctl keys).
type KeyControl interface {
	Keys() wire.KeysInfo
	RotateKeys(ctx context.Context) (wire.KeysRotateResponse, error)
}

// auditActions names the action of each state-changing route, as the
// audit log shows it. A write route missing here is recorded under its
// pattern, so nothing goes unrecorded.
var auditActions = map[string]string{
	"POST /v1/messages/{id}/hold":        "hold",
	"POST /v1/messages/{id}/release":     "release",
	"POST /v1/messages/{id}/requeue":     "requeue",
	"POST /v1/messages/{id}/flush":       "flush",
	"DELETE /v1/messages/{id}":           "delete",
	"POST /v1/flush":                     "flush",
	"POST /v1/requeue":                   "requeue",
	"POST /v1/purge":                     "purge",
	"POST /v1/reload":                    "reload",
	"POST /v1/delivery/pause":            "pause",
	"POST /v1/delivery/resume":           "resume",
	"POST /v1/accounts/{name}/login":     "login",
	"POST /v1/accounts/{name}/logout":    "logout",
	"POST /v1/accounts/{name}/test-send": "test-send",
	"POST /v1/logins/{id}/paste":         "login-complete",
	"POST /v1/alerts/test":               "alerts-test",
	"POST /v1/keys/rotate":               "keys-rotate",
	"POST /v1/scan-files/retry":          "scan-retry",
}

// notAudited are write routes that change nothing themselves: waiting for
// a sign-in to finish (its start and a pasted completion are recorded).
var notAudited = map[string]bool{"GET /v1/logins/{id}/wait": true}

// auditedFields are the request options worth recording. Others (a pasted
// redirect URL carries an authorization code) are never stored.
var auditedFields = []string{"account", "state", "reason", "older_than_seconds", "dry_run", "to", "mode", "folder", "path"}

// auditRecord is an action being recorded: what the request said, before
// the endpoint runs.
type auditRecord struct {
	action, target string
	detail         []string
}

// auditStart notes the request's action, target and options; nil when the
// route is not audited. It reads the JSON body (bounded as decode does) and
// puts it back for the endpoint.
func (s *Service) auditStart(r *http.Request) *auditRecord {
	if _, ok := s.q.(Auditor); !ok || notAudited[r.Pattern] {
		return nil
	}
	rec := &auditRecord{action: auditActions[r.Pattern]}
	if rec.action == "" {
		rec.action = r.Pattern
	}
	if id := r.PathValue("id"); id != "" && strings.Contains(r.Pattern, "/messages/") {
		rec.target = "message " + id
	}
	if name := r.PathValue("name"); name != "" {
		rec.target = "account " + name
	}
	if r.Body != nil && r.Body != http.NoBody {
		b, _ := io.ReadAll(io.LimitReader(r.Body, maxRequestBody))
		r.Body = io.NopCloser(bytes.NewReader(b))
		var m map[string]any
		if json.Unmarshal(b, &m) == nil {
			for _, k := range auditedFields {
				v, ok := m[k]
				if !ok || v == "" || v == false || v == nil {
					continue
				}
				if k == "account" && rec.target == "" {
					rec.target = fmt.Sprintf("account %v", v)
					continue
				}
				rec.detail = append(rec.detail, fmt.Sprintf("%s=%v", k, v))
			}
		}
	}
	return rec
}

// auditFinish records the action with who asked (the request's Actor) and
// how it ended. A failure to record is logged: the action has happened.
func (s *Service) auditFinish(ctx context.Context, rec *auditRecord, out any, err error) {
	if rec == nil {
		return
	}
	a, ok := ActorFrom(ctx)
	if !ok {
		a = Actor{Via: "unknown", UID: -1}
	}
	e := spool.AuditEntry{Time: s.clock(), Via: a.Via, UID: a.UID, User: a.User, Action: rec.action, Target: rec.target, Result: "ok"}
	switch v := out.(type) {
	case wire.MessageView:
		e.Target = "message " + v.ID // the full ID, not the prefix typed
	case wire.CountResponse:
		rec.detail = append(rec.detail, "count="+strconv.Itoa(v.Count))
		if v.Skipped > 0 {
			rec.detail = append(rec.detail, "skipped="+strconv.Itoa(v.Skipped))
		}
	case wire.AccountInfo:
		if e.Target == "" {
			e.Target = "account " + v.Name
		}
	case wire.KeysRotateResponse:
		rec.detail = append(rec.detail, "old_key="+v.OldKeyID, "new_key="+v.NewKeyID, "resealed="+strconv.Itoa(len(v.Resealed)))
	case wire.ReloadInfo:
		if !v.OK {
			e.Result = "failed: " + strings.Join(v.Problems, "; ")
		}
	}
	e.Detail = strings.Join(rec.detail, " ")
	if err != nil {
		ae := toAPIError(err)
		e.Result, e.Code = ae.Message, ae.Code
	}
	// The request's context may be gone (the client hung up): record anyway.
	actx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 10*time.Second)
	defer cancel()
	if aerr := s.q.(Auditor).AuditAppend(actx, e); aerr != nil {
		s.log.Error("recording an admin action in the audit log failed", "action", e.Action, "actor", a.String(), "err", aerr)
	}
}

// registerAudit adds the audit log and key endpoints.
func (s *Service) registerAudit(mux *http.ServeMux) {
	mux.HandleFunc("GET /v1/audit", s.handle(s.auditList))
	mux.HandleFunc("GET /v1/keys", s.handle(s.keys))
	mux.HandleFunc("POST /v1/keys/rotate", s.handle(s.write(s.rotateKeys)))
}

// defaultAuditLimit is how many entries GET /v1/audit returns unless asked.
const defaultAuditLimit = 100

func (s *Service) auditList(r *http.Request) (any, error) {
	au, ok := s.q.(Auditor)
	if !ok {
		return nil, apiErrorf(wire.CodeUnavailable, "this spool keeps no audit log")
	}
	q := r.URL.Query()
	var since time.Time
	if v := q.Get("since"); v != "" {
		t, err := time.Parse(time.RFC3339Nano, v)
		if err != nil {
			return nil, apiErrorf(wire.CodeInvalidArgument, "bad since %q: want an RFC 3339 time such as 2026-01-31T08:00:00Z", v)
		}
		since = t
	}
	limit := defaultAuditLimit
	if v := q.Get("limit"); v != "" {
		n, err := strconv.Atoi(v)
		if err != nil || n < 0 {
			return nil, apiErrorf(wire.CodeInvalidArgument, "bad limit %q: want a non-negative integer (0: all)", v)
		}
		limit = n
	}
	es, err := au.AuditList(r.Context(), since, limit)
	if err != nil {
		return nil, fmt.Errorf("reading the audit log: %w", err)
	}
	resp := wire.AuditResponse{Entries: make([]wire.AuditEntry, 0, len(es))}
	for _, e := range es {
		resp.Entries = append(resp.Entries, wire.AuditEntry(e))
	}
	return resp, nil
}

func (s *Service) keyControl() (KeyControl, error) {
	if kc, ok := s.info.(KeyControl); ok {
		return kc, nil
	}
	return nil, apiErrorf(wire.CodeUnavailable, "keys are only available from the running daemon")
}

func (s *Service) keys(*http.Request) (any, error) {
	kc, err := s.keyControl()
	if err != nil {
		return nil, err
	}
	ki := kc.Keys()
	sort.SliceStable(ki.Keys, func(i, j int) bool { return ki.Keys[i].Primary && !ki.Keys[j].Primary })
	return ki, nil
}

func (s *Service) rotateKeys(r *http.Request) (any, error) {
	kc, err := s.keyControl()
	if err != nil {
		return nil, err
	}
	res, err := kc.RotateKeys(r.Context())
	if err != nil {
		return nil, err
	}
	s.log.Info("stored tokens re-sealed under a new key", "old_key_id", res.OldKeyID, "new_key_id", res.NewKeyID, "accounts", len(res.Resealed))
	return res, nil
}

// RunAuditPruner deletes audit entries older than retention every interval
// (default 1h) until ctx ends; now is the clock (default time.Now).
func RunAuditPruner(ctx context.Context, sp interface {
	AuditPrune(ctx context.Context, before time.Time) (int, error)
}, retention, interval time.Duration, now func() time.Time, log *slog.Logger) {
	if interval <= 0 {
		interval = time.Hour
	}
	if now == nil {
		now = time.Now
	}
	if log == nil {
		log = slog.Default()
	}
	log = log.With("component", "admin")
	t := time.NewTicker(interval)
	defer t.Stop()
	for {
		n, err := sp.AuditPrune(ctx, now().Add(-retention))
		switch {
		case err != nil && ctx.Err() == nil:
			log.Warn("pruning the audit log failed; retrying later", "err", err)
		case n > 0:
			log.Debug("pruned expired audit entries", "count", n, "retention", retention)
		}
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}
