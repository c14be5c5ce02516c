package main

import (
	"compress/gzip"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"slices"
	"sort"
	"strings"
)

// artifacts is what one mkpkg run wrote, as paths under options.Out.
type artifacts struct {
	Binaries map[string]string // GOARCH -> directory holding spoold and spoolctl
	Packages []string          // .deb and .rpm files
	Share    string            // generated unit, man pages and completions
	Sums     string            // SHA256SUMS over binaries and packages
}

// commands are the binaries every build and package carries.
var commands = []string{"spoold", "spoolctl"}

func build(o options) (*artifacts, error) {
	if err := os.MkdirAll(o.Out, 0o755); err != nil {
		return nil, err
	}
	a := &artifacts{Binaries: map[string]string{}, Share: filepath.Join(o.Out, "share")}
	for _, arch := range o.Arches {
		dir := filepath.Join(o.Out, fmt.Sprintf("spoold_%s_linux_%s", o.Version, arch))
		for _, c := range commands {
			if err := goBuild(o, "linux", arch, c, filepath.Join(dir, c)); err != nil {
				return nil, err
			}
		}
		a.Binaries[arch] = dir
		fmt.Fprintf(o.Log, "built %s\n", dir)
	}

	// The man pages and completions come from running the binaries, so they
	// say what --help says. Cross builds run the host's build of the same
	// source and version.
	tools := ""
	for arch, dir := range a.Binaries {
		if hostRuns(arch) {
			tools = dir
		}
	}
	if tools == "" {
		tools = filepath.Join(o.Out, ".tools")
		for _, c := range commands {
			if err := goBuild(o, runtime.GOOS, runtime.GOARCH, c, filepath.Join(tools, c)); err != nil {
				return nil, err
			}
		}
		defer os.RemoveAll(tools)
	}
	if err := os.RemoveAll(a.Share); err != nil {
		return nil, err
	}
	if err := writeShare(o, tools, a.Share); err != nil {
		return nil, err
	}

	for _, arch := range o.Arches {
		for _, format := range o.Formats {
			p, err := writePackage(o, format, arch, a.Binaries[arch], a.Share)
			if err != nil {
				return nil, fmt.Errorf("%s %s: %w", format, arch, err)
			}
			a.Packages = append(a.Packages, p)
			fmt.Fprintf(o.Log, "packaged %s\n", p)
		}
	}

	var sumFiles []string
	for _, dir := range a.Binaries {
		for _, c := range commands {
			sumFiles = append(sumFiles, filepath.Join(dir, c))
		}
	}
	sumFiles = append(sumFiles, a.Packages...)
	a.Sums = filepath.Join(o.Out, "SHA256SUMS")
	if err := writeSums(o.Out, sumFiles, a.Sums); err != nil {
		return nil, err
	}
	fmt.Fprintf(o.Log, "checksums %s\n", a.Sums)
	return a, nil
}

// ldflags embeds the build information that spoold -version, spoolctl
// version and the spoold_build_info metric report (see version.go in both
// commands), strips the symbol table and drops the build ID so the same
// inputs give the same bytes.
func ldflags(o options) string {
	return strings.Join([]string{
		"-s", "-w", "-buildid=",
		"-X", "main.buildVersion=" + o.Version,
		"-X", "main.buildCommit=" + o.Commit,
		"-X", "main.buildDate=" + o.Date.Format("2006-01-02T15:04:05Z"),
	}, " ")
}

// goBuild builds one static binary: CGO_ENABLED=0 links no libc, so the same
// file runs on any distribution of its architecture.
func goBuild(o options, goos, goarch, command, dst string) error {
	cmd := exec.Command("go", "build", "-trimpath", "-ldflags", ldflags(o), "-o", dst, "./cmd/"+command)
	cmd.Dir = o.Repo
	cmd.Env = append(os.Environ(), "CGO_ENABLED=0", "GOOS="+goos, "GOARCH="+goarch)
	cmd.Stdout, cmd.Stderr = o.Log, o.Log
	if err := cmd.Run(); err != nil {
		return fmt.Errorf("go build %s for %s/%s: %w", command, goos, goarch, err)
	}
	return nil
}

// writeShare generates the architecture-independent files: the packaged
// systemd unit, man pages (gzipped, section 8) and shell completions.
func writeShare(o options, tools, share string) error {
	for _, d := range []string{"man8", "completions", "systemd"} {
		if err := os.MkdirAll(filepath.Join(share, d), 0o755); err != nil {
			return err
		}
	}
	src, err := os.ReadFile(filepath.Join(o.Repo, "configs", "spoold.service"))
	if err != nil {
		return err
	}
	unit, err := packageUnit(src)
	if err != nil {
		return err
	}
	if err := os.WriteFile(filepath.Join(share, "systemd", "spoold.service"), unit, 0o644); err != nil {
		return err
	}

	raw, err := os.MkdirTemp("", "mkpkg-man-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(raw)
	day := o.Date.Format("2006-01-02")
	if _, err := runTool(filepath.Join(tools, "spoolctl"), "man", "--dir", raw, "--date", day, "--source", "spoold "+o.Version); err != nil {
		return err
	}
	help, err := spooldHelp(filepath.Join(tools, "spoold"))
	if err != nil {
		return err
	}
	page, err := spooldManPage(help, o.Version, o.Date)
	if err != nil {
		return err
	}
	if err := os.WriteFile(filepath.Join(raw, "spoold.8"), page, 0o644); err != nil {
		return err
	}
	pages, err := filepath.Glob(filepath.Join(raw, "*.8"))
	if err != nil {
		return err
	}
	for _, p := range pages {
		if err := gzipFile(p, filepath.Join(share, "man8", filepath.Base(p)+".gz")); err != nil {
			return err
		}
	}

	for _, sh := range []struct{ shell, file string }{
		{"bash", "spoolctl.bash"}, {"zsh", "_spoolctl"}, {"fish", "spoolctl.fish"},
	} {
		out, err := runTool(filepath.Join(tools, "spoolctl"), "completion", sh.shell)
		if err != nil {
			return err
		}
		if err := os.WriteFile(filepath.Join(share, "completions", sh.file), out, 0o644); err != nil {
			return err
		}
	}
	return nil
}

func runTool(path string, args ...string) ([]byte, error) {
	cmd := exec.Command(path, args...)
	var stderr strings.Builder
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		return nil, fmt.Errorf("%s %s: %w: %s", filepath.Base(path), strings.Join(args, " "), err, stderr.String())
	}
	return out, nil
}

// spooldHelp is what `spoold -h` prints: its flag set's usage (exit 2, as
// for any usage request of the flag package).
func spooldHelp(spoold string) (string, error) {
	cmd := exec.Command(spoold, "-h")
	var out strings.Builder
	cmd.Stdout, cmd.Stderr = &out, &out
	err := cmd.Run()
	if ee, ok := err.(*exec.ExitError); err != nil && (!ok || ee.ExitCode() != 2) {
		return "", fmt.Errorf("spoold -h: %w", err)
	}
	return out.String(), nil
}

// gzipFile writes a gzip of src without name or time in the header, so the
// same page gives the same bytes (Debian policy: man pages gzip -9n).
func gzipFile(src, dst string) error {
	b, err := os.ReadFile(src)
	if err != nil {
		return err
	}
	f, err := os.Create(dst)
	if err != nil {
		return err
	}
	zw, err := gzip.NewWriterLevel(f, gzip.BestCompression)
	if err != nil {
		f.Close()
		return err
	}
	if _, err := zw.Write(b); err != nil {
		f.Close()
		return err
	}
	if err := zw.Close(); err != nil {
		f.Close()
		return err
	}
	return f.Close()
}

// writeSums writes `sha256sum -c`-compatible lines with paths relative to
// the output directory.
func writeSums(out string, files []string, dst string) error {
	var lines []string
	for _, p := range files {
		f, err := os.Open(p)
		if err != nil {
			return err
		}
		h := sha256.New()
		_, err = io.Copy(h, f)
		f.Close()
		if err != nil {
			return err
		}
		rel, err := filepath.Rel(out, p)
		if err != nil {
			return err
		}
		lines = append(lines, hex.EncodeToString(h.Sum(nil))+"  "+filepath.ToSlash(rel))
	}
	sort.Slice(lines, func(i, j int) bool { return lines[i][66:] < lines[j][66:] })
	lines = slices.Compact(lines)
	return os.WriteFile(dst, []byte(strings.Join(lines, "\n")+"\n"), 0o644)
}
