package main

import (
	"bufio"
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"
)

// TestInstalledPackage installs the .deb system-wide and runs the installed
// daemon, so it runs only when asked: SPOOLD_PKG_TEST=1 (.ci/run sets it in
// a step of its own, after the test suite, as root on a clean machine). It
// leaves the machine as it found it: the package purged, the spoold user
// removed if the test created it.
//
// Without systemd running (CI), the test does what the unit would: it
// starts the unit's ExecStart as the unit's User with its WorkingDirectory,
// UMask and RuntimeDirectory; maintainer scripts talk to a stand-in
// systemctl that records what they asked.
func TestInstalledPackage(t *testing.T) {
	if os.Getenv("SPOOLD_PKG_TEST") != "1" {
		t.Skip("installs the spoold package system-wide: set SPOOLD_PKG_TEST=1 (as root) to run it")
	}
	if os.Geteuid() != 0 {
		t.Fatal("SPOOLD_PKG_TEST=1 needs root (dpkg -i)")
	}
	for _, tool := range []string{"dpkg", "dpkg-deb", "dpkg-query", "rpm", "swaks", "useradd"} {
		if _, err := exec.LookPath(tool); err != nil {
			t.Fatalf("%s is not installed (.ci/run installs it): %v", tool, err)
		}
	}
	if exec.Command("dpkg-query", "-W", "spoold").Run() == nil {
		t.Fatal("a spoold package is installed here; the test would replace and purge it")
	}
	for _, p := range []string{"/etc/spoold", "/var/lib/spoold", "/run/spoold"} {
		if _, err := os.Lstat(p); err == nil {
			t.Fatalf("%s exists; the test would delete it", p)
		}
	}
	_, userErr := user.Lookup("spoold")
	userExisted := userErr == nil

	h := &pkgHarness{t: t, repo: repoRoot(t), fakeBin: t.TempDir()}
	h.fakeSystemctl()
	t.Cleanup(func() {
		h.stopDaemon()
		// Purge whatever the test left installed, and what purge would.
		exec.Command("dpkg", "--purge", "spoold").Run()
		os.RemoveAll("/run/spoold")
		if h.madeSystemdDir {
			os.Remove("/run/systemd/system")
		}
		if !userExisted {
			exec.Command("userdel", "spoold").Run()
			exec.Command("groupdel", "spoold").Run()
		}
	})

	// Two builds of this checkout, differing in version only.
	v1, v2 := h.build("0.9.0", "deb,rpm"), h.build("0.9.1", "deb")
	deb1 := h.pkgFile(v1, ".deb")
	deb2 := h.pkgFile(v2, ".deb")
	rpm1 := h.pkgFile(v1, ".rpm")

	// The packages' file lists, owners and modes are the table's.
	want := func(format string) []string {
		list, err := packageFiles(h.repo, "bin", h.share)
		if err != nil {
			t.Fatal(err)
		}
		var l []string
		for _, f := range list {
			if f.Packager == "" || f.Packager == format {
				l = append(l, listEntry(f))
			}
		}
		slices.Sort(l)
		return l
	}
	if got, w := h.debList(deb1), want("deb"); !slices.Equal(got, w) {
		t.Errorf("dpkg-deb -c lists\n%s\nwant\n%s", strings.Join(got, "\n"), strings.Join(w, "\n"))
	}
	rpmList := strings.Fields(h.run("rpm", "-qlp", rpm1))
	var debFiles []string
	for _, e := range want("deb") {
		debFiles = append(debFiles, strings.Replace(e[strings.LastIndex(e, " ")+1:], "/zsh/vendor-completions/", "/zsh/site-functions/", 1))
	}
	slices.Sort(rpmList)
	slices.Sort(debFiles)
	if !slices.Equal(rpmList, debFiles) {
		t.Errorf("rpm -qlp lists\n%s\nwant the .deb's files (zsh completion in site-functions)\n%s", strings.Join(rpmList, "\n"), strings.Join(debFiles, "\n"))
	}
	rpmMeta := strings.Split(strings.TrimSpace(h.run("rpm", "-qp", "--qf", "[%{FILEMODES:perms} %{FILEUSERNAME}/%{FILEGROUPNAME} %{FILENAMES}\n]", rpm1)), "\n")
	slices.Sort(rpmMeta)
	if w := want("rpm"); !slices.Equal(rpmMeta, w) {
		t.Errorf("rpm modes and owners\n%s\nwant\n%s", strings.Join(rpmMeta, "\n"), strings.Join(w, "\n"))
	}
	if cf := h.run("rpm", "-qcp", rpm1); strings.TrimSpace(cf) != "/etc/spoold/spoold.yaml" {
		t.Errorf("rpm config files: %q", cf)
	}
	scripts := h.run("rpm", "-qp", "--scripts", rpm1)
	for _, want := range []string{"preinstall scriptlet", "useradd --system", "postuninstall scriptlet", "systemctl try-restart spoold.service", "preuninstall scriptlet"} {
		if !strings.Contains(scripts, want) {
			t.Errorf("rpm scriptlets lack %q:\n%s", want, scripts)
		}
	}

	// Install: the user, the files, no daemon started.
	h.dpkg("-i", deb1)
	h.wantSystemctl("fresh install", []string{"daemon-reload"}, "start", "restart", "try-restart", "enable")
	h.checkInstalled("0.9.0")
	t.Logf("installed %s: files, owners and modes as packageFiles lists them; spoold system user", filepath.Base(deb1))

	// -check on the installed config, as the spoold user.
	if out, err := h.asSpoold("/usr/bin/spoold", "-config", "/etc/spoold/spoold.yaml", "-check").CombinedOutput(); err != nil ||
		!strings.Contains(string(out), "/etc/spoold/spoold.yaml: ok") {
		t.Fatalf("spoold -check as spoold: %v\n%s", err, out)
	}
	if sa, err := exec.LookPath("systemd-analyze"); err == nil {
		if out, err := exec.Command(sa, "verify", "/usr/lib/systemd/system/spoold.service").CombinedOutput(); err != nil || len(bytes.TrimSpace(out)) > 0 {
			t.Errorf("systemd-analyze verify of the installed unit: %v\n%s", err, out)
		}
	} else {
		t.Log("systemd-analyze not installed: unit verification skipped")
	}

	// An admin's change to the config, which upgrades must keep: ports no
	// other test on this machine uses.
	ports := freePorts(t, 2)
	smtpPort, httpPort := ports[0], ports[1]
	cfg := h.read("/etc/spoold/spoold.yaml")
	local := strings.Replace(strings.Replace(cfg, "listen: 127.0.0.1:2525", "listen: 127.0.0.1:"+smtpPort, 1),
		"listen: 127.0.0.1:8925", "listen: 127.0.0.1:"+httpPort, 1)
	if local == cfg || strings.Count(local, "127.0.0.1:"+smtpPort) != 1 {
		t.Fatal("the packaged config no longer has the listeners this test moves")
	}
	local += "# changed by the admin\n"
	if err := os.WriteFile("/etc/spoold/spoold.yaml", []byte(local), 0o640); err != nil {
		t.Fatal(err)
	}
	h.http = "http://127.0.0.1:" + httpPort

	h.startDaemon()
	h.wantSpoolctl("spoold 0.9.0", "status")

	// A message by SMTP and a scan, both delivered by the installed daemon.
	h.swaks(smtpPort, "first message")
	h.waitOutbox(1)
	scanDir := "/var/lib/spoold/scans/alice@example.com"
	h.mkdirSpoold(scanDir)
	pdf, err := os.ReadFile(filepath.Join(h.repo, "testdata", "scanfolder", "sample.pdf"))
	if err != nil {
		t.Fatal(err)
	}
	h.writeSpoold(filepath.Join(scanDir, "invoice.pdf"), pdf)
	h.waitOutbox(2)
	if !strings.Contains(h.outbox(), `invoice.pdf`) {
		t.Error("no delivered message carries the scan invoice.pdf")
	}
	h.wantMetric(`spoold_build_info{commit=`, `version="0.9.0"`)
	t.Log("the installed daemon, run as spoold with the unit's command line, delivered a swaks message and a scan; spoolctl reached it from another directory")

	// A held message, to find in the queue after the upgrade.
	h.wantSpoolctl("", "pause")
	h.swaks(smtpPort, "held message")
	var id string
	h.waitFor("the third message queued", func() bool {
		id = h.onlyMessage("queued")
		return id != ""
	})
	h.wantSpoolctl("", "hold", id)
	h.wantSpoolctl("", "resume")

	// Upgrade while it runs: the config is kept, the daemon would be
	// restarted only if running (try-restart), the queue survives.
	h.dpkg("-i", deb2)
	h.wantSystemctl("upgrade", []string{"daemon-reload", "try-restart spoold.service"}, "start", "restart", "enable")
	if got := h.read("/etc/spoold/spoold.yaml"); got != local {
		t.Errorf("the upgrade changed the admin's config:\n%s", got)
	}
	for _, leftover := range []string{".dpkg-dist", ".dpkg-new", ".dpkg-old"} {
		if _, err := os.Lstat("/etc/spoold/spoold.yaml" + leftover); err == nil {
			t.Errorf("/etc/spoold/spoold.yaml%s after the upgrade", leftover)
		}
	}
	h.checkInstalled("0.9.1")
	h.stopDaemon()
	h.startDaemon()
	h.wantSpoolctl("spoold 0.9.1", "status")
	if got := h.onlyMessage("held"); got != id {
		t.Errorf("after the upgrade the held message is %q, want %q", got, id)
	}
	h.wantMetric(`spoold_build_info{commit=`, `version="0.9.1"`)
	if files, _ := filepath.Glob("/var/lib/spoold/outbox/*.eml"); len(files) != 2 {
		t.Errorf("the outbox has %d messages after the upgrade, want the 2 delivered before", len(files))
	}
	h.stopDaemon()
	t.Logf("upgraded to %s: config kept, held message %s kept, try-restart only", filepath.Base(deb2), id)

	// remove keeps config and data; purge removes them.
	h.dpkg("-r", "spoold")
	h.wantSystemctl("remove", []string{"stop spoold.service", "daemon-reload"}, "start", "restart", "try-restart")
	for _, gone := range []string{"/usr/bin/spoold", "/usr/bin/spoolctl", "/usr/lib/systemd/system/spoold.service"} {
		if _, err := os.Lstat(gone); err == nil {
			t.Errorf("%s is left after remove", gone)
		}
	}
	if got := h.read("/etc/spoold/spoold.yaml"); got != local {
		t.Error("remove changed or deleted the config")
	}
	if _, err := os.Stat("/var/lib/spoold/spool.db"); err != nil {
		t.Errorf("remove deleted the spool: %v", err)
	}
	// The key opening the spool's tokens stays with the spool it opens.
	if _, err := os.Stat("/var/lib/spoold-keys/spoold.key"); err != nil {
		t.Errorf("remove deleted the token key: %v", err)
	}
	h.dpkg("-P", "spoold")
	for _, gone := range []string{"/etc/spoold", "/var/lib/spoold", "/var/lib/spoold-keys"} {
		if _, err := os.Lstat(gone); err == nil {
			t.Errorf("%s is left after purge", gone)
		}
	}
	if exec.Command("dpkg-query", "-W", "spoold").Run() == nil && !strings.Contains(h.run("dpkg-query", "-W", "-f=${Status}", "spoold"), "not-installed") {
		t.Error("dpkg still knows spoold after purge")
	}
	if _, err := user.Lookup("spoold"); err != nil {
		t.Errorf("purge removed the spoold user (it stays, for files outside the package): %v", err)
	}
	t.Log("removed (config and data kept), purged (both gone, the user stays)")
}

type pkgHarness struct {
	t              *testing.T
	repo           string
	fakeBin        string
	share          string // the generated man pages and completions, for packageFiles
	madeSystemdDir bool
	http           string
	daemon         *exec.Cmd
	daemonDone     chan error
	daemonLog      bytes.Buffer
}

func (h *pkgHarness) build(version, formats string) string {
	h.t.Helper()
	out := h.t.TempDir()
	var log bytes.Buffer
	a, err := build(options{Repo: h.repo, Out: out, Version: version, Commit: "0123456789abcdef0123456789abcdef01234567",
		Date: time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC), Arches: []string{runtime.GOARCH}, Formats: strings.Split(formats, ","), Log: &log})
	if err != nil {
		h.t.Fatalf("building %s: %v\n%s", version, err, log.String())
	}
	if h.share == "" {
		h.share = a.Share
	}
	return out
}

func (h *pkgHarness) pkgFile(dir, ext string) string {
	h.t.Helper()
	m, _ := filepath.Glob(filepath.Join(dir, "*"+ext))
	if len(m) != 1 {
		h.t.Fatalf("want one %s in %s, found %q", ext, dir, m)
	}
	return m[0]
}

func (h *pkgHarness) run(name string, args ...string) string {
	h.t.Helper()
	out, err := exec.Command(name, args...).Output()
	if err != nil {
		msg := ""
		if ee, ok := err.(*exec.ExitError); ok {
			msg = string(ee.Stderr)
		}
		h.t.Fatalf("%s %s: %v\n%s%s", name, strings.Join(args, " "), err, out, msg)
	}
	return string(out)
}

func (h *pkgHarness) read(path string) string {
	h.t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		h.t.Fatal(err)
	}
	return string(b)
}

// listEntry is how `dpkg-deb -c` and rpm's FILEMODES:perms show a file:
// "drwxr-x--- root/spoold /etc/spoold".
func listEntry(f pkgFile) string {
	mode := f.Mode
	if f.Type == "dir" {
		mode |= os.ModeDir
	}
	return fmt.Sprintf("%s %s/%s %s", mode.String(), f.Owner, f.Group, f.Dst)
}

// debList is the .deb's files and the directories the table lists, in
// listEntry form (dpkg-deb -c also lists implicit parents such as ./usr/).
func (h *pkgHarness) debList(deb string) []string {
	h.t.Helper()
	list, err := packageFiles(h.repo, "bin", h.share)
	if err != nil {
		h.t.Fatal(err)
	}
	var l []string
	for _, line := range strings.Split(strings.TrimSpace(h.run("dpkg-deb", "-c", deb)), "\n") {
		fields := strings.Fields(line)
		if len(fields) < 6 {
			h.t.Fatalf("dpkg-deb -c line %q", line)
		}
		path := strings.TrimSuffix(strings.TrimPrefix(fields[len(fields)-1], "."), "/")
		isDir := strings.HasPrefix(fields[0], "d")
		if isDir && !slices.ContainsFunc(list, func(f pkgFile) bool { return f.Dst == path }) {
			continue
		}
		l = append(l, fields[0]+" "+fields[1]+" "+path)
	}
	slices.Sort(l)
	return l
}

// fakeSystemctl puts a systemctl on the maintainer scripts' PATH that
// records its arguments, and /run/systemd/system (systemd's "booted" mark,
// which the scripts check) while dpkg runs, unless systemd really runs.
func (h *pkgHarness) fakeSystemctl() {
	script := "#!/bin/sh\necho \"$*\" >> " + filepath.Join(h.fakeBin, "systemctl.log") + "\nexit 0\n"
	if err := os.WriteFile(filepath.Join(h.fakeBin, "systemctl"), []byte(script), 0o755); err != nil {
		h.t.Fatal(err)
	}
}

func (h *pkgHarness) dpkg(args ...string) {
	h.t.Helper()
	os.Remove(filepath.Join(h.fakeBin, "systemctl.log"))
	if _, err := os.Stat("/run/systemd/system"); err != nil {
		if err := os.MkdirAll("/run/systemd/system", 0o755); err != nil {
			h.t.Fatal(err)
		}
		h.madeSystemdDir = true
		defer func() {
			os.Remove("/run/systemd/system")
			h.madeSystemdDir = false
		}()
	}
	cmd := exec.Command("dpkg", append([]string{"--force-confdef", "--force-confold"}, args...)...)
	cmd.Env = append(os.Environ(), "PATH="+h.fakeBin+":/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin", "DEBIAN_FRONTEND=noninteractive")
	cmd.Stdin = nil
	if out, err := cmd.CombinedOutput(); err != nil {
		h.t.Fatalf("dpkg %s: %v\n%s", strings.Join(args, " "), err, out)
	}
}

// wantSystemctl checks what the maintainer scripts asked of systemctl.
func (h *pkgHarness) wantSystemctl(step string, want []string, never ...string) {
	h.t.Helper()
	b, _ := os.ReadFile(filepath.Join(h.fakeBin, "systemctl.log"))
	calls := strings.Split(strings.TrimSpace(string(b)), "\n")
	for _, w := range want {
		if !slices.Contains(calls, w) {
			h.t.Errorf("%s: maintainer scripts did not run systemctl %s (ran %q)", step, w, calls)
		}
	}
	for _, c := range calls {
		verb, _, _ := strings.Cut(c, " ")
		if slices.Contains(never, verb) {
			h.t.Errorf("%s: maintainer scripts ran systemctl %s", step, c)
		}
	}
}

// checkInstalled compares the installed files with the package table.
func (h *pkgHarness) checkInstalled(version string) {
	h.t.Helper()
	list, err := packageFiles(h.repo, "bin", h.share)
	if err != nil {
		h.t.Fatal(err)
	}
	for _, f := range list {
		if f.Packager == "rpm" {
			continue
		}
		fi, err := os.Lstat(f.Dst)
		if err != nil {
			h.t.Errorf("installed: %v", err)
			continue
		}
		st := fi.Sys().(*syscall.Stat_t)
		owner, _ := user.LookupId(strconv.Itoa(int(st.Uid)))
		group, _ := user.LookupGroupId(strconv.Itoa(int(st.Gid)))
		if owner == nil || group == nil || owner.Username != f.Owner || group.Name != f.Group {
			h.t.Errorf("%s: owner %d:%d, want %s:%s", f.Dst, st.Uid, st.Gid, f.Owner, f.Group)
		}
		if (f.Type == "dir") != fi.IsDir() || fi.Mode().Perm() != f.Mode {
			h.t.Errorf("%s: mode %v, want %v (%s)", f.Dst, fi.Mode(), f.Mode, f.Type)
		}
	}
	if cf := h.run("dpkg-query", "-W", "-f=${Conffiles}", "spoold"); !strings.Contains(cf, "/etc/spoold/spoold.yaml ") {
		h.t.Errorf("conffiles: %q", cf)
	}
	u, err := user.Lookup("spoold")
	if err != nil {
		h.t.Fatalf("the spoold user: %v", err)
	}
	if uid, _ := strconv.Atoi(u.Uid); uid >= 1000 || u.HomeDir != "/var/lib/spoold" {
		h.t.Errorf("spoold user: uid %s home %s, want a system user with home /var/lib/spoold", u.Uid, u.HomeDir)
	}
	if pw := h.run("getent", "passwd", "spoold"); !strings.HasSuffix(strings.TrimSpace(pw), ":/usr/sbin/nologin") {
		h.t.Errorf("spoold user may log in: %s", pw)
	}
	if out := h.run("/usr/bin/spoold", "-version"); !strings.HasPrefix(out, "spoold "+version+" (commit 0123456789ab, built 2026-01-02T03:04:05Z)") {
		h.t.Errorf("spoold -version: %q", out)
	}
	if out := h.run("/usr/bin/spoolctl", "version"); !strings.Contains(out, "spoolctl "+version+" ") || !strings.Contains(out, "built 2026-01-02T03:04:05Z") {
		h.t.Errorf("spoolctl version: %q", out)
	}
	h.run("/usr/bin/sh", "-c", "zcat /usr/share/man/man8/spoold.8.gz | grep -q -- '-config'")
}

func (h *pkgHarness) spooldIDs() (uid, gid uint32) {
	h.t.Helper()
	u, err := user.Lookup("spoold")
	if err != nil {
		h.t.Fatal(err)
	}
	a, _ := strconv.Atoi(u.Uid)
	b, _ := strconv.Atoi(u.Gid)
	return uint32(a), uint32(b)
}

func (h *pkgHarness) asSpoold(name string, args ...string) *exec.Cmd {
	uid, gid := h.spooldIDs()
	cmd := exec.Command(name, args...)
	cmd.SysProcAttr = &syscall.SysProcAttr{Credential: &syscall.Credential{Uid: uid, Gid: gid, Groups: []uint32{gid}}}
	cmd.Env = []string{"PATH=/usr/local/bin:/usr/bin:/bin", "HOME=/var/lib/spoold", "USER=spoold", "LOGNAME=spoold", "SHELL=/usr/sbin/nologin"}
	return cmd
}

func (h *pkgHarness) mkdirSpoold(dir string) {
	h.t.Helper()
	uid, gid := h.spooldIDs()
	if err := os.Mkdir(dir, 0o750); err != nil {
		h.t.Fatal(err)
	}
	if err := os.Chown(dir, int(uid), int(gid)); err != nil {
		h.t.Fatal(err)
	}
}

// writeSpoold drops a file as a scanner would: written under a hidden
// name (ignored by the folder), then renamed into place.
func (h *pkgHarness) writeSpoold(path string, b []byte) {
	h.t.Helper()
	uid, gid := h.spooldIDs()
	tmp := filepath.Join(filepath.Dir(path), "."+filepath.Base(path))
	if err := os.WriteFile(tmp, b, 0o640); err != nil {
		h.t.Fatal(err)
	}
	if err := os.Chown(tmp, int(uid), int(gid)); err != nil {
		h.t.Fatal(err)
	}
	if err := os.Rename(tmp, path); err != nil {
		h.t.Fatal(err)
	}
}

// unitSettings reads the installed unit's [Service] settings the test
// applies by hand.
func (h *pkgHarness) unitSettings() map[string]string {
	h.t.Helper()
	s := map[string]string{}
	sc := bufio.NewScanner(strings.NewReader(h.read("/usr/lib/systemd/system/spoold.service")))
	for sc.Scan() {
		k, v, ok := strings.Cut(sc.Text(), "=")
		if ok && !strings.HasPrefix(k, "#") {
			if _, seen := s[k]; !seen {
				s[k] = v
			}
		}
	}
	for _, k := range []string{"ExecStart", "User", "Group", "WorkingDirectory", "UMask", "RuntimeDirectory", "RuntimeDirectoryMode"} {
		if s[k] == "" {
			h.t.Fatalf("the installed unit has no %s=", k)
		}
	}
	if s["User"] != "spoold" || s["Group"] != "spoold" {
		h.t.Fatalf("the unit runs as %s:%s", s["User"], s["Group"])
	}
	return s
}

// startDaemon runs the unit's ExecStart as systemd would without systemd.
func (h *pkgHarness) startDaemon() {
	h.t.Helper()
	u := h.unitSettings()
	uid, gid := h.spooldIDs()
	rt := filepath.Join("/run", u["RuntimeDirectory"])
	mode, err := strconv.ParseUint(u["RuntimeDirectoryMode"], 8, 32)
	if err != nil {
		h.t.Fatal(err)
	}
	if err := os.MkdirAll(rt, os.FileMode(mode)); err != nil {
		h.t.Fatal(err)
	}
	if err := os.Chown(rt, int(uid), int(gid)); err != nil {
		h.t.Fatal(err)
	}
	if err := os.Chmod(rt, os.FileMode(mode)); err != nil {
		h.t.Fatal(err)
	}
	args := append([]string{"-c", `umask "$0" && exec "$@"`, u["UMask"]}, strings.Fields(u["ExecStart"])...)
	cmd := h.asSpoold("/bin/sh", args...)
	cmd.Dir = u["WorkingDirectory"]
	h.daemonLog.Reset()
	cmd.Stdout, cmd.Stderr = &h.daemonLog, &h.daemonLog
	if err := cmd.Start(); err != nil {
		h.t.Fatal(err)
	}
	h.daemon, h.daemonDone = cmd, make(chan error, 1)
	go func(done chan error) { done <- cmd.Wait() }(h.daemonDone)
	h.waitFor("spoold ready", func() bool {
		resp, err := http.Get(h.http + "/readyz")
		if err != nil {
			return false
		}
		resp.Body.Close()
		return resp.StatusCode == http.StatusOK
	})
}

func (h *pkgHarness) stopDaemon() {
	if h.daemon == nil {
		return
	}
	h.daemon.Process.Signal(syscall.SIGTERM)
	select {
	case err := <-h.daemonDone:
		if err != nil {
			h.t.Errorf("spoold exited with %v\n%s", err, h.daemonLog.String())
		}
	case <-time.After(60 * time.Second): // the unit's TimeoutStopSec
		h.daemon.Process.Kill()
		<-h.daemonDone
		h.t.Errorf("spoold did not stop within 60s of SIGTERM\n%s", h.daemonLog.String())
	}
	h.daemon = nil
}

// waitFor checks cond every 50ms until it holds; the daemon exiting, or 60s
// passing, fails the test.
func (h *pkgHarness) waitFor(what string, cond func() bool) {
	h.t.Helper()
	tick := time.NewTicker(50 * time.Millisecond)
	defer tick.Stop()
	deadline := time.After(60 * time.Second)
	var exited chan error // nil (never ready) without a daemon
	if h.daemon != nil {
		exited = h.daemonDone
	}
	for !cond() {
		select {
		case err := <-exited:
			h.daemonDone <- err
			h.t.Fatalf("waiting for %s: spoold exited: %v\n%s", what, err, h.daemonLog.String())
		case <-deadline:
			h.t.Fatalf("waiting for %s: gave up after 60s\n%s", what, h.daemonLog.String())
		case <-tick.C:
		}
	}
}

// spoolctl runs the installed spoolctl without --socket from a directory
// with no ./data, as an admin would.
func (h *pkgHarness) spoolctl(args ...string) (string, error) {
	cmd := exec.Command("/usr/bin/spoolctl", args...)
	cmd.Dir = h.t.TempDir()
	cmd.Env = []string{"PATH=/usr/bin:/bin", "HOME=/root"}
	out, err := cmd.CombinedOutput()
	return string(out), err
}

// wantSpoolctl runs spoolctl args and wants success and want in the output.
func (h *pkgHarness) wantSpoolctl(want string, args ...string) {
	h.t.Helper()
	out, err := h.spoolctl(args...)
	if err != nil || !strings.Contains(out, want) {
		h.t.Fatalf("spoolctl %s: %v\n%s\nwant %q", strings.Join(args, " "), err, out, want)
	}
}

// onlyMessage is the ID of the one message in state, "" if there is none.
func (h *pkgHarness) onlyMessage(state string) string {
	h.t.Helper()
	out, err := h.spoolctl("list", "--json", "--state", state)
	if err != nil {
		h.t.Fatalf("spoolctl list: %v\n%s", err, out)
	}
	var l struct {
		Messages []struct {
			ID string `json:"id"`
		} `json:"messages"`
	}
	if err := json.Unmarshal([]byte(out), &l); err != nil {
		h.t.Fatalf("spoolctl list --json: %v\n%s", err, out)
	}
	if len(l.Messages) > 1 {
		h.t.Fatalf("%d messages %s, want 1", len(l.Messages), state)
	}
	if len(l.Messages) == 0 {
		return ""
	}
	return l.Messages[0].ID
}

func (h *pkgHarness) swaks(port, subject string) {
	h.t.Helper()
	out, err := exec.Command("swaks", "--server", "127.0.0.1", "--port", port, "--from", "printer@example.com",
		"--to", "bob@example.com", "--header", "Subject: "+subject, "--body", "hello from the package test").CombinedOutput()
	if err != nil {
		h.t.Fatalf("swaks: %v\n%s", err, out)
	}
}

// outbox is every delivered .eml, concatenated.
func (h *pkgHarness) outbox() string {
	var b strings.Builder
	files, _ := filepath.Glob("/var/lib/spoold/outbox/*.eml")
	for _, f := range files {
		c, _ := os.ReadFile(f)
		b.Write(c)
	}
	return b.String()
}

func (h *pkgHarness) waitOutbox(n int) {
	h.t.Helper()
	h.waitFor(fmt.Sprintf("%d messages in /var/lib/spoold/outbox", n), func() bool {
		files, _ := filepath.Glob("/var/lib/spoold/outbox/*.eml")
		return len(files) >= n
	})
}

func (h *pkgHarness) wantMetric(prefix, contains string) {
	h.t.Helper()
	resp, err := http.Get(h.http + "/metrics")
	if err != nil {
		h.t.Fatal(err)
	}
	b, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	for _, line := range strings.Split(string(b), "\n") {
		if strings.HasPrefix(line, prefix) && strings.Contains(line, contains) && strings.HasSuffix(line, " 1") {
			return
		}
	}
	h.t.Errorf("/metrics has no %s...%s... 1 line", prefix, contains)
}

// freePorts are n distinct loopback ports free a moment ago.
func freePorts(t *testing.T, n int) []string {
	t.Helper()
	var ports []string
	for range n {
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		defer l.Close()
		ports = append(ports, strconv.Itoa(l.Addr().(*net.TCPAddr).Port))
	}
	return ports
}
