// Package secret owns the one type that holds a credential in spoold (client
// secrets, passwords, password hashes, refresh and access tokens). A Secret
// prints, logs and marshals as "[redacted]", so it cannot leak through a log
// line, an error, a status page or a config dump by accident; Reveal returns
// the value for the one place that must send it. It is a leaf package: the
// config layer and every subsystem use it.
package secret

import (
	"fmt"
	"log/slog"
	"strconv"
)

// Redacted is what a non-empty Secret prints as.
const Redacted = "[redacted]"

// Secret is a sensitive string. An empty Secret prints as "" so that "not
// set" stays visible.
type Secret string

// Reveal returns the value; call it only where the value is used.
func (s Secret) Reveal() string { return string(s) }

// String redacts a non-empty secret.
func (s Secret) String() string {
	if s == "" {
		return ""
	}
	return Redacted
}

// GoString redacts for %#v.
func (s Secret) GoString() string { return strconv.Quote(s.String()) }

// Format redacts for every fmt verb (%v %+v %#v %s %q %x ...), so no verb
// reaches the underlying string by reflection.
func (s Secret) Format(f fmt.State, verb rune) {
	switch {
	case verb == 'q', verb == 'x', verb == 'X':
		fmt.Fprintf(f, "%q", s.String())
	case verb == 'v' && f.Flag('#'):
		fmt.Fprint(f, s.GoString())
	default:
		fmt.Fprint(f, s.String())
	}
}

// LogValue redacts in slog output.
func (s Secret) LogValue() slog.Value { return slog.StringValue(s.String()) }

// MarshalJSON redacts: secrets are never written out through JSON. Stored
// token records use their own storage type.
func (s Secret) MarshalJSON() ([]byte, error) { return []byte(strconv.Quote(s.String())), nil }

// MarshalText redacts for encoders that use encoding.TextMarshaler.
func (s Secret) MarshalText() ([]byte, error) { return []byte(s.String()), nil }

// MarshalYAML redacts when a configuration is printed as YAML.
func (s Secret) MarshalYAML() (any, error) { return s.String(), nil }
