package spool

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os/exec"
	"path/filepath"
	"strings"
	"time"

	bolt "go.etcd.io/bbolt"
	berrors "go.etcd.io/bbolt/errors"
)

// VerifyFile runs bbolt's consistency check (every page reachable exactly
// once, keys in order) on a database file that no process is writing. It
// opens the file read-only and changes nothing.
//
// bbolt reacts to some damage by panicking in a goroutine of its own while
// it opens the file (the free-page walk that NoFreelistSync implies), which
// no recover can catch: a damaged spool.db would crash spoold at every start.
// So VerifyFile is meant to run in a disposable child process
// (ChildVerifier), whose crash is then only a "no".
func VerifyFile(path string) error {
	if err := checkDatabaseFile(filepath.Dir(path), path); err != nil {
		return err
	}
	db, err := bolt.Open(path, 0o600, &bolt.Options{ReadOnly: true, NoFreelistSync: true,
		FreelistType: bolt.FreelistMapType, Timeout: 2 * time.Second})
	if errors.Is(err, berrors.ErrTimeout) {
		return &inUseError{path: path}
	}
	if err != nil {
		return fmt.Errorf("spool: %s: %w: %w; %s", path, ErrCorrupt, err, restoreHint(path))
	}
	defer db.Close()
	return db.View(func(tx *bolt.Tx) error {
		var problems []string
		for err := range tx.Check() {
			if len(problems) < 5 {
				problems = append(problems, err.Error())
			}
		}
		if len(problems) > 0 {
			return fmt.Errorf("spool: %s: %w: %s; %s", path, ErrCorrupt, strings.Join(problems, "; "), restoreHint(path))
		}
		return nil
	})
}

// Exit codes of a verifier child process (see ChildVerifier).
const (
	VerifyExitCorrupt = 1 // the file is damaged (the child printed why)
	VerifyExitInUse   = 3 // another process holds the database
)

// ChildVerifier returns an Options.Verify that runs argv plus the database
// path as a child process, which must call VerifyFile and exit 0 when the
// file is sound, VerifyExitInUse when another process holds it, and
// VerifyExitCorrupt otherwise (spoold -verify-spool, spoolctl verify-spool).
// A child that crashes has met damage bbolt could not report.
func ChildVerifier(argv ...string) func(dbPath string) error {
	return func(dbPath string) error {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute)
		defer cancel()
		cmd := exec.CommandContext(ctx, argv[0], append(argv[1:], dbPath)...)
		var out bytes.Buffer
		cmd.Stdout, cmd.Stderr = &out, &out
		err := cmd.Run()
		if err == nil {
			return nil
		}
		var ee *exec.ExitError
		if !errors.As(err, &ee) {
			return fmt.Errorf("spool: checking %s: running %s: %w", dbPath, argv[0], err)
		}
		said := firstLine(out.String())
		switch {
		case ee.ExitCode() == VerifyExitInUse:
			return &inUseError{path: dbPath}
		case ee.ExitCode() == VerifyExitCorrupt:
			return fmt.Errorf("spool: %w (%s)", ErrCorrupt, said)
		default:
			return fmt.Errorf("spool: %s: %w: reading it crashed the checker (%s); %s",
				dbPath, ErrCorrupt, said, restoreHint(dbPath))
		}
	}
}

func firstLine(s string) string {
	s = strings.TrimSpace(s)
	if i := strings.IndexByte(s, '\n'); i >= 0 {
		s = s[:i]
	}
	return s
}
