package main

import (
	"errors"
	"strings"
)

// isPkgPrefix reports the "pkg: " prefixes Go errors collect on their way
// up through the daemon's packages. They say where the error passed, which a
// person fixing it does not need; what and why stay.
func isPkgPrefix(s string) bool {
	switch s {
	case "adminapi", "auth", "delivery", "spool", "configs", "smtpd", "scanfolder", "smtp", "xoauth2", "daemon", "wire", "notice":
		return true
	}
	return false
}

// cleanError is err with a readable message; Unwrap keeps the chain (codes,
// exit codes) intact.
type cleanError struct {
	msg string
	err error
}

func (e *cleanError) Error() string { return e.msg }
func (e *cleanError) Unwrap() error { return e.err }

// humanError formats an error chain at the CLI boundary as one statement:
// package prefixes go, and a part said twice ("account m365: ... account
// m365: ...") is said once. The daemon's message is otherwise kept, with the
// fix it names.
func humanError(err error) error {
	if err == nil || errors.Is(err, errReported) {
		return err
	}
	msg := cleanMessage(err.Error())
	if msg == err.Error() {
		return err
	}
	return &cleanError{msg: msg, err: err}
}

func cleanMessage(msg string) string {
	lines := strings.Split(msg, "\n")
	for i, line := range lines {
		parts := strings.Split(line, ": ")
		seen := map[string]bool{}
		out := parts[:0:0]
		for j, p := range parts {
			key := strings.TrimSpace(p)
			// The last part is the reason itself: always kept.
			if j < len(parts)-1 && (isPkgPrefix(key) || seen[key]) {
				continue
			}
			seen[key] = true
			out = append(out, p)
		}
		lines[i] = strings.Join(out, ": ")
	}
	return strings.Join(lines, "\n")
}
