package main

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/spoold/spoold/configs"
	"github.com/spoold/spoold/spool/spooltest"
)

// buildBinary compiles a command of this module into dir and returns its path.
func buildBinary(t *testing.T, pkg, dir string) string {
	t.Helper()
	out := filepath.Join(dir, filepath.Base(pkg))
	cmd := exec.Command("go", "build", "-o", out, pkg)
	if b, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("go build %s: %v\n%s", pkg, err, b)
	}
	return out
}

// requireTool returns the path of an external client, skipping the test
// outside CI when it is missing and failing in CI, where .ci/run installs it.
func requireTool(t *testing.T, name string, extra ...string) string {
	t.Helper()
	if p, err := exec.LookPath(name); err == nil {
		return p
	}
	for _, p := range extra {
		if _, err := os.Stat(p); err == nil {
			return p
		}
	}
	if os.Getenv("CI") != "" {
		t.Fatalf("%s is not installed; .ci/run should have installed it", name)
	}
	t.Skipf("%s not installed (apt-get install it to run this test)", name)
	return ""
}

// TestEmbeddedDefaultEndToEnd runs the real spoold binary with its embedded
// default in an empty directory, as the README's quick start does, sends a
// message with swaks, drops a PDF into scans/<address>/ and expects both in
// data/outbox/. The default's ports (2525, 8925) are swapped for free ones,
// so a quick-start daemon the admin left running is never the one tested.
func TestEmbeddedDefaultEndToEnd(t *testing.T) {
	swaks := requireTool(t, "swaks")
	binDir := t.TempDir()
	bin := buildBinary(t, "github.com/spoold/spoold/cmd/spoold", binDir)
	spoolctl := buildBinary(t, "github.com/spoold/spoold/cmd/spoolctl", binDir)
	work := t.TempDir()
	smtpAddr := fmt.Sprintf("127.0.0.1:%d", spooltest.FreePort(t))
	httpAddr := fmt.Sprintf("127.0.0.1:%d", spooltest.FreePort(t))
	def := string(configs.Default())
	for from, to := range map[string]string{"listen: 127.0.0.1:2525": "listen: " + smtpAddr, "listen: 127.0.0.1:8925": "listen: " + httpAddr} {
		if strings.Count(def, from) != 1 {
			t.Fatalf("the embedded default no longer says %q once; update this test", from)
		}
		def = strings.Replace(def, from, to, 1)
	}
	writeFile(t, filepath.Join(work, "spoold.yaml"), def)
	if err := os.Mkdir(filepath.Join(work, "scans"), 0o750); err != nil { // as spoold does for the embedded default
		t.Fatal(err)
	}

	var logs spooltest.SyncBuffer
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	cmd := exec.CommandContext(ctx, bin, "-config", "spoold.yaml")
	cmd.Dir = work
	cmd.Stdout = &logs
	cmd.Stderr = &logs
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	exited := make(chan struct{})
	var exitErr error
	go func() { exitErr = cmd.Wait(); close(exited) }()
	// Every wait below fails at once if this test's own spoold is gone.
	waitUp := func(what string, timeout time.Duration, cond func() bool) {
		t.Helper()
		spooltest.WaitFor(t, what, timeout, func() bool {
			select {
			case <-exited:
				t.Fatalf("spoold exited while waiting for %s: %v\n%s", what, exitErr, logs.String())
			default:
			}
			return cond()
		})
	}
	t.Cleanup(func() {
		_ = cmd.Process.Signal(syscall.SIGTERM)
		select {
		case <-exited:
		case <-time.After(30 * time.Second):
			_ = cmd.Process.Kill()
		}
		if t.Failed() {
			t.Logf("spoold output:\n%s", logs.String())
		}
	})

	waitUp("spoold /readyz", 30*time.Second, func() bool {
		resp, err := http.Get("http://" + httpAddr + "/readyz")
		if err != nil {
			return false
		}
		resp.Body.Close()
		return resp.StatusCode == http.StatusOK
	})
	// The start-up line says what is watched and where mail goes. It is
	// logged just after the HTTP listener (and so /readyz) is up, and
	// reaches logs through exec's copy of the pipe: wait for it.
	waitUp("the start-up line", 30*time.Second, func() bool { return strings.Contains(logs.String(), `"msg":"spoold started"`) })
	for _, want := range []string{`"smtp":"local ` + smtpAddr + ` (tls none)"`, `"scan_folders":"./scans -> outbox"`, `"accounts":"outbox: .eml files in ./data/outbox"`} {
		if !strings.Contains(logs.String(), want) {
			t.Errorf("start-up log lacks %s", want)
		}
	}

	out, err := exec.Command(swaks, "--server", smtpAddr, "--from", "mfd@example.com",
		"--to", "bob@example.com", "--header", "Subject: e2e swaks", "--body", "hello from swaks").CombinedOutput()
	if err != nil {
		t.Fatalf("swaks: %v\n%s", err, out)
	}
	if !strings.Contains(string(out), "<-  250") {
		t.Fatalf("swaks got no 250 after DATA:\n%s", out)
	}

	pdf, err := os.ReadFile(filepath.Join("..", "..", "testdata", "scanfolder", "sample.pdf"))
	if err != nil {
		t.Fatalf("sample scan: %v", err)
	}
	userDir := filepath.Join(work, "scans", "alice@example.com")
	if err := os.MkdirAll(userDir, 0o755); err != nil {
		t.Fatal(err)
	}
	// Write under a temp name and rename, as a careful scanner does; spoold ignores *.part.
	if err := os.WriteFile(filepath.Join(userDir, "scan0042.pdf.part"), pdf, 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(filepath.Join(userDir, "scan0042.pdf.part"), filepath.Join(userDir, "scan0042.pdf")); err != nil {
		t.Fatal(err)
	}

	outbox := filepath.Join(work, "data", "outbox")
	var swaksMail, scanMail string
	waitUp("both messages in data/outbox", 60*time.Second, func() bool {
		entries, _ := os.ReadDir(outbox)
		for _, e := range entries {
			if !strings.HasSuffix(e.Name(), ".eml") {
				continue
			}
			b, err := os.ReadFile(filepath.Join(outbox, e.Name()))
			if err != nil {
				continue
			}
			switch {
			case strings.Contains(string(b), "Subject: e2e swaks"):
				swaksMail = string(b)
			case strings.Contains(string(b), "scan0042.pdf"):
				scanMail = string(b)
			}
		}
		return swaksMail != "" && scanMail != ""
	})
	if !strings.Contains(swaksMail, "hello from swaks") {
		t.Errorf("swaks message body missing in outbox copy:\n%s", swaksMail)
	}
	if !strings.Contains(scanMail, "alice@example.com") {
		t.Errorf("scan message is not addressed to alice@example.com:\n%.2000s", scanMail)
	}
	waitUp("scan file moved to processed/", 30*time.Second, func() bool {
		_, err := os.Stat(filepath.Join(work, "scans", "processed", "alice@example.com", "scan0042.pdf"))
		return err == nil
	})

	// The admin CLI sees both as delivered through the daemon's socket.
	waitUp("spoolctl to list 2 delivered messages", 30*time.Second, func() bool {
		cmd := exec.Command(spoolctl, "list", "--state", "delivered", "--json")
		cmd.Dir = work
		out, err := cmd.Output()
		if err != nil {
			return false
		}
		var resp struct {
			Messages []struct {
				State string `json:"state"`
			} `json:"messages"`
		}
		if err := json.Unmarshal(out, &resp); err != nil {
			t.Fatalf("spoolctl list --json printed something that is not JSON: %v\n%s", err, out)
		}
		return len(resp.Messages) == 2 && resp.Messages[0].State == "delivered"
	})

	// spoolctl pause stops delivery but not ingest; resume sends what waited.
	ctl := func(args ...string) string {
		t.Helper()
		cmd := exec.Command(spoolctl, args...)
		cmd.Dir = work
		out, err := cmd.CombinedOutput()
		if err != nil {
			t.Fatalf("spoolctl %v: %v\n%s", args, err, out)
		}
		return string(out)
	}
	ctl("pause")
	if out, err := exec.Command(swaks, "--server", smtpAddr, "--from", "mfd@example.com",
		"--to", "carol@example.com", "--header", "Subject: while paused").CombinedOutput(); err != nil {
		t.Fatalf("swaks while paused: %v\n%s", err, out)
	}
	waitUp("the message sent while paused to be listed as queued", 30*time.Second, func() bool {
		return strings.Contains(ctl("list", "--state", "queued", "--json"), "carol@example.com")
	})
	if !strings.Contains(ctl("status"), "PAUSED") {
		t.Error("spoolctl status does not say delivery is paused")
	}
	if n := countEML(outbox); n != 2 {
		t.Errorf("%d messages in outbox while paused, want still 2", n)
	}
	ctl("resume")
	waitUp("the queued message to be delivered after resume", 30*time.Second, func() bool { return countEML(outbox) == 3 })

	// Metrics count both sources and the delivered records. The file
	// transport writes the .eml before the delivered state commits, so wait
	// for the metrics rather than read them once.
	wants := []string{
		`spoold_enqueued_total{source="smtp"} 2`,
		`spoold_enqueued_total{source="scan"} 1`,
		`spoold_queue_messages{state="delivered"} 3`,
	}
	var metrics []byte
	if !spooltest.Poll(30*time.Second, func() bool {
		resp, err := http.Get("http://" + httpAddr + "/metrics")
		if err != nil {
			return false
		}
		metrics, _ = io.ReadAll(resp.Body)
		resp.Body.Close()
		for _, want := range wants {
			if !strings.Contains(string(metrics), want) {
				return false
			}
		}
		return true
	}) {
		for _, want := range wants {
			if !strings.Contains(string(metrics), want) {
				t.Errorf("/metrics lacks %q", want)
			}
		}
	}

	// Private state stays private: data dir 0700, database 0600, socket 0660.
	for path, want := range map[string]os.FileMode{
		filepath.Join(work, "data"):                0o700,
		filepath.Join(work, "data", "spool.db"):    0o600,
		filepath.Join(work, "data", "spoold.sock"): 0o660,
	} {
		fi, err := os.Stat(path)
		if err != nil {
			t.Errorf("stat %s: %v", path, err)
			continue
		}
		if got := fi.Mode().Perm(); got != want {
			t.Errorf("%s has mode %o, want %o", path, got, want)
		}
	}
}
