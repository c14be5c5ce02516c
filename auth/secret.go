package auth

import (
	"fmt"
	"log/slog"
)

// redacted is what every secret prints as.
const redacted = "[redacted]"

// Secret holds a credential (client secret, service-account key, token). It
// prints, logs and marshals as "[redacted]" so it cannot leak through a log
// line, an error or a status dump by accident; Reveal returns the value for
// the one place that must send it. An empty Secret prints as "" so "not set"
// stays visible.
type Secret string

// Reveal returns the secret value.
func (s Secret) Reveal() string { return string(s) }

// String redacts.
func (s Secret) String() string {
	if s == "" {
		return ""
	}
	return redacted
}

// Format redacts for every verb, including %#v and %q.
func (s Secret) Format(f fmt.State, verb rune) {
	if verb == 'q' {
		fmt.Fprintf(f, "%q", s.String())
		return
	}
	_, _ = f.Write([]byte(s.String()))
}

// GoString redacts (%#v).
func (s Secret) GoString() string { return s.String() }

// LogValue redacts in slog output.
func (s Secret) LogValue() slog.Value { return slog.StringValue(s.String()) }

// MarshalJSON redacts: secrets are never written out through JSON status or
// config dumps. Token records use their own storage type.
func (s Secret) MarshalJSON() ([]byte, error) { return []byte(`"` + s.String() + `"`), nil }

// MarshalText redacts (YAML and other text encoders).
func (s Secret) MarshalText() ([]byte, error) { return []byte(s.String()), nil }
