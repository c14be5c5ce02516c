//go:build !linux

package main

// noCoreDumps is Linux-only (prctl); elsewhere the service manager's core
// limit applies.
func noCoreDumps() error { return nil }
