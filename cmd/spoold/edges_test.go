package main

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/spoold/spoold/spool"
	"github.com/spoold/spoold/spool/spooltest"
)

// crashChildEnv makes the test binary a child that panics on a goroutine,
// with ("signal") or without ("default") spoold's crash behaviour.
const crashChildEnv = "SPOOLD_TEST_CRASH_CHILD"

func TestMain(m *testing.M) {
	// In-process daemons check their spool with this binary as spoold would.
	if len(os.Args) == 3 && os.Args[1] == "-verify-spool" {
		os.Exit(run(os.Args[1:], os.Stdout, os.Stderr))
	}
	switch os.Getenv(crashChildEnv) {
	case "signal":
		crashBySignal()
		fallthrough
	case "default":
		go panic("test crash on a goroutine")
		select {}
	}
	os.Exit(m.Run())
}

// TestCrashIsRestartedNotTakenForConfigError: a Go crash exits with status 2
// by default, which the systemd unit reserves for config errors and never
// restarts. spoold makes a crash die by SIGABRT instead, which the unit's
// Restart=on-failure restarts.
func TestCrashIsRestartedNotTakenForConfigError(t *testing.T) {
	run := func(mode string) syscall.WaitStatus {
		cmd := exec.Command(os.Args[0], "-test.run=^$")
		cmd.Env = append(os.Environ(), crashChildEnv+"="+mode, "GOTRACEBACK=")
		out, err := cmd.CombinedOutput()
		var ee *exec.ExitError
		if !errors.As(err, &ee) {
			t.Fatalf("%s: child did not fail: %v\n%s", mode, err, out)
		}
		if !strings.Contains(string(out), "test crash on a goroutine") {
			t.Errorf("%s: crash output lacks the panic:\n%s", mode, out)
		}
		return ee.Sys().(syscall.WaitStatus)
	}
	if ws := run("default"); ws.Signaled() || ws.ExitStatus() != 2 {
		t.Fatalf("control: a plain Go crash gave %v, want exit status 2", ws)
	}
	ws := run("signal")
	if !ws.Signaled() || ws.Signal() != syscall.SIGABRT {
		t.Fatalf("spoold's crash gave %v (exit %d), want death by SIGABRT", ws, ws.ExitStatus())
	}
	unit, err := os.ReadFile(filepath.Join("..", "..", "configs", "spoold.service"))
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"Restart=on-failure", "RestartPreventExitStatus=2", "LimitCORE=0"} {
		if !strings.Contains(string(unit), want+"\n") {
			t.Errorf("unit lacks %s", want)
		}
	}
}

// TestStartRefusesLostDatabase: spool.db removed from a data directory that
// still holds bodies. spoold exits 1 with a message naming the way out, and
// deletes nothing.
func TestStartRefusesLostDatabase(t *testing.T) {
	bin := buildBinary(t, "github.com/spoold/spoold/cmd/spoold", t.TempDir())
	dir := t.TempDir()
	data := filepath.Join(dir, "data")
	s, err := spool.Open(data, spool.Options{InlineBodyMax: -1, RescueInterval: -1})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := s.Enqueue(context.Background(), spool.EnqueueRequest{From: "a@example.com", To: []string{"b@example.com"}, Account: "out"},
		strings.NewReader("Subject: x\r\n\r\nbody\r\n")); err != nil {
		t.Fatal(err)
	}
	s.Close()
	bodies, _ := filepath.Glob(filepath.Join(data, spool.MessagesDir, "*.eml"))
	if len(bodies) != 1 {
		t.Fatalf("bodies: %v", bodies)
	}
	for _, damage := range []string{"empty", "removed"} {
		path := filepath.Join(data, spool.DBFile)
		if damage == "empty" {
			err = os.Truncate(path, 0)
		} else {
			err = os.Remove(path)
		}
		if err != nil {
			t.Fatal(err)
		}
		config := filepath.Join(dir, "spoold.yaml")
		writeFile(t, config, "data_dir: ./data\nlog: {format: json}\naccounts:\n  - {name: out, transport: file}\nroutes: {default: out}\n")
		cmd := exec.Command(bin, "-config", config)
		cmd.Dir = dir
		out, err := cmd.CombinedOutput()
		var ee *exec.ExitError
		if !errors.As(err, &ee) || ee.ExitCode() != 2 {
			t.Fatalf("%s database: spoold exit %v, want 2 (not restarted by the unit)\n%s", damage, err, out)
		}
		if !strings.Contains(string(out), "spoold: could not start") || !strings.Contains(string(out), "spoolctl salvage") {
			t.Errorf("%s database: output does not explain the refusal:\n%s", damage, out)
		}
		if after, _ := filepath.Glob(filepath.Join(data, spool.MessagesDir, "*.eml")); len(after) != 1 {
			t.Fatalf("%s database: body files after the refused start: %v", damage, after)
		}
	}
}

// TestSIGTERMClosesStalledDATA: a client stalled in DATA does not keep
// spoold up past delivery.shutdown_timeout (systemd would SIGKILL it): the
// session is closed, nothing half-received is stored, and spoold exits 0.
func TestSIGTERMClosesStalledDATA(t *testing.T) {
	bin := buildBinary(t, "github.com/spoold/spoold/cmd/spoold", t.TempDir())
	dir := t.TempDir()
	smtpPort := spooltest.FreePort(t)
	config := filepath.Join(dir, "spoold.yaml")
	writeFile(t, config, fmt.Sprintf(`data_dir: ./data
log: {level: debug, format: json}
http: {listen: ""}
delivery: {shutdown_timeout: 2s}
smtp_listeners:
  - name: local
    listen: 127.0.0.1:%d
    allowed_networks: [127.0.0.1]
accounts:
  - {name: out, transport: file, dir: ./out}
routes: {default: out}
`, smtpPort))
	var logs spooltest.SyncBuffer
	_, stop := startSpoold(t, bin, dir, config, &logs)
	addr := fmt.Sprintf("127.0.0.1:%d", smtpPort)
	var c net.Conn
	spooltest.WaitFor(t, "SMTP listener", 30*time.Second, func() bool {
		var err error
		c, err = net.Dial("tcp", addr)
		return err == nil
	})
	defer c.Close()
	r := bufio.NewReader(c)
	expect := func(cmd, code string) {
		t.Helper()
		if cmd != "" {
			fmt.Fprintf(c, "%s\r\n", cmd)
		}
		for {
			line, err := r.ReadString('\n')
			if err != nil {
				t.Fatalf("after %q: %v", cmd, err)
			}
			if !strings.HasPrefix(line, code) {
				t.Fatalf("after %q: %q, want %s", cmd, line, code)
			}
			if len(line) > 3 && line[3] == ' ' {
				return
			}
		}
	}
	expect("", "220")
	expect("EHLO mfd.example", "250")
	expect("MAIL FROM:<scanner@example.com>", "250")
	expect("RCPT TO:<bob@example.com>", "250")
	expect("DATA", "354")
	fmt.Fprint(c, "Subject: stalled\r\n\r\nhalf a scan")

	start := time.Now()
	exited := make(chan error, 1)
	go func() { exited <- stop() }() // SIGTERM, then wait
	select {
	case err := <-exited:
		if err != nil {
			t.Fatalf("spoold exit: %v, want 0\n%s", err, logs.String())
		}
	case <-time.After(15 * time.Second):
		// The stalled session would hold spoold for its read timeout (5
		// min); the bound leaves room for the admin socket's shutdown (up
		// to 5 s of its own) and the spool's close on a loaded machine.
		t.Fatalf("spoold still running 15 s after SIGTERM with a stalled DATA session (shutdown_timeout 2s; the session's read timeout is 5 min)")
	}
	t.Logf("stopped %v after SIGTERM", time.Since(start).Round(10*time.Millisecond))
	_ = c.SetReadDeadline(time.Now().Add(5 * time.Second))
	for {
		if _, err := r.ReadString('\n'); err != nil {
			var ne net.Error
			if errors.As(err, &ne) && ne.Timeout() {
				t.Fatal("the stalled session was not closed")
			}
			break
		}
	}
	if n := countEML(filepath.Join(dir, "out")); n != 0 {
		t.Fatalf("%d messages delivered from a session cut off in DATA", n)
	}
}

// TestStartRefusesDamagedDatabase: a spool.db of full length with a damaged
// page tree made bbolt panic on a goroutine of its own at every start (a
// crash loop under systemd). spoold checks it in a child process first and
// refuses with exit 2 (which the unit does not restart: every restart
// would check the whole file again) and a message that names the way out.
func TestStartRefusesDamagedDatabase(t *testing.T) {
	bin := buildBinary(t, "github.com/spoold/spoold/cmd/spoold", t.TempDir())
	dir := t.TempDir()
	data := filepath.Join(dir, "data")
	spooltest.FillClosed(t, data, "out")
	if err := spooltest.PointTwiceAtOnePage(filepath.Join(data, spool.DBFile)); err != nil {
		t.Fatal(err)
	}
	config := filepath.Join(dir, "spoold.yaml")
	writeFile(t, config, "data_dir: ./data\nlog: {format: json}\nhttp: {listen: \"\"}\naccounts:\n  - {name: out, transport: file}\nroutes: {default: out}\n")
	cmd := exec.Command(bin, "-config", config)
	cmd.Dir = dir
	out, err := cmd.CombinedOutput()
	var ee *exec.ExitError
	if !errors.As(err, &ee) || ee.ExitCode() != 2 {
		t.Fatalf("spoold exit %v, want 2\n%s", err, out)
	}
	for _, want := range []string{"spoold: could not start", "database is corrupt", "spoolctl salvage", "restarting will not help"} {
		if !strings.Contains(string(out), want) {
			t.Errorf("output lacks %q:\n%s", want, out)
		}
	}
	if strings.Contains(string(out), "goroutine ") {
		t.Errorf("spoold printed a Go crash:\n%s", out)
	}
}
