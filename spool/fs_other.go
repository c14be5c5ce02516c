//go:build !linux

package spool

import (
	"errors"
	"fmt"

	bolt "go.etcd.io/bbolt"
)

// releaseMapping is a no-op where madvise is not used.
func releaseMapping(*bolt.Tx) error { return nil }

func (osFS) CreateAnon(dir string) (anonFile, error) {
	return nil, fmt.Errorf("unnamed temp files in %s: %w", dir, errors.ErrUnsupported)
}
