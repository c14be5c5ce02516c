//go:build unix

package scanfolder

import "syscall"

// openFlags keeps a FIFO swapped in after the Lstat check from blocking the open.
const openFlags = syscall.O_NONBLOCK
