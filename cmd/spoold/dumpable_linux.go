package main

import "golang.org/x/sys/unix"

// noCoreDumps marks the process not dumpable: a crash (which dies by SIGABRT,
// see crashBySignal) then writes no core file, and no other process of the
// same user can ptrace it or read its memory, which holds OAuth tokens. The
// unit's LimitCORE=0 does the same only where the unit is used.
func noCoreDumps() error { return unix.Prctl(unix.PR_SET_DUMPABLE, 0, 0, 0, 0) }
