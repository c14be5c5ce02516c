package console

import (
	"crypto/rand"
	"crypto/subtle"
	"encoding/base64"
	"net"
	"net/http"
	"sync"
	"time"

	"golang.org/x/crypto/bcrypt"
	"golang.org/x/time/rate"

	"github.com/spoold/spoold/configs/secret"
)

// session is one browser's state: who signed in ("" before a login), its
// CSRF token, a message for the next page, and the sign-ins it started.
type session struct {
	id       string
	user     string
	signedIn bool // by a password (not anonymous, not the loopback "local")
	csrf     string
	expires  time.Time
	flash    string
	flashOK  bool
	logins   map[string]string // login ID -> account
}

// maxSessions bounds the session table: anonymous visitors get a session
// (it carries the login form's CSRF token), so a flood of requests must
// not grow it without end.
const maxSessions = 10000

// anonTTL is how long a session without a login lives.
const anonTTL = 15 * time.Minute

type sessions struct {
	mu sync.Mutex
	m  map[string]*session
}

func randToken() string {
	b := make([]byte, 32)
	_, _ = rand.Read(b) // crypto/rand does not fail on supported platforms
	return base64.RawURLEncoding.EncodeToString(b)
}

// get returns the live session with id, extending nothing.
func (s *sessions) get(id string, now time.Time) *session {
	s.mu.Lock()
	defer s.mu.Unlock()
	se := s.m[id]
	if se == nil || now.After(se.expires) {
		delete(s.m, id)
		return nil
	}
	return se
}

// create starts a session for user ("" = not signed in).
func (s *sessions) create(user string, ttl time.Duration, now time.Time) *session {
	s.mu.Lock()
	defer s.mu.Unlock()
	if len(s.m) >= maxSessions {
		// Expired ones first, then those nobody signed in to (anonymous,
		// or "local" where no login is asked): anyone can make those.
		for id, se := range s.m {
			if now.After(se.expires) {
				delete(s.m, id)
			}
		}
		for id, se := range s.m {
			if len(s.m) < maxSessions {
				break
			}
			if !se.signedIn {
				delete(s.m, id)
			}
		}
	}
	se := &session{id: randToken(), user: user, csrf: randToken(), expires: now.Add(ttl), logins: map[string]string{}}
	s.m[se.id] = se
	return se
}

func (s *sessions) drop(id string) {
	s.mu.Lock()
	delete(s.m, id)
	s.mu.Unlock()
}

// update runs f under the table's lock (sessions are shared by a browser's
// concurrent requests).
func (s *sessions) update(f func()) {
	s.mu.Lock()
	defer s.mu.Unlock()
	f()
}

func validCSRF(se *session, got string) bool {
	return se != nil && got != "" && subtle.ConstantTimeCompare([]byte(se.csrf), []byte(got)) == 1
}

// throttle limits login attempts per client address and per user name.
type throttle struct {
	mu     sync.Mutex
	byIP   map[string]*limiterEntry
	byUser map[string]*limiterEntry
	ipLim  rate.Limit
	usrLim rate.Limit
	ipB    int
	usrB   int
}

type limiterEntry struct {
	l    *rate.Limiter
	seen time.Time
}

// maxThrottled bounds each table; idle entries (full again) are dropped.
const maxThrottled = 10000

func newThrottle(o Options) *throttle {
	return &throttle{
		byIP: map[string]*limiterEntry{}, byUser: map[string]*limiterEntry{},
		ipLim: rate.Every(o.LoginEvery), usrLim: rate.Every(o.UserEvery), ipB: o.LoginBurst, usrB: o.UserBurst,
	}
}

func (t *throttle) entry(m map[string]*limiterEntry, key string, lim rate.Limit, burst int, now time.Time) *rate.Limiter {
	if len(m) >= maxThrottled {
		for k, e := range m {
			if e.l.TokensAt(now) >= float64(burst) {
				delete(m, k)
			}
		}
	}
	e := m[key]
	if e == nil {
		e = &limiterEntry{l: rate.NewLimiter(lim, burst)}
		m[key] = e
	}
	e.seen = now
	return e.l
}

// allow takes one attempt from the client's and the user's budgets; false
// means wait. Every attempt counts, so a guesser gains nothing from
// mixing in a good password.
func (t *throttle) allow(ip, user string, now time.Time) bool {
	t.mu.Lock()
	defer t.mu.Unlock()
	okIP := t.entry(t.byIP, ip, t.ipLim, t.ipB, now).AllowN(now, 1)
	okUser := t.entry(t.byUser, user, t.usrLim, t.usrB, now).AllowN(now, 1)
	return okIP && okUser
}

func clientIP(r *http.Request) string {
	host, _, err := net.SplitHostPort(r.RemoteAddr)
	if err != nil {
		return r.RemoteAddr
	}
	return host
}

// dummyHash is compared against when the user is unknown, so the answer
// takes as long as for a known user and does not reveal which names exist.
var dummyHash, _ = bcrypt.GenerateFromPassword([]byte("spoold-console-no-such-user"), bcrypt.DefaultCost)

// checkPassword reports whether name/password match a configured user.
func checkPassword(users []User, name, password string) bool {
	hash := dummyHash
	found := false
	for _, u := range users {
		if subtle.ConstantTimeCompare([]byte(u.Name), []byte(name)) == 1 {
			hash, found = []byte(secret.Secret.Reveal(u.PasswordHash)), true
		}
	}
	err := bcrypt.CompareHashAndPassword(hash, []byte(password))
	return found && err == nil
}
