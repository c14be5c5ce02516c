// Command mkpkg builds spoold's release artifacts from a checkout: static
// linux binaries of spoold and spoolctl with the version, commit and build
// date embedded, .deb and .rpm packages (nfpm), and SHA256SUMS.
//
//	go run ./cmd/mkpkg                     # linux/amd64 and linux/arm64, deb and rpm, into ./dist
//	go run ./cmd/mkpkg -version 1.2.0 -arch amd64 -formats deb -out /tmp/dist
//
// The packages install the hardened systemd unit (generated from
// configs/spoold.service), /etc/spoold/spoold.yaml as a kept config file
// (configs/packaging/spoold.yaml), the spoold user and group, /var/lib/spoold,
// man pages and shell completions generated from the binaries themselves, and
// the maintainer scripts in configs/packaging/{deb,rpm}.
package main

import (
	"bytes"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"time"
)

func main() {
	if err := run(os.Args[1:], os.Stdout, os.Stderr); err != nil {
		fmt.Fprintf(os.Stderr, "mkpkg: %v\n", err)
		var ue usageError
		if errors.As(err, &ue) {
			os.Exit(2)
		}
		os.Exit(1)
	}
}

type usageError struct{ error }

// options is one mkpkg run.
type options struct {
	Repo    string    // checkout root (holds go.mod)
	Out     string    // output directory
	Version string    // package version: semver, e.g. 1.2.0 or 1.2.0-rc.1
	Commit  string    // VCS revision, "" if unknown
	Date    time.Time // build date: SOURCE_DATE_EPOCH, else now
	Arches  []string  // GOARCH values, linux only
	Formats []string  // deb, rpm
	Log     io.Writer
}

func run(args []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("mkpkg", flag.ContinueOnError)
	fs.SetOutput(stderr)
	version := fs.String("version", "", "package version, semver (1.2.0, 1.2.0-rc.1); default: the tag at HEAD (v1.2.0 -> 1.2.0), else 0.0.0-dev.<commit time>.<commit>")
	out := fs.String("out", "dist", "output directory")
	arches := fs.String("arch", "amd64,arm64", "comma-separated linux GOARCH values")
	formats := fs.String("formats", "deb,rpm", "comma-separated package formats (deb, rpm); empty: binaries only")
	if err := fs.Parse(args); err != nil {
		return usageError{err}
	}
	if fs.NArg() > 0 {
		return usageError{fmt.Errorf("unexpected argument %q", fs.Arg(0))}
	}
	repo, err := findRepo()
	if err != nil {
		return err
	}
	o := options{Repo: repo, Out: *out, Version: *version, Arches: splitList(*arches), Formats: splitList(*formats), Log: stdout}
	if o.Date, err = buildDate(os.Getenv("SOURCE_DATE_EPOCH"), time.Now()); err != nil {
		return usageError{err}
	}
	o.Commit = gitOutput(repo, "rev-parse", "HEAD")
	if o.Version == "" {
		o.Version = defaultVersion(repo, o.Commit)
	}
	o.Version = strings.TrimPrefix(o.Version, "v")
	if err := checkVersion(o.Version); err != nil {
		return usageError{err}
	}
	for _, f := range o.Formats {
		if f != "deb" && f != "rpm" {
			return usageError{fmt.Errorf("unknown package format %q (want deb or rpm)", f)}
		}
	}
	if len(o.Arches) == 0 {
		return usageError{errors.New("-arch: no architecture")}
	}
	if !filepath.IsAbs(o.Out) {
		if o.Out, err = filepath.Abs(o.Out); err != nil {
			return err
		}
	}
	_, err = build(o)
	return err
}

func splitList(s string) []string {
	var l []string
	for _, f := range strings.Split(s, ",") {
		if f = strings.TrimSpace(f); f != "" {
			l = append(l, f)
		}
	}
	return l
}

// buildDate is SOURCE_DATE_EPOCH (reproducible builds) when set, else now.
func buildDate(epoch string, now time.Time) (time.Time, error) {
	if epoch == "" {
		return now.UTC().Truncate(time.Second), nil
	}
	sec, err := strconv.ParseInt(epoch, 10, 64)
	if err != nil {
		return time.Time{}, fmt.Errorf("SOURCE_DATE_EPOCH %q: not a number of seconds", epoch)
	}
	return time.Unix(sec, 0).UTC(), nil
}

// checkVersion accepts what both deb and rpm can order: digits and dots,
// optionally a pre-release (-rc.1, packaged as ~rc.1, which sorts before the
// release).
func checkVersion(v string) error {
	core, pre, _ := strings.Cut(v, "-")
	parts := strings.Split(core, ".")
	ok := len(parts) == 3
	for _, p := range parts {
		if _, err := strconv.ParseUint(p, 10, 32); err != nil {
			ok = false
		}
	}
	for _, r := range pre {
		if !(r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || r == '.') {
			ok = false
		}
	}
	if !ok || strings.Contains(v, "+") {
		return fmt.Errorf("version %q: want MAJOR.MINOR.PATCH with an optional -PRERELEASE of letters, digits and dots", v)
	}
	return nil
}

// defaultVersion is the release tag at HEAD, else a development version that
// sorts by commit time, so a rebuilt package of a later commit upgrades.
func defaultVersion(repo, commit string) string {
	if tag := gitOutput(repo, "describe", "--tags", "--exact-match", "--match", "v[0-9]*"); tag != "" {
		return tag
	}
	ct := gitOutput(repo, "show", "-s", "--format=%cd", "--date=format-local:%Y%m%d%H%M%S", "HEAD")
	if ct == "" || len(commit) < 7 {
		return "0.0.0-dev"
	}
	// A pre-release identifier may not start with 0 only when it is all
	// digits; the commit is prefixed with g, as git describe does.
	return "0.0.0-dev." + ct + ".g" + commit[:7]
}

func gitOutput(repo string, args ...string) string {
	cmd := exec.Command("git", append([]string{"-C", repo}, args...)...)
	cmd.Env = append(os.Environ(), "TZ=UTC")
	out, err := cmd.Output()
	if err != nil {
		return ""
	}
	return strings.TrimSpace(string(out))
}

// findRepo walks up from the working directory to spoold's go.mod.
func findRepo() (string, error) {
	dir, err := os.Getwd()
	if err != nil {
		return "", err
	}
	for {
		b, err := os.ReadFile(filepath.Join(dir, "go.mod"))
		if err == nil && bytes.HasPrefix(b, []byte("module github.com/spoold/spoold\n")) {
			return dir, nil
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			return "", errors.New("not inside the spoold checkout (no go.mod of github.com/spoold/spoold above the working directory)")
		}
		dir = parent
	}
}

// hostArch reports whether GOARCH binaries built for linux run here, so the
// docs can be generated by running them.
func hostRuns(arch string) bool { return runtime.GOOS == "linux" && runtime.GOARCH == arch }
