// Package graph is the Microsoft Graph mail client that delivery's graph
// transport sends with: sendMail with a MIME body for messages that fit one
// request, and for larger ones a draft created from MIME, attachment upload
// sessions fed in chunks, and sending the draft; plus asking whether a draft
// was already sent, and Graph's error answers as typed errors with their
// Retry-After. It owns no queue state and no tokens: delivery decides what
// an answer means for a message and its account, and auth issues the tokens.
//
// Microsoft's documentation this follows (learn.microsoft.com/en-us/graph/):
//   - api/user-sendmail: POST /users/{id}/sendMail, Content-Type text/plain,
//     the MIME message base64-encoded as the body, 202 Accepted; Mail.Send.
//   - api/user-post-messages: POST /users/{id}/messages with the same
//     text/plain base64 MIME body creates a draft (201 and the message);
//     Mail.ReadWrite.
//   - api/attachment-createuploadsession and outlook-large-attachments:
//     POST /messages/{id}/attachments/createUploadSession with an
//     attachmentItem (attachmentType file, name, size, contentType), then
//     PUTs to the returned pre-authenticated uploadUrl (no Authorization
//     header) with Content-Range, each up to 4 MB and a multiple of 320 KiB
//     except the last; 200 with nextExpectedRanges ("{start}" for Outlook)
//     until the final PUT answers 201 Created.
//   - api/message-send: POST /messages/{id}/send, 202 Accepted.
//   - outlook-immutable-id: with Prefer: IdType="ImmutableId" an item's ID
//     stays the same when it moves between folders of the mailbox, and "use
//     the ID to get the message; this is the copy in Sent Items" after a
//     draft was sent (that copy may take a moment to appear).
//   - throttling-limits (Outlook service limits): 10,000 requests per 10
//     minutes and 4 concurrent requests per app and mailbox; throttled
//     requests answer 429 with Retry-After.
package graph

import (
	"bytes"
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/httptrace"
	"net/url"
	"strconv"
	"strings"
	"time"
)

// Sizes Graph imposes.
const (
	// ChunkUnit: upload session chunks are multiples of 320 KiB
	// (attachment-createuploadsession; the last chunk may be shorter).
	ChunkUnit = 320 * 1024
	// DefaultChunkSize is 8 units, 2.5 MiB: under the 4 MB a PUT may
	// carry, and what one upload holds in memory.
	DefaultChunkSize = 8 * ChunkUnit
	// MaxRequestBody is the largest request body spoold sends to Graph:
	// Graph refuses requests over about 4 MB (user-post-messages: "payloads
	// are currently limited to 4 MB ... 413"). A MIME message goes base64
	// encoded, so it may be about 3 MB before encoding.
	MaxRequestBody = 4 * 1000 * 1000
	// MaxAttachment is the largest attachment an upload session takes.
	MaxAttachment = 150 * 1000 * 1000
	// MaxConcurrent is Graph's limit of concurrent requests per app and
	// mailbox (throttling-limits, Outlook service limits).
	MaxConcurrent = 4
)

// MaxMIMEForRequest is the largest MIME message that fits one request once
// base64-encoded.
const MaxMIMEForRequest = MaxRequestBody / 4 * 3

// Tokens gives the client its bearer tokens.
type Tokens interface {
	// Token returns a current access token.
	Token(ctx context.Context) (string, error)
	// Refresh returns a token other than rejected (which Graph answered
	// 401 to), refreshing once if needed.
	Refresh(ctx context.Context, rejected string) (string, error)
}

// Client talks to one mailbox. Its zero value is not usable: set Endpoint,
// Mailbox, HTTP and Tokens.
type Client struct {
	// Endpoint is the Graph root without the version, e.g.
	// https://graph.microsoft.com or https://graph.microsoft.us.
	Endpoint string
	Mailbox  string
	HTTP     *http.Client
	Tokens   Tokens
	// ChunkSize is the upload chunk, a multiple of ChunkUnit; default DefaultChunkSize.
	ChunkSize int
	// ChunkRetries is how often one chunk is tried again after a failure
	// (the upload resumes at the last acknowledged range); default 3.
	ChunkRetries int
	// Sleep waits between chunk retries; default a timer honouring ctx.
	Sleep func(ctx context.Context, d time.Duration) error
	// Gate, when set, is held around each request: the caller's limit on
	// concurrent requests to the mailbox.
	Gate func(ctx context.Context) (release func(), err error)
}

// Error is Graph's answer to a request that did not succeed, or the network
// failure that kept it from answering.
type Error struct {
	Op         string        // what was asked: "sendMail", "create draft", "upload", ...
	Status     int           // HTTP status; 0 when there was no answer
	Code       string        // Graph's error code, e.g. ErrorAccessDenied
	Message    string        // Graph's error message
	RetryAfter time.Duration // from Retry-After, 0 if none
	// Refreshed: the 401 came after the token had been refreshed once.
	Refreshed bool
	// Ambiguous: the request was sent in full but no answer came, so
	// Graph may have carried it out.
	Ambiguous bool
	Err       error // the network error, if any
	next      int64 // a refused chunk's nextExpectedRanges start (0: none)
}

func (e *Error) Error() string {
	var b strings.Builder
	b.WriteString("Graph " + e.Op + ": ")
	switch {
	case e.Status != 0:
		fmt.Fprintf(&b, "%d", e.Status)
		if e.Code != "" {
			b.WriteString(" " + e.Code)
		}
		if e.Message != "" {
			b.WriteString(": " + e.Message)
		}
	case e.Ambiguous:
		b.WriteString("no answer after the request was sent")
		if e.Err != nil {
			b.WriteString(": " + e.Err.Error())
		}
	case e.Err != nil:
		b.WriteString(e.Err.Error())
	}
	if e.RetryAfter > 0 {
		fmt.Fprintf(&b, " (retry after %s)", e.RetryAfter)
	}
	return b.String()
}

func (e *Error) Unwrap() error { return e.Err }

// Kind is what an answer means, for the caller to map onto its own classes.
type Kind int

// Kinds of failure.
const (
	KindTransient         Kind = iota // network failure before sending, 5xx, anything unknown: retry
	KindAmbiguous                     // sent in full, no answer: Graph may have it
	KindThrottled                     // 429, or 503 with Retry-After: slow down
	KindAuth                          // 401: the token was refused
	KindAccessDenied                  // 403 ErrorAccessDenied: a permission or access policy is missing
	KindSendAsDenied                  // the mailbox may not send as the From address
	KindMailboxNotFound               // the mailbox does not exist or has no Exchange Online mailbox
	KindMailboxFull                   // the sending mailbox is over its quota
	KindSubmissionQuota               // the mailbox reached its sending limit
	KindSubmissionBlocked             // Microsoft blocks the mailbox from sending
	KindInvalidRecipient              // a recipient address is refused
	KindTooLarge                      // 413, or the message exceeds the size limit
	KindBadRequest                    // 400: Graph refuses this message as sent
	KindNotFound                      // 404 on an item (a draft that is gone)
)

// Kind classifies the error. Graph's error code decides where it is
// specific; the status otherwise.
func (e *Error) Kind() Kind {
	if e.Status == 0 {
		if e.Ambiguous {
			return KindAmbiguous
		}
		return KindTransient
	}
	code := strings.ToLower(e.Code)
	text := strings.ToLower(e.Message)
	switch {
	case code == "errorsendasdenied" || strings.Contains(text, "sendasdenied"):
		return KindSendAsDenied
	case code == "errorquotaexceeded" || code == "errormailboxstorelimitexceeded":
		return KindMailboxFull
	case code == "errorsubmissionquotaexceeded" || strings.Contains(text, "submissionquotaexceeded"):
		return KindSubmissionQuota
	case code == "errormessagesubmissionblocked" || code == "erroraccountsuspend":
		return KindSubmissionBlocked
	case code == "errorinvalidrecipients" || code == "errorrecipientnotfound":
		return KindInvalidRecipient
	case code == "mailboxnotenabledforrestapi" || code == "mailboxnotsupportedforrestapi" ||
		code == "errorinvaliduser" || code == "errornonexistentmailbox" || code == "errormailboxnotfound" ||
		(e.Status == http.StatusNotFound && e.Op != OpGet && e.Op != OpDelete && e.Op != OpSend):
		return KindMailboxNotFound
	case code == "errormessagesizeexceeded" || e.Status == http.StatusRequestEntityTooLarge:
		return KindTooLarge
	case e.Status == http.StatusTooManyRequests, e.Status == http.StatusServiceUnavailable && e.RetryAfter > 0:
		return KindThrottled
	case e.Status == http.StatusUnauthorized:
		return KindAuth
	case e.Status == http.StatusForbidden:
		return KindAccessDenied
	case e.Status == http.StatusNotFound:
		return KindNotFound
	case e.Status >= 500:
		return KindTransient
	case e.Status >= 400:
		return KindBadRequest
	}
	return KindTransient
}

// Ops name the requests in errors.
const (
	OpSendMail      = "sendMail"
	OpCreateDraft   = "create draft"
	OpUploadSession = "createUploadSession"
	OpUpload        = "upload"
	OpSend          = "send draft"
	OpGet           = "get message"
	OpDelete        = "delete draft"
)

// As returns err's *Error, or nil.
func As(err error) *Error {
	var ge *Error
	if errors.As(err, &ge) {
		return ge
	}
	return nil
}

// userURL is {endpoint}/v1.0/users/{mailbox}{suffix}.
func (c *Client) userURL(suffix string) string {
	return strings.TrimRight(c.Endpoint, "/") + "/v1.0/users/" + url.PathEscape(c.Mailbox) + suffix
}

// request is one authenticated call.
type request struct {
	op, method, url, contentType string
	body                         []byte
	immutable                    bool // send Prefer: IdType="ImmutableId"
}

// do sends req with a bearer token; a 401 gets one refreshed token and
// one more try. out, when set, receives the JSON answer.
func (c *Client) do(ctx context.Context, req request, want int, out any) (http.Header, error) {
	tok, err := c.Tokens.Token(ctx)
	if err != nil {
		return nil, err
	}
	h, err := c.once(ctx, req, tok, want, out)
	if ge := As(err); ge != nil && ge.Status == http.StatusUnauthorized {
		tok2, rerr := c.Tokens.Refresh(ctx, tok)
		if rerr != nil {
			return nil, rerr
		}
		h, err = c.once(ctx, req, tok2, want, out)
		if ge := As(err); ge != nil && ge.Status == http.StatusUnauthorized {
			ge.Refreshed = true
		}
	}
	return h, err
}

// once sends req with token: the answer's header, or an *Error.
func (c *Client) once(ctx context.Context, req request, token string, want int, out any) (http.Header, error) {
	if c.Gate != nil {
		release, err := c.Gate(ctx)
		if err != nil {
			return nil, &Error{Op: req.op, Err: err}
		}
		defer release()
	}
	var body io.Reader
	if req.body != nil {
		body = bytes.NewReader(req.body)
	}
	wrote := false
	ctx = httptrace.WithClientTrace(ctx, &httptrace.ClientTrace{
		WroteRequest: func(i httptrace.WroteRequestInfo) { wrote = i.Err == nil },
	})
	hr, err := http.NewRequestWithContext(ctx, req.method, req.url, body)
	if err != nil {
		return nil, &Error{Op: req.op, Err: err}
	}
	if token != "" {
		hr.Header.Set("Authorization", "Bearer "+token)
	}
	if req.contentType != "" {
		hr.Header.Set("Content-Type", req.contentType)
	}
	if req.immutable {
		hr.Header.Set("Prefer", `IdType="ImmutableId"`)
	}
	resp, err := c.HTTP.Do(hr)
	if err != nil {
		// Only a request that left in full can have been carried out.
		return nil, &Error{Op: req.op, Ambiguous: wrote && req.method != http.MethodGet, Err: scrubURL(err)}
	}
	defer resp.Body.Close()
	if resp.StatusCode == want || (want == http.StatusOK && resp.StatusCode == http.StatusCreated && req.op == OpUpload) {
		if out != nil {
			if err := json.NewDecoder(io.LimitReader(resp.Body, 1<<20)).Decode(out); err != nil {
				return resp.Header, &Error{Op: req.op, Status: resp.StatusCode, Message: "unreadable answer: " + err.Error()}
			}
		}
		io.Copy(io.Discard, io.LimitReader(resp.Body, 1<<16))
		return resp.Header, nil
	}
	return resp.Header, answerError(req.op, resp)
}

// answerError reads Graph's error body: {"error":{"code":..,"message":..}}.
func answerError(op string, resp *http.Response) *Error {
	e := &Error{Op: op, Status: resp.StatusCode, RetryAfter: retryAfter(resp.Header.Get("Retry-After"), time.Now())}
	var body struct {
		Error struct {
			Code    string `json:"code"`
			Message string `json:"message"`
		} `json:"error"`
	}
	b, _ := io.ReadAll(io.LimitReader(resp.Body, 64<<10))
	if json.Unmarshal(b, &body) == nil {
		e.Code, e.Message = clean(body.Error.Code, 80), clean(body.Error.Message, 300)
	}
	if e.Code == "" && e.Message == "" {
		e.Message = http.StatusText(resp.StatusCode)
	}
	return e
}

// retryAfter reads Retry-After: seconds or an HTTP date (RFC 9110 10.2.3).
func retryAfter(v string, now time.Time) time.Duration {
	v = strings.TrimSpace(v)
	if v == "" {
		return 0
	}
	if n, err := strconv.Atoi(v); err == nil {
		if n < 0 {
			return 0
		}
		return min(time.Duration(n)*time.Second, time.Hour)
	}
	if t, err := http.ParseTime(v); err == nil && t.After(now) {
		return min(t.Sub(now), time.Hour)
	}
	return 0
}

// clean keeps an answer's text printable and short: it ends up in logs,
// dead-letter reasons and notices.
func clean(s string, n int) string {
	s = strings.Map(func(r rune) rune {
		if r < 0x20 || r == 0x7f {
			return ' '
		}
		return r
	}, s)
	s = strings.TrimSpace(s)
	if len(s) > n {
		s = s[:n]
	}
	return s
}

// scrubURL drops the URL from a transport error: an upload URL carries its
// own credential in the query.
func scrubURL(err error) error {
	var ue *url.Error
	if errors.As(err, &ue) {
		return fmt.Errorf("%s: %w", strings.ToUpper(ue.Op[:1])+ue.Op[1:], ue.Err)
	}
	return err
}

// base64Body encodes a MIME message as Graph wants it (StdEncoding, no
// line breaks).
func base64Body(mime []byte) []byte {
	out := make([]byte, base64.StdEncoding.EncodedLen(len(mime)))
	base64.StdEncoding.Encode(out, mime)
	return out
}

// SendMIME sends a MIME message in one request (user-sendmail). The
// message must fit MaxMIMEForRequest.
func (c *Client) SendMIME(ctx context.Context, mime []byte) error {
	if len(mime) > MaxMIMEForRequest {
		return &Error{Op: OpSendMail, Status: http.StatusRequestEntityTooLarge, Code: "ErrorMessageSizeExceeded",
			Message: fmt.Sprintf("message of %d bytes is larger than one Graph request carries (%d)", len(mime), MaxMIMEForRequest)}
	}
	_, err := c.do(ctx, request{op: OpSendMail, method: http.MethodPost, url: c.userURL("/sendMail"),
		contentType: "text/plain", body: base64Body(mime)}, http.StatusAccepted, nil)
	return err
}

// Message is what the client reads of a message.
type Message struct {
	ID      string `json:"id"`
	IsDraft bool   `json:"isDraft"`
}

// CreateDraft creates a draft from a MIME message (user-post-messages) and
// returns its immutable ID.
func (c *Client) CreateDraft(ctx context.Context, mime []byte) (string, error) {
	if len(mime) > MaxMIMEForRequest {
		return "", &Error{Op: OpCreateDraft, Status: http.StatusRequestEntityTooLarge, Code: "ErrorMessageSizeExceeded",
			Message: fmt.Sprintf("draft of %d bytes is larger than one Graph request carries (%d)", len(mime), MaxMIMEForRequest)}
	}
	var m Message
	if _, err := c.do(ctx, request{op: OpCreateDraft, method: http.MethodPost, url: c.userURL("/messages"),
		contentType: "text/plain", body: base64Body(mime), immutable: true}, http.StatusCreated, &m); err != nil {
		return "", err
	}
	if m.ID == "" {
		return "", &Error{Op: OpCreateDraft, Status: http.StatusCreated, Message: "answer without a message id"}
	}
	return m.ID, nil
}

// GetMessage reads a message by its immutable ID: isDraft says whether it
// was sent. A draft that is gone is an *Error of KindNotFound.
func (c *Client) GetMessage(ctx context.Context, id string) (Message, error) {
	var m Message
	_, err := c.do(ctx, request{op: OpGet, method: http.MethodGet,
		url: c.userURL("/messages/" + url.PathEscape(id) + "?$select=id,isDraft"), immutable: true}, http.StatusOK, &m)
	return m, err
}

// SendDraft sends a draft (message-send).
func (c *Client) SendDraft(ctx context.Context, id string) error {
	_, err := c.do(ctx, request{op: OpSend, method: http.MethodPost, url: c.userURL("/messages/" + url.PathEscape(id) + "/send"),
		immutable: true}, http.StatusAccepted, nil)
	return err
}

// DeleteDraft deletes a draft that will not be sent; a draft already gone
// is not an error.
func (c *Client) DeleteDraft(ctx context.Context, id string) error {
	_, err := c.do(ctx, request{op: OpDelete, method: http.MethodDelete, url: c.userURL("/messages/" + url.PathEscape(id)),
		immutable: true}, http.StatusNoContent, nil)
	if ge := As(err); ge != nil && ge.Status == http.StatusNotFound {
		return nil
	}
	return err
}

// AttachmentItem is createUploadSession's attachmentItem.
type AttachmentItem struct {
	AttachmentType string `json:"attachmentType"` // always "file"
	Name           string `json:"name"`
	Size           int64  `json:"size"`
	ContentType    string `json:"contentType,omitempty"`
	IsInline       bool   `json:"isInline,omitempty"`
	ContentID      string `json:"contentId,omitempty"`
}

// uploadSession is createUploadSession's answer (resources/uploadsession).
type uploadSession struct {
	UploadURL          string   `json:"uploadUrl"`
	NextExpectedRanges []string `json:"nextExpectedRanges"`
}

// UploadAttachment attaches one file of item.Size bytes, read from r, to
// draft id through an upload session, in chunks of ChunkSize. A failed
// chunk is sent again from the last range Graph acknowledged, up to
// ChunkRetries times. Memory: one chunk.
func (c *Client) UploadAttachment(ctx context.Context, id string, item AttachmentItem, r io.Reader) error {
	item.AttachmentType = "file"
	if item.Size <= 0 || item.Size > MaxAttachment {
		return &Error{Op: OpUploadSession, Status: http.StatusRequestEntityTooLarge, Code: "ErrorMessageSizeExceeded",
			Message: fmt.Sprintf("attachment %q of %d bytes: an upload session takes 1 byte to %d", item.Name, item.Size, MaxAttachment)}
	}
	body, _ := json.Marshal(map[string]any{"AttachmentItem": item})
	var us uploadSession
	if _, err := c.do(ctx, request{op: OpUploadSession, method: http.MethodPost,
		url:         c.userURL("/messages/" + url.PathEscape(id) + "/attachments/createUploadSession"),
		contentType: "application/json", body: body, immutable: true}, http.StatusCreated, &us); err != nil {
		return err
	}
	if us.UploadURL == "" {
		return &Error{Op: OpUploadSession, Status: http.StatusCreated, Message: "answer without an uploadUrl"}
	}
	size := c.ChunkSize
	if size <= 0 || size%ChunkUnit != 0 {
		size = DefaultChunkSize
	}
	retries := c.ChunkRetries
	if retries <= 0 {
		retries = 3
	}
	buf := make([]byte, size)
	var off int64
	for off < item.Size {
		n, err := io.ReadFull(r, buf[:min(int64(size), item.Size-off)])
		if err != nil {
			return fmt.Errorf("reading attachment %q at byte %d of %d: %w", item.Name, off+int64(n), item.Size, err)
		}
		next, err := c.putChunk(ctx, us.UploadURL, buf[:n], off, item.Size, retries)
		if err != nil {
			return err
		}
		if next != off+int64(n) {
			return &Error{Op: OpUpload, Status: http.StatusRequestedRangeNotSatisfiable,
				Message: fmt.Sprintf("Graph expects byte %d next, not %d", next, off+int64(n))}
		}
		off = next
	}
	return nil
}

// putChunk PUTs chunk at off (of total) and returns the next byte Graph
// expects; failures are retried while they may pass.
func (c *Client) putChunk(ctx context.Context, uploadURL string, chunk []byte, off, total int64, retries int) (int64, error) {
	end := off + int64(len(chunk))
	var last error
	for try := 0; try <= retries; try++ {
		if try > 0 {
			d := time.Duration(try) * 500 * time.Millisecond
			if ge := As(last); ge != nil && ge.RetryAfter > 0 {
				d = ge.RetryAfter
			}
			if err := c.sleep(ctx, d); err != nil {
				return 0, err
			}
		}
		next, err := c.putOnce(ctx, uploadURL, chunk, off, total)
		if err == nil {
			return next, nil
		}
		last = err
		ge := As(err)
		switch {
		case ge == nil, ctx.Err() != nil:
			return 0, err
		case ge.Status == http.StatusRequestedRangeNotSatisfiable && ge.next == end:
			// The chunk had arrived; only its answer was lost.
			return end, nil
		case ge.RetryAfter > maxChunkWait:
			return 0, err // too long to wait inside one attempt: the caller defers the message
		case ge.Status == 0, ge.Status >= 500, ge.Status == http.StatusTooManyRequests:
			continue // resend from off, the last range Graph acknowledged
		default:
			return 0, err
		}
	}
	return 0, last
}

// maxChunkWait is the longest Retry-After a chunk retry waits for.
const maxChunkWait = 30 * time.Second

// putOnce sends one chunk to the pre-authenticated upload URL: no
// Authorization header (attachment-createuploadsession).
func (c *Client) putOnce(ctx context.Context, uploadURL string, chunk []byte, off, total int64) (int64, error) {
	release := func() {}
	if c.Gate != nil {
		r, err := c.Gate(ctx)
		if err != nil {
			return 0, &Error{Op: OpUpload, Err: err}
		}
		release = r
	}
	defer release()
	end := off + int64(len(chunk))
	req, err := http.NewRequestWithContext(ctx, http.MethodPut, uploadURL, bytes.NewReader(chunk))
	if err != nil {
		return 0, &Error{Op: OpUpload, Err: scrubURL(err)}
	}
	req.ContentLength = int64(len(chunk))
	req.Header.Set("Content-Type", "application/octet-stream")
	req.Header.Set("Content-Range", fmt.Sprintf("bytes %d-%d/%d", off, end-1, total))
	resp, err := c.HTTP.Do(req)
	if err != nil {
		return 0, &Error{Op: OpUpload, Err: scrubURL(err)}
	}
	defer resp.Body.Close()
	switch resp.StatusCode {
	case http.StatusCreated:
		io.Copy(io.Discard, io.LimitReader(resp.Body, 1<<16))
		return total, nil
	case http.StatusOK:
		var us uploadSession
		if err := json.NewDecoder(io.LimitReader(resp.Body, 1<<16)).Decode(&us); err != nil {
			return 0, &Error{Op: OpUpload, Status: resp.StatusCode, Message: "unreadable answer: " + err.Error()}
		}
		next, ok := nextStart(us.NextExpectedRanges)
		if !ok {
			return 0, &Error{Op: OpUpload, Status: resp.StatusCode, Message: fmt.Sprintf("answer without a usable nextExpectedRanges: %q", us.NextExpectedRanges)}
		}
		return next, nil
	}
	b, _ := io.ReadAll(io.LimitReader(resp.Body, 64<<10))
	ge := answerError(OpUpload, &http.Response{StatusCode: resp.StatusCode, Header: resp.Header, Body: io.NopCloser(bytes.NewReader(b))})
	var us uploadSession
	if json.Unmarshal(b, &us) == nil {
		if n, ok := nextStart(us.NextExpectedRanges); ok {
			ge.next = n
		}
	}
	return 0, ge
}

// nextStart reads the first of nextExpectedRanges: "{start}" for Outlook
// attachments, "{start}-{end}" or "{start}-" elsewhere.
func nextStart(ranges []string) (int64, bool) {
	if len(ranges) == 0 {
		return 0, false
	}
	s, _, _ := strings.Cut(ranges[0], "-")
	n, err := strconv.ParseInt(strings.TrimSpace(s), 10, 64)
	return n, err == nil && n >= 0
}

func (c *Client) sleep(ctx context.Context, d time.Duration) error {
	if c.Sleep != nil {
		return c.Sleep(ctx, d)
	}
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return ctx.Err()
	case <-t.C:
		return nil
	}
}
