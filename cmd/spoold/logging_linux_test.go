package main

import (
	"bytes"
	"fmt"
	"os"
	"testing"

	"golang.org/x/sys/unix"
)

// openPTY returns the two ends of a new pseudo-terminal.
func openPTY(t *testing.T) (master, tty *os.File) {
	t.Helper()
	m, err := os.OpenFile("/dev/ptmx", os.O_RDWR, 0)
	if err != nil {
		t.Skipf("no pseudo-terminals here: %v", err)
	}
	t.Cleanup(func() { m.Close() })
	if err := unix.IoctlSetPointerInt(int(m.Fd()), unix.TIOCSPTLCK, 0); err != nil {
		t.Fatal(err)
	}
	n, err := unix.IoctlGetInt(int(m.Fd()), unix.TIOCGPTN)
	if err != nil {
		t.Fatal(err)
	}
	s, err := os.OpenFile(fmt.Sprintf("/dev/pts/%d", n), os.O_RDWR|unix.O_NOCTTY, 0)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	return m, s
}

// TestNoColor: on a terminal the log is coloured unless NO_COLOR is set.
func TestNoColor(t *testing.T) {
	for _, noColor := range []bool{false, true} {
		master, tty := openPTY(t)
		log, _, err := newLogger(tty, "info", "auto", noColor)
		if err != nil {
			t.Fatal(err)
		}
		log.Warn("hello", "k", "v")
		buf := make([]byte, 4096)
		n, err := master.Read(buf)
		if err != nil {
			t.Fatal(err)
		}
		if coloured := bytes.Contains(buf[:n], []byte("\x1b[")); coloured == noColor {
			t.Errorf("NO_COLOR=%v: coloured=%v: %q", noColor, coloured, buf[:n])
		}
	}
}
