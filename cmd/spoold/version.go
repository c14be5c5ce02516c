package main

import (
	"runtime"
	"runtime/debug"
	"strings"
)

// Release builds (go run ./cmd/mkpkg) stamp these with
//
//	-ldflags "-X main.buildVersion=1.2.0 -X main.buildCommit=<sha> -X main.buildDate=<RFC 3339>"
//
// The linker can only set package-level string variables, so these are the
// one kind of package global here; nothing assigns them at run time. Empty
// means a plain `go build` or `go run`: the toolchain's own build info fills
// in what it knows (module version, VCS revision and time).
var (
	buildVersion string
	buildCommit  string
	buildDate    string
)

// buildInfo is what -version prints and the spoold_build_info metric labels.
type buildInfo struct {
	Version  string
	Commit   string // VCS revision, "" when unknown
	Date     string // release builds: the build date; else the commit time (VCS stamp), RFC 3339
	Modified bool   // built from a work tree with uncommitted changes
	Go       string
	Platform string
}

func readBuildInfo() buildInfo {
	b := buildInfo{Version: buildVersion, Commit: buildCommit, Date: buildDate,
		Go: runtime.Version(), Platform: runtime.GOOS + "/" + runtime.GOARCH}
	if bi, ok := debug.ReadBuildInfo(); ok {
		if b.Version == "" && bi.Main.Version != "" && bi.Main.Version != "(devel)" {
			b.Version = bi.Main.Version
		}
		for _, s := range bi.Settings {
			switch s.Key {
			case "vcs.revision":
				if b.Commit == "" {
					b.Commit = s.Value
				}
			case "vcs.time":
				if b.Date == "" {
					b.Date = s.Value
				}
			case "vcs.modified":
				b.Modified = s.Value == "true"
			}
		}
	}
	if b.Version == "" {
		b.Version = "devel"
	}
	return b
}

// version is the one-line version: the start-up log line, `spoold -version`
// and the admin API's status (spoolctl status) all show it, so an admin
// reading any of them can tell which build runs, e.g.
// "1.2.0 (commit 0123456789ab, built 2026-11-28T07:00:00Z)".
func version() string {
	b := readBuildInfo()
	var extra []string
	if b.Commit != "" {
		c := b.Commit
		if len(c) > 12 {
			c = c[:12]
		}
		if b.Modified {
			c += "-modified"
		}
		extra = append(extra, "commit "+c)
	}
	switch {
	case buildDate != "":
		extra = append(extra, "built "+b.Date)
	case b.Date != "":
		extra = append(extra, "committed "+b.Date)
	}
	if len(extra) == 0 {
		return b.Version
	}
	return b.Version + " (" + strings.Join(extra, ", ") + ")"
}
