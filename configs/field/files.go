package field

import (
	"errors"
	"fmt"
	"os"
	"runtime"
)

// The file checks below judge a path named in the configuration the same
// way wherever it appears (a secret file, a TLS key, an OAuth client
// certificate). Each returns why the file cannot be used, naming the fix,
// or "".

// ReadableFile checks that path exists and is not a directory: for files
// that are not secret, such as a certificate.
func ReadableFile(path string) string {
	fi, err := os.Stat(path)
	if err != nil {
		return fmt.Sprintf("cannot read %s: %v", path, UnwrapPathErr(err))
	}
	if fi.IsDir() {
		return fmt.Sprintf("%s is a directory, want a file", path)
	}
	return ""
}

// PrivateFile checks that path is a regular file only its owner can access
// (mode 0600 or 0400), as a file holding a secret or a private key must be.
func PrivateFile(path string) string {
	fi, err := os.Stat(path)
	if err != nil {
		return fmt.Sprintf("cannot read %s: %v", path, UnwrapPathErr(err))
	}
	if !fi.Mode().IsRegular() {
		return fmt.Sprintf("%s is not a regular file", path)
	}
	if runtime.GOOS == "windows" {
		return "" // no Unix permission bits to check
	}
	switch perm := fi.Mode().Perm(); {
	case perm&0o044 != 0:
		return fmt.Sprintf("secret file %s is readable by group/others: run chmod 600 %s", path, path)
	case perm&0o033 != 0:
		return fmt.Sprintf("secret file %s is writable by group/others: run chmod 600 %s", path, path)
	}
	return ""
}

// UnwrapPathErr drops the path from an *os.PathError, for a reason that
// names the path already.
func UnwrapPathErr(err error) error {
	var pe *os.PathError
	if errors.As(err, &pe) {
		return pe.Err
	}
	return err
}
