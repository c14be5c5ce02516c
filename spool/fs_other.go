//go:build !linux

package spool

import (
	"errors"
	"fmt"
)

func (osFS) CreateAnon(dir string) (anonFile, error) {
	return nil, fmt.Errorf("unnamed temp files in %s: %w", dir, errors.ErrUnsupported)
}
