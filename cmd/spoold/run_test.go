package main

import (
	"bytes"
	"fmt"
	"net"
	"net/smtp"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/spoold/spoold/spool/spooltest"
)

func TestRunFlagsAndCheck(t *testing.T) {
	dir := t.TempDir()
	good := filepath.Join(dir, "good.yaml")
	writeFile(t, good, fmt.Sprintf(`data_dir: %s/data
smtp_listeners:
  - name: local
    listen: 127.0.0.1:0
    allowed_networks: [127.0.0.1]
accounts:
  - name: outbox
    transport: file
routes:
  default: outbox
`, dir))
	bad := filepath.Join(dir, "bad.yaml")
	writeFile(t, bad, `data_dir: ./data
smtp_listeners:
  - name: local
    listen: 127.0.0.1:2525
    tls: sometimes
accounts:
  - name: outbox
    transport: file
    colour: blue
routes:
  default: nowhere
`)

	// configs accepts it; delivery refuses it at start-up. -check must too.
	noTLS := filepath.Join(dir, "notls.yaml")
	writeFile(t, noTLS, fmt.Sprintf(`data_dir: %s/data
accounts:
  - name: relay
    provider: generic
    auth: xoauth2
    host: smtp.example.com
    port: 25
    tls: none
    mailbox: scans@example.com
    client_id: abc
    auth_url: https://login.example.com/auth
    token_url: https://login.example.com/token
    scopes: [smtp]
routes:
  default: relay
`, dir))

	// configs accepts it; smtpd refuses it.
	// withOutbox writes a config: data_dir in dir, the sections given, and
	// one file account that everything routes to.
	withOutbox := func(name, sections string) string {
		path := filepath.Join(dir, name)
		writeFile(t, path, "data_dir: "+dir+"/data\n"+sections+`accounts:
  - name: outbox
    transport: file
routes:
  default: outbox
`)
		return path
	}

	stress := withOutbox("stress.yaml", `smtp_listeners:
  - name: local
    listen: 127.0.0.1:0
    allowed_networks: [127.0.0.1]
    max_connections: 10
    stress_threshold: 50
`)

	// configs accepts it; the scan folder refuses the time zone.
	tz := withOutbox("tz.yaml", `scan_folders:
  - path: `+dir+`
    time_zone: Mars/Olympus
`)

	outage := withOutbox("outage.yaml", "delivery: {outage: {first_probe: 10m, max_probe: 3m}}\n")

	expired := filepath.Join(dir, "expired.yaml")
	writeFile(t, expired, fmt.Sprintf(`data_dir: %s/data
accounts:
  - name: outbox
    transport: file
  - name: m365
    provider: microsoft
    tenant: contoso.com
    client_id: cid
    mailbox: s@contoso.com
    client_secret_expires: 2020-01-31
routes:
  default: outbox
`, dir))
	noFolder := withOutbox("nofolder.yaml", `scan_folders:
  - path: `+dir+`/missing
`)

	tests := []struct {
		name     string
		args     []string
		wantCode int
		wantOut  []string // substrings of stdout+stderr
	}{
		{"check ok", []string{"-config", good, "-check"}, exitOK, []string{"good.yaml: ok"}},
		{"check embedded default", []string{"-check"}, exitOK, []string{"embedded default: ok"}},
		{"check lists every problem with line and key", []string{"-config", bad, "-check"}, exitUsage, []string{
			"bad.yaml:5: smtp_listeners[0].tls:",
			"bad.yaml:9: accounts[0].colour:",
			"bad.yaml:11: routes.default:",
			"bad.yaml:3: smtp_listeners[0]", // neither allowed_networks nor users: an open relay
		}},
		{"bad config refuses to start", []string{"-config", bad}, exitUsage, []string{"the configuration has problems"}},
		{"check refuses what start-up refuses", []string{"-config", noTLS, "-check"}, exitUsage, []string{`notls.yaml:8: accounts[0].tls: auth xoauth2 would send credentials in clear text`}},
		{"start-up refusal is a config error", []string{"-config", noTLS}, exitUsage, []string{`accounts[0].tls: auth xoauth2 would send credentials in clear text`}},
		{"check runs delivery's outage validation", []string{"-config", outage, "-check"}, exitUsage, []string{`outage.yaml:2: delivery.outage.max_probe: 3m0s is shorter than first_probe 10m0s`}},
		{"check runs the scan folder's own validation", []string{"-config", tz, "-check"}, exitUsage, []string{`Mars/Olympus`}},
		{"check runs the listener's own validation", []string{"-config", stress, "-check"}, exitUsage, []string{`stress threshold 50 is above max connections 10`}},
		{"check finds a missing scan folder that start-up would refuse", []string{"-config", noFolder, "-check"}, exitUsage, []string{"nofolder.yaml:3: scan_folders[0].path: " + dir + "/missing does not exist"}},
		{"check warns of an expired client secret", []string{"-config", expired, "-check"}, exitOK, []string{"warning: accounts[1].client_secret_expires: 2020-01-31 has passed", "expired.yaml: ok"}},
		{"missing config file", []string{"-config", filepath.Join(dir, "nope.yaml"), "-check"}, exitUsage, []string{"nope.yaml"}},
		{"unknown flag", []string{"-frobnicate"}, exitUsage, []string{"flag provided but not defined"}},
		{"stray argument", []string{"extra"}, exitUsage, []string{`unexpected argument "extra"`}},
		{"version", []string{"-version"}, exitOK, []string{"spoold "}},
		{"version as a word", []string{"version"}, exitOK, []string{"spoold "}},
		{"help says what spoold is", []string{"-h"}, exitOK, []string{"durable mail spooler", "man spoold", "-print-config"}},
		{"print default", []string{"-print-default-config"}, exitOK, []string{"routes:", "default: outbox"}},
		// The effective config: every default the subsystems apply, in
		// the file's notation.
		{"print effective default", []string{"-print-config"}, exitOK, []string{"max_message_size: 35000000", "quiet_period: 3s", "max_connections: 4", "account: outbox", "workers: 16", "lease: 5m"}},
		{"print effective config", []string{"-config", good, "-print-config"}, exitOK, []string{"listen: \"127.0.0.1:0\"", "max_connections: 200", "dir: " + dir + "/data/outbox"}},
		{"print refuses a bad config", []string{"-config", bad, "-print-config"}, exitUsage, []string{"bad.yaml:5: smtp_listeners[0].tls:"}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			var stdout, stderr bytes.Buffer
			code := run(tc.args, &stdout, &stderr)
			out := stdout.String() + stderr.String()
			if code != tc.wantCode {
				t.Errorf("exit code %d, want %d; output:\n%s", code, tc.wantCode, out)
			}
			for _, w := range tc.wantOut {
				if !strings.Contains(out, w) {
					t.Errorf("output lacks %q:\n%s", w, out)
				}
			}
		})
	}
}

func writeFile(t *testing.T, path, content string) {
	t.Helper()
	if err := os.WriteFile(path, []byte(content), 0o600); err != nil {
		t.Fatal(err)
	}
}

// startSpoold runs the built daemon with a config and returns a stop
// function that sends SIGTERM and waits for a clean exit.
func startSpoold(t *testing.T, bin, dir, config string, logs *spooltest.SyncBuffer) (*exec.Cmd, func() error) {
	t.Helper()
	cmd := exec.Command(bin, "-config", config)
	cmd.Dir = dir
	cmd.Stdout, cmd.Stderr = logs, logs
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	exited := make(chan error, 1)
	go func() { exited <- cmd.Wait() }()
	stopped := false
	stop := func() error {
		if stopped {
			return nil
		}
		stopped = true
		_ = cmd.Process.Signal(syscall.SIGTERM)
		select {
		case err := <-exited:
			return err
		case <-time.After(60 * time.Second):
			_ = cmd.Process.Kill()
			return fmt.Errorf("spoold did not stop within 60s of SIGTERM")
		}
	}
	t.Cleanup(func() {
		_ = stop()
		if t.Failed() {
			t.Logf("spoold output:\n%s", logs.String())
		}
	})
	return cmd, stop
}

func sendMail(addr, from, to, subject string) error {
	msg := "From: " + from + "\r\nTo: " + to + "\r\nSubject: " + subject + "\r\n\r\nbody of " + subject + "\r\n"
	return smtp.SendMail(addr, nil, from, []string{to}, []byte(msg))
}

func countEML(dir string) int {
	entries, _ := os.ReadDir(dir)
	n := 0
	for _, e := range entries {
		if strings.HasSuffix(e.Name(), ".eml") {
			n++
		}
	}
	return n
}

// TestReloadAndGracefulShutdown: SIGHUP switches the default route without
// dropping the listener, a change that needs a restart is named in the log,
// and SIGTERM exits 0 with the spool closed cleanly.
func TestReloadAndGracefulShutdown(t *testing.T) {
	bin := buildBinary(t, "github.com/spoold/spoold/cmd/spoold", t.TempDir())
	dir := t.TempDir()
	smtpPort, httpPort := spooltest.FreePort(t), spooltest.FreePort(t)
	config := filepath.Join(dir, "spoold.yaml")
	conf := func(route string, httpListen int) string {
		return fmt.Sprintf(`data_dir: ./data
log: {level: debug, format: json}
http: {listen: 127.0.0.1:%d}
smtp_listeners:
  - name: local
    listen: 127.0.0.1:%d
    allowed_networks: [127.0.0.1]
accounts:
  - name: a
    transport: file
    dir: ./out-a
  - name: b
    transport: file
    dir: ./out-b
routes:
  default: %s
`, httpListen, smtpPort, route)
	}
	writeFile(t, config, conf("a", httpPort))
	var logs spooltest.SyncBuffer
	cmd, stop := startSpoold(t, bin, dir, config, &logs)
	addr := fmt.Sprintf("127.0.0.1:%d", smtpPort)
	spooltest.WaitFor(t, "SMTP listener", 30*time.Second, func() bool {
		c, err := net.Dial("tcp", addr)
		if err == nil {
			c.Close()
		}
		return err == nil
	})

	if err := sendMail(addr, "x@example.com", "y@example.com", "before reload"); err != nil {
		t.Fatal(err)
	}
	spooltest.WaitFor(t, "first message in out-a", 30*time.Second, func() bool { return countEML(filepath.Join(dir, "out-a")) == 1 })

	// Keep one SMTP session open across the reload: it must survive.
	c, err := smtp.Dial(addr)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if err := c.Hello("test.example"); err != nil {
		t.Fatal(err)
	}

	writeFile(t, config, conf("b", spooltest.FreePort(t)))
	if err := cmd.Process.Signal(syscall.SIGHUP); err != nil {
		t.Fatal(err)
	}
	spooltest.WaitFor(t, "reload logged", 30*time.Second, func() bool { return strings.Contains(logs.String(), "configuration reloaded") })
	if !strings.Contains(logs.String(), "needs a restart") || !strings.Contains(logs.String(), "http.listen") {
		t.Errorf("a changed http.listen should be reported as needing a restart; log:\n%s", logs.String())
	}

	if err := c.Mail("x@example.com"); err != nil {
		t.Fatalf("session opened before the reload was dropped: %v", err)
	}
	if err := c.Rcpt("y@example.com"); err != nil {
		t.Fatal(err)
	}
	w, err := c.Data()
	if err != nil {
		t.Fatal(err)
	}
	fmt.Fprint(w, "Subject: after reload\r\n\r\nrouted to b\r\n")
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	_ = c.Quit()
	spooltest.WaitFor(t, "second message in out-b", 30*time.Second, func() bool { return countEML(filepath.Join(dir, "out-b")) == 1 })
	if n := countEML(filepath.Join(dir, "out-a")); n != 1 {
		t.Errorf("out-a has %d messages after the reload, want still 1", n)
	}

	// A config with problems is refused on reload and the daemon keeps running.
	writeFile(t, config, "accounts: [\n")
	_ = cmd.Process.Signal(syscall.SIGHUP)
	spooltest.WaitFor(t, "bad reload refused", 30*time.Second, func() bool {
		return strings.Contains(logs.String(), "keeping the running configuration")
	})
	if err := sendMail(addr, "x@example.com", "y@example.com", "after bad reload"); err != nil {
		t.Fatalf("daemon stopped accepting after a refused reload: %v", err)
	}
	spooltest.WaitFor(t, "third message in out-b", 30*time.Second, func() bool { return countEML(filepath.Join(dir, "out-b")) == 2 })

	if err := stop(); err != nil {
		t.Fatalf("spoold did not exit cleanly on SIGTERM: %v", err)
	}
	if !strings.Contains(logs.String(), "spoold stopped") {
		t.Errorf("no clean-stop line in the log")
	}
	if _, err := os.Stat(filepath.Join(dir, "data", "spoold.sock")); !os.IsNotExist(err) {
		t.Errorf("admin socket left behind after shutdown: %v", err)
	}
}
