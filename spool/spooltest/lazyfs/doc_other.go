//go:build !linux

// Package lazyfs is a FUSE file system for power-cut tests; it is Linux-only
// (see lazyfs.go).
package lazyfs
