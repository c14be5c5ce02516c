package spool

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"time"

	bolt "go.etcd.io/bbolt"
)

// AccountsWith lists the accounts that have a record key, sorted (bbolt's
// order): the records auth/seal re-seals at start-up and on a key rotation.
func (s *Spool) AccountsWith(ctx context.Context, key string) ([]string, error) {
	if err := s.begin(ctx, false); err != nil {
		return nil, fmt.Errorf("spool: listing %s records: %w", key, err)
	}
	defer s.end()
	var out []string
	err := s.db.View(func(tx *bolt.Tx) error {
		return tx.Bucket(bktAccounts).ForEachBucket(func(name []byte) error {
			if tx.Bucket(bktAccounts).Bucket(name).Get([]byte(key)) != nil {
				out = append(out, string(name))
			}
			return nil
		})
	})
	if err != nil {
		return nil, fmt.Errorf("spool: listing %s records: %w", key, err)
	}
	return out, nil
}

// AccountUpdate reads a per-account record (nil when absent), passes it to
// fn and writes the value fn returns, all in one durable transaction: a
// concurrent AccountPut either lands before (fn sees it) or after. fn
// returning (nil, nil) writes nothing; an error from fn aborts and is
// returned as it is.
func (s *Spool) AccountUpdate(ctx context.Context, account, key string, fn func(old []byte) ([]byte, error)) error {
	if err := validAccountKey(account, key); err != nil {
		return fmt.Errorf("spool: account update %s: %w", account, err)
	}
	if err := s.begin(ctx, true); err != nil {
		return fmt.Errorf("spool: account update %s: %w", account, err)
	}
	defer s.end()
	var fnErr error
	err := s.db.Update(func(tx *bolt.Tx) error {
		var old []byte
		if b := tx.Bucket(bktAccounts).Bucket([]byte(account)); b != nil {
			if v := b.Get([]byte(key)); v != nil {
				old = bytes.Clone(v)
			}
		}
		next, err := fn(old)
		if err != nil {
			fnErr = err
			return err
		}
		if next == nil {
			return nil
		}
		b, err := tx.Bucket(bktAccounts).CreateBucketIfNotExists([]byte(account))
		if err != nil {
			return err
		}
		return b.Put([]byte(key), next)
	})
	if fnErr != nil {
		return fnErr
	}
	if err != nil {
		if isNoSpace(err) {
			return fmt.Errorf("spool: account update %s: %w: %w", account, ErrNoSpace, err)
		}
		return fmt.Errorf("spool: account update %s: %w", account, err)
	}
	return nil
}

// Compact rewrites the database of the stopped spool in dir into a fresh
// file and puts it in place of spool.db. bbolt reuses freed pages but does
// not clear them, so a value overwritten in place (a plaintext token record
// now sealed) can stay readable in the file; the copy holds live data only.
// The new file is fsync'd before the rename and the directory after it, so
// a crash leaves either the old database or the new one. The caller must
// not have the spool open.
func Compact(dir string) (err error) {
	src := filepath.Join(dir, DBFile)
	dst := src + ".compact"
	_ = os.Remove(dst) // a copy a crash left behind is incomplete
	in, err := bolt.Open(src, 0o600, &bolt.Options{ReadOnly: true, Timeout: defaultCompactLock})
	if err != nil {
		return fmt.Errorf("spool: compacting %s: %w", src, err)
	}
	defer in.Close()
	out, err := bolt.Open(dst, 0o600, &bolt.Options{NoSync: true, FreelistType: bolt.FreelistMapType, NoFreelistSync: true})
	if err != nil {
		return fmt.Errorf("spool: compacting %s: creating %s: %w", src, dst, err)
	}
	defer func() {
		if err != nil {
			out.Close()
			os.Remove(dst)
		}
	}()
	if err := bolt.Compact(out, in, 64<<20); err != nil {
		return fmt.Errorf("spool: compacting %s: %w", src, err)
	}
	if err := out.Sync(); err != nil {
		return fmt.Errorf("spool: compacting %s: fsync: %w", src, err)
	}
	if err := out.Close(); err != nil {
		return fmt.Errorf("spool: compacting %s: %w", src, err)
	}
	if err := os.Rename(dst, src); err != nil {
		return fmt.Errorf("spool: compacting %s: %w", src, err)
	}
	d, err := os.Open(dir)
	if err != nil {
		return fmt.Errorf("spool: compacting %s: %w", src, err)
	}
	defer d.Close()
	if err := d.Sync(); err != nil && !errors.Is(err, os.ErrInvalid) {
		return fmt.Errorf("spool: compacting %s: fsync %s: %w", src, dir, err)
	}
	return nil
}

// defaultCompactLock is how long Compact waits for the database lock.
const defaultCompactLock = 2 * time.Second
