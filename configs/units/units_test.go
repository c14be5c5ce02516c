package units

import (
	"strings"
	"testing"
	"time"
)

func TestParseDuration(t *testing.T) {
	for _, tt := range []struct {
		in   string
		want time.Duration
		ok   bool
	}{
		{"30s", 30 * time.Second, true},
		{"5m", 5 * time.Minute, true},
		{"24h", 24 * time.Hour, true},
		{"5d", 5 * day, true},
		{"2w", 2 * week, true},
		{"1d12h", 36 * time.Hour, true},
		{"1.5d", 36 * time.Hour, true},
		{"1h30m", 90 * time.Minute, true},
		{"250ms", 250 * time.Millisecond, true},
		{" 7d ", 7 * day, true},
		{"0", 0, true},
		{"", 0, false},
		{"5", 0, false},
		{"d", 0, false},
		{"h7", 0, false},
		{"-1s", 0, false},
		{"-1d", 0, false},
		{"5 d", 0, false},
		{"7x", 0, false},
		{"1e3d", 0, false},
		{"1..5d", 0, false},
		{"99999999999d", 0, false},
		{"2000000h2000000h", 0, false}, // the sum overflows
	} {
		got, err := ParseDuration(tt.in)
		if (err == nil) != tt.ok || got != tt.want {
			t.Errorf("ParseDuration(%q) = %v, %v; want %v ok=%v", tt.in, got, err, tt.want, tt.ok)
		}
	}
	if s := FormatDuration(7 * day); s != "7d" {
		t.Errorf("FormatDuration(7d) = %q", s)
	}
}

func TestDurationFlag(t *testing.T) {
	var d time.Duration
	f := DurationFlag{&d}
	if err := f.Set("1d"); err != nil || d != day || f.String() != "1d" || f.Type() != "duration" {
		t.Fatalf("Set(1d): %v, %v, %q", err, d, f.String())
	}
	if err := f.Set("soon"); err == nil {
		t.Fatal("Set(soon) accepted")
	}
}

func FuzzParseDuration(f *testing.F) {
	for _, s := range []string{"7d", "1d12h", "90m", "2w", "1.5d", "0", "-3h", "1e3d", "250ms"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		d, err := ParseDuration(s)
		if err != nil {
			if strings.Contains(err.Error(), "\n") {
				t.Fatalf("multi-line error %q", err)
			}
			return
		}
		if d < 0 {
			t.Fatalf("ParseDuration(%q) = %v: negative", s, d)
		}
		back, err := ParseDuration(FormatDuration(d))
		if err != nil || back != d {
			t.Fatalf("round trip of %q: %v -> %q -> %v, %v", s, d, FormatDuration(d), back, err)
		}
	})
}
