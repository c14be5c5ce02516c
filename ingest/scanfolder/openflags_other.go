//go:build !unix

package scanfolder

const openFlags = 0
