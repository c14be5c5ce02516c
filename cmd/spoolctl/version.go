package main

import (
	"fmt"
	"runtime"
	"runtime/debug"
	"strings"

	"github.com/spf13/cobra"
)

// Release builds (go run ./cmd/mkpkg) stamp these with
//
//	-ldflags "-X main.buildVersion=1.2.0 -X main.buildCommit=<sha> -X main.buildDate=<RFC 3339>"
//
// The linker can only set package-level string variables, so these are the
// one kind of package global here; nothing assigns them at run time. Empty
// means a plain `go build` or `go run`: the toolchain's own build info fills
// in what it knows.
var (
	buildVersion string
	buildCommit  string
	buildDate    string
)

// buildInfo is what `spoolctl version` prints.
type buildInfo struct {
	Version  string `json:"version"`
	Revision string `json:"revision,omitempty"`
	Time     string `json:"time,omitempty"`  // VCS commit time
	Built    string `json:"built,omitempty"` // release builds: build date
	Modified bool   `json:"modified,omitempty"`
	Go       string `json:"go"`
	Platform string `json:"platform"`
}

func readBuildInfo() buildInfo {
	b := buildInfo{Version: "unknown", Go: runtime.Version(), Platform: runtime.GOOS + "/" + runtime.GOARCH}
	if bi, ok := debug.ReadBuildInfo(); ok {
		b.Version = bi.Main.Version
		for _, s := range bi.Settings {
			switch s.Key {
			case "vcs.revision":
				b.Revision = s.Value
			case "vcs.time":
				b.Time = s.Value
			case "vcs.modified":
				b.Modified = s.Value == "true"
			}
		}
		if b.Version == "" || b.Version == "(devel)" {
			b.Version = "devel"
		}
	}
	// A release stamp wins over what the toolchain recorded.
	if buildVersion != "" {
		b.Version = buildVersion
	}
	if buildCommit != "" {
		b.Revision = buildCommit
	}
	b.Built = buildDate
	return b
}

func (a *app) versionCmd() *cobra.Command {
	var asJSON bool
	cmd := &cobra.Command{
		Use:   "version",
		Short: "Print spoolctl's build information",
		Args:  cobra.NoArgs,
	}
	cmd.Flags().BoolVar(&asJSON, "json", false, "print JSON")
	cmd.RunE = a.run(func(cmd *cobra.Command, _ []string) error {
		b := readBuildInfo()
		if asJSON {
			return printJSON(cmd.OutOrStdout(), b)
		}
		out := cmd.OutOrStdout()
		fmt.Fprintf(out, "spoolctl %s (%s, %s)\n", b.Version, b.Go, b.Platform)
		if b.Revision != "" {
			var notes []string
			if b.Time != "" {
				notes = append(notes, b.Time)
			}
			if b.Modified {
				notes = append(notes, "modified")
			}
			line := "revision " + b.Revision
			if len(notes) > 0 {
				line += " (" + strings.Join(notes, ", ") + ")"
			}
			fmt.Fprintln(out, line)
		}
		if b.Built != "" {
			fmt.Fprintf(out, "built %s\n", b.Built)
		}
		return nil
	})
	return cmd
}
