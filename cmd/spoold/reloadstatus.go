package main

import (
	"context"
	"errors"
	"strings"
	"sync"
	"time"

	"github.com/spoold/spoold/cmd/spoold/adminapi/wire"
	"github.com/spoold/spoold/configs"
)

// reloadStatus keeps the outcome of the last configuration reload, so a
// refused SIGHUP is not only a log line: `spoolctl status` shows it and
// `spoolctl reload` prints it. Its lock also keeps a SIGHUP and an admin's
// reload from running at the same time.
type reloadStatus struct {
	run   sync.Mutex // held for a whole reload
	mu    sync.Mutex // guards last
	last  *wire.ReloadInfo
	clock func() time.Time // nil = time.Now
}

// begin starts a reload; the returned function, deferred by reload() with
// its named results, records the outcome and ends it:
//
//	defer d.reloads.begin()(d.cfgPath, &err, &warnings)
func (r *reloadStatus) begin() func(cfgPath string, err *error, warnings *[]string) {
	r.run.Lock()
	return func(cfgPath string, err *error, warnings *[]string) {
		defer r.run.Unlock()
		now := time.Now
		if r.clock != nil {
			now = r.clock
		}
		ri := &wire.ReloadInfo{Time: now(), Config: cfgPath, OK: *err == nil, Warnings: *warnings}
		if *err != nil {
			ri.Problems = problemLines(*err)
		}
		r.mu.Lock()
		r.last = ri
		r.mu.Unlock()
	}
}

// lastReload returns a copy of the last outcome; nil before the first.
func (r *reloadStatus) lastReload() *wire.ReloadInfo {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.last == nil {
		return nil
	}
	c := *r.last
	return &c
}

// problemLines lists a configuration's problems one per line
// ("file:line: key: why"); any other error is one line.
func problemLines(err error) []string {
	var ps configs.Problems
	if errors.As(err, &ps) && len(ps) > 0 {
		out := make([]string, len(ps))
		for i, p := range ps {
			out[i] = p.String()
		}
		return out
	}
	return strings.Split(strings.TrimSpace(err.Error()), "\n")
}

// errEmbeddedDefault is a reload's problem when spoold runs without -config.
var errEmbeddedDefault = errors.New("spoold runs the embedded default configuration (no -config FILE): there is no file to reload; restart it with -config FILE to use one")

// Reload implements adminapi.Reloader: POST /v1/reload (spoolctl reload).
func (i daemonInfo) Reload(context.Context) wire.ReloadInfo {
	_ = i.d.reload() // the outcome is recorded; reload logs it
	if last := i.d.reloads.lastReload(); last != nil {
		return *last
	}
	return wire.ReloadInfo{Time: time.Now(), Problems: []string{"the reload recorded no outcome"}}
}

// LastReload implements adminapi.Reloader for status.
func (i daemonInfo) LastReload() *wire.ReloadInfo { return i.d.reloads.lastReload() }
