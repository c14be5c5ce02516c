package smtpd

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"log/slog"
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

const envDurabilityChild = "SMTPD_TEST_DURABILITY_CHILD"

// durabilityChild runs in a child process: spool + smtpd, address on stdout,
// serve until killed.
func durabilityChild(dir string) int {
	sp, err := spool.Open(dir, spool.Options{})
	if err != nil {
		fmt.Fprintln(os.Stderr, "open spool:", err)
		return 2
	}
	lc := baseListener()
	s, err := New([]ListenerConfig{lc}, Routes{}, sp, Options{Logger: slog.New(slog.NewTextHandler(io.Discard, nil))})
	if err != nil {
		fmt.Fprintln(os.Stderr, "new:", err)
		return 2
	}
	if err := s.Start(); err != nil {
		fmt.Fprintln(os.Stderr, "start:", err)
		return 2
	}
	fmt.Println(s.Addrs()["mfd"].String())
	select {} // until SIGKILL
}

func init() {
	// Runs before TestMain: the child never runs tests.
	if dir := os.Getenv(envDurabilityChild); dir != "" {
		os.Exit(durabilityChild(dir))
	}
}

// TestDurableWhen250Arrives: once the client has the 250 with the spool ID,
// SIGKILL the daemon; the reopened spool has the message, body and envelope.
func TestDurableWhen250Arrives(t *testing.T) {
	dir := t.TempDir()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, os.Args[0], "-test.run=^$")
	cmd.Env = append(os.Environ(), envDurabilityChild+"="+dir)
	cmd.Stderr = os.Stderr
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	killed := false
	defer func() {
		if !killed {
			_ = cmd.Process.Kill()
			_ = cmd.Wait()
		}
	}()
	addr, err := bufio.NewReader(stdout).ReadString('\n')
	if err != nil {
		t.Fatalf("child did not report its address: %v", err)
	}
	c := dial(t, strings.TrimSpace(addr))
	c.greet()
	c.ehlo()
	var ids []string
	for i := range 3 {
		code, msg := c.send("scanner@corp.example", "boss@corp.example",
			fmt.Sprintf("Subject: durable %d\r\n\r\nscan %d\r\n.\r\n", i, i))
		if code != 250 {
			t.Fatalf("message %d: %d %s", i, code, msg)
		}
		ids = append(ids, strings.TrimPrefix(msg, "2.0.0 OK queued as "))
	}
	// Kill right after the last 250: no graceful anything.
	if err := cmd.Process.Signal(syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	_ = cmd.Wait()
	killed = true

	sp, err := spool.Open(dir, spool.Options{})
	if err != nil {
		t.Fatalf("reopening spool: %v", err)
	}
	defer sp.Close()
	for i, id := range ids {
		m, err := sp.Get(context.Background(), id)
		if err != nil {
			t.Fatalf("message %d (%s) not in the spool after kill: %v", i, id, err)
		}
		if m.State != spool.StateQueued || m.From != "scanner@corp.example" || m.Account != "outbox" ||
			m.Source.Kind != spool.SourceSMTP || m.Source.Listener != "mfd" {
			t.Errorf("message %d metadata: %+v", i, m)
		}
		f, err := sp.OpenBody(id)
		if err != nil {
			t.Fatalf("body of %s: %v", id, err)
		}
		b, err := io.ReadAll(f)
		f.Close()
		if err != nil || !strings.HasSuffix(string(b), fmt.Sprintf("\r\n\r\nscan %d\r\n", i)) || !strings.HasPrefix(string(b), "Received: ") {
			t.Errorf("body of %s: %q %v", id, b, err)
		}
	}
}

// TestRealSpoolRefusalsStoreNothing: size and bare-LF refusals leave no
// message and no body file behind in the real spool.
func TestRealSpoolRefusalsStoreNothing(t *testing.T) {
	// Both body stores: inline in the database (the default for small
	// bodies) and files (InlineBodyMax < 0).
	t.Run("inline", func(t *testing.T) { testRefusalsStoreNothing(t, 0, 0) })
	t.Run("files", func(t *testing.T) { testRefusalsStoreNothing(t, -1, 1) })
}

func testRefusalsStoreNothing(t *testing.T, inlineMax, wantFiles int) {
	sp := spooltest.OpenTemp(t, spool.Options{InlineBodyMax: inlineMax})
	lc := baseListener()
	lc.MaxMessageSize = 10 << 10
	c := startSession(t, lc, sp)
	if code, msg := c.send("a@corp.example", "b@corp.example", "Subject: big\r\n\r\n"+strings.Repeat("0123456789abcdef\r\n", 2000)+".\r\n"); code != 552 {
		t.Fatalf("oversized: %d %s", code, msg)
	}
	if code, msg := c.send("a@corp.example", "b@corp.example", "Subject: lf\r\n\r\nbare\nlf\r\n.\r\n"); code != 550 {
		t.Fatalf("bare LF: %d %s", code, msg)
	}
	code, msg := c.send("a@corp.example", "b@corp.example", simpleBody)
	if code != 250 {
		t.Fatalf("good message: %d %s", code, msg)
	}
	stats, err := sp.Stats(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	if stats[spool.StateQueued] != 1 {
		t.Fatalf("queued = %d, want only the good message", stats[spool.StateQueued])
	}
	entries, err := os.ReadDir(filepath.Join(sp.Dir(), spool.MessagesDir))
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, e := range entries {
		names = append(names, e.Name())
	}
	if len(names) != wantFiles {
		t.Fatalf("files in messages/: %v, want %d (only the good message's body)", names, wantFiles)
	}
}

// TestRealSpoolClosed answers 452 4.3.1 when the spool is closed.
func TestRealSpoolClosed(t *testing.T) {
	sp := spooltest.OpenTemp(t, spool.Options{})
	s := startServer(t, []ListenerConfig{baseListener()}, Routes{}, sp, Options{})
	if err := sp.Close(); err != nil {
		t.Fatal(err)
	}
	c := dial(t, addrOf(t, s, "mfd"))
	c.greet()
	c.ehlo()
	if code, msg := c.send("a@corp.example", "b@corp.example", simpleBody); code != 452 || !strings.HasPrefix(msg, "4.3.1") {
		t.Fatalf("closed spool: %d %s, want 452 4.3.1", code, msg)
	}
}
