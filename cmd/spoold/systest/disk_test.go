package systest

import (
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/emersion/go-smtp"

	"github.com/spoold/spoold/cmd/spoold/adminapi/wire"
	"github.com/spoold/spoold/delivery/smtpfake"
	"github.com/spoold/spoold/spool/spooltest"
)

// TestTwoDaemonsOneSpool starts a second spoold on a running daemon's data
// dir: it must exit 1 within seconds naming "in use by another process",
// and the first daemon keeps serving.
func TestTwoDaemonsOneSpool(t *testing.T) {
	needSuite(t)
	n := newNode(t, nodeConfig{Accounts: relayAccount("relay", 9, ""), Routes: "  default: relay\n", Paused: true})
	first := n.start()

	before, err := os.ReadFile(n.LogPath)
	if err != nil {
		t.Fatal(err)
	}
	began := time.Now()
	second := n.spawn()
	code, exited := second.ExitCode(20 * time.Second)
	if !exited {
		t.Fatalf("the second spoold on the same data dir still runs after 20s")
	}
	took := time.Since(began)
	after, err := os.ReadFile(n.LogPath)
	if err != nil {
		t.Fatal(err)
	}
	out := string(after[len(before):])
	if code != 1 {
		t.Errorf("second spoold exit code %d, want 1; output:\n%s", code, out)
	}
	if !strings.Contains(out, "in use by another process") {
		t.Errorf("second spoold's output does not say the spool is in use by another process:\n%s", out)
	}
	if took > 15*time.Second {
		t.Errorf("second spoold took %s to give up (lock_timeout is 2s)", took)
	}
	if first.Exited() {
		t.Fatalf("the first spoold exited: %v", first.err)
	}
	if !n.waitReady(first, 10*time.Second) {
		t.Errorf("the first spoold is no longer ready")
	}
	if _, errOut, code := n.ctl("status"); code != 0 {
		t.Errorf("spoolctl status against the first daemon: exit %d: %s", code, errOut)
	}
	t.Logf("second daemon exited %d after %s", code, took.Round(10*time.Millisecond))
}

// mountTmpfs mounts a size-limited tmpfs on dir and unmounts it in cleanup;
// it skips where mounting is not allowed (not root, no CAP_SYS_ADMIN).
func mountTmpfs(t *testing.T, dir, size string) {
	t.Helper()
	if err := os.MkdirAll(dir, 0o700); err != nil {
		t.Fatal(err)
	}
	out, err := exec.Command("mount", "-t", "tmpfs", "-o", "size="+size+",mode=0700", "tmpfs", dir).CombinedOutput()
	if err != nil {
		t.Skipf("cannot mount a tmpfs here (needs root/CAP_SYS_ADMIN): %v: %s", err, strings.TrimSpace(string(out)))
	}
	t.Cleanup(func() {
		if out, err := exec.Command("umount", dir).CombinedOutput(); err != nil {
			// Busy if a process still holds it; lazy-unmount rather than leak the mount.
			if out2, err2 := exec.Command("umount", "-l", dir).CombinedOutput(); err2 != nil {
				t.Errorf("umount %s: %v: %s; %s", dir, err, out, out2)
			}
		}
	})
}

// fill writes path until the filesystem is full.
func fill(t *testing.T, path string) int64 {
	t.Helper()
	f, err := os.Create(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	buf := make([]byte, 64<<10)
	var n int64
	for {
		w, err := f.Write(buf)
		n += int64(w)
		if errors.Is(err, syscall.ENOSPC) {
			break
		}
		if err != nil {
			t.Fatalf("filling %s: %v", path, err)
		}
	}
	// Take the last partial pages too.
	for {
		if _, err := f.Write(buf[:512]); err != nil {
			break
		}
		n += 512
	}
	return n
}

// sendOne submits one message from mfd@example.com to bob@example.com.
func sendOne(addr, key string) error {
	return sendTo(addr, "mfd@example.com", []string{"bob@example.com"}, key)
}

// TestDiskFull runs the spool on an 8 MB tmpfs: when it is full SMTP gets
// 452 4.3.1 and a scan stays in its folder, messages accepted before stay
// and are delivered, and ingest resumes once space returns.
func TestDiskFull(t *testing.T) {
	needSuite(t)
	var blocked atomic.Bool
	blocked.Store(true)
	// The upstream defers everything while blocked, so accepted mail stays
	// in the spool while the disk is full.
	up := startFake(t, func(c smtpfake.Command) smtpfake.Reply {
		if c.Name == "MAIL" && blocked.Load() {
			return smtpfake.Reply{Code: 451, Enhanced: "4.3.0", Text: "upstream busy (systest)"}
		}
		return smtpfake.Reply{}
	})

	n := newNode(t, nodeConfig{Scan: true, Accounts: relayAccount("relay", up.Port, ""), Routes: "  default: relay\n"})
	mountTmpfs(t, n.DataDir, "8m")
	p := n.start()

	var accepted []string
	for i := 1; i <= 5; i++ {
		key := fmt.Sprintf("g%d", i)
		if err := sendOne(n.SMTPAddr(), key); err != nil {
			t.Fatalf("message %s before the disk filled: %v", key, err)
		}
		accepted = append(accepted, key)
	}
	filler := filepath.Join(n.DataDir, "filler")
	filled := fill(t, filler)
	t.Logf("filled the spool filesystem with %d bytes", filled)

	// A small body may still fit into slack; the first refusal must be 452 4.3.1.
	var refusal *smtp.SMTPError
	for i := 6; refusal == nil; i++ {
		if i > 25 {
			t.Fatalf("20 messages accepted on a full spool filesystem; never got 452")
		}
		key := fmt.Sprintf("g%d", i)
		err := sendOne(n.SMTPAddr(), key)
		switch {
		case err == nil:
			accepted = append(accepted, key)
		case errors.As(err, &refusal):
		default:
			t.Fatalf("message %s on a full disk: want an SMTP 452, got %v", key, err)
		}
	}
	if refusal.Code != 452 || refusal.EnhancedCode != (smtp.EnhancedCode{4, 3, 1}) {
		t.Errorf("full disk: got %d %v %q, want 452 4.3.1", refusal.Code, refusal.EnhancedCode, refusal.Message)
	}

	scanDir := filepath.Join(n.ScanDir, "alice@example.com")
	if err := os.MkdirAll(scanDir, 0o755); err != nil {
		t.Fatal(err)
	}
	scan := filepath.Join(scanDir, "scan-000001.pdf")
	if err := os.WriteFile(scan, []byte("%PDF-1.4\n% systest scan-000001.pdf\n"+strings.Repeat("y", 4096)+"\n%%EOF\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	spooltest.WaitFor(t, "the scan folder to report the spool out of space", 60*time.Second, func() bool {
		b, _ := os.ReadFile(n.LogPath)
		return strings.Contains(string(b), "spool is out of space; file left in place")
	})
	if _, err := os.Stat(scan); err != nil {
		t.Errorf("scan file is no longer in place while the spool is full: %v", err)
	}
	if failed, _ := filepath.Glob(filepath.Join(n.ScanDir, "failed", "*", "*")); len(failed) > 0 {
		t.Errorf("scan moved to failed/ on a full disk: %v", failed)
	}
	if p.Exited() {
		t.Fatalf("spoold exited on a full disk: %v", p.err)
	}

	// Space returns: ingest resumes without a restart.
	if err := os.Remove(filler); err != nil {
		t.Fatal(err)
	}
	spooltest.WaitFor(t, "SMTP to accept again after space returned", 60*time.Second, func() bool {
		err := sendOne(n.SMTPAddr(), "g100")
		if err == nil {
			accepted = append(accepted, "g100")
		}
		return err == nil
	})
	spooltest.WaitFor(t, "the scan to leave the folder", 60*time.Second, func() bool {
		_, err := os.Stat(scan)
		return errors.Is(err, os.ErrNotExist)
	})
	blocked.Store(false)
	if _, errOut, code := n.ctl("flush"); code != 0 {
		t.Fatalf("spoolctl flush: exit %d: %s", code, errOut)
	}
	want := append(append([]string(nil), accepted...), "scan-000001.pdf")
	var got map[string]int
	if !spooltest.Poll(90*time.Second, func() bool {
		got = received(up)
		for _, k := range want {
			if got[k] == 0 {
				return false
			}
		}
		return true
	}) {
		t.Fatalf("not every accepted message reached the upstream: want %v, got %v", want, got)
	}
	if d := n.list(wire.StateDead); len(d) > 0 {
		t.Errorf("%d messages dead-lettered around the full disk, first %s: %s", len(d), d[0].ID, d[0].Reason)
	}
	if code, err := p.Stop(60 * time.Second); err != nil || code != 0 {
		t.Errorf("SIGTERM: exit %d, %v", code, err)
	}
	n.checkSpool()
	t.Logf("disk full: %d messages accepted around the full disk, all delivered; refusal %d %v", len(accepted), refusal.Code, refusal.EnhancedCode)
}
