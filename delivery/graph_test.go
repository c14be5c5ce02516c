package delivery

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/base64"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/spoold/spoold/delivery/graph/graphtest"
	"github.com/spoold/spoold/spool"
	"github.com/spoold/spoold/spool/spooltest"
)

// graphHarness runs the engine with a graph account against the fake
// Graph server and the real bbolt spool (its per-account records hold the
// draft IDs).
type graphHarness struct {
	t      *testing.T
	g      *graphtest.Server
	sp     *spool.Spool
	eng    *Engine
	tokens *fakeTokens
	logs   *logBuffer
	clock  *shiftClock
}

// shiftClock is the real time plus an offset a test can move forward.
type shiftClock struct {
	mu  sync.Mutex
	off time.Duration
}

func (c *shiftClock) Now() time.Time { c.mu.Lock(); defer c.mu.Unlock(); return time.Now().Add(c.off) }
func (c *shiftClock) Add(d time.Duration) {
	c.mu.Lock()
	c.off += d
	c.mu.Unlock()
}

const graphMailbox = "scanner@tenant.example"

func newGraphHarness(t *testing.T, edit func(*AccountConfig)) *graphHarness {
	t.Helper()
	g := graphtest.New(graphMailbox)
	t.Cleanup(g.Close)
	// fakeTokens hands out tok-1, tok-2, ...: the fake accepts them with
	// the delegated scopes unless a test says otherwise.
	g.SetTokenCheck(func(tok string) (string, bool) {
		return graphtest.ScopeMailSend + " " + graphtest.ScopeMailReadWrite + " offline_access", strings.HasPrefix(tok, "tok-")
	})
	ca := filepath.Join(t.TempDir(), "graph-ca.pem")
	if err := os.WriteFile(ca, g.CertificatePEM(), 0o600); err != nil {
		t.Fatal(err)
	}
	acc := AccountConfig{Name: "m365", Transport: "graph", GraphEndpoint: g.URL(), CAFile: ca, Mailbox: graphMailbox,
		RatePerMinute: -1, ConnectTimeout: 10 * time.Second, CommandTimeout: 10 * time.Second, DataTimeout: 60 * time.Second}
	if edit != nil {
		edit(&acc)
	}
	h := &graphHarness{t: t, g: g, tokens: newTokens(), logs: &logBuffer{}, clock: &shiftClock{}}
	h.sp = spooltest.OpenTemp(t, spool.Options{Logger: slog.New(slog.NewTextHandler(io.Discard, nil))})
	var err error
	h.eng, err = New([]AccountConfig{acc}, h.sp, h.tokens, Options{Owner: "node-1", ShutdownTimeout: 5 * time.Second,
		Clock: h.clock.Now, Rand: func() float64 { return 0.5 },
		Logger:   slog.New(slog.NewTextHandler(h.logs, &slog.HandlerOptions{Level: slog.LevelDebug})),
		Hostname: "spoold.test"})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- h.eng.Run(ctx) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("Run: %v", err)
		}
		if ps := g.Problems(); len(ps) > 0 {
			t.Errorf("requests that break Graph's documented shape: %q", ps)
		}
	})
	return h
}

func (h *graphHarness) enqueue(body string, to ...string) string {
	h.t.Helper()
	if len(to) == 0 {
		to = []string{"bob@dest.example"}
	}
	return realEnqueue(h.t, h.sp, spool.EnqueueRequest{From: "alice@office.example", To: to,
		Source: spool.Source{Kind: spool.SourceScan}}, body)
}

func (h *graphHarness) wait(id string, st spool.State) *spool.Message {
	h.t.Helper()
	return realWait(h.t, h.sp, id, func(m *spool.Message) bool { return m.State == st })
}

// flush makes id due now. Once the clock has moved past its retry time
// the engine may have claimed it already (another enqueue wakes it), so
// a message that is active or delivered is not an error here. If the
// engine's attempt ended between the refused flush and the look at the
// message (deferred again), the flush is tried again.
func (h *graphHarness) flush(id string) {
	h.t.Helper()
	for range 100 {
		err := h.sp.Flush(context.Background(), id)
		if err == nil {
			return
		}
		if !errors.Is(err, spool.ErrWrongState) {
			h.t.Fatal(err)
		}
		m, gerr := h.sp.Get(context.Background(), id)
		if gerr != nil {
			h.t.Fatalf("flush %s: %v, then get: %v", id, err, gerr)
		}
		switch m.State {
		case spool.StateActive, spool.StateDelivered:
			return
		case spool.StateQueued, spool.StateDeferred:
			continue
		}
		h.t.Fatalf("flush %s: %v (now %s)", id, err, m.State)
	}
	h.t.Fatalf("flush %s: the message kept changing state", id)
}

// waitDeferred waits until id's attempt ended with a recorded error.
func (h *graphHarness) waitDeferred(id string) *spool.Message {
	h.t.Helper()
	return realWait(h.t, h.sp, id, func(m *spool.Message) bool { return m.State == spool.StateDeferred && m.LastError != nil })
}

// scan is a scanner's message: a text part and a PDF of size bytes, base64
// in 76-character lines as MFDs write it.
func scan(t testing.TB, size int, extra ...[]byte) (string, []byte) {
	t.Helper()
	pdf := make([]byte, size)
	rand.Read(pdf)
	copy(pdf, "%PDF-1.7\n")
	var b strings.Builder
	b.WriteString("From: Scanner <alice@office.example>\r\nTo: bob@dest.example\r\nSubject: Scan 0042\r\n" +
		"Message-ID: <scan-0042@mfd.office.example>\r\nMIME-Version: 1.0\r\n" +
		"Content-Type: multipart/mixed; boundary=\"b1\"\r\n\r\npreamble\r\n--b1\r\n" +
		"Content-Type: text/plain; charset=utf-8\r\n\r\nYour scan is attached.\r\n")
	add := func(name string, data []byte) {
		b.WriteString("--b1\r\nContent-Type: application/pdf; name=\"" + name + "\"\r\nContent-Transfer-Encoding: base64\r\n" +
			"Content-Disposition: attachment; filename=\"" + name + "\"\r\n\r\n")
		enc := base64.StdEncoding.EncodeToString(data)
		for len(enc) > 76 {
			b.WriteString(enc[:76] + "\r\n")
			enc = enc[76:]
		}
		b.WriteString(enc + "\r\n")
	}
	add("scan-0042.pdf", pdf)
	for i, e := range extra {
		add(fmt.Sprintf("extra-%d.pdf", i+1), e)
	}
	b.WriteString("--b1--\r\n")
	return b.String(), pdf
}

func TestGraphSendMIME(t *testing.T) {
	h := newGraphHarness(t, nil)
	id := h.enqueue(simpleBody, "bob@dest.example", "carol@dest.example")
	h.wait(id, spool.StateDelivered)
	sent := h.g.Sent()
	if len(sent) != 1 || sent[0].Via != "sendMail" {
		t.Fatalf("sent %+v, want one sendMail", sent)
	}
	mime := string(sent[0].MIME)
	for _, want := range []string{
		"From: \"Alice Example\" <" + graphMailbox + ">", // the sender rule applies
		"Reply-To: \"Alice Example\" <alice@office.example>",
		"To: bob@dest.example",
		"Bcc: <carol@dest.example>", // envelope-only recipient
		"\r\n\r\nhello\r\n",
	} {
		if !strings.Contains(mime, want) {
			t.Errorf("sent MIME lacks %q:\n%s", want, mime)
		}
	}
	if strings.Count(mime, "bob@dest.example") != 1 {
		t.Errorf("bob is named more than once (he is in To already):\n%s", mime)
	}
	if n := h.g.Calls(graphtest.OpCreateDraft); n != 0 {
		t.Errorf("a small message made %d drafts", n)
	}
}

func TestGraphLargeMessageUploadsAttachments(t *testing.T) {
	h := newGraphHarness(t, nil)
	small := make([]byte, 50_000)
	rand.Read(small)
	body, pdf := scan(t, 5_000_000, small)
	id := h.enqueue(body)
	h.wait(id, spool.StateDelivered)
	sent := h.g.Sent()
	if len(sent) != 1 || sent[0].Via != "draft" {
		t.Fatalf("sent %d messages (%+v), want one draft", len(sent), sent)
	}
	s := sent[0]
	if len(s.Attachments) != 1 {
		t.Fatalf("uploaded %d attachments, want the large one only", len(s.Attachments))
	}
	a := s.Attachments[0]
	if a.Name != "scan-0042.pdf" || a.ContentType != "application/pdf" || !bytes.Equal(a.Data, pdf) {
		t.Errorf("uploaded attachment %q (%s, %d bytes) differs from the scan (%d bytes)", a.Name, a.ContentType, len(a.Data), len(pdf))
	}
	for i, r := range a.Ranges {
		var start, end, total int64
		fmt.Sscanf(r, "bytes %d-%d/%d", &start, &end, &total)
		if n := end - start + 1; end+1 != total && n%graphtest320K != 0 {
			t.Errorf("chunk %d %s is not a multiple of 320 KiB", i, r)
		}
	}
	mime := string(s.MIME)
	if strings.Contains(mime, "scan-0042.pdf") || !strings.Contains(mime, "extra-1.pdf") || !strings.Contains(mime, "Your scan is attached.") {
		t.Errorf("the draft should keep the text and the small attachment and leave the large one out:\n%.600s", mime)
	}
	if !strings.Contains(mime, "From: \"Scanner\" <"+graphMailbox+">") {
		t.Errorf("the draft lacks the rewritten From:\n%.400s", mime)
	}
	if h.g.Drafts() != 0 {
		t.Errorf("%d drafts left behind", h.g.Drafts())
	}
	if _, ok, _ := h.sp.AccountGet(context.Background(), "m365", graphDraftKey(id)); ok {
		t.Error("the draft record outlived the delivery")
	}
}

const graphtest320K = 320 * 1024

func TestGraphChunkFailureResumes(t *testing.T) {
	h := newGraphHarness(t, nil)
	// The second chunk is cut off midway, the fourth arrives but its
	// answer is lost: both resume from the last acknowledged range.
	h.g.Fail(graphtest.OpUpload, graphtest.Failure{}, graphtest.Failure{Midway: true}, graphtest.Failure{}, graphtest.Failure{Lost: true})
	body, pdf := scan(t, 12_000_000)
	id := h.enqueue(body)
	m := h.wait(id, spool.StateDelivered)
	sent := h.g.Sent()
	if len(sent) != 1 || len(sent[0].Attachments) != 1 || !bytes.Equal(sent[0].Attachments[0].Data, pdf) {
		t.Fatalf("after resumed chunks: %d messages sent; the attachment must arrive whole and once", len(sent))
	}
	if m.Attempts != 1 {
		t.Errorf("attempts = %d: a chunk failure should resume within the attempt", m.Attempts)
	}
}

func TestGraphThrottleRetryAfterSlowsAccount(t *testing.T) {
	h := newGraphHarness(t, nil)
	h.g.Fail(graphtest.OpSendMail, graphtest.Failure{Status: 429, Code: "ApplicationThrottled",
		Message: "Application is over its MailboxConcurrency limit.", RetryAfter: 120})
	id := h.enqueue(simpleBody)
	m := h.waitDeferred(id)
	if m.LastError.Class != ClassThrottled {
		t.Errorf("class %q, want throttled (%+v)", m.LastError.Class, m.LastError)
	}
	st := h.eng.AccountStates()[0]
	if !st.ThrottledUntil.After(time.Now()) {
		t.Errorf("account not slowed down: %+v", st)
	}
	// Past the throttle pause and Graph's 2 minutes, mail flows again.
	id2 := h.enqueue(simpleBody)
	h.clock.Add(time.Hour)
	h.flush(id)
	h.wait(id, spool.StateDelivered)
	h.wait(id2, spool.StateDelivered)
}

func TestGraphRetryAfterGate(t *testing.T) {
	h := newGraphHarness(t, nil)
	h.g.Fail(graphtest.OpSendMail, graphtest.Failure{Status: 503, Code: "ServiceUnavailable", RetryAfter: 600})
	id := h.enqueue(simpleBody)
	h.waitDeferred(id)
	calls := h.g.Calls(graphtest.OpSendMail)
	// Due again past the engine's throttle pause but while Graph's 10
	// minutes last: no request is made.
	h.clock.Add(2 * time.Minute)
	h.flush(id)
	m := realWait(t, h.sp, id, func(m *spool.Message) bool { return m.Attempts == 2 && m.State != spool.StateActive })
	if n := h.g.Calls(graphtest.OpSendMail); n != calls {
		t.Errorf("%d sendMail requests inside Graph's Retry-After", n-calls)
	}
	if m.LastError == nil || !strings.Contains(m.LastError.Text, "asked the account to wait") {
		t.Errorf("last error %+v, want the Retry-After wait", m.LastError)
	}
}

func TestGraphErrorClasses(t *testing.T) {
	type want struct {
		dead, held bool
		class      string
		reason     string // in the dead-letter reason or the hold reason
		misconfig  bool
		reauth     bool
	}
	cases := []struct {
		name    string
		fail    []graphtest.Failure
		mailbox string
		want    want
	}{
		{"access denied", []graphtest.Failure{{Status: 403, Code: "ErrorAccessDenied", Message: "Access is denied. Check credentials and try again."}}, "",
			want{held: true, class: ClassBlocked, reason: "Mail.Send", misconfig: true}},
		{"mailbox not found", nil, "nobody@tenant.example",
			want{held: true, class: ClassBlocked, reason: "does not find the sending mailbox"}},
		{"mailbox full", []graphtest.Failure{{Status: 403, Code: "ErrorQuotaExceeded", Message: "The process failed to allocate sufficient memory"}}, "",
			want{held: true, class: ClassBlocked, reason: "mailbox is full"}},
		{"submission quota", []graphtest.Failure{{Status: 429, Code: "ErrorSubmissionQuotaExceeded", Message: "Cannot send: quota exceeded"}}, "",
			want{held: true, class: ClassBlocked, reason: "sending limit"}},
		{"submission blocked", []graphtest.Failure{{Status: 403, Code: "ErrorMessageSubmissionBlocked", Message: "The account is blocked from sending"}}, "",
			want{held: true, class: ClassBlocked, reason: "suspected spam"}},
		{"invalid recipient", []graphtest.Failure{{Status: 400, Code: "ErrorInvalidRecipients", Message: "At least one recipient is not valid."}}, "",
			want{dead: true, class: ClassPermanent, reason: "ErrorInvalidRecipients"}},
		{"send as denied", []graphtest.Failure{{Status: 403, Code: "ErrorSendAsDenied", Message: "The user account which was used to submit this request does not have the right to send mail on behalf of the specified sending account."}}, "",
			want{dead: true, class: ClassPermanent, reason: ReasonSendAsDenied}},
		{"server error", []graphtest.Failure{{Status: 500, Code: "ErrorInternalServerError", Message: "internal"}}, "",
			want{class: ClassTransient}},
		{"token refused twice", []graphtest.Failure{{Status: 401, Code: "InvalidAuthenticationToken"}, {Status: 401, Code: "InvalidAuthenticationToken"}}, "",
			want{held: true, class: ClassAuth, reason: "credentials", reauth: true}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			h := newGraphHarness(t, func(a *AccountConfig) {
				if c.mailbox != "" {
					a.Mailbox = c.mailbox
				}
			})
			h.g.Fail(graphtest.OpSendMail, c.fail...)
			id := h.enqueue(simpleBody)
			var m *spool.Message
			switch {
			case c.want.dead:
				m = h.wait(id, spool.StateDead)
				if !strings.Contains(m.Reason, c.want.reason) {
					t.Errorf("dead reason %q lacks %q", m.Reason, c.want.reason)
				}
				if m.LastError == nil || m.LastError.Class != c.want.class {
					t.Errorf("last error %+v, want class %s", m.LastError, c.want.class)
				}
			case c.want.held:
				var st AccountState
				waitFor(t, "account hold", func() bool {
					st = h.eng.AccountStates()[0]
					return st.HeldUntil.After(time.Now())
				})
				if !strings.Contains(st.HoldReason, c.want.reason) {
					t.Errorf("hold reason %q lacks %q", st.HoldReason, c.want.reason)
				}
				if st.LastError == nil || st.LastError.Class != c.want.class {
					t.Errorf("account's last error %+v, want class %s", st.LastError, c.want.class)
				}
				m = realWait(t, h.sp, id, func(m *spool.Message) bool { return m.State == spool.StateQueued || m.State == spool.StateDeferred })
				if m.Attempts != 0 && m.State == spool.StateQueued {
					t.Logf("attempts %d", m.Attempts)
				}
			default:
				m = h.waitDeferred(id)
				if m.LastError.Class != c.want.class {
					t.Errorf("class %q, want %q", m.LastError.Class, c.want.class)
				}
			}
			h.tokens.mu.Lock()
			mis, re := len(h.tokens.misconfigured), len(h.tokens.needsReauth)
			h.tokens.mu.Unlock()
			if (mis > 0) != c.want.misconfig || (re > 0) != c.want.reauth {
				t.Errorf("auth told misconfigured %d times, needs_reauth %d times; want %v, %v", mis, re, c.want.misconfig, c.want.reauth)
			}
		})
	}
}

func TestGraphTokenRefreshedOnce(t *testing.T) {
	h := newGraphHarness(t, nil)
	h.g.Fail(graphtest.OpSendMail, graphtest.Failure{Status: 401, Code: "InvalidAuthenticationToken"})
	id := h.enqueue(simpleBody)
	h.wait(id, spool.StateDelivered)
	h.tokens.mu.Lock()
	defer h.tokens.mu.Unlock()
	if h.tokens.refreshes != 1 || len(h.tokens.needsReauth) != 0 {
		t.Errorf("refreshes %d, needs_reauth %v: want one refresh and delivery", h.tokens.refreshes, h.tokens.needsReauth)
	}
}

// TestGraphAmbiguousDraftSendsOnce: the send request of a draft is carried
// out but its answer is lost; the retry asks Graph and does not send again.
func TestGraphAmbiguousDraftSendsOnce(t *testing.T) {
	for _, hide := range []bool{false, true} {
		t.Run(fmt.Sprintf("sent copy visible=%v", !hide), func(t *testing.T) {
			h := newGraphHarness(t, nil)
			h.g.SetHideSent(hide)
			h.g.Fail(graphtest.OpSend, graphtest.Failure{Lost: true})
			body, _ := scan(t, 4_000_000)
			id := h.enqueue(body)
			m := h.waitDeferred(id)
			if m.LastError.Class != ClassTransient {
				t.Errorf("class %q after a lost send answer on the draft path, want transient", m.LastError.Class)
			}
			if b, ok, _ := h.sp.AccountGet(context.Background(), "m365", graphDraftKey(id)); !ok || !strings.Contains(string(b), `"sending"`) {
				t.Fatalf("draft record %q (found %v), want state sending", b, ok)
			}
			if hide {
				// Graph says 404 at first: too early to tell; later it is
				// taken as sent.
				h.sp.Flush(context.Background(), id)
				realWait(t, h.sp, id, func(m *spool.Message) bool { return m.Attempts == 2 && m.State == spool.StateDeferred })
				h.clock.Add(graphSentGrace + time.Minute)
			}
			h.flush(id)
			h.wait(id, spool.StateDelivered)
			if n := len(h.g.Sent()); n != 1 {
				t.Errorf("sent %d times, want exactly once", n)
			}
			if n := h.g.Calls(graphtest.OpSend); n != 1 {
				t.Errorf("%d send requests, want 1", n)
			}
		})
	}
}

// TestGraphAmbiguousSendMailIsAtLeastOnce documents the small path: a
// sendMail whose answer is lost is sent again.
func TestGraphAmbiguousSendMailIsAtLeastOnce(t *testing.T) {
	h := newGraphHarness(t, nil)
	h.g.Fail(graphtest.OpSendMail, graphtest.Failure{Lost: true})
	id := h.enqueue(simpleBody)
	m := h.waitDeferred(id)
	if m.LastError.Class != ClassUnknown {
		t.Errorf("class %q, want unknown (the message may have gone)", m.LastError.Class)
	}
	h.sp.Flush(context.Background(), id)
	h.wait(id, spool.StateDelivered)
	if n := len(h.g.Sent()); n != 2 {
		t.Errorf("sent %d times; the small path is at-least-once and should have sent twice here", n)
	}
}

func TestGraphLargeMessagesOff(t *testing.T) {
	h := newGraphHarness(t, func(a *AccountConfig) { a.GraphSendMailOnly = true })
	body, _ := scan(t, 4_000_000)
	id := h.enqueue(body)
	m := h.wait(id, spool.StateDead)
	if !strings.Contains(m.Reason, "graph_large_messages") {
		t.Errorf("dead reason %q should name graph_large_messages", m.Reason)
	}
}

func TestGraphTestSend(t *testing.T) {
	h := newGraphHarness(t, nil)
	res, err := h.eng.TestSend(context.Background(), "m365", "admin@dest.example")
	if err != nil {
		t.Fatalf("TestSend: %v", err)
	}
	if res.Code != 250 || !strings.Contains(res.Text, "Graph") {
		t.Errorf("result %+v", res)
	}
	if s := h.g.Sent(); len(s) != 1 || !strings.Contains(string(s[0].MIME), "admin@dest.example") {
		t.Errorf("sent %+v", s)
	}
}

// TestGraphDeadDraftIsDeleted: a large message Graph refuses for good is
// dead-lettered, and its draft does not stay behind in Drafts.
func TestGraphDeadDraftIsDeleted(t *testing.T) {
	h := newGraphHarness(t, nil)
	h.g.Fail(graphtest.OpSend, graphtest.Failure{Status: 400, Code: "ErrorInvalidRecipients", Message: "At least one recipient is not valid."})
	body, _ := scan(t, 4_000_000)
	id := h.enqueue(body)
	m := h.wait(id, spool.StateDead)
	if !strings.Contains(m.Reason, "ErrorInvalidRecipients") {
		t.Errorf("dead reason %q", m.Reason)
	}
	if n := h.g.Drafts(); n != 0 {
		t.Errorf("%d drafts left in Drafts", n)
	}
	if _, ok, _ := h.sp.AccountGet(context.Background(), "m365", graphDraftKey(id)); ok {
		t.Error("the draft record outlived the dead letter")
	}
}
