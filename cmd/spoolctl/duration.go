package main

import (
	"fmt"
	"strconv"
	"strings"
	"time"
)

// parseDuration accepts Go durations ("90m", "1h30m") plus days and weeks
// ("7d", "2w", "1d12h"); admins think of queue ages in days. Negative
// values are refused: every flag using it means "older than".
func parseDuration(s string) (time.Duration, error) {
	in := strings.TrimSpace(s)
	if in == "" {
		return 0, fmt.Errorf("empty duration")
	}
	if in == "0" {
		return 0, nil
	}
	var total time.Duration
	rest := in
	for rest != "" {
		// Split off the leading number.
		i := 0
		for i < len(rest) && (rest[i] >= '0' && rest[i] <= '9' || rest[i] == '.') {
			i++
		}
		if i == 0 {
			return 0, fmt.Errorf("bad duration %q: want e.g. 30m, 12h, 7d", s)
		}
		j := i
		for j < len(rest) && (rest[j] < '0' || rest[j] > '9') && rest[j] != '.' {
			j++
		}
		num, unit := rest[:i], rest[i:j]
		rest = rest[j:]
		var part time.Duration
		switch unit {
		case "d", "w":
			n, err := strconv.ParseFloat(num, 64)
			if err != nil {
				return 0, fmt.Errorf("bad duration %q: %w", s, err)
			}
			day := 24 * time.Hour
			if unit == "w" {
				day *= 7
			}
			f := n * float64(day)
			if f > float64(1<<62) {
				return 0, fmt.Errorf("bad duration %q: too long", s)
			}
			part = time.Duration(f)
		case "":
			return 0, fmt.Errorf("bad duration %q: missing unit (s, m, h, d, w)", s)
		default:
			d, err := time.ParseDuration(num + unit)
			if err != nil {
				return 0, fmt.Errorf("bad duration %q: want e.g. 30m, 12h, 7d", s)
			}
			part = d
		}
		if total > time.Duration(1<<62)-part {
			return 0, fmt.Errorf("bad duration %q: too long", s)
		}
		total += part
	}
	return total, nil
}

// formatDurationFlag prints d the way parseDuration reads it.
func formatDurationFlag(d time.Duration) string {
	if d%(24*time.Hour) == 0 {
		return strconv.FormatInt(int64(d/(24*time.Hour)), 10) + "d"
	}
	return d.String()
}
