package smtpd

import (
	"errors"
	"net/netip"
	"sync"
	"time"

	"github.com/emersion/go-sasl"
	"golang.org/x/crypto/bcrypt"
)

// errSASLCancelled ends a LOGIN exchange that was sent the wrong step.
var errSASLCancelled = errors.New("smtpd: unexpected SASL response")

// loginServer is the server side of AUTH LOGIN (go-sasl only ships the
// client): challenge "Username:", then "Password:". An initial response
// (AUTH LOGIN <b64 user>) is accepted as the user name.
type loginServer struct {
	step     int
	username string
	check    func(username, password string) error
}

func (a *loginServer) Next(response []byte) ([]byte, bool, error) {
	switch a.step {
	case 0:
		a.step = 1
		if response == nil {
			return []byte("Username:"), false, nil
		}
		a.username = string(response)
		a.step = 2
		return []byte("Password:"), false, nil
	case 1:
		a.username = string(response)
		a.step = 2
		return []byte("Password:"), false, nil
	case 2:
		a.step = 3
		return nil, true, a.check(a.username, string(response))
	default:
		return nil, false, errSASLCancelled
	}
}

var _ sasl.Server = (*loginServer)(nil)

// userTable is one listener's AUTH users, swapped whole on SetUsers.
type userTable struct {
	byName map[string]User
}

func newUserTable(users []User) *userTable {
	t := &userTable{byName: make(map[string]User, len(users))}
	for _, u := range users {
		t.byName[u.Name] = u
	}
	return t
}

// dummyHash (cost 10, of a password nobody can type) is compared against for
// unknown users so that a failed login takes as long whether or not the name
// exists.
const dummyHash = "$2a$10$c30DWOOVTJCW7qBO2hzs/OyGrdcgGjet0BsFhroCR4dwI4aripx/W"

// check verifies a password; ok is false for unknown users and wrong passwords alike.
func (t *userTable) check(name, password string) (User, bool) {
	u, found := t.byName[name]
	hash := []byte(dummyHash)
	if found {
		hash = []byte(u.PasswordHash)
	}
	err := bcrypt.CompareHashAndPassword(hash, []byte(password))
	return u, found && err == nil
}

// authThrottle counts AUTH failures per client IP within a sliding window.
type authThrottle struct {
	mu     sync.Mutex
	limit  int
	window time.Duration
	fails  map[netip.Addr][]time.Time
}

func newAuthThrottle(limit int, window time.Duration) *authThrottle {
	return &authThrottle{limit: limit, window: window, fails: make(map[netip.Addr][]time.Time)}
}

// prune drops failures older than the window; the caller holds mu.
func (t *authThrottle) prune(ip netip.Addr, now time.Time) []time.Time {
	f := t.fails[ip]
	i := 0
	for i < len(f) && now.Sub(f[i]) >= t.window {
		i++
	}
	f = f[i:]
	if len(f) == 0 {
		delete(t.fails, ip)
		return nil
	}
	t.fails[ip] = f
	return f
}

// fail records a failure and returns the number of failures in the window.
func (t *authThrottle) fail(ip netip.Addr, now time.Time) int {
	t.mu.Lock()
	defer t.mu.Unlock()
	f := append(t.prune(ip, now), now)
	if len(f) > t.limit {
		f = f[len(f)-t.limit:] // bounded memory per IP
	}
	t.fails[ip] = f
	// Bound the map too: forget IPs whose failures have all expired.
	if len(t.fails) > 4096 {
		for k := range t.fails {
			t.prune(k, now)
		}
	}
	return len(f)
}

// blocked reports whether ip has reached the limit within the window.
func (t *authThrottle) blocked(ip netip.Addr, now time.Time) bool {
	t.mu.Lock()
	defer t.mu.Unlock()
	return len(t.prune(ip, now)) >= t.limit
}
