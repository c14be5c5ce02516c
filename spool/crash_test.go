package spool

import (
	"bufio"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"flag"
	"fmt"
	"io"
	"math/rand/v2"
	"os"
	"os/exec"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

var crashKills = flag.Int("spool.kills", 30, "number of SIGKILLs in TestCrashDurability")

// Child-process modes of this test binary, chosen by environment variable.
const (
	envChild = "SPOOL_TEST_CHILD"
	envDir   = "SPOOL_TEST_DIR"
)

func TestMain(m *testing.M) {
	switch os.Getenv(envChild) {
	case "enqueue":
		os.Exit(childEnqueue(os.Getenv(envDir)))
	case "lock":
		os.Exit(childLock(os.Getenv(envDir)))
	}
	// The verifier child of TestVerifyCatchesBboltPanics: argv is
	// [binary verify-child dbPath], as ChildVerifier calls it.
	if len(os.Args) == 3 && os.Args[1] == "verify-child" {
		if err := VerifyFile(os.Args[2]); err != nil {
			fmt.Println(err)
			if errors.Is(err, ErrInUse) {
				os.Exit(VerifyExitInUse)
			}
			os.Exit(VerifyExitCorrupt)
		}
		os.Exit(0)
	}
	os.Exit(m.Run())
}

// checksummedBody makes a body that carries the SHA-256 of its own payload.
func checksummedBody(r *rand.Rand) string {
	// One in four is too large to be stored inline, so kills land in both
	// the inline and the file path.
	n := 512 + r.IntN(16<<10)
	if r.IntN(4) == 0 {
		n = MaxInlineBody + r.IntN(64<<10)
	}
	payload := make([]byte, n)
	for i := range payload {
		payload[i] = 'a' + byte(r.IntN(26))
	}
	sum := sha256.Sum256(payload)
	return "X-Sum: " + hex.EncodeToString(sum[:]) + "\r\n\r\n" + string(payload)
}

func verifyBody(body string) error {
	head, payload, ok := strings.Cut(body, "\r\n\r\n")
	if !ok || !strings.HasPrefix(head, "X-Sum: ") {
		return fmt.Errorf("malformed body (%d bytes)", len(body))
	}
	sum := sha256.Sum256([]byte(payload))
	if hex.EncodeToString(sum[:]) != strings.TrimPrefix(head, "X-Sum: ") {
		return errors.New("checksum mismatch")
	}
	return nil
}

// childEnqueue enqueues from several goroutines until killed, printing each
// acknowledged ID on its own line (one write each, atomic on a pipe).
func childEnqueue(dir string) int {
	s, err := Open(dir, Options{Logger: quietLogger(), LockTimeout: 10 * time.Second})
	if err != nil {
		fmt.Fprintln(os.Stderr, "child open:", err)
		return 2
	}
	var mu sync.Mutex
	var wg sync.WaitGroup
	for g := 0; g < 4; g++ {
		wg.Add(1)
		go func(seed uint64) {
			defer wg.Done()
			r := rand.New(rand.NewPCG(seed, uint64(os.Getpid())))
			for {
				id, err := s.Enqueue(context.Background(), req("crash", "x@example.com"), strings.NewReader(checksummedBody(r)))
				if err != nil {
					fmt.Fprintln(os.Stderr, "child enqueue:", err)
					os.Exit(3)
				}
				mu.Lock()
				os.Stdout.WriteString(id + "\n")
				mu.Unlock()
			}
		}(uint64(g))
	}
	wg.Wait()
	return 0
}

func childLock(dir string) int {
	_, err := Open(dir, Options{Logger: quietLogger(), LockTimeout: 500 * time.Millisecond})
	if err == nil {
		fmt.Println("opened: lock not enforced")
		return 1
	}
	fmt.Println(err.Error())
	if !errors.Is(err, ErrInUse) {
		return 4
	}
	return 0
}

func childCmd(t *testing.T, mode, dir string) *exec.Cmd {
	t.Helper()
	exe, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(exe, "-test.run=^$")
	cmd.Env = append(os.Environ(), envChild+"="+mode, envDir+"="+dir)
	cmd.Stderr = os.Stderr
	return cmd
}

func TestLockTwoProcesses(t *testing.T) {
	dir := t.TempDir()
	openTest(t, dir, testOpts(newFakeClock()))
	cmd := childCmd(t, "lock", dir)
	start := time.Now()
	out, err := cmd.Output()
	elapsed := time.Since(start)
	if err != nil {
		t.Fatalf("child: %v, output %q", err, out)
	}
	want := "spool " + dir + "/" + DBFile + " is in use by another process"
	if strings.TrimSpace(string(out)) != want {
		t.Fatalf("child said %q, want %q", out, want)
	}
	// Lock timeout is 0.5 s; a hang would be far longer. Generous for a loaded box.
	if elapsed > 30*time.Second {
		t.Fatalf("child took %v to give up", elapsed)
	}
}

func TestCrashDurability(t *testing.T) {
	if testing.Short() {
		t.Skip("short mode")
	}
	dir := t.TempDir()
	r := rand.New(rand.NewPCG(uint64(time.Now().UnixNano()), 7))
	acked := map[string]bool{}
	kills := 0
	for i := 0; i < *crashKills; i++ {
		killEnqueuer(t, i, dir, r, acked)
		kills++
		verifyAcked(t, dir, acked)
	}
	t.Logf("crash test: %d kills survived, %d acknowledged messages checked, none lost", kills, len(acked))
}

// killEnqueuer runs child i enqueueing into dir, lets it acknowledge a
// random number of messages, SIGKILLs it a random moment later (so kills
// land in every step of Enqueue) and adds every ID it printed to acked.
// The crash and the power-cut tests share it: they differ only in what
// happens to the disk after the kill.
func killEnqueuer(t *testing.T, i int, dir string, r *rand.Rand, acked map[string]bool) {
	t.Helper()
	cmd := childCmd(t, "enqueue", dir)
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	lines := make(chan string, 1024)
	readDone := make(chan struct{})
	go func() {
		defer close(readDone)
		sc := bufio.NewScanner(stdout)
		for sc.Scan() {
			lines <- sc.Text()
		}
		close(lines)
	}()
	target := 1 + r.IntN(40)
	deadline := time.After(60 * time.Second)
wait:
	for got := 0; got < target; {
		select {
		case l, ok := <-lines:
			if !ok {
				break wait
			}
			acked[l] = true
			got++
		case <-deadline:
			stopHungChild(t, cmd)
			t.Fatalf("child %d acknowledged only %d messages in 60s", i, got)
		}
	}
	time.Sleep(time.Duration(r.IntN(3000)) * time.Microsecond)
	if err := cmd.Process.Signal(syscall.SIGKILL); err != nil {
		t.Fatalf("kill child %d: %v", i, err)
	}
	for l := range lines {
		acked[l] = true
	}
	<-readDone
	err = cmd.Wait()
	var ee *exec.ExitError
	if !errors.As(err, &ee) || ee.Sys().(syscall.WaitStatus).Signal() != syscall.SIGKILL {
		t.Fatalf("child %d did not die by SIGKILL: %v", i, err)
	}
}

// verifyAcked reopens the spool (running recovery) and checks every
// acknowledged ID is queued with an intact body and the database is sound.
func verifyAcked(t *testing.T, dir string, acked map[string]bool) {
	t.Helper()
	s, err := Open(dir, Options{Logger: quietLogger(), RescueInterval: -1})
	if err != nil {
		t.Fatalf("reopen after kill: %v", err)
	}
	defer s.Close()
	if err := s.Check(); err != nil {
		t.Fatalf("Check after kill: %v", err)
	}
	for id := range acked {
		if len(id) != idLen {
			t.Fatalf("child printed a malformed ID %q", id)
		}
		m, err := s.Get(context.Background(), id)
		if err != nil {
			t.Fatalf("acknowledged message %s lost: %v", id, err)
		}
		if m.State != StateQueued {
			t.Fatalf("acknowledged message %s is %s (%s)", id, m.State, m.Reason)
		}
		f, err := s.OpenBody(id)
		if err != nil {
			t.Fatalf("body of %s: %v", id, err)
		}
		b, err := io.ReadAll(f)
		f.Close()
		if err != nil {
			t.Fatal(err)
		}
		if int64(len(b)) != m.Size {
			t.Fatalf("body of %s: %d bytes, metadata says %d", id, len(b), m.Size)
		}
		if err := verifyBody(string(b)); err != nil {
			t.Fatalf("body of %s: %v", id, err)
		}
	}
	// Every file left is a committed message: recovery removed the rest.
	st, err := s.Stats(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	if n := countBodies(t, s); n != st[StateQueued] {
		t.Fatalf("%d bodies but %d queued messages after recovery", n, st[StateQueued])
	}
}
