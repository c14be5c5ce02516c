//go:build !unix

package alerts

import "errors"

func statfsFree(string) (uint64, error) {
	return 0, errors.New("free disk space is not measured on this system")
}
