package field

import (
	"fmt"
	"net"
	"strconv"
	"strings"
)

// The value checks below are shared by every subsystem's Validate (and
// configs' own), so that one kind of value is judged, and its problem
// worded, the same wherever it appears in the file.

// Clip shortens what the user wrote for quoting in a reason.
func Clip(s string) string {
	if len(s) > 60 {
		return s[:57] + "..."
	}
	return s
}

// HostPort checks a listen address host:port (port 0 = any free port,
// handy in tests) and returns why it is wrong, or "".
func HostPort(s string) string {
	host, port, err := net.SplitHostPort(s)
	if err != nil {
		return fmt.Sprintf("%q is not host:port, e.g. 127.0.0.1:2525 or [::1]:2525", Clip(s))
	}
	n, err := strconv.Atoi(port)
	if err != nil || n < 0 || n > 65535 {
		return fmt.Sprintf("port %q is out of range 0-65535", Clip(port))
	}
	if strings.ContainsAny(host, " \t\r\n/") {
		return fmt.Sprintf("%q is not a host", Clip(host))
	}
	return ""
}

// ValidDomain accepts a DNS name of letters, digits and hyphens (a tenant
// GUID is one label of hex digits and hyphens).
func ValidDomain(s string) bool {
	if s == "" || len(s) > 253 {
		return false
	}
	for _, label := range strings.Split(strings.TrimSuffix(s, "."), ".") {
		if label == "" || len(label) > 63 || label[0] == '-' || label[len(label)-1] == '-' {
			return false
		}
		for _, r := range label {
			if !(r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || r == '-') {
				return false
			}
		}
	}
	return true
}
