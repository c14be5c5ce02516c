//go:build !unix

package scanfolder

import "io/fs"

const openFlags = 0

// fileGid: no groups to copy here.
func fileGid(fs.FileInfo) int { return -1 }
