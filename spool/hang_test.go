package spool

import (
	"bytes"
	"os"
	"os/exec"
	"path/filepath"
	"runtime/pprof"
	"strconv"
	"syscall"
	"testing"
	"time"
)

// stopHungChild logs what a child that stopped making progress is waiting
// for, then kills it, so that a hang seen once on a loaded CI machine can be
// diagnosed from its log: each thread's kernel stack (a FUSE request
// waiting for its answer shows as request_wait_answer), this process's
// goroutines (it serves the lazyfs mount in the power-cut test), and the
// child's goroutines (SIGQUIT makes the Go runtime print them to its
// stderr, which is the test's). The child's stdout must be drained by the
// caller for it to exit.
func stopHungChild(t *testing.T, cmd *exec.Cmd) {
	t.Helper()
	pid := strconv.Itoa(cmd.Process.Pid)
	tasks, _ := filepath.Glob(filepath.Join("/proc", pid, "task", "*"))
	for _, task := range tasks {
		stack, _ := os.ReadFile(filepath.Join(task, "stack"))
		wchan, _ := os.ReadFile(filepath.Join(task, "wchan"))
		t.Logf("child thread %s: wchan %s\n%s", filepath.Base(task), wchan, stack)
	}
	var own bytes.Buffer
	_ = pprof.Lookup("goroutine").WriteTo(&own, 2)
	t.Logf("this process's goroutines:\n%s", own.String())
	exited := make(chan struct{})
	go func() {
		_ = cmd.Wait()
		close(exited)
	}()
	_ = cmd.Process.Signal(syscall.SIGQUIT)
	select {
	case <-exited:
	case <-time.After(10 * time.Second):
		// Stuck in an uninterruptible wait: SIGKILL is all that is left.
		_ = cmd.Process.Kill()
		<-exited
	}
}
