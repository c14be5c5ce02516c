package main

import (
	"bytes"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"
)

func repoRoot(t *testing.T) string {
	t.Helper()
	dir, err := filepath.Abs(filepath.Join("..", ".."))
	if err != nil {
		t.Fatal(err)
	}
	return dir
}

var (
	hostSpooldOnce sync.Once
	hostSpoold     string
	hostSpooldErr  error
)

// buildHostSpoold builds spoold once for the tests that run it.
func buildHostSpoold(t *testing.T) string {
	t.Helper()
	hostSpooldOnce.Do(func() {
		dir, err := os.MkdirTemp("", "mkpkg-test-")
		if err != nil {
			hostSpooldErr = err
			return
		}
		hostSpoold = filepath.Join(dir, "spoold")
		cmd := exec.Command("go", "build", "-o", hostSpoold, "./cmd/spoold")
		cmd.Dir = repoRoot(t)
		if out, err := cmd.CombinedOutput(); err != nil {
			hostSpooldErr = err
			hostSpoold = string(out)
		}
	})
	if hostSpooldErr != nil {
		t.Fatalf("building spoold: %v\n%s", hostSpooldErr, hostSpoold)
	}
	return hostSpoold
}

func TestMain(m *testing.M) {
	code := m.Run()
	if hostSpoold != "" && hostSpooldErr == nil {
		os.RemoveAll(filepath.Dir(hostSpoold))
	}
	os.Exit(code)
}

func TestPackageUnit(t *testing.T) {
	src, err := os.ReadFile(filepath.Join(repoRoot(t), "configs", "spoold.service"))
	if err != nil {
		t.Fatal(err)
	}
	unit, err := packageUnit(src)
	if err != nil {
		t.Fatal(err)
	}
	u := string(unit)
	for _, want := range []string{
		"\nExecStart=/usr/bin/spoold -config /etc/spoold/spoold.yaml\n",
		"\nRuntimeDirectory=spoold\nRuntimeDirectoryMode=0750\n",
		"\nDocumentation=man:spoold(8) ",
	} {
		if !strings.Contains(u, want) {
			t.Errorf("packaged unit lacks %q", want)
		}
	}
	if strings.Contains(u, "/usr/local") || strings.Contains(u, "useradd") {
		t.Error("packaged unit keeps the manual install recipe or a /usr/local path")
	}
	// Every setting of the repository's unit (the one owner of the
	// hardening) is in the packaged one, unchanged but for ExecStart.
	for _, line := range strings.Split(string(src), "\n") {
		if line == "" || strings.HasPrefix(line, "#") || strings.HasPrefix(line, "ExecStart=") || strings.HasPrefix(line, "Documentation=") {
			continue
		}
		if !strings.Contains(u, "\n"+line+"\n") {
			t.Errorf("packaged unit lost %q", line)
		}
	}
	if _, err := packageUnit(bytes.ReplaceAll(src, []byte("/usr/local/bin/spoold"), []byte("/opt/spoold"))); err == nil {
		t.Error("a unit without the /usr/local/bin ExecStart was accepted")
	}

	// systemd's own check, where systemd-analyze exists. It requires the
	// ExecStart binary, so this copy starts a stand-in; the install test
	// verifies the installed unit as it is.
	sa, err := exec.LookPath("systemd-analyze")
	if err != nil {
		t.Log("systemd-analyze not installed: systemd's verification skipped")
		return
	}
	dir := t.TempDir()
	stand := filepath.Join(dir, "spoold")
	if err := os.WriteFile(stand, []byte("#!/bin/sh\n"), 0o755); err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(dir, "spoold.service")
	if err := os.WriteFile(path, bytes.ReplaceAll(unit, []byte("ExecStart=/usr/bin/spoold"), []byte("ExecStart="+stand)), 0o644); err != nil {
		t.Fatal(err)
	}
	if out, err := exec.Command(sa, "verify", "--man=no", path).CombinedOutput(); err != nil || len(bytes.TrimSpace(out)) > 0 {
		t.Errorf("systemd-analyze verify: %v\n%s", err, out)
	}
}

// The packaged configuration is a working start: spoold -check accepts it.
func TestPackagedConfigChecks(t *testing.T) {
	spoold := buildHostSpoold(t)
	cfg := filepath.Join(repoRoot(t), "configs", "packaging", "spoold.yaml")
	b, err := os.ReadFile(cfg)
	if err != nil {
		t.Fatal(err)
	}
	// -check also wants the scan folder the package creates: check a copy
	// whose /var/lib/spoold is a directory made here.
	root := t.TempDir()
	if err := os.MkdirAll(filepath.Join(root, "scans"), 0o750); err != nil {
		t.Fatal(err)
	}
	installed := filepath.Join(root, "spoold.yaml")
	if err := os.WriteFile(installed, bytes.ReplaceAll(b, []byte("/var/lib/spoold"), []byte(root)), 0o600); err != nil {
		t.Fatal(err)
	}
	out, err := exec.Command(spoold, "-config", installed, "-check").CombinedOutput()
	if err != nil {
		t.Fatalf("spoold -check %s (as installed): %v\n%s", cfg, err, out)
	}
	for _, want := range []string{"data_dir: /var/lib/spoold\n", "socket: /run/spoold/spoold.sock\n", "path: /var/lib/spoold/scans\n"} {
		if !strings.Contains(string(b), want) {
			t.Errorf("packaged config lacks %q (the package's directories and spoolctl's socket depend on it)", want)
		}
	}
}

// spoold(8) is generated from `spoold -h`: every flag and its whole usage
// text are on the page.
func TestSpooldManPageMatchesHelp(t *testing.T) {
	help, err := spooldHelp(buildHostSpoold(t))
	if err != nil {
		t.Fatal(err)
	}
	flags, err := parseFlagHelp(help)
	if err != nil {
		t.Fatal(err)
	}
	if got := strings.Count(help, "\n  -"); got != len(flags) {
		t.Fatalf("parsed %d flags from spoold -h, which lists %d:\n%s", len(flags), got, help)
	}
	page, err := spooldManPage(help, "1.2.3", time.Date(2026, 1, 2, 0, 0, 0, 0, time.UTC))
	if err != nil {
		t.Fatal(err)
	}
	p := string(page)
	if !strings.HasPrefix(p, `.TH "SPOOLD" "8" "Jan 2026" "spoold 1.2.3" "spoold manual"`) {
		t.Errorf("header: %.80q", p)
	}
	for _, f := range flags {
		if !strings.Contains(p, `\fB\-`+roffArg(f.Name)+`\fR`) {
			t.Errorf("spoold.8 lacks -%s", f.Name)
		}
		if !strings.Contains(p, roff(f.Usage)) {
			t.Errorf("spoold.8 lacks -%s's usage %q", f.Name, f.Usage)
		}
	}
	for _, want := range []string{"-config", "-check", "-version"} {
		if !strings.Contains(help, "\n  "+want) {
			t.Errorf("spoold -h lacks %s", want)
		}
	}
}

func TestParseFlagHelp(t *testing.T) {
	if _, err := parseFlagHelp("Usage of spoold:\nsomething else\n"); err == nil {
		t.Error("an unknown line shape was accepted")
	}
	flags, err := parseFlagHelp("Usage of spoold:\n  -a\tall\n  -config file\n    \tthe file\n    \tsecond line\n  -verbose\n    \tverbose\n")
	if err != nil {
		t.Fatal(err)
	}
	want := []helpFlag{{"a", "", "all"}, {"config", "file", "the file\nsecond line"}, {"verbose", "", "verbose"}}
	if len(flags) != len(want) || flags[0] != want[0] || flags[1] != want[1] || flags[2] != want[2] {
		t.Fatalf("parseFlagHelp = %+v, want %+v", flags, want)
	}
	if got := roff(".x - y\\z"); got != "\\&.x \\- y\\ez\n" {
		t.Errorf("roff = %q", got)
	}
}

func TestCheckVersion(t *testing.T) {
	for _, v := range []string{"1.2.0", "0.0.0-dev.20261128080138.gede122f", "2.0.0-rc.1"} {
		if err := checkVersion(v); err != nil {
			t.Errorf("checkVersion(%q): %v", v, err)
		}
	}
	for _, v := range []string{"", "1.2", "v1.2.0", "1.2.0+meta", "1.2.0-rc_1", "1.x.0", "1.2.0-rc 1"} {
		if err := checkVersion(v); err == nil {
			t.Errorf("checkVersion(%q) accepted", v)
		}
	}
}

func TestBuildDate(t *testing.T) {
	now := time.Date(2026, 11, 28, 8, 0, 0, 5, time.FixedZone("x", 3600))
	if d, err := buildDate("", now); err != nil || !d.Equal(now.Truncate(time.Second)) || d.Location() != time.UTC {
		t.Errorf("buildDate(\"\") = %v, %v", d, err)
	}
	if d, err := buildDate("1700000000", now); err != nil || d.Unix() != 1700000000 {
		t.Errorf("buildDate(epoch) = %v, %v", d, err)
	}
	if _, err := buildDate("yesterday", now); err == nil {
		t.Error("a bad SOURCE_DATE_EPOCH was accepted")
	}
}

func TestWriteSums(t *testing.T) {
	dir := t.TempDir()
	if err := os.MkdirAll(filepath.Join(dir, "b"), 0o755); err != nil {
		t.Fatal(err)
	}
	for name, body := range map[string]string{"b/x": "hello\n", "a.deb": ""} {
		if err := os.WriteFile(filepath.Join(dir, name), []byte(body), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	sums := filepath.Join(dir, "SHA256SUMS")
	if err := writeSums(dir, []string{filepath.Join(dir, "b/x"), filepath.Join(dir, "a.deb")}, sums); err != nil {
		t.Fatal(err)
	}
	b, _ := os.ReadFile(sums)
	want := "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855  a.deb\n" +
		"5891b5b522d5df086d0ff0b110fbd9d21bb4fc7163af34d08286a2e846f6be03  b/x\n"
	if string(b) != want {
		t.Fatalf("SHA256SUMS:\n%s\nwant:\n%s", b, want)
	}
	if sha, err := exec.LookPath("sha256sum"); err == nil {
		cmd := exec.Command(sha, "-c", "--quiet", "SHA256SUMS")
		cmd.Dir = dir
		if out, err := cmd.CombinedOutput(); err != nil {
			t.Errorf("sha256sum -c: %v\n%s", err, out)
		}
	}
}
