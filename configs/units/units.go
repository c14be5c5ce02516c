// Package units owns how spoold reads and prints durations, so the config
// file, spoolctl's flags and the README agree: Go durations plus days and
// weeks ("30s", "5m", "24h", "7d", "2w", "1d12h"), never negative. It is a
// leaf package.
package units

import (
	"fmt"
	"math"
	"strconv"
	"strings"
	"time"
)

const (
	day  = 24 * time.Hour
	week = 7 * day
)

// ParseDuration parses a non-negative duration: a sequence of numbers with
// units ns, us, ms, s, m, h, d (24 h) or w (7 d); "0" alone needs no unit.
func ParseDuration(s string) (time.Duration, error) {
	in := strings.TrimSpace(s)
	bad := func() (time.Duration, error) {
		return 0, fmt.Errorf("duration %q: want a number and a unit (ms, s, m, h, d, w), e.g. 30s, 5m, 24h, 7d", s)
	}
	switch {
	case in == "":
		return 0, fmt.Errorf("empty duration")
	case strings.HasPrefix(in, "-"):
		return 0, fmt.Errorf("duration %q must not be negative", s)
	case in == "0":
		return 0, nil
	}
	var total time.Duration
	for rest := in; rest != ""; {
		i := 0
		for i < len(rest) && (rest[i] >= '0' && rest[i] <= '9' || rest[i] == '.') {
			i++
		}
		j := i
		for j < len(rest) && (rest[j] < '0' || rest[j] > '9') && rest[j] != '.' {
			j++
		}
		num, unit := rest[:i], rest[i:j]
		rest = rest[j:]
		if num == "" || unit == "" {
			return bad()
		}
		var part time.Duration
		switch unit {
		case "d", "w":
			f, err := strconv.ParseFloat(num, 64)
			if err != nil || math.IsInf(f, 0) || math.IsNaN(f) || strings.ContainsAny(num, "eE") {
				return bad()
			}
			size := day
			if unit == "w" {
				size = week
			}
			if f*float64(size) >= math.MaxInt64 {
				return 0, fmt.Errorf("duration %q is too long", s)
			}
			part = time.Duration(f * float64(size))
		default:
			d, err := time.ParseDuration(num + unit)
			if err != nil {
				return bad()
			}
			part = d
		}
		if total > math.MaxInt64-part {
			return 0, fmt.Errorf("duration %q is too long", s)
		}
		total += part
	}
	return total, nil
}

// FormatDuration prints d so that ParseDuration reads it back: whole days as
// "7d", everything else as Go prints it.
func FormatDuration(d time.Duration) string {
	if d > 0 && d%day == 0 {
		return strconv.FormatInt(int64(d/day), 10) + "d"
	}
	s := d.String()
	// 5m0s reads better as 5m, 1h0m0s as 1h; both parse back the same.
	if d >= time.Minute && d%time.Minute == 0 {
		s = strings.TrimSuffix(s, "0s")
		if d%time.Hour == 0 {
			s = strings.TrimSuffix(s, "0m")
		}
	}
	return s
}

// DurationFlag is a command-line flag value (spf13/pflag's Value) that reads
// durations with ParseDuration.
type DurationFlag struct{ D *time.Duration }

func (f DurationFlag) String() string {
	if f.D == nil || *f.D == 0 {
		return "0"
	}
	return FormatDuration(*f.D)
}

// Set parses s into the flag's variable.
func (f DurationFlag) Set(s string) error {
	d, err := ParseDuration(s)
	if err != nil {
		return err
	}
	*f.D = d
	return nil
}

// Type names the value in --help.
func (f DurationFlag) Type() string { return "duration" }
