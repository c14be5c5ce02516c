package main

import (
	"strings"
	"testing"
	"time"
)

func TestParseDuration(t *testing.T) {
	good := map[string]time.Duration{
		"0": 0, "7d": 7 * 24 * time.Hour, "1d12h": 36 * time.Hour, "90m": 90 * time.Minute,
		"2w": 14 * 24 * time.Hour, "1.5d": 36 * time.Hour, "30s": 30 * time.Second, "1h30m": 90 * time.Minute,
	}
	for in, want := range good {
		got, err := parseDuration(in)
		if err != nil || got != want {
			t.Errorf("parseDuration(%q) = %v, %v; want %v", in, got, err, want)
		}
	}
	for _, in := range []string{"", "d", "7", "-1d", "7x", "1e9d", "99999999999d", "1..5d", "h7"} {
		if d, err := parseDuration(in); err == nil {
			t.Errorf("parseDuration(%q) = %v, want an error", in, d)
		}
	}
	if s := formatDurationFlag(7 * 24 * time.Hour); s != "7d" {
		t.Errorf("format 7d = %q", s)
	}
}

func FuzzParseDuration(f *testing.F) {
	for _, s := range []string{"7d", "1d12h", "90m", "2w", "1.5d", "0", "-3h", "1e3d"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		d, err := parseDuration(s)
		if err != nil {
			if strings.Contains(err.Error(), "\n") {
				t.Fatalf("multi-line error %q", err)
			}
			return
		}
		if d < 0 {
			t.Fatalf("parseDuration(%q) = %v: negative", s, d)
		}
		// What we print, we read back.
		back, err := parseDuration(formatDurationFlag(d))
		if err != nil || back != d {
			t.Fatalf("round trip of %q: %v -> %q -> %v, %v", s, d, formatDurationFlag(d), back, err)
		}
	})
}

func TestCopyHeadersAndBody(t *testing.T) {
	cases := []struct{ in, headers, body string }{
		{"", "", ""},
		{"Subject: x\n", "Subject: x\n", ""},
		{"Subject: x\r\n\r\nbody\r\n", "Subject: x\n", "body\r\n"},
		{"A: 1\nB: 2\n  folded\n\nline1\n\nline3", "A: 1\nB: 2\n  folded\n", "line1\n\nline3"},
		{"\r\nbody only\r\n", "", "body only\r\n"},
	}
	for _, c := range cases {
		var h, b strings.Builder
		if err := copyHeaders(&h, strings.NewReader(c.in)); err != nil || h.String() != c.headers {
			t.Errorf("headers of %q = %q, %v; want %q", c.in, h.String(), err, c.headers)
		}
		if err := copyBody(&b, strings.NewReader(c.in)); err != nil || b.String() != c.body {
			t.Errorf("body of %q = %q, %v; want %q", c.in, b.String(), err, c.body)
		}
	}
}
