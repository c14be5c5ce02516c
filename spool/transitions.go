package spool

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"time"

	bolt "go.etcd.io/bbolt"
)

// mutate loads message id, lets fn change it and writes it back with all
// indexes in one transaction, so every state check and its write are atomic.
// It returns the message as committed.
func (s *Spool) mutate(ctx context.Context, op, id string, fn func(m *Message) error) (*Message, error) {
	if err := s.begin(ctx, true); err != nil {
		return nil, fmt.Errorf("spool: %s %s: %w", op, id, err)
	}
	defer s.end()
	var out *Message
	err := s.update(func(tx *bolt.Tx) error {
		old, err := getMsg(tx, id)
		if err != nil {
			return &refused{err}
		}
		m, _ := getMsg(tx, id) // a private copy to change
		if err := fn(m); err != nil {
			return &refused{err}
		}
		out = m
		return writeMsg(tx, old, m)
	})
	if err != nil {
		return nil, fmt.Errorf("spool: %s %s: %w", op, id, err)
	}
	if isDueState(out.State) && !out.NextAttempt.After(s.opts.Clock()) {
		s.signal()
	}
	return out, nil
}

// machine is the state machine with this spool's options: every rule of a
// transition lives in Machine, shared with the other backends, and this file
// keeps only bbolt's storage around it.
func (s *Spool) machine() Machine {
	return Machine{Clock: s.opts.Clock, HistoryLimit: s.opts.HistoryLimit, LeaseDuration: s.opts.LeaseDuration}
}

// RenewLease extends an active message's lease.
func (s *Spool) RenewLease(ctx context.Context, id, owner string, until time.Time) error {
	_, err := s.mutate(ctx, "renew lease", id, func(m *Message) error {
		return s.machine().RenewLease(m, owner, until)
	})
	return err
}

// StartAttempt counts an attempt and commits its start and the next attempt
// time to use if the worker crashes (ifCrash) before dialing.
func (s *Spool) StartAttempt(ctx context.Context, id, owner string, now, ifCrash time.Time) error {
	mc := s.machine()
	// Read the clock once: a batched transaction may run fn again.
	now = mc.nowOr(now)
	_, err := s.mutate(ctx, "start attempt", id, func(m *Message) error {
		return mc.StartAttempt(m, owner, now, ifCrash)
	})
	return err
}

// Delivered completes an attempt. Recipients not named in r.Recipients that are
// pending become delivered. If any recipient ends failed the message goes to
// StateDead (reason names the failed recipients) with the body kept; otherwise
// to StateDelivered and the body (inline, in the same commit, or its file
// afterwards) is removed. A recipient reported as
// RcptPending is an error wrapping ErrInvalid: use Defer for partial deliveries.
func (s *Spool) Delivered(ctx context.Context, id, owner string, r Result) error {
	mc := s.machine()
	r.Now = mc.nowOr(r.Now)
	inline := false
	m, err := s.mutate(ctx, "delivered", id, func(m *Message) error {
		inline = m.BodyInline
		return mc.Delivered(m, owner, r)
	})
	if err != nil {
		return err
	}
	if m.State == StateDelivered {
		if !inline {
			s.removeBody(id) // an inline body went with the commit
		}
		s.log.Info("delivered", "msg_id", id, "account", m.Account)
	} else {
		s.log.Warn("dead-lettered", "msg_id", id, "account", m.Account, "reason", m.Reason)
	}
	return nil
}

// Defer completes an attempt with a transient failure: StateDeferred until next.
func (s *Spool) Defer(ctx context.Context, id, owner string, next time.Time, r Result) error {
	mc := s.machine()
	r.Now = mc.nowOr(r.Now)
	_, err := s.mutate(ctx, "defer", id, func(m *Message) error {
		return mc.Defer(m, owner, next, r)
	})
	return err
}

// Dead completes an attempt with a permanent failure: StateDead with r.Reason.
func (s *Spool) Dead(ctx context.Context, id, owner string, r Result) error {
	mc := s.machine()
	r.Now = mc.nowOr(r.Now)
	m, err := s.mutate(ctx, "dead", id, func(m *Message) error {
		return mc.Dead(m, owner, r)
	})
	if err == nil {
		s.log.Warn("dead-lettered", "msg_id", id, "account", m.Account, "reason", m.Reason)
	}
	return err
}

// Postpone returns an active message to StateDeferred until next without using
// an attempt (an open attempt started by StartAttempt is uncounted and removed
// from the history): for messages whose account waits (needs_reauth,
// misconfigured, token endpoint down) or on shutdown (next = now).
func (s *Spool) Postpone(ctx context.Context, id, owner string, next time.Time, reason string) error {
	_, err := s.mutate(ctx, "postpone", id, func(m *Message) error {
		return s.machine().Postpone(m, owner, next, reason)
	})
	return err
}

// bodyExists reports whether the body of m is present. An inline body is
// committed and deleted with its record, so only files need a look.
func (s *Spool) bodyExists(m *Message) bool {
	if m.BodyInline {
		return true
	}
	_, err := os.Stat(s.bodyPath(m.ID))
	return err == nil
}

// Hold moves a queued, deferred or dead message to StateHeld.
func (s *Spool) Hold(ctx context.Context, id, reason string) error {
	_, err := s.mutate(ctx, "hold", id, func(m *Message) error {
		return s.machine().Hold(m, reason)
	})
	return err
}

// Release moves a held message to StateQueued, due now; a message whose body
// file is gone stays where it is (the admin sees why).
func (s *Spool) Release(ctx context.Context, id string) error {
	_, err := s.mutate(ctx, "release", id, func(m *Message) error {
		return s.machine().Release(m, s.bodyExists(m))
	})
	return err
}

// Requeue moves a dead or held message to StateQueued, due now, with attempts
// reset and failed recipients made pending again.
func (s *Spool) Requeue(ctx context.Context, id string) error {
	_, err := s.mutate(ctx, "requeue", id, func(m *Message) error {
		return s.machine().Requeue(m, s.bodyExists(m))
	})
	return err
}

// Flush makes a queued or deferred message due now.
func (s *Spool) Flush(ctx context.Context, id string) error {
	_, err := s.mutate(ctx, "flush", id, func(m *Message) error {
		_, err := s.machine().Flush(m)
		return err
	})
	return err
}

// FlushAll makes every queued/deferred message (of one account; "" = all) due
// now and returns how many it changed.
func (s *Spool) FlushAll(ctx context.Context, account string) (int, error) {
	if err := s.begin(ctx, true); err != nil {
		return 0, fmt.Errorf("spool: flush all: %w", err)
	}
	defer s.end()
	now := s.opts.Clock()
	// One reading for the whole pass: what the index selected is what is
	// flushed, to that time.
	mc := s.machine()
	mc.Clock = func() time.Time { return now }
	n := 0
	err := s.db.Update(func(tx *bolt.Tx) error {
		var ids []string
		if account == "" {
			c := tx.Bucket(bktDue).Cursor()
			for k, _ := c.Seek(encTime(now.Add(time.Nanosecond))); k != nil; k, _ = c.Next() {
				ids = append(ids, string(k[8:]))
			}
		} else {
			p := acctPrefix(account)
			c := tx.Bucket(bktAcctDue).Cursor()
			for k, _ := c.Seek(append(p, encTime(now.Add(time.Nanosecond))...)); k != nil && hasPrefix(k, p); k, _ = c.Next() {
				ids = append(ids, string(k[len(p)+8:]))
			}
		}
		for _, id := range ids {
			old, err := getMsg(tx, id)
			if err != nil {
				return fmt.Errorf("%w: due index names %s: %w", ErrCorrupt, id, err)
			}
			m, _ := getMsg(tx, id)
			if changed, err := mc.Flush(m); err != nil || !changed {
				continue
			}
			if err := writeMsg(tx, old, m); err != nil {
				return err
			}
			n++
		}
		return nil
	})
	if err != nil {
		return 0, fmt.Errorf("spool: flush all: %w", err)
	}
	if n > 0 {
		s.signal()
	}
	return n, nil
}

// Delete removes a message in any state but active, with its body.
func (s *Spool) Delete(ctx context.Context, id string) error {
	if err := s.begin(ctx, true); err != nil {
		return fmt.Errorf("spool: delete %s: %w", id, err)
	}
	defer s.end()
	inline := false
	err := s.db.Update(func(tx *bolt.Tx) error {
		m, err := getMsg(tx, id)
		if err != nil {
			return err
		}
		if err := s.machine().CheckDelete(m); err != nil {
			return err
		}
		inline = m.BodyInline
		return writeMsg(tx, m, nil)
	})
	if err != nil {
		return fmt.Errorf("spool: delete %s: %w", id, err)
	}
	if !inline {
		s.removeBody(id)
	}
	s.log.Info("deleted", "msg_id", id)
	return nil
}

// Purge deletes messages in state (dead or delivered) last updated before olderThan.
func (s *Spool) Purge(ctx context.Context, state State, olderThan time.Time) (int, error) {
	if err := CheckPurge(state); err != nil {
		return 0, fmt.Errorf("spool: purge: %w", err)
	}
	if err := s.begin(ctx, true); err != nil {
		return 0, fmt.Errorf("spool: purge: %w", err)
	}
	defer s.end()
	ids, err := s.purge(state, olderThan)
	if err != nil {
		return 0, fmt.Errorf("spool: purge %s: %w", state, err)
	}
	return len(ids), nil
}

// purge is Purge without the lock; the rescuer uses it for retention.
func (s *Spool) purge(state State, olderThan time.Time) ([]string, error) {
	var ids, files []string
	err := s.db.Update(func(tx *bolt.Tx) error {
		ids = ids[:0]
		p := statePrefix(state)
		var victims []*Message
		c := tx.Bucket(bktState).Cursor()
		for k, _ := c.Seek(p); k != nil && hasPrefix(k, p); k, _ = c.Next() {
			m, err := getMsg(tx, string(k[len(p):]))
			if err != nil {
				return fmt.Errorf("%w: state index names %s: %w", ErrCorrupt, k[len(p):], err)
			}
			if m.Updated.Before(olderThan) {
				victims = append(victims, m)
			}
		}
		files = files[:0]
		for _, m := range victims {
			if err := writeMsg(tx, m, nil); err != nil {
				return err
			}
			ids = append(ids, m.ID)
			if !m.BodyInline {
				files = append(files, m.ID)
			}
		}
		return nil
	})
	if err != nil {
		return nil, err
	}
	for _, id := range files {
		s.removeBody(id)
	}
	for _, id := range ids {
		s.log.Info("purged", "msg_id", id, "state", string(state))
	}
	return ids, nil
}

// Claim leases up to limit due messages (queued/deferred with NextAttempt <= now)
// in due-time order, read from the due index, and moves them to StateActive
// with LeaseOwner = owner and LeaseUntil = now + LeaseDuration.
func (s *Spool) Claim(ctx context.Context, now time.Time, limit int, owner string) ([]*Message, error) {
	return s.claim(ctx, "", now, limit, owner)
}

// ClaimAccount is Claim restricted to one account (per-account due index).
func (s *Spool) ClaimAccount(ctx context.Context, account string, now time.Time, limit int, owner string) ([]*Message, error) {
	if account == "" {
		return nil, fmt.Errorf("spool: claim: %w: empty account", ErrInvalid)
	}
	return s.claim(ctx, account, now, limit, owner)
}

// ClaimAccountStart is ClaimAccount followed by StartAttempt on each claimed
// message, all in one transaction: ifCrash gets each message as claimed and
// returns the next attempt time to keep if the worker dies. Like a caller's
// copies after Claim and StartAttempt, the returned messages do not count the
// attempt just started (Attempts and History are as claimed). An attempt
// that is never made must end with Postpone, which uncounts it.
func (s *Spool) ClaimAccountStart(ctx context.Context, account string, now time.Time, limit int, owner string, ifCrash func(m *Message) time.Time) ([]*Message, error) {
	if ifCrash == nil {
		return nil, fmt.Errorf("spool: claim: %w: nil ifCrash", ErrInvalid)
	}
	return s.claimStart(ctx, account, now, limit, owner, ifCrash)
}

func (s *Spool) claim(ctx context.Context, account string, now time.Time, limit int, owner string) ([]*Message, error) {
	return s.claimStart(ctx, account, now, limit, owner, nil)
}

func (s *Spool) claimStart(ctx context.Context, account string, now time.Time, limit int, owner string, ifCrash func(m *Message) time.Time) ([]*Message, error) {
	if owner == "" {
		return nil, fmt.Errorf("spool: claim: %w: empty owner", ErrInvalid)
	}
	if err := s.begin(ctx, true); err != nil {
		return nil, fmt.Errorf("spool: claim: %w", err)
	}
	defer s.end()
	if limit <= 0 {
		return nil, nil
	}
	// Idle workers poll often; a read transaction answers "nothing due"
	// without a commit (two fdatasyncs in bbolt) and without the writer lock.
	if due, ok, err := s.nextDue(account); err != nil {
		return nil, fmt.Errorf("spool: claim: %w", err)
	} else if !ok || due.After(now) {
		return nil, nil
	}
	var out []*Message
	mc := s.machine()
	// Claims share group commits with other transitions (see update).
	err := s.update(func(tx *bolt.Tx) error {
		out = out[:0]
		type entry struct {
			bucket []byte
			key    []byte
			id     string
		}
		var entries []entry
		limitKey := encTime(now.Add(time.Nanosecond))
		if account == "" {
			c := tx.Bucket(bktDue).Cursor()
			for k, _ := c.First(); k != nil && len(entries) < limit && bytes.Compare(k[:8], limitKey) < 0; k, _ = c.Next() {
				entries = append(entries, entry{bktDue, bytes.Clone(k), string(k[8:])})
			}
		} else {
			p := acctPrefix(account)
			c := tx.Bucket(bktAcctDue).Cursor()
			for k, _ := c.Seek(p); k != nil && hasPrefix(k, p) && len(entries) < limit && bytes.Compare(k[len(p):len(p)+8], limitKey) < 0; k, _ = c.Next() {
				entries = append(entries, entry{bktAcctDue, bytes.Clone(k), string(k[len(p)+8:])})
			}
		}
		for _, e := range entries {
			old, err := getMsg(tx, e.id)
			if errors.Is(err, ErrNotFound) || (err == nil && !isDueState(old.State)) {
				// The index is kept in the same transactions as the
				// messages, so this is damage; repair it loudly.
				s.log.Error("removing stale due-index entry", "msg_id", e.id)
				if err := tx.Bucket(e.bucket).Delete(e.key); err != nil {
					return err
				}
				continue
			}
			if err != nil {
				return err
			}
			m, _ := getMsg(tx, e.id)
			claimed, err := mc.Claim(m, owner, now, ifCrash)
			if err != nil {
				return err
			}
			if err := writeMsg(tx, old, m); err != nil {
				return err
			}
			out = append(out, claimed)
		}
		if len(out) == 0 {
			// Another claim in this batch took them: nothing written.
			return &refused{errNothingDue}
		}
		return nil
	})
	if errors.Is(err, errNothingDue) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("spool: claim: %w", err)
	}
	return out, nil
}

// errNothingDue ends a claim transaction that found nothing, so it is rolled
// back rather than committed.
var errNothingDue = errors.New("spool: nothing due")

// NextDue returns the earliest due time among queued and deferred messages
// (optionally of one account; "" = all). ok is false when none wait.
func (s *Spool) NextDue(ctx context.Context, account string) (due time.Time, ok bool, err error) {
	if err := s.begin(ctx, false); err != nil {
		return time.Time{}, false, fmt.Errorf("spool: next due: %w", err)
	}
	defer s.end()
	due, ok, err = s.nextDue(account)
	if err != nil {
		return time.Time{}, false, fmt.Errorf("spool: next due: %w", err)
	}
	return due, ok, nil
}

// nextDue reads the first due-index entry (of one account; "" = all) in a
// read transaction.
func (s *Spool) nextDue(account string) (due time.Time, ok bool, err error) {
	err = s.db.View(func(tx *bolt.Tx) error {
		if account == "" {
			if k, _ := tx.Bucket(bktDue).Cursor().First(); k != nil {
				due, ok = decTime(k[:8]), true
			}
			return nil
		}
		p := acctPrefix(account)
		if k, _ := tx.Bucket(bktAcctDue).Cursor().Seek(p); k != nil && hasPrefix(k, p) {
			due, ok = decTime(k[len(p):len(p)+8]), true
		}
		return nil
	})
	return due, ok, err
}

// DueAccounts returns the accounts that have at least one message due at now.
func (s *Spool) DueAccounts(ctx context.Context, now time.Time) ([]string, error) {
	if err := s.begin(ctx, false); err != nil {
		return nil, fmt.Errorf("spool: due accounts: %w", err)
	}
	defer s.end()
	var out []string
	limitKey := encTime(now.Add(time.Nanosecond))
	err := s.db.View(func(tx *bolt.Tx) error {
		c := tx.Bucket(bktAcctDue).Cursor()
		// Visit only each account's earliest entry, then jump past the
		// account: cost is per account, not per message.
		for k, _ := c.First(); k != nil; {
			i := bytes.IndexByte(k, 0)
			if i < 0 || len(k) < i+9 {
				return fmt.Errorf("%w: bad account due-index key %q", ErrCorrupt, k)
			}
			acct := string(k[:i])
			if bytes.Compare(k[i+1:i+9], limitKey) < 0 {
				out = append(out, acct)
			}
			k, _ = c.Seek(append([]byte(acct), 1))
		}
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("spool: due accounts: %w", err)
	}
	return out, nil
}
