package delivery

import (
	"bufio"
	"bytes"
	"context"
	"crypto/sha256"
	"crypto/tls"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/mail"
	"net/url"
	"strings"
	"sync"
	"time"

	"github.com/emersion/go-message/textproto"

	"github.com/spoold/spoold/auth"
	"github.com/spoold/spoold/configs/field"
	"github.com/spoold/spoold/delivery/graph"
)

// The Graph transport sends through Microsoft Graph instead of SMTP, for
// tenants that switched SMTP AUTH off. A message whose base64 MIME fits one
// request goes by sendMail; a larger one becomes a draft (the message
// without its largest attachments), each of those attachments goes through
// an upload session read again from the spooled body, and the draft is sent.
// Graph's answers become *SMTPError values with the classes SMTP answers
// get, so retries, dead letters, notices, holds and health work the same.
//
// Duplicates: sendMail is at-least-once, like SMTP after the final dot: an
// answer lost after the request left is retried and may send twice. The
// draft path is exactly-once across such a loss: the draft's immutable ID
// is committed to the spool (the account's records, key graphDraftKey)
// before the send request, and a later attempt asks Graph about that draft
// first: still a draft, it is sent; no longer a draft (it became the Sent
// Items copy, which keeps an immutable ID), the message counts as delivered.

// graphDraftKey is the per-account spool record of a message's draft.
func graphDraftKey(id string) string { return "graph-draft:" + id }

// graphDraft is that record.
type graphDraft struct {
	DraftID string    `json:"draft_id"`
	State   string    `json:"state"` // "draft": being built; "sending": the send request may have left
	Updated time.Time `json:"updated"`
}

// graphSentGrace is how long after a send request a draft that answers 404
// is taken as not yet visible in Sent Items rather than sent: Microsoft
// says the Sent Items copy may take a moment to appear.
const graphSentGrace = 10 * time.Minute

// graphMaxInlineWait is the longest a send waits for a Retry-After inline;
// past it the message is deferred as throttled.
const graphMaxInlineWait = 30 * time.Second

// accountStore is the spool's per-account records (*spool.Spool has them).
type accountStore interface {
	AccountGet(ctx context.Context, account, key string) ([]byte, bool, error)
	AccountPut(ctx context.Context, account, key string, value []byte) error
	AccountDelete(ctx context.Context, account, key string) error
}

// memStore stands in when the spool has no records (engine tests' fakes):
// the draft path then loses its record across restarts.
type memStore struct {
	mu sync.Mutex
	m  map[string][]byte
}

func (s *memStore) AccountGet(_ context.Context, account, key string) ([]byte, bool, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	v, ok := s.m[account+"\x00"+key]
	return v, ok, nil
}

func (s *memStore) AccountPut(_ context.Context, account, key string, v []byte) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.m == nil {
		s.m = map[string][]byte{}
	}
	s.m[account+"\x00"+key] = bytes.Clone(v)
	return nil
}

func (s *memStore) AccountDelete(_ context.Context, account, key string) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	delete(s.m, account+"\x00"+key)
	return nil
}

type graphTransport struct {
	cfg        AccountConfig
	client     *http.Client
	tokens     Tokens
	recoveries func() uint64
	// reopen renders message id again (the sender rule applied), for the
	// draft path's further reads of the spooled body.
	reopen func(id string) (io.WriterTo, io.Closer, error)
	store  accountStore
	clock  func() time.Time
	log    *slog.Logger
	gate   chan struct{} // Graph's concurrent requests per mailbox

	mu        sync.Mutex
	notBefore time.Time // a Retry-After: no request before
}

// newGraphTransport builds the account's Graph transport (cfg has its defaults).
func (e *Engine) newGraphTransport(a *account) (*graphTransport, error) {
	cfg := a.cfg
	tc := &tls.Config{MinVersion: tls.VersionTLS12}
	if cfg.CAFile != "" {
		pool, err := loadCAFile(cfg.CAFile)
		if err != nil {
			return nil, fmt.Errorf("delivery: account %q: %w", cfg.Name, err)
		}
		tc.RootCAs = pool
	}
	dial := e.opts.Dial
	tr := &http.Transport{
		// Like the token requests, Graph goes through the proxy HTTPS_PROXY
		// names (NO_PROXY and loopback excepted): servers behind an outbound
		// proxy reach graph.microsoft.com only that way.
		Proxy:                 http.ProxyFromEnvironment,
		DialContext:           func(ctx context.Context, n, addr string) (net.Conn, error) { return dial(ctx, n, addr) },
		TLSClientConfig:       tc,
		TLSHandshakeTimeout:   cfg.ConnectTimeout,
		ResponseHeaderTimeout: cfg.CommandTimeout,
		MaxIdleConnsPerHost:   graph.MaxConcurrent,
		IdleConnTimeout:       90 * time.Second,
		ForceAttemptHTTP2:     true,
	}
	store, ok := e.msgs.(accountStore)
	if !ok {
		store = &memStore{}
	}
	msgs := e.msgs
	return &graphTransport{
		cfg:        cfg,
		client:     &http.Client{Transport: tr},
		tokens:     e.tokens,
		recoveries: func() uint64 { return e.recoveriesOf(a) },
		reopen: func(id string) (io.WriterTo, io.Closer, error) {
			body, err := msgs.OpenBody(id)
			if err != nil {
				return nil, nil, err
			}
			p, err := prepare(body, cfg.SenderRule, cfg.Mailbox)
			if err != nil {
				body.Close()
				return nil, nil, err
			}
			return p, body, nil
		},
		store: store,
		clock: e.opts.Clock,
		log:   e.log.With("account", cfg.Name, "transport", "graph"),
		gate:  make(chan struct{}, graph.MaxConcurrent),
	}, nil
}

// open gets the account's token (Graph has no connection to set up) and
// checks that the Graph endpoint answers at all, so an unreachable
// endpoint counts as an upstream outage as a refused SMTP dial does.
func (t *graphTransport) open(ctx context.Context, _ string, _ bool) (session, error) {
	rec := t.recoveries()
	tok, err := t.tokens.AccessToken(ctx, t.cfg.Name)
	if err != nil {
		return nil, &tokenError{err, rec}
	}
	pctx, cancel := context.WithTimeout(ctx, t.cfg.ConnectTimeout)
	defer cancel()
	// An unauthenticated HEAD costs no mailbox request; any HTTP answer
	// (401) proves the endpoint reachable and its certificate valid.
	req, err := http.NewRequestWithContext(pctx, http.MethodHead, strings.TrimRight(t.cfg.GraphEndpoint, "/")+"/v1.0/users", nil)
	if err != nil {
		return nil, &SMTPError{Command: "CONNECT", Class: ClassConfig, Text: "graph endpoint: " + err.Error()}
	}
	resp, err := t.client.Do(req)
	if err != nil {
		return nil, netErr("CONNECT", "reaching Microsoft Graph at "+t.cfg.GraphEndpoint, unwrapURL(err))
	}
	io.Copy(io.Discard, io.LimitReader(resp.Body, 4096))
	resp.Body.Close()
	s := &graphSession{t: t, token: tok}
	s.c = &graph.Client{Endpoint: t.cfg.GraphEndpoint, Mailbox: t.cfg.Mailbox, HTTP: t.client, Tokens: s, Gate: t.acquire}
	return s, nil
}

// unwrapURL drops the *url.Error wrapper (its text repeats the URL).
func unwrapURL(err error) error {
	if ue := (interface{ Unwrap() error })(nil); errors.As(err, &ue) {
		if inner := ue.Unwrap(); inner != nil {
			return inner
		}
	}
	return err
}

// acquire holds one of the mailbox's concurrent request slots.
func (t *graphTransport) acquire(ctx context.Context) (func(), error) {
	select {
	case t.gate <- struct{}{}:
		return func() { <-t.gate }, nil
	case <-ctx.Done():
		return nil, ctx.Err()
	}
}

// wait honours a Retry-After Graph gave the account; false when the wait
// is too long to spend in a worker.
func (t *graphTransport) wait(ctx context.Context) (time.Time, bool) {
	t.mu.Lock()
	until := t.notBefore
	t.mu.Unlock()
	d := until.Sub(t.clock())
	if d <= 0 {
		return until, true
	}
	if d > graphMaxInlineWait {
		return until, false
	}
	tm := time.NewTimer(d)
	defer tm.Stop()
	select {
	case <-tm.C:
		return until, true
	case <-ctx.Done():
		return until, false
	}
}

func (t *graphTransport) retryAfter(d time.Duration) {
	if d <= 0 {
		return
	}
	t.mu.Lock()
	if u := t.clock().Add(d); u.After(t.notBefore) {
		t.notBefore = u
	}
	t.mu.Unlock()
}

type graphSession struct {
	t     *graphTransport
	c     *graph.Client
	mu    sync.Mutex
	token string
}

func (s *graphSession) usable() bool { return true }
func (s *graphSession) close()       {}

// Token and Refresh make the session the client's token source: a 401
// gets one refreshed token, shared with the account's other users.
func (s *graphSession) Token(context.Context) (string, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.token, nil
}

func (s *graphSession) Refresh(ctx context.Context, rejected string) (string, error) {
	tok, err := s.t.tokens.RefreshRejected(ctx, s.t.cfg.Name, rejected)
	if err != nil {
		return "", err
	}
	s.mu.Lock()
	s.token = tok
	s.mu.Unlock()
	return tok, nil
}

func (s *graphSession) send(ctx context.Context, env envelope, msg io.WriterTo, size int64) (sendResult, error) {
	if until, ok := s.t.wait(ctx); !ok {
		if err := ctx.Err(); err != nil {
			// Shutting down: nothing was sent (Code 0 postpones the message).
			return sendResult{}, &SMTPError{Command: "GRAPH", Class: ClassTransient, Text: "interrupted while waiting for Graph's Retry-After", Err: err}
		}
		return sendResult{}, &SMTPError{Code: 451, Enhanced: "4.7.500", Command: "GRAPH", Class: ClassThrottled,
			Text: "Microsoft Graph asked the account to wait until " + until.UTC().Format(time.RFC3339)}
	}
	ctx, cancel := context.WithTimeout(ctx, s.t.cfg.DataTimeout)
	defer cancel()
	// The spooled size tells a message that cannot fit one request (the
	// sender rule and the Bcc change the header by a few hundred bytes);
	// one that may fit is rendered, and goes the draft way if it did not.
	var buf bytes.Buffer
	err := errTooLong
	if size <= graph.MaxMIMEForRequest+graphHeaderSlack {
		buf.Grow(int(min(size, graph.MaxMIMEForRequest)) + 4096)
		err = withEnvelope(&limitWriter{w: &buf, n: graph.MaxMIMEForRequest}, msg, env.To)
	}
	switch {
	case err == nil:
		if err := s.c.SendMIME(ctx, buf.Bytes()); err != nil {
			return sendResult{}, s.fail(ctx, err)
		}
		return accepted(env, "202 Accepted by Microsoft Graph (sendMail)"), nil
	case !errors.Is(err, errTooLong):
		return sendResult{}, &SMTPError{Command: "GRAPH", Class: ClassInternal, Text: "reading the spooled message: " + err.Error(), Err: err}
	case s.t.cfg.GraphSendMailOnly:
		return sendResult{}, &SMTPError{Code: 552, Enhanced: "5.3.4", Command: "GRAPH", Class: ClassPermanent,
			Text: fmt.Sprintf("message is larger than one Graph request carries (%d bytes) and graph_large_messages is off for this account", graph.MaxMIMEForRequest)}
	}
	buf = bytes.Buffer{}
	return s.sendLarge(ctx, env)
}

func accepted(env envelope, reply string) sendResult {
	res := sendResult{Reply: reply}
	for _, r := range env.To {
		res.Rcpts = append(res.Rcpts, rcptResult{Addr: r})
	}
	return res
}

var errTooLong = errors.New("message larger than one Graph request")

// graphHeaderSlack bounds how much the sender rule and the Bcc field can
// shrink a header: a message this much over one request's size never fits.
const graphHeaderSlack = 64 << 10

// limitWriter fails with errTooLong past n bytes.
type limitWriter struct {
	w io.Writer
	n int
}

func (l *limitWriter) Write(p []byte) (int, error) {
	if len(p) > l.n {
		return 0, errTooLong
	}
	l.n -= len(p)
	return l.w.Write(p)
}

// withEnvelope writes msg with a Bcc field naming the envelope recipients
// its To, Cc and Bcc fields lack: Graph sends to the addresses in the
// header, and the envelope (SMTP's RCPT TO) is what was asked for.
func withEnvelope(w io.Writer, msg io.WriterTo, rcpts []string) error {
	pr, pw := io.Pipe()
	done := make(chan error, 1)
	go func() {
		_, err := msg.WriteTo(pw)
		pw.CloseWithError(err)
		done <- err
	}()
	err := func() error {
		br := bufio.NewReaderSize(pr, 32<<10)
		h, err := textproto.ReadHeader(br)
		if err != nil {
			return fmt.Errorf("reading the header: %w", err)
		}
		have := map[string]bool{}
		for _, k := range []string{"To", "Cc", "Bcc"} {
			for _, v := range h.Values(k) {
				if as, err := mail.ParseAddressList(v); err == nil {
					for _, a := range as {
						have[strings.ToLower(a.Address)] = true
					}
				}
			}
		}
		var missing []string
		for _, r := range rcpts {
			if !have[strings.ToLower(r)] {
				missing = append(missing, (&mail.Address{Address: r}).String())
				have[strings.ToLower(r)] = true
			}
		}
		if len(missing) > 0 {
			h.Add("Bcc", strings.Join(missing, ", "))
		}
		if err := textproto.WriteHeader(w, h); err != nil {
			return err
		}
		_, err = io.Copy(w, br)
		return err
	}()
	pr.CloseWithError(errors.New("stopped reading"))
	werr := <-done
	if err != nil {
		return err
	}
	return werr
}

// reader renders a message (with the envelope's Bcc) as a stream; stop
// ends it early and waits for the writer.
func reader(msg io.WriterTo, rcpts []string) (r io.Reader, stop func()) {
	pr, pw := io.Pipe()
	done := make(chan struct{})
	go func() {
		defer close(done)
		pw.CloseWithError(withEnvelope(pw, msg, rcpts))
	}()
	return pr, func() { pr.CloseWithError(errors.New("stopped reading")); <-done }
}

// sendLarge is the draft path.
func (s *graphSession) sendLarge(ctx context.Context, env envelope) (sendResult, error) {
	t := s.t
	log := t.log.With("msg_id", env.ID)
	key := graphDraftKey(env.ID)
	rec, err := t.loadDraft(ctx, key)
	if err != nil {
		return sendResult{}, err
	}
	if rec != nil && rec.State == "sending" {
		m, gerr := s.c.GetMessage(ctx, rec.DraftID)
		ge := graph.As(gerr)
		switch {
		case gerr == nil && !m.IsDraft:
			log.Info("the draft of an earlier attempt was sent: not sending again", "draft_state", "sent")
			t.forgetDraft(ctx, key, log)
			return accepted(env, "sent by an earlier attempt (Microsoft Graph shows the message in Sent Items)"), nil
		case gerr == nil:
			return s.sendDraft(ctx, env, key, rec, log)
		case ge != nil && ge.Kind() == graph.KindNotFound && t.clock().Sub(rec.Updated) < graphSentGrace:
			return sendResult{}, &SMTPError{Code: 451, Enhanced: "4.4.0", Command: "GRAPH", Class: ClassTransient,
				Text: "waiting for Microsoft Graph to show whether the draft of an earlier attempt was sent"}
		case ge != nil && ge.Kind() == graph.KindNotFound:
			log.Warn("the draft of an earlier attempt is gone: taken as sent (it left Drafts after the send request)")
			t.forgetDraft(ctx, key, log)
			return accepted(env, "taken as sent by an earlier attempt (its draft is gone)"), nil
		default:
			return sendResult{}, s.fail(ctx, gerr)
		}
	}
	if rec != nil {
		// An unfinished draft of an earlier attempt: never sent, start over.
		if err := s.c.DeleteDraft(ctx, rec.DraftID); err != nil {
			return sendResult{}, s.fail(ctx, err)
		}
		t.forgetDraft(ctx, key, log)
	}
	// The rendered message is read again for every piece: plan, draft, and
	// each attachment.
	var layout *graph.Layout
	if err := t.read(env, func(r io.Reader) (err error) {
		layout, err = graph.Plan(r, graph.MaxMIMEForRequest)
		return err
	}); err != nil {
		return sendResult{}, contentErr(err)
	}
	var skel bytes.Buffer
	if err := t.read(env, func(r io.Reader) error { return graph.Skeleton(r, layout, &skel) }); err != nil {
		return sendResult{}, contentErr(err)
	}
	id, err := s.c.CreateDraft(ctx, skel.Bytes())
	if err != nil {
		return sendResult{}, s.fail(ctx, err)
	}
	skel = bytes.Buffer{}
	rec = &graphDraft{DraftID: id, State: "draft", Updated: t.clock()}
	if err := t.saveDraft(ctx, key, rec); err != nil {
		s.c.DeleteDraft(ctx, id)
		return sendResult{}, err
	}
	for _, p := range layout.Parts {
		item := graph.AttachmentItem{Name: p.Name, Size: p.Size, ContentType: p.ContentType, IsInline: p.Inline, ContentID: p.ContentID}
		var upErr error
		err := t.read(env, func(r io.Reader) error {
			return graph.Attachment(r, p.Path, func(dec io.Reader) error {
				h := sha256.New()
				upErr = s.c.UploadAttachment(ctx, id, item, io.TeeReader(dec, h))
				if upErr == nil && !bytes.Equal(h.Sum(nil), p.Sum[:]) {
					upErr = fmt.Errorf("%w: attachment %q read differently the second time", graph.ErrContent, p.Name)
				}
				return upErr
			})
		})
		if upErr != nil {
			err = upErr
		}
		if err != nil {
			se := &SMTPError{Command: "GRAPH", Class: ClassInternal, Text: "uploading attachment " + p.Name + ": " + err.Error(), Err: err}
			if graph.As(err) != nil {
				se = s.fail(ctx, err)
			}
			if se.Class == ClassPermanent {
				// The message is dead: its draft will never be sent.
				s.abandon(ctx, key, rec, log)
			}
			return sendResult{}, se
		}
		log.Debug("attachment uploaded", "name", p.Name, "bytes", p.Size)
	}
	return s.sendDraft(ctx, env, key, rec, log)
}

// abandon deletes a draft that will not be sent, and its record.
func (s *graphSession) abandon(ctx context.Context, key string, rec *graphDraft, log *slog.Logger) {
	if err := s.c.DeleteDraft(context.WithoutCancel(ctx), rec.DraftID); err != nil {
		log.Warn("deleting the draft of a dead-lettered message (it stays in Drafts, unsent)", "err", err)
		return
	}
	s.t.forgetDraft(ctx, key, log)
}

// sendDraft commits the "sending" record, then asks Graph to send.
func (s *graphSession) sendDraft(ctx context.Context, env envelope, key string, rec *graphDraft, log *slog.Logger) (sendResult, error) {
	rec.State, rec.Updated = "sending", s.t.clock()
	if err := s.t.saveDraft(ctx, key, rec); err != nil {
		return sendResult{}, err
	}
	if err := s.c.SendDraft(ctx, rec.DraftID); err != nil {
		ge := graph.As(err)
		se := s.fail(ctx, err)
		switch {
		case ge != nil && !ge.Ambiguous && ge.Status != 0 && ge.Status < 500 && se.Class == ClassPermanent:
			s.abandon(ctx, key, rec, log)
		case ge != nil && !ge.Ambiguous && ge.Status != 0 && ge.Status < 500:
			// Refused: the draft stays a draft; build it afresh next time.
			rec.State = "draft"
			s.t.saveDraft(ctx, key, rec)
		}
		if se.Class == ClassUnknown {
			// Unlike sendMail this is safe to retry: the next attempt asks first.
			se.Class = ClassTransient
			se.Text += " (the next attempt asks Graph whether the draft was sent before sending it)"
		}
		return sendResult{}, se
	}
	s.t.forgetDraft(ctx, key, log)
	return accepted(env, "202 Accepted by Microsoft Graph (draft sent)"), nil
}

// read renders env's message again from the spool and calls fn with it.
func (t *graphTransport) read(env envelope, fn func(io.Reader) error) error {
	msg, closer, err := t.reopen(env.ID)
	if err != nil {
		return fmt.Errorf("re-reading the spooled body: %w", err)
	}
	defer closer.Close()
	r, stop := reader(msg, env.To)
	err = fn(r)
	stop()
	return err
}

func (t *graphTransport) loadDraft(ctx context.Context, key string) (*graphDraft, error) {
	b, ok, err := t.store.AccountGet(ctx, t.cfg.Name, key)
	if err != nil {
		return nil, &SMTPError{Command: "GRAPH", Class: ClassInternal, Text: "reading the draft record: " + err.Error(), Err: err}
	}
	if !ok {
		return nil, nil
	}
	var rec graphDraft
	if json.Unmarshal(b, &rec) != nil || rec.DraftID == "" {
		return nil, nil // unreadable: treat as none (nothing was sent from it by us)
	}
	return &rec, nil
}

func (t *graphTransport) saveDraft(ctx context.Context, key string, rec *graphDraft) error {
	b, _ := json.Marshal(rec)
	if err := t.store.AccountPut(ctx, t.cfg.Name, key, b); err != nil {
		return &SMTPError{Command: "GRAPH", Class: ClassInternal, Text: "recording the draft: " + err.Error(), Err: err}
	}
	return nil
}

func (t *graphTransport) forgetDraft(ctx context.Context, key string, log *slog.Logger) {
	if err := t.store.AccountDelete(context.WithoutCancel(ctx), t.cfg.Name, key); err != nil {
		log.Warn("removing the draft record", "err", err)
	}
}

// contentErr: the message cannot be split for Graph (permanent) or could
// not be read (retried).
func contentErr(err error) *SMTPError {
	if errors.Is(err, graph.ErrContent) {
		return &SMTPError{Code: 554, Enhanced: "5.6.0", Command: "GRAPH", Class: ClassPermanent, Text: err.Error(), Err: err}
	}
	return &SMTPError{Command: "GRAPH", Class: ClassInternal, Text: err.Error(), Err: err}
}

// Reasons and fixes for Graph answers that hold the account.
const (
	graphAccessDeniedFix = "give the app registration the Microsoft Graph permission Mail.Send (and Mail.ReadWrite for messages over 3 MB, " +
		"or set graph_large_messages: false) with admin consent; for app-only access also check that the application access policy " +
		"or RBAC for Applications scope includes this mailbox; then run spoolctl auth login with the account name (or reload spoold)"
	graphMailboxFix = "check that the mailbox exists in Exchange Online with a license, and that mailbox names it (user principal name or primary address)"
)

// graphBlocked recognises the Graph answers (Command GRAPH) that hold the
// account; blockedReply asks it first.
func graphBlocked(e *SMTPError) *blocked {
	if e.Command != "GRAPH" {
		return nil
	}
	switch e.Enhanced {
	case "5.7.1":
		return &blocked{why: "Microsoft Graph denied the app access to the mailbox (a permission or access policy is missing)", fix: graphAccessDeniedFix}
	case "5.1.7":
		return &blocked{why: "Microsoft Graph does not find the sending mailbox", fix: graphMailboxFix}
	}
	return nil
}

// fail maps a Graph error onto delivery's classes, and tells auth and the
// account what it learned (refused token, missing permission, Retry-After).
func (s *graphSession) fail(ctx context.Context, err error) *SMTPError {
	t := s.t
	ge := graph.As(err)
	if ge == nil {
		// The token source failed inside a 401 refresh.
		if errors.Is(err, auth.ErrNeedsReauth) || errors.Is(err, auth.ErrMisconfigured) {
			return &SMTPError{Code: 535, Enhanced: "5.7.8", Command: "AUTH", Class: ClassAuth, Text: err.Error(), Err: err}
		}
		return &SMTPError{Command: "GRAPH", Class: ClassTransient, Text: err.Error(), Err: err}
	}
	se := &SMTPError{Command: "GRAPH", Text: ge.Error(), Err: err}
	switch ge.Kind() {
	case graph.KindAmbiguous:
		se.Class = ClassUnknown
	case graph.KindTransient, graph.KindNotFound:
		se.Class = ClassTransient
		if ge.Status != 0 {
			se.Code, se.Enhanced = 451, "4.3.0"
		}
	case graph.KindThrottled:
		se.Code, se.Enhanced, se.Class = 451, "4.7.500", ClassThrottled
		t.retryAfter(ge.RetryAfter)
	case graph.KindAuth:
		se.Code, se.Enhanced, se.Class, se.Command = 535, "5.7.8", ClassAuth, "AUTH"
		if ge.Refreshed {
			reason := "Microsoft Graph refused a freshly refreshed token (" + ge.Error() + "): run spoolctl auth login " + t.cfg.Name
			if merr := t.tokens.MarkNeedsReauth(context.WithoutCancel(ctx), t.cfg.Name, reason); merr != nil {
				t.log.Error("marking account needs_reauth", "err", merr)
			}
		}
	case graph.KindAccessDenied:
		se.Code, se.Enhanced, se.Class = 550, "5.7.1", ClassBlocked
		reason := "Microsoft Graph denied access (" + ge.Error() + "): " + graphAccessDeniedFix
		if merr := t.tokens.MarkMisconfigured(context.WithoutCancel(ctx), t.cfg.Name, reason); merr != nil {
			t.log.Error("marking account misconfigured", "err", merr)
		}
	case graph.KindMailboxNotFound:
		se.Code, se.Enhanced, se.Class = 550, "5.1.7", ClassBlocked
	case graph.KindMailboxFull:
		se.Code, se.Enhanced, se.Class = 554, "5.2.2", ClassBlocked
	case graph.KindSubmissionQuota:
		// blockedReply's SubmissionQuotaExceeded case reads the text.
		se.Code, se.Enhanced, se.Class = 554, "5.2.0", ClassBlocked
		se.Text += " (SubmissionQuotaExceeded)"
	case graph.KindSubmissionBlocked:
		se.Code, se.Enhanced, se.Class = 550, "5.1.8", ClassBlocked
	case graph.KindSendAsDenied:
		se.Code, se.Enhanced, se.Class = 554, "5.2.0", ClassPermanent
		se.Text += " (SendAsDenied)"
	case graph.KindInvalidRecipient:
		se.Code, se.Enhanced, se.Class = 550, "5.1.1", ClassPermanent
	case graph.KindTooLarge:
		se.Code, se.Enhanced, se.Class = 552, "5.3.4", ClassPermanent
	default: // KindBadRequest
		se.Code, se.Enhanced, se.Class = 554, "5.6.0", ClassPermanent
	}
	return se
}

// DefaultGraphEndpoint is the global cloud's Graph root; auth owns the
// clouds' endpoints (a US Gov account gets its own from the preset).
const DefaultGraphEndpoint = auth.GraphGlobal

// validateGraph checks a graph account's own keys.
func validateGraph(a AccountConfig, ps *field.Problems) {
	if a.Mailbox == "" {
		ps.Add("mailbox", "required with transport graph: the mailbox Graph sends from")
	}
	u, err := url.Parse(a.GraphEndpoint)
	switch {
	case err != nil:
		ps.Add("graph_endpoint", "%q is not a URL: %v", a.GraphEndpoint, err)
	case u.Scheme != "https" || u.Host == "":
		ps.Add("graph_endpoint", "%q: want an https:// URL such as %s", a.GraphEndpoint, DefaultGraphEndpoint)
	case strings.Trim(u.Path, "/") != "" || u.RawQuery != "" || u.User != nil:
		ps.Add("graph_endpoint", "%q: want the Graph root only (no path such as /v1.0, no query)", a.GraphEndpoint)
	}
	if a.CAFile != "" {
		if _, err := loadCAFile(a.CAFile); err != nil {
			ps.Add("ca_file", "%v", err)
		}
	}
}
