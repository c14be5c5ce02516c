package scanfolder

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/mail"
	"path"
	"slices"
	"strings"
	"unicode"
	"unicode/utf8"

	"github.com/spoold/spoold/configs/field"
)

// Limits on values that end up in headers or the text part.
const (
	maxAddrLen       = 254
	maxNameLen       = 200
	maxSubjectLen    = 500
	maxBodyLen       = 64 << 10
	maxRecipients    = 50
	maxSidecarSize   = 128 << 10
	maxFileNameBytes = 255
)

// SidecarSuffix marks a sidecar: <file>.json next to <file>.
const SidecarSuffix = ".json"

// Sidecar is the optional <file>.json next to a scan. Unknown fields, bad
// addresses, control characters and over-long values are errors.
type Sidecar struct {
	To      stringList `json:"to"`
	Cc      stringList `json:"cc"`
	Subject string     `json:"subject"`
	Body    string     `json:"body"`
}

// stringList accepts a JSON string or an array of strings.
type stringList []string

func (s *stringList) UnmarshalJSON(b []byte) error {
	b = bytes.TrimSpace(b)
	if len(b) > 0 && b[0] == '"' {
		var one string
		if err := json.Unmarshal(b, &one); err != nil {
			return err
		}
		*s = stringList{one}
		return nil
	}
	var many []string
	if err := json.Unmarshal(b, &many); err != nil {
		return errors.New("want a string or an array of strings")
	}
	*s = many
	return nil
}

// sidecarKeys are Sidecar's JSON keys, in the order its docs list them.
var sidecarKeys = []string{"to", "cc", "subject", "body"}

// ParseSidecar decodes and validates a sidecar. Addresses come back normalised
// (bare addr-spec). Errors do not say "sidecar": the caller names the file.
func ParseSidecar(data []byte) (*Sidecar, error) {
	if len(data) > maxSidecarSize {
		return nil, fmt.Errorf("larger than %d bytes", maxSidecarSize)
	}
	if !utf8.Valid(data) {
		return nil, errors.New("not valid UTF-8")
	}
	if err := unknownSidecarKeys(data); err != nil {
		return nil, err
	}
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.DisallowUnknownFields()
	var sc Sidecar
	if err := dec.Decode(&sc); err != nil {
		return nil, err
	}
	if _, err := dec.Token(); !errors.Is(err, io.EOF) {
		return nil, errors.New("trailing data after the JSON object")
	}
	var err error
	if sc.To, err = checkAddressList("to", sc.To); err != nil {
		return nil, err
	}
	if sc.Cc, err = checkAddressList("cc", sc.Cc); err != nil {
		return nil, err
	}
	if len(sc.To)+len(sc.Cc) > maxRecipients {
		return nil, fmt.Errorf("more than %d recipients", maxRecipients)
	}
	if hasCtl(sc.Subject) {
		return nil, errors.New("subject contains control characters (CR, LF, NUL, ...)")
	}
	if len(sc.Subject) > maxSubjectLen {
		return nil, fmt.Errorf("subject longer than %d bytes", maxSubjectLen)
	}
	if strings.ContainsFunc(sc.Body, func(r rune) bool { return r == 0 || (unicode.IsControl(r) && r != '\n' && r != '\r' && r != '\t') }) {
		return nil, errors.New("body contains control characters")
	}
	if len(sc.Body) > maxBodyLen {
		return nil, fmt.Errorf("body longer than %d bytes", maxBodyLen)
	}
	return &sc, nil
}

// unknownSidecarKeys reports the keys of a JSON object that Sidecar does
// not have, each with the key probably meant (as the config checker does),
// so a typo is fixed from the failed/ reason alone. Keys match as
// encoding/json matches them, ignoring case. What is not a JSON object is
// left to the strict decoder to report.
func unknownSidecarKeys(data []byte) error {
	var obj map[string]json.RawMessage
	if json.Unmarshal(data, &obj) != nil {
		return nil
	}
	var msgs []string
	for k := range obj {
		if slices.ContainsFunc(sidecarKeys, func(known string) bool { return strings.EqualFold(k, known) }) {
			continue
		}
		msgs = append(msgs, unknownKeyHint(k))
	}
	if len(msgs) == 0 {
		return nil
	}
	slices.Sort(msgs)
	return errors.New(strings.Join(msgs, "; "))
}

// unknownKeyHint says key is unknown and suggests the nearest known key
// within edit distance 2, or lists the known keys.
func unknownKeyHint(key string) string {
	shown := key
	if len(shown) > 40 {
		shown = shown[:37] + "..."
	}
	if best := field.Suggest(key, sidecarKeys); best != "" {
		return fmt.Sprintf("unknown key %q (did you mean %q?)", shown, best)
	}
	return fmt.Sprintf("unknown key %q: known keys are %s", shown, strings.Join(sidecarKeys, ", "))
}

func checkAddressList(field string, l []string) ([]string, error) {
	out := make([]string, 0, len(l))
	for _, a := range l {
		n, err := checkAddress(a)
		if err != nil {
			return nil, fmt.Errorf("%s: %w", field, err)
		}
		out = append(out, n)
	}
	return out, nil
}

// checkAddress accepts a bare addr-spec ("alice@example.com") and returns it
// as net/mail parsed it. Display names, comments, groups, control characters
// and anything that does not round-trip are refused, so the value is safe to
// put into a header and an SMTP envelope.
func checkAddress(s string) (string, error) {
	if s == "" {
		return "", errors.New("empty address")
	}
	if len(s) > maxAddrLen {
		return "", fmt.Errorf("address longer than %d bytes", maxAddrLen)
	}
	if hasCtl(s) || strings.ContainsAny(s, " <>,;\"()\\") || !utf8.ValidString(s) {
		return "", fmt.Errorf("bad address %q", s)
	}
	a, err := mail.ParseAddress(s)
	if err != nil || a.Name != "" || a.Address != s {
		return "", fmt.Errorf("bad address %q", s)
	}
	at := strings.LastIndexByte(s, '@')
	if at <= 0 || at == len(s)-1 || strings.HasPrefix(s[at+1:], ".") || strings.HasSuffix(s, ".") {
		return "", fmt.Errorf("bad address %q", s)
	}
	return s, nil
}

// hasCtl reports whether s contains any control character (CR, LF, NUL, DEL,
// C1 controls, ...) or invalid UTF-8: such values are never put into headers.
func hasCtl(s string) bool {
	if !utf8.ValidString(s) {
		return true
	}
	return strings.ContainsFunc(s, func(r rune) bool {
		return unicode.IsControl(r) || r == '\u2028' || r == '\u2029'
	})
}

// route is where one scan goes.
type route struct {
	user    *User    // scanning user, nil if unknown
	to, cc  []string // recipients (to is never empty on success)
	subject string   // from the sidecar; "" = template
	body    string   // from the sidecar; "" = template
}

// checkName validates a relative, slash-separated path of a scan file: every
// component must be a sane file name that can go into a header.
func checkName(rel string) error {
	if rel == "" || path.IsAbs(rel) || path.Clean(rel) != rel {
		return fmt.Errorf("bad relative path %q", rel)
	}
	for _, c := range strings.Split(rel, "/") {
		if c == "" || c == "." || c == ".." {
			return fmt.Errorf("bad relative path %q", rel)
		}
		if hasCtl(c) {
			return errors.New("file or folder name contains control characters (CR, LF, NUL, ...) or invalid UTF-8")
		}
		if len(c) > maxFileNameBytes {
			return fmt.Errorf("file or folder name longer than %d bytes", maxFileNameBytes)
		}
	}
	return nil
}

// userFor finds the scanning user for a relative path: the first path
// component names a Users entry (exact, then case-insensitive) or is itself an
// e-mail address. Files directly in the folder have no user.
func userFor(rel string, users map[string]User) *User {
	first, _, nested := strings.Cut(rel, "/")
	if !nested {
		return nil
	}
	if u, ok := users[first]; ok {
		return &u
	}
	for name, u := range users {
		if strings.EqualFold(name, first) {
			return &u
		}
	}
	if addr, err := checkAddress(first); err == nil {
		return &User{Address: addr}
	}
	return nil
}

// resolveRoute combines the folder routing and an optional sidecar.
func resolveRoute(rel string, users map[string]User, sc *Sidecar) (route, error) {
	if err := checkName(rel); err != nil {
		return route{}, err
	}
	r := route{user: userFor(rel, users)}
	if sc != nil {
		r.to, r.cc, r.subject, r.body = sc.To, sc.Cc, sc.Subject, sc.Body
	}
	if len(r.to) == 0 && r.user != nil {
		r.to = []string{r.user.Address}
	}
	if len(r.to) == 0 {
		return r, errors.New("no route: put the file into a subfolder named as an e-mail address or listed in the users table, or give \"to\" in a sidecar <file>.json")
	}
	return r, nil
}

// ignoredName reports whether a base name is a temporary, hidden or sidecar
// file that is never sent on its own.
func ignoredName(base string) bool {
	l := strings.ToLower(base)
	return strings.HasPrefix(base, ".") || strings.HasPrefix(base, "~$") ||
		strings.HasSuffix(l, ".tmp") || strings.HasSuffix(l, ".part") ||
		strings.HasSuffix(l, SidecarSuffix)
}

// ignoredPath reports whether a relative path (slash-separated) is outside
// what the watcher scans: the folder's processed/ and failed/ trees and
// anything under a hidden directory.
func ignoredPath(rel string) bool {
	first, _, _ := strings.Cut(rel, "/")
	if first == ProcessedDir || first == FailedDir {
		return true
	}
	for _, c := range strings.Split(rel, "/") {
		if strings.HasPrefix(c, ".") || strings.HasPrefix(c, "~$") {
			return true
		}
	}
	return false
}
