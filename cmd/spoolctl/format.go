package main

import (
	"fmt"
	"io"
	"log/slog"
	"strconv"
	"strings"
	"text/tabwriter"
	"time"
	"unicode/utf8"

	"github.com/spoold/spoold/cmd/spoold/adminapi/wire"
)

func discardLogger() *slog.Logger { return slog.New(slog.DiscardHandler) }

func newTable(w io.Writer) *tabwriter.Writer {
	return tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
}

// age prints a compact duration: 45s, 12m, 3h5m, 2d4h.
func age(d time.Duration) string {
	if d < 0 {
		d = -d
	}
	switch {
	case d < time.Minute:
		return strconv.Itoa(int(d/time.Second)) + "s"
	case d < time.Hour:
		return strconv.Itoa(int(d/time.Minute)) + "m"
	case d < 24*time.Hour:
		h, m := int(d/time.Hour), int(d%time.Hour/time.Minute)
		if m == 0 {
			return strconv.Itoa(h) + "h"
		}
		return fmt.Sprintf("%dh%dm", h, m)
	default:
		dd, h := int(d/(24*time.Hour)), int(d%(24*time.Hour)/time.Hour)
		if h == 0 {
			return strconv.Itoa(dd) + "d"
		}
		return fmt.Sprintf("%dd%dh", dd, h)
	}
}

// since prints how long ago t was relative to now ("-" when unset).
func since(t, now time.Time) string {
	if t.IsZero() {
		return "-"
	}
	if t.After(now) {
		return "in " + age(t.Sub(now))
	}
	return age(now.Sub(t)) + " ago"
}

// until prints when t comes relative to now: "now", "in 5m", "-" when unset.
func until(t, now time.Time) string {
	if t.IsZero() {
		return "-"
	}
	if !t.After(now) {
		return "now"
	}
	return "in " + age(t.Sub(now))
}

// timeLayout shows a time to a person: the zone is always named, since the
// daemon may run elsewhere or in UTC.
const timeLayout = "2006-01-02 15:04:05 MST"

// clockTime prints t in now's zone (the reader's: commands move now there).
func clockTime(t, now time.Time) string {
	if t.IsZero() {
		return "-"
	}
	return t.In(now.Location()).Format(timeLayout)
}

// stamp prints an absolute time in now's zone with a relative hint.
func stamp(t, now time.Time) string {
	if t.IsZero() {
		return "-"
	}
	return clockTime(t, now) + " (" + since(t, now) + ")"
}

func size(n int64) string {
	const k = 1024
	switch {
	case n < k:
		return strconv.FormatInt(n, 10) + " B"
	case n < k*k:
		return fmt.Sprintf("%.1f KiB", float64(n)/k)
	case n < k*k*k:
		return fmt.Sprintf("%.1f MiB", float64(n)/(k*k))
	default:
		return fmt.Sprintf("%.1f GiB", float64(n)/(k*k*k))
	}
}

// short cuts s to n runes with an ellipsis and flattens whitespace, so a
// table cell stays one line.
func short(s string, n int) string {
	s = strings.Join(strings.Fields(s), " ")
	if utf8.RuneCountInString(s) <= n {
		return s
	}
	r := []rune(s)
	return string(r[:n-1]) + "…"
}

func orDash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}

func sender(from string) string {
	if from == "" {
		return "<>"
	}
	return from
}

// recipients prints the first recipient and how many more there are.
func recipients(rs []wire.RecipientInfo) string {
	switch len(rs) {
	case 0:
		return "-"
	case 1:
		return rs[0].Addr
	default:
		return fmt.Sprintf("%s +%d", rs[0].Addr, len(rs)-1)
	}
}

// errLine prints an error record on one line: "451 4.7.500 DATA: text".
func errLine(e *wire.ErrorInfo) string {
	if e == nil {
		return ""
	}
	var parts []string
	if e.Code != 0 {
		parts = append(parts, strconv.Itoa(e.Code))
	}
	if e.Enhanced != "" {
		parts = append(parts, e.Enhanced)
	}
	head := strings.Join(parts, " ")
	if e.Command != "" {
		if head != "" {
			head += " "
		}
		head += e.Command
	}
	if head == "" {
		return e.Text
	}
	return head + ": " + e.Text
}
