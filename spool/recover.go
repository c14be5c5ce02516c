package spool

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"time"

	bolt "go.etcd.io/bbolt"
)

// bodyMissing is the dead-letter reason recovery gives metadata without a body.
const bodyMissing = "body missing"

// reconcile reconciles bodies and metadata after a crash. It runs at Open while
// the exclusive file lock guarantees no enqueue is between rename and commit.
func (s *Spool) reconcile() error {
	entries, err := os.ReadDir(s.msgDir)
	if err != nil {
		return fmt.Errorf("spool: recovery: reading %s: %w", s.msgDir, err)
	}
	bodies := make(map[string]bool, len(entries))
	for _, e := range entries {
		name := e.Name()
		switch {
		case strings.HasSuffix(name, ".tmp"):
			// Never renamed, so never acknowledged.
			s.removeFile(name, "temp file")
		case strings.HasSuffix(name, ".eml") && e.Type().IsRegular():
			bodies[strings.TrimSuffix(name, ".eml")] = true
		default:
			s.log.Warn("recovery: unexpected file in messages directory left alone", "file", name)
		}
	}

	now := s.opts.Clock()
	// A read pass decodes only state and reason of each message (start-up
	// time with a large queue is dominated by this scan); the write pass
	// touches only the few messages that need fixing.
	var fix, stale, orphans, deadened []string
	err = s.db.View(func(tx *bolt.Tx) error {
		known := make(map[string]bool, len(bodies))
		err := tx.Bucket(bktMessages).ForEach(func(k, v []byte) error {
			id := string(k)
			var m struct {
				State  State  `json:"state"`
				Reason string `json:"reason"`
				Inline bool   `json:"body_inline"`
			}
			if err := json.Unmarshal(v, &m); err != nil {
				return fmt.Errorf("%w: message %s: decoding metadata: %v", ErrCorrupt, id, err)
			}
			known[id] = true
			if m.State == StateDelivered {
				if bodies[id] {
					stale = append(stale, id) // crashed between commit and remove
				}
				return nil
			}
			if m.Inline || bodies[id] || (m.State == StateDead && strings.HasPrefix(m.Reason, bodyMissing)) {
				return nil
			}
			fix = append(fix, id)
			return nil
		})
		if err != nil {
			return err
		}
		for id := range bodies {
			if !known[id] {
				orphans = append(orphans, id) // linked but never committed
			}
		}
		return nil
	})
	if err == nil && len(fix) > 0 {
		err = s.db.Update(func(tx *bolt.Tx) error {
			deadened = deadened[:0]
			for _, id := range fix {
				old, err := getMsg(tx, id)
				if err != nil {
					return err
				}
				m, _ := getMsg(tx, id)
				if i := openAttempt(m, m.LeaseOwner); i >= 0 && m.State == StateActive {
					m.History[i].End = now
					m.History[i].Result = "interrupted"
				}
				if m.State == StateDead && m.Reason != "" {
					m.Reason = bodyMissing + " (was dead: " + m.Reason + ")"
				} else {
					m.Reason = bodyMissing
				}
				m.State = StateDead
				m.LeaseOwner, m.LeaseUntil = "", time.Time{}
				m.Updated = now
				if err := writeMsg(tx, old, m); err != nil {
					return err
				}
				deadened = append(deadened, m.ID)
			}
			return nil
		})
	}
	if err != nil {
		return fmt.Errorf("spool: recovery: %w", err)
	}
	for _, id := range deadened {
		s.log.Error("recovery: body file missing, message dead-lettered", "msg_id", id)
	}
	for _, id := range stale {
		s.log.Info("recovery: removing the body of a delivered message", "msg_id", id)
		s.removeBody(id)
	}
	if len(orphans) > 0 {
		if err := s.quarantineOrphans(orphans); err != nil {
			return fmt.Errorf("spool: recovery: %w", err)
		}
	}
	// Open holds bbolt's exclusive lock, so whoever leased an active
	// message is gone: requeue every lease now instead of letting the
	// messages wait out their lease.
	if _, err := s.rescue(now, time.Unix(1<<62, 0)); err != nil {
		return fmt.Errorf("spool: recovery: %w", err)
	}
	if _, err := s.purge(StateDelivered, now.Add(-s.opts.DeliveredRetention)); err != nil {
		return fmt.Errorf("spool: recovery: purging delivered: %w", err)
	}
	return nil
}

// quarantineOrphans moves body files without metadata to OrphansDir (see
// there for why they are never deleted). The move is a rename on the same
// file system, made durable before recovery goes on.
func (s *Spool) quarantineOrphans(ids []string) error {
	dst := filepath.Join(s.dir, OrphansDir)
	if err := os.MkdirAll(dst, 0o700); err != nil {
		return fmt.Errorf("creating %s: %w", dst, err)
	}
	for _, id := range ids {
		if err := s.fs.Rename(s.bodyPath(id), filepath.Join(dst, id+".eml")); err != nil {
			return fmt.Errorf("moving orphan body %s to %s: %w", id, dst, err)
		}
	}
	if err := s.fs.SyncDir(dst); err != nil {
		return fmt.Errorf("fsync %s: %w", dst, err)
	}
	if err := s.fs.SyncDir(s.msgDir); err != nil {
		return fmt.Errorf("fsync %s: %w", s.msgDir, err)
	}
	if len(ids) > manyOrphans {
		s.log.Error("recovery: found many body files that no message names and moved them aside "+
			"(was spool.db replaced or restored from an older copy?). Re-queue them with 'spoolctl salvage' or remove them",
			"count", len(ids), "moved_to", dst)
	} else {
		s.log.Warn("recovery: moved body files that no message names aside: enqueues cut off by the stop "+
			"(never acknowledged: the senders send them again), or mail whose metadata was lost. "+
			"Check them with 'spoolctl salvage --dry-run', then salvage or remove them",
			"count", len(ids), "moved_to", dst)
	}
	return nil
}

func (s *Spool) removeFile(name, what string) {
	if err := s.fs.Remove(filepath.Join(s.msgDir, name)); err != nil && !errors.Is(err, os.ErrNotExist) {
		s.log.Warn("recovery: removing "+what, "file", name, "err", err)
	}
}

// rescue requeues active messages whose lease ended before leasesBefore:
// their worker died (at-least-once delivery). They are due at
// max(NextAttempt, now) so a crash after StartAttempt still waits for the
// backoff it recorded.
func (s *Spool) rescue(now, leasesBefore time.Time) (int, error) {
	var ids []string
	err := s.db.Update(func(tx *bolt.Tx) error {
		ids = ids[:0]
		limit := encTime(leasesBefore)
		var keys [][]byte
		c := tx.Bucket(bktLeases).Cursor()
		for k, _ := c.First(); k != nil && bytes.Compare(k[:8], limit) < 0; k, _ = c.Next() {
			keys = append(keys, bytes.Clone(k))
		}
		for _, k := range keys {
			id := string(k[8:])
			old, err := getMsg(tx, id)
			if errors.Is(err, ErrNotFound) || (err == nil && old.State != StateActive) {
				s.log.Error("removing stale lease-index entry", "msg_id", id)
				if err := tx.Bucket(bktLeases).Delete(k); err != nil {
					return err
				}
				continue
			}
			if err != nil {
				return err
			}
			m, _ := getMsg(tx, id)
			s.machine().Rescue(m, now)
			if err := writeMsg(tx, old, m); err != nil {
				return err
			}
			ids = append(ids, id)
		}
		return nil
	})
	if err != nil {
		return 0, fmt.Errorf("rescuing expired leases: %w", err)
	}
	for _, id := range ids {
		s.log.Warn("lease expired, message requeued", "msg_id", id)
	}
	if len(ids) > 0 {
		s.signal()
	}
	return len(ids), nil
}

// rescueNow runs one rescuer pass: expired leases are requeued and delivered
// records past DeliveredRetention purged. It returns how many were requeued.
// The rescuer goroutine calls it every RescueInterval.
func (s *Spool) rescueNow() (int, error) {
	if err := s.begin(context.Background(), true); err != nil {
		return 0, fmt.Errorf("spool: rescue: %w", err)
	}
	defer s.end()
	now := s.opts.Clock()
	n, err := s.rescue(now, now)
	if err != nil {
		return 0, fmt.Errorf("spool: rescue: %w", err)
	}
	if _, err := s.purge(StateDelivered, now.Add(-s.opts.DeliveredRetention)); err != nil {
		return n, fmt.Errorf("spool: rescue: purging delivered: %w", err)
	}
	return n, nil
}

func (s *Spool) rescueLoop() {
	defer close(s.rescueDone)
	t := time.NewTicker(s.opts.RescueInterval)
	defer t.Stop()
	for {
		select {
		case <-s.rescueStop:
			return
		case <-t.C:
			if _, err := s.rescueNow(); err != nil && !errors.Is(err, ErrClosed) {
				s.log.Error("rescuer", "err", err)
			}
		}
	}
}
