// Package field owns the one shape in which subsystems report configuration
// problems: a dotted key (the key's name in the YAML config, relative to the
// options struct that found it) and a reason. A subsystem's Validate returns
// Problems; the caller prefixes the keys with where the struct sits in the
// file ("smtp_listeners[0]"), and configs attaches file:line. It is a leaf
// package, so every subsystem may import it.
package field

import (
	"errors"
	"fmt"
	"strings"
)

// Problem is one thing wrong with one key.
type Problem struct {
	Key    string // dotted YAML key, e.g. "retry.max" or "users[2].password_hash"; "" for the struct as a whole
	Reason string // what is wrong and, where possible, the fix
}

func (p Problem) String() string {
	if p.Key == "" {
		return p.Reason
	}
	return p.Key + ": " + p.Reason
}

// Problems is every problem a Validate found, in the order found.
type Problems []Problem

// Add records a problem with key.
func (ps *Problems) Add(key, format string, args ...any) {
	*ps = append(*ps, Problem{Key: key, Reason: fmt.Sprintf(format, args...)})
}

// Merge appends others with their keys put under prefix ("retry" + "max" =
// "retry.max"; "users[1]" + "" = "users[1]").
func (ps *Problems) Merge(prefix string, others Problems) {
	for _, p := range others {
		*ps = append(*ps, Problem{Key: Join(prefix, p.Key), Reason: p.Reason})
	}
}

// MergeErr merges the problems in err under prefix; an error that is not a
// Problems becomes one problem at prefix, so nothing is lost.
func (ps *Problems) MergeErr(prefix string, err error) {
	if err == nil {
		return
	}
	var inner Problems
	if errors.As(err, &inner) {
		ps.Merge(prefix, inner)
		return
	}
	*ps = append(*ps, Problem{Key: prefix, Reason: err.Error()})
}

// Err returns ps as an error, or nil when there is no problem.
func (ps Problems) Err() error {
	if len(ps) == 0 {
		return nil
	}
	return ps
}

// Error lists one problem per line.
func (ps Problems) Error() string {
	lines := make([]string, len(ps))
	for i, p := range ps {
		lines[i] = p.String()
	}
	return strings.Join(lines, "\n")
}

// Join puts key under prefix: Join("a", "b") = "a.b", Join("a", "[1].b") =
// "a[1].b", and an empty side leaves the other.
func Join(prefix, key string) string {
	switch {
	case prefix == "":
		return key
	case key == "":
		return prefix
	case strings.HasPrefix(key, "["):
		return prefix + key
	}
	return prefix + "." + key
}

// Index is the key of the i-th element of a list: Index("users", 2) = "users[2]".
func Index(key string, i int) string { return fmt.Sprintf("%s[%d]", key, i) }
