package main

import (
	"fmt"
	"io"
	"log/slog"
	"os"
	"strings"
	"time"

	"github.com/lmittmann/tint"
	"golang.org/x/term"
)

// newLogger builds the daemon's logger: tint (colour, human) when w is a
// terminal, JSON otherwise, so journald/ELK get structured lines and an admin
// at a console gets readable ones. format "text" or "json" forces one.
// noColor (the NO_COLOR convention, no-color.org) turns colour off even on a
// terminal.
func newLogger(w io.Writer, level, format string, noColor bool) (*slog.Logger, *slog.LevelVar, error) {
	lv := new(slog.LevelVar)
	if err := setLevel(lv, level); err != nil {
		return nil, nil, err
	}
	isTTY := false
	if f, ok := w.(*os.File); ok {
		isTTY = term.IsTerminal(int(f.Fd()))
	}
	text := &tint.Options{Level: lv, TimeFormat: time.DateTime, NoColor: !isTTY || noColor}
	switch strings.ToLower(format) {
	case "", "auto":
		if isTTY {
			return slog.New(tint.NewHandler(w, text)), lv, nil
		}
		return slog.New(slog.NewJSONHandler(w, &slog.HandlerOptions{Level: lv, ReplaceAttr: durationsAsText})), lv, nil
	case "text":
		return slog.New(tint.NewHandler(w, text)), lv, nil
	case "json":
		return slog.New(slog.NewJSONHandler(w, &slog.HandlerOptions{Level: lv, ReplaceAttr: durationsAsText})), lv, nil
	default:
		return nil, nil, fmt.Errorf("log format %q: want auto, text or json", format)
	}
}

// durationsAsText writes durations in JSON logs as Go duration strings
// ("30s", "1m30s"): slog's JSON handler writes nanoseconds, which nobody
// reading a log line can take in at a glance.
func durationsAsText(_ []string, a slog.Attr) slog.Attr {
	if a.Value.Kind() == slog.KindDuration {
		a.Value = slog.StringValue(a.Value.Duration().String())
	}
	return a
}

func setLevel(lv *slog.LevelVar, level string) error {
	if level == "" {
		level = "info"
	}
	var l slog.Level
	if err := l.UnmarshalText([]byte(level)); err != nil {
		return fmt.Errorf("log level %q: want debug, info, warn or error", level)
	}
	lv.Set(l)
	return nil
}
