// Package graphtest is an in-process fake of the Microsoft Graph mail API
// for tests: an httptest TLS server that checks bearer tokens and their
// scopes and the request shapes Microsoft documents (sendMail and draft
// creation with a base64 MIME body as text/plain, immutable IDs, upload
// sessions with Content-Range chunks that are multiples of 320 KiB, sending
// a draft), keeps what was sent (attachments reassembled, for byte-for-byte
// comparison) and fails on request: an error answer with Retry-After, a
// chunk cut off midway, or a request carried out whose answer is lost.
package graphtest

import (
	"bytes"
	"crypto/rand"
	"crypto/sha256"
	"encoding"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"log"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strconv"
	"strings"
	"sync"
	"time"
)

// Scopes the fake checks (the global cloud's resource).
const (
	ScopeMailSend      = "https://graph.microsoft.com/Mail.Send"
	ScopeMailReadWrite = "https://graph.microsoft.com/Mail.ReadWrite"
	ScopeDefault       = "https://graph.microsoft.com/.default"
)

// Ops name the requests for failure injection and counting.
const (
	OpSendMail      = "sendMail"
	OpCreateDraft   = "createDraft"
	OpUploadSession = "createUploadSession"
	OpUpload        = "upload"
	OpSend          = "send"
	OpGet           = "get"
	OpDelete        = "delete"
)

// Failure is an injected answer; the zero Failure lets its request pass
// (to fail a later one).
type Failure struct {
	Status     int
	Code       string // Graph error code, e.g. ErrorAccessDenied
	Message    string
	RetryAfter int // seconds; 0 omits the header
	// Lost: carry the request out, then drop the connection without an
	// answer (the ambiguous case).
	Lost bool
	// Midway: for uploads, read half the chunk, then drop the connection
	// (nothing of the chunk is kept).
	Midway bool
}

// Attachment is one uploaded attachment, reassembled.
type Attachment struct {
	Name, ContentType, ContentID string
	IsInline                     bool
	Size                         int64
	Data                         []byte // nil unless KeepData
	Sum                          [32]byte
	Ranges                       []string // the Content-Range of each accepted chunk
}

// Sent is one message Graph sent.
type Sent struct {
	Via         string // "sendMail" or "draft"
	Mailbox     string
	MIME        []byte // the MIME as posted (for a draft: without uploaded attachments)
	Attachments []Attachment
}

type draft struct {
	id, mailbox string
	mime        []byte
	atts        []*Attachment
	sent        bool
	deleted     bool
}

type upload struct {
	draft *draft
	att   *Attachment
	next  int64
	hash  hashWriter
	data  bytes.Buffer
	done  bool
}

type hashWriter interface {
	io.Writer
	Sum([]byte) []byte
}

// Server is the fake.
type Server struct {
	srv *httptest.Server

	mu sync.Mutex
	// tokens: access token -> granted scope string (space-separated).
	tokens map[string]string
	// check, when set, decides tokens instead (e.g. authtest's record).
	check    func(token string) (scope string, ok bool)
	appPerms []string // permissions an app-only (.default) token carries
	mailbox  map[string]bool
	keepData bool
	failures map[string][]Failure
	// hideSent: a sent draft answers 404 (its Sent Items copy not there yet).
	hideSent bool
	drafts   map[string]*draft
	uploads  map[string]*upload
	sent     []Sent
	calls    map[string]int
	problems []string
}

// New starts the fake serving mailboxes (stop it with Close). Tokens are
// accepted once added with AllowToken or decided by SetTokenCheck.
func New(mailboxes ...string) *Server {
	s := &Server{tokens: map[string]string{}, mailbox: map[string]bool{}, failures: map[string][]Failure{},
		drafts: map[string]*draft{}, uploads: map[string]*upload{}, calls: map[string]int{}, keepData: true,
		appPerms: []string{"Mail.Send", "Mail.ReadWrite"}}
	for _, m := range mailboxes {
		s.mailbox[strings.ToLower(m)] = true
	}
	s.srv = httptest.NewUnstartedServer(http.HandlerFunc(s.serve))
	// Clients killed mid-handshake (the kill loop) are expected, not news.
	s.srv.Config.ErrorLog = log.New(io.Discard, "", 0)
	s.srv.StartTLS()
	return s
}

// Close stops the server.
func (s *Server) Close() { s.srv.CloseClientConnections(); s.srv.Close() }

// URL is the Graph endpoint (without /v1.0).
func (s *Server) URL() string { return s.srv.URL }

// Client is an HTTP client that trusts the server's certificate.
func (s *Server) Client() *http.Client { return s.srv.Client() }

// Certificate is the server's certificate in PEM (for a ca_file).
func (s *Server) CertificatePEM() []byte {
	c := s.srv.Certificate()
	var b bytes.Buffer
	b.WriteString("-----BEGIN CERTIFICATE-----\n")
	enc := base64.StdEncoding.EncodeToString(c.Raw)
	for len(enc) > 64 {
		b.WriteString(enc[:64] + "\n")
		enc = enc[64:]
	}
	b.WriteString(enc + "\n-----END CERTIFICATE-----\n")
	return b.Bytes()
}

// AllowToken accepts token with the given scope string.
func (s *Server) AllowToken(token, scope string) {
	s.mu.Lock()
	s.tokens[token] = scope
	s.mu.Unlock()
}

// RevokeTokens makes every known token invalid (401).
func (s *Server) RevokeTokens() {
	s.mu.Lock()
	s.tokens = map[string]string{}
	s.mu.Unlock()
}

// SetTokenCheck lets f decide tokens (scope, ok).
func (s *Server) SetTokenCheck(f func(token string) (string, bool)) {
	s.mu.Lock()
	s.check = f
	s.mu.Unlock()
}

// SetAppPermissions sets what an app-only token was granted by admin consent.
func (s *Server) SetAppPermissions(perms ...string) {
	s.mu.Lock()
	s.appPerms = perms
	s.mu.Unlock()
}

// SetKeepData keeps (true, the default) or drops attachment bytes, keeping
// only their SHA-256 (for memory measurements).
func (s *Server) SetKeepData(on bool) { s.mu.Lock(); s.keepData = on; s.mu.Unlock() }

// SetHideSent makes a sent draft answer 404 to GET.
func (s *Server) SetHideSent(on bool) { s.mu.Lock(); s.hideSent = on; s.mu.Unlock() }

// Fail queues failures for the next requests of op, in order.
func (s *Server) Fail(op string, f ...Failure) {
	s.mu.Lock()
	s.failures[op] = append(s.failures[op], f...)
	s.mu.Unlock()
}

// Sent returns the messages sent so far.
func (s *Server) Sent() []Sent {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]Sent(nil), s.sent...)
}

// Calls counts requests of op that reached the handler.
func (s *Server) Calls(op string) int { s.mu.Lock(); defer s.mu.Unlock(); return s.calls[op] }

// Drafts counts drafts that exist (not sent, not deleted).
func (s *Server) Drafts() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	n := 0
	for _, d := range s.drafts {
		if !d.sent && !d.deleted {
			n++
		}
	}
	return n
}

// Problems lists requests the fake refused because they broke Graph's
// documented shape (a test asserts it is empty).
func (s *Server) Problems() []string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]string(nil), s.problems...)
}

func (s *Server) problem(w http.ResponseWriter, status int, code, format string, args ...any) {
	msg := fmt.Sprintf(format, args...)
	s.mu.Lock()
	s.problems = append(s.problems, code+": "+msg)
	s.mu.Unlock()
	writeErr(w, status, code, msg)
}

func writeErr(w http.ResponseWriter, status int, code, msg string) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	json.NewEncoder(w).Encode(map[string]any{"error": map[string]string{"code": code, "message": msg}})
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	json.NewEncoder(w).Encode(v)
}

func newID(prefix string) string {
	b := make([]byte, 16)
	rand.Read(b)
	return prefix + hex.EncodeToString(b)
}

// takeFailure pops the next failure for op, counting the call.
func (s *Server) takeFailure(op string) *Failure {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.calls[op]++
	q := s.failures[op]
	if len(q) == 0 {
		return nil
	}
	f := q[0]
	s.failures[op] = q[1:]
	if f == (Failure{}) {
		return nil // a placeholder: this request passes
	}
	return &f
}

// answerFailure writes f unless it is Lost or Midway (handled by the op).
func answerFailure(w http.ResponseWriter, f *Failure) {
	if f.RetryAfter > 0 {
		w.Header().Set("Retry-After", strconv.Itoa(f.RetryAfter))
	}
	writeErr(w, f.Status, f.Code, f.Message)
}

// drop closes the connection without an answer.
func drop(w http.ResponseWriter) {
	if hj, ok := w.(http.Hijacker); ok {
		if c, _, err := hj.Hijack(); err == nil {
			c.Close()
			return
		}
	}
	panic(http.ErrAbortHandler)
}

// authorize checks the bearer token and that it carries perm.
func (s *Server) authorize(w http.ResponseWriter, r *http.Request, perm string) bool {
	tok, ok := strings.CutPrefix(r.Header.Get("Authorization"), "Bearer ")
	if !ok || tok == "" {
		s.problem(w, http.StatusUnauthorized, "InvalidAuthenticationToken", "Access token is empty.")
		return false
	}
	s.mu.Lock()
	scope, known := s.tokens[tok]
	check := s.check
	app := s.appPerms
	s.mu.Unlock()
	if !known && check != nil {
		scope, known = check(tok)
	}
	if !known {
		writeErr(w, http.StatusUnauthorized, "InvalidAuthenticationToken", "Access token has expired or is not yet valid.")
		return false
	}
	granted := map[string]bool{}
	for _, sc := range strings.Fields(scope) {
		switch {
		case sc == ScopeDefault:
			for _, p := range app {
				granted[p] = true
			}
		case strings.HasPrefix(sc, "https://graph.microsoft.com/"):
			granted[strings.TrimPrefix(sc, "https://graph.microsoft.com/")] = true
		}
	}
	// Mail.ReadWrite does not include sending (permissions reference).
	if !granted[perm] {
		writeErr(w, http.StatusForbidden, "ErrorAccessDenied", "Access is denied. Check credentials and try again.")
		return false
	}
	return true
}

// readMIME checks a MIME body request: text/plain, base64, under 4 MB.
func (s *Server) readMIME(w http.ResponseWriter, r *http.Request) ([]byte, bool) {
	if ct := r.Header.Get("Content-Type"); !strings.HasPrefix(ct, "text/plain") {
		s.problem(w, http.StatusUnsupportedMediaType, "ErrorInvalidRequest", "MIME content must be sent as text/plain, got %q", ct)
		return nil, false
	}
	b, err := io.ReadAll(io.LimitReader(r.Body, 4<<20+1))
	if err != nil {
		return nil, false
	}
	if len(b) > 4<<20 {
		s.problem(w, http.StatusRequestEntityTooLarge, "RequestEntityTooLarge", "request body over 4 MB")
		return nil, false
	}
	mime, err := base64.StdEncoding.DecodeString(string(b))
	if err != nil || len(mime) == 0 {
		s.problem(w, http.StatusBadRequest, "ErrorMimeContentInvalidBase64String", "Invalid base64 string for MIME content.")
		return nil, false
	}
	return mime, true
}

func (s *Server) serve(w http.ResponseWriter, r *http.Request) {
	if r.Method == http.MethodHead {
		// What an unauthenticated reachability check gets.
		writeErr(w, http.StatusUnauthorized, "InvalidAuthenticationToken", "Access token is empty.")
		return
	}
	if strings.HasPrefix(r.URL.Path, "/upload/") {
		s.serveUpload(w, r)
		return
	}
	rest, ok := strings.CutPrefix(r.URL.Path, "/v1.0/users/")
	if !ok {
		s.problem(w, http.StatusNotFound, "ResourceNotFound", "unknown path %s", r.URL.Path)
		return
	}
	mailbox, rest, _ := strings.Cut(rest, "/")
	mailbox, _ = url.PathUnescape(mailbox)
	parts := strings.Split(rest, "/")
	var op string
	switch {
	case r.Method == http.MethodPost && rest == "sendMail":
		op = OpSendMail
	case r.Method == http.MethodPost && rest == "messages":
		op = OpCreateDraft
	case r.Method == http.MethodPost && len(parts) == 4 && parts[0] == "messages" && parts[2] == "attachments" && parts[3] == "createUploadSession":
		op = OpUploadSession
	case r.Method == http.MethodPost && len(parts) == 3 && parts[0] == "messages" && parts[2] == "send":
		op = OpSend
	case r.Method == http.MethodGet && len(parts) == 2 && parts[0] == "messages":
		op = OpGet
	case r.Method == http.MethodDelete && len(parts) == 2 && parts[0] == "messages":
		op = OpDelete
	default:
		s.problem(w, http.StatusBadRequest, "BadRequest", "unsupported request %s %s", r.Method, r.URL.Path)
		return
	}
	perm := "Mail.ReadWrite"
	if op == OpSendMail || op == OpSend {
		perm = "Mail.Send"
	}
	if !s.authorize(w, r, perm) {
		return
	}
	if op != OpSendMail && r.Header.Get("Prefer") != `IdType="ImmutableId"` {
		s.problem(w, http.StatusBadRequest, "ErrorInvalidRequest", "%s without Prefer: IdType=\"ImmutableId\"", op)
		return
	}
	s.mu.Lock()
	known := s.mailbox[strings.ToLower(mailbox)]
	s.mu.Unlock()
	if !known {
		writeErr(w, http.StatusNotFound, "ErrorInvalidUser", fmt.Sprintf("The requested user '%s' is invalid.", mailbox))
		return
	}
	f := s.takeFailure(op)
	if f != nil && !f.Lost {
		answerFailure(w, f)
		return
	}
	lost := f != nil && f.Lost
	var id string
	if len(parts) >= 2 {
		id, _ = url.PathUnescape(parts[1])
	}
	switch op {
	case OpSendMail:
		mime, ok := s.readMIME(w, r)
		if !ok {
			return
		}
		s.mu.Lock()
		s.sent = append(s.sent, Sent{Via: "sendMail", Mailbox: mailbox, MIME: mime})
		s.mu.Unlock()
		if lost {
			drop(w)
			return
		}
		w.WriteHeader(http.StatusAccepted)
	case OpCreateDraft:
		mime, ok := s.readMIME(w, r)
		if !ok {
			return
		}
		d := &draft{id: newID("AAkAL-immutable-"), mailbox: mailbox, mime: mime}
		s.mu.Lock()
		s.drafts[d.id] = d
		s.mu.Unlock()
		if lost {
			drop(w)
			return
		}
		writeJSON(w, http.StatusCreated, map[string]any{"id": d.id, "isDraft": true})
	case OpUploadSession:
		var req struct {
			AttachmentItem struct {
				AttachmentType, Name, ContentType, ContentID string
				Size                                         int64
				IsInline                                     bool
			}
		}
		if err := json.NewDecoder(io.LimitReader(r.Body, 1<<20)).Decode(&req); err != nil {
			s.problem(w, http.StatusBadRequest, "ErrorInvalidRequest", "createUploadSession body: %v", err)
			return
		}
		it := req.AttachmentItem
		if it.AttachmentType != "file" || it.Name == "" || it.Size <= 0 || it.Size > 150*1000*1000 {
			s.problem(w, http.StatusBadRequest, "ErrorInvalidRequest", "attachmentItem needs attachmentType file, a name and a size up to 150 MB: %+v", it)
			return
		}
		s.mu.Lock()
		d := s.drafts[id]
		if d == nil || d.deleted || d.sent {
			s.mu.Unlock()
			writeErr(w, http.StatusNotFound, "ErrorItemNotFound", "The specified object was not found in the store.")
			return
		}
		up := &upload{draft: d, att: &Attachment{Name: it.Name, ContentType: it.ContentType, ContentID: it.ContentID, IsInline: it.IsInline, Size: it.Size},
			hash: sha256.New()}
		sid := newID("")
		s.uploads[sid] = up
		s.mu.Unlock()
		writeJSON(w, http.StatusCreated, map[string]any{
			"uploadUrl":          s.srv.URL + "/upload/" + sid + "?authtoken=" + newID("pre-"),
			"expirationDateTime": time.Now().Add(time.Hour).UTC().Format(time.RFC3339),
			"nextExpectedRanges": []string{"0-"},
		})
	case OpSend:
		s.mu.Lock()
		d := s.drafts[id]
		if d == nil || d.deleted || d.sent {
			s.mu.Unlock()
			writeErr(w, http.StatusNotFound, "ErrorItemNotFound", "The specified object was not found in the store.")
			return
		}
		for _, u := range s.uploads {
			if u.draft == d && !u.done {
				s.mu.Unlock()
				s.problem(w, http.StatusBadRequest, "ErrorInvalidRequest", "draft sent with an unfinished upload session")
				return
			}
		}
		d.sent = true
		sent := Sent{Via: "draft", Mailbox: mailbox, MIME: d.mime}
		for _, a := range d.atts {
			sent.Attachments = append(sent.Attachments, *a)
		}
		s.sent = append(s.sent, sent)
		s.mu.Unlock()
		if lost {
			drop(w)
			return
		}
		w.WriteHeader(http.StatusAccepted)
	case OpGet:
		s.mu.Lock()
		d := s.drafts[id]
		hide := s.hideSent
		s.mu.Unlock()
		if d == nil || d.deleted || (d.sent && hide) {
			writeErr(w, http.StatusNotFound, "ErrorItemNotFound", "The specified object was not found in the store.")
			return
		}
		writeJSON(w, http.StatusOK, map[string]any{"id": d.id, "isDraft": !d.sent})
	case OpDelete:
		s.mu.Lock()
		d := s.drafts[id]
		if d == nil || d.deleted {
			s.mu.Unlock()
			writeErr(w, http.StatusNotFound, "ErrorItemNotFound", "The specified object was not found in the store.")
			return
		}
		d.deleted = true
		s.mu.Unlock()
		w.WriteHeader(http.StatusNoContent)
	}
}

// serveUpload takes one chunk: no Authorization header (the URL is
// pre-authenticated), Content-Range matching what is expected, a length
// that is a multiple of 320 KiB unless it is the last, at most 4 MB.
func (s *Server) serveUpload(w http.ResponseWriter, r *http.Request) {
	sid := strings.TrimPrefix(r.URL.Path, "/upload/")
	if r.Method != http.MethodPut {
		s.problem(w, http.StatusMethodNotAllowed, "ErrorInvalidRequest", "upload with %s", r.Method)
		return
	}
	if r.Header.Get("Authorization") != "" {
		s.problem(w, http.StatusBadRequest, "ErrorInvalidRequest", "upload request with an Authorization header (the upload URL is pre-authenticated)")
		return
	}
	if !strings.HasPrefix(r.URL.Query().Get("authtoken"), "pre-") {
		s.problem(w, http.StatusUnauthorized, "InvalidAuthenticationToken", "upload URL without its token")
		return
	}
	s.mu.Lock()
	up := s.uploads[sid]
	s.mu.Unlock()
	if up == nil {
		writeErr(w, http.StatusNotFound, "ErrorItemNotFound", "upload session not found")
		return
	}
	var start, end, total int64
	if _, err := fmt.Sscanf(r.Header.Get("Content-Range"), "bytes %d-%d/%d", &start, &end, &total); err != nil || end < start {
		s.problem(w, http.StatusBadRequest, "ErrorInvalidRequest", "bad Content-Range %q", r.Header.Get("Content-Range"))
		return
	}
	n := end - start + 1
	s.mu.Lock()
	next, size := up.next, up.att.Size
	s.mu.Unlock()
	switch {
	case total != size:
		s.problem(w, http.StatusBadRequest, "ErrorInvalidRequest", "Content-Range total %d, session size %d", total, size)
		return
	case r.ContentLength != n:
		s.problem(w, http.StatusBadRequest, "ErrorInvalidRequest", "Content-Length %d for a range of %d bytes", r.ContentLength, n)
		return
	case n > 4*1024*1024:
		s.problem(w, http.StatusRequestEntityTooLarge, "ErrorInvalidRequest", "chunk of %d bytes is over 4 MB", n)
		return
	case end+1 != total && n%(320*1024) != 0:
		s.problem(w, http.StatusBadRequest, "ErrorInvalidRequest", "chunk of %d bytes is not a multiple of 320 KiB", n)
		return
	case start != next:
		io.Copy(io.Discard, r.Body)
		writeJSON(w, http.StatusRequestedRangeNotSatisfiable, map[string]any{
			"error":              map[string]string{"code": "ErrorInvalidRange", "message": "unexpected range"},
			"nextExpectedRanges": []string{strconv.FormatInt(next, 10)},
		})
		return
	}
	f := s.takeFailure(OpUpload)
	if f != nil && f.Midway {
		io.CopyN(io.Discard, r.Body, n/2)
		drop(w)
		return
	}
	if f != nil && !f.Lost {
		io.Copy(io.Discard, r.Body)
		answerFailure(w, f)
		return
	}
	// Streamed into the hash (and the kept bytes), so the fake holds no
	// chunk in memory when it keeps no data; a chunk cut short is undone.
	s.mu.Lock()
	keep := s.keepData
	state, _ := up.hash.(encoding.BinaryMarshaler).MarshalBinary()
	kept := up.data.Len()
	s.mu.Unlock()
	var dst io.Writer = up.hash
	if keep {
		dst = io.MultiWriter(up.hash, &up.data)
	}
	if got, err := io.CopyN(dst, r.Body, n); err != nil || got != n {
		s.mu.Lock()
		up.hash.(encoding.BinaryUnmarshaler).UnmarshalBinary(state)
		up.data.Truncate(kept)
		s.mu.Unlock()
		return // the client went away: nothing of the chunk is kept
	}
	s.mu.Lock()
	up.next = end + 1
	up.att.Ranges = append(up.att.Ranges, r.Header.Get("Content-Range"))
	last := end+1 == total
	if last {
		up.done = true
		copy(up.att.Sum[:], up.hash.Sum(nil))
		if s.keepData {
			up.att.Data = bytes.Clone(up.data.Bytes())
		}
		up.data = bytes.Buffer{}
		up.draft.atts = append(up.draft.atts, up.att)
	}
	s.mu.Unlock()
	if f != nil && f.Lost {
		drop(w)
		return
	}
	if last {
		w.Header().Set("Location", s.srv.URL+"/v1.0/users/"+up.draft.mailbox+"/messages/"+up.draft.id+"/attachments/"+newID(""))
		w.WriteHeader(http.StatusCreated)
		return
	}
	writeJSON(w, http.StatusOK, map[string]any{
		"expirationDateTime": time.Now().Add(time.Hour).UTC().Format(time.RFC3339),
		"nextExpectedRanges": []string{strconv.FormatInt(end+1, 10)},
	})
}
