//go:build !linux

package scanfolder

import (
	"errors"
	"os"
)

// Without Linux inotify and leases, readiness rests on the quiet period and
// the format checks.

type closeWatcher struct{ events chan closeEvent }

func newCloseWatcher() (*closeWatcher, error) {
	return nil, errors.New("close-write events need Linux inotify")
}

func (cw *closeWatcher) add(abs, rel string) error { return nil }
func (cw *closeWatcher) remove(rel string)         {}
func (cw *closeWatcher) close()                    {}

func writerCheck(f *os.File) (writing, unsupported bool, err error) {
	return false, true, errors.New("read leases need Linux")
}

const closeWatchSupported = false
