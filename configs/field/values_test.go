package field

import (
	"strings"
	"testing"
)

func TestValueChecks(t *testing.T) {
	for _, tc := range []struct {
		addr, want string // want: a part of the reason, "" for none
	}{
		{"127.0.0.1:2525", ""},
		{"[::1]:0", ""},
		{":2525", ""},
		{"127.0.0.1", "is not host:port"},
		{"127.0.0.1:65536", "out of range"},
		{"127.0.0.1:x", "out of range"},
		{"a b:25", "is not a host"},
	} {
		if got := HostPort(tc.addr); tc.want == "" && got != "" || !strings.Contains(got, tc.want) {
			t.Errorf("HostPort(%q) = %q, want %q", tc.addr, got, tc.want)
		}
	}
	for s, want := range map[string]bool{
		"example.com": true, "example.com.": true, "3f2a-77b1": true, "": false, "a..b": false,
		"-a.com": false, "a-.com": false, "a_b.com": false, strings.Repeat("a", 64) + ".com": false,
	} {
		if ValidDomain(s) != want {
			t.Errorf("ValidDomain(%q) = %v, want %v", s, !want, want)
		}
	}
	if got := Clip(strings.Repeat("x", 61)); len(got) != 60 || !strings.HasSuffix(got, "...") {
		t.Errorf("Clip of 61 bytes = %q", got)
	}
	if got := Clip("short"); got != "short" {
		t.Errorf("Clip(short) = %q", got)
	}
}
