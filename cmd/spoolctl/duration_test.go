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
