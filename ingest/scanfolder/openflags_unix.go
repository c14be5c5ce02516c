//go:build unix

package scanfolder

import (
	"io/fs"
	"syscall"
)

// openFlags keeps a FIFO swapped in after the Lstat check from blocking the open.
const openFlags = syscall.O_NONBLOCK

// fileGid is a file's group, or -1 where there is none to copy.
func fileGid(fi fs.FileInfo) int {
	if st, ok := fi.Sys().(*syscall.Stat_t); ok {
		return int(st.Gid)
	}
	return -1
}
