//go:build linux

package benchtest

import (
	"bufio"
	"os/exec"
	"strings"
	"testing"
	"time"
)

// TestTreeCPUCountsExitedChildren checks the accounting the side-by-side
// benchmark relies on for Postfix, whose daemons are children of its master
// that come and go: the CPU of a child that already exited is counted in
// its parent's tree.
func TestTreeCPUCountsExitedChildren(t *testing.T) {
	// The outer shell runs a busy child, reports when it has been reaped,
	// and then waits for its stdin to close.
	cmd := exec.Command("/bin/sh", "-c", `/bin/sh -c 'i=0; while [ $i -lt 100000 ]; do i=$((i+1)); done'; echo reaped; read -r _`)
	stdin, err := cmd.StdinPipe()
	if err != nil {
		t.Fatal(err)
	}
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	defer func() {
		_ = stdin.Close()
		_ = cmd.Wait()
	}()
	line, err := bufio.NewReader(stdout).ReadString('\n')
	if err != nil || strings.TrimSpace(line) != "reaped" {
		t.Fatalf("outer shell said %q, %v; want reaped", line, err)
	}
	own, err := procCPU(cmd.Process.Pid)
	if err != nil {
		t.Fatal(err)
	}
	tree, err := treeCPU(cmd.Process.Pid)
	if err != nil {
		t.Fatal(err)
	}
	// The busy loop takes well over 50 ms of CPU; the outer shell itself
	// almost none.
	if tree-own < 50*time.Millisecond {
		t.Errorf("treeCPU = %v, the shell's own CPU %v: the exited child's CPU is missing", tree, own)
	}
}

func TestTreeCPUOfAMissingProcess(t *testing.T) {
	cmd := exec.Command("/bin/true")
	if err := cmd.Run(); err != nil {
		t.Fatal(err)
	}
	if _, err := treeCPU(cmd.Process.Pid); err == nil {
		t.Errorf("treeCPU of the reaped process %d: no error", cmd.Process.Pid)
	}
}
