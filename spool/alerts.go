package spool

import (
	"bytes"
	"context"
	"fmt"

	bolt "go.etcd.io/bbolt"
)

// bktAlerts holds the alerter's state (cmd/spoold/alerts): which alerts are
// active and when they were last sent, notifications not yet delivered to a
// channel, the run marker that tells an unclean stop, and which messages got
// a delay warning. The records are the alerter's own JSON; the spool only
// stores them durably, so that a restart or a kill -9 does not send an alert
// twice. The bucket is created on the first write: a database from before
// alerts opens unchanged (read-only too), and a missing bucket reads empty.
var bktAlerts = []byte("alerts")

// maxAlertKey bounds alert record keys; they are short identifiers.
const maxAlertKey = 512

// AlertState returns every alert record (key -> value); empty when none
// was ever written.
func (s *Spool) AlertState(ctx context.Context) (map[string][]byte, error) {
	if err := s.begin(ctx, false); err != nil {
		return nil, fmt.Errorf("spool: reading alert state: %w", err)
	}
	defer s.end()
	out := map[string][]byte{}
	err := s.db.View(func(tx *bolt.Tx) error {
		b := tx.Bucket(bktAlerts)
		if b == nil {
			return nil
		}
		return b.ForEach(func(k, v []byte) error {
			out[string(k)] = bytes.Clone(v)
			return nil
		})
	})
	if err != nil {
		return nil, fmt.Errorf("spool: reading alert state: %w", err)
	}
	return out, nil
}

// AlertWrite puts and deletes alert records in one durable transaction
// (committed and fsync'd on return): a state change and the notifications it
// queues are stored together or not at all.
func (s *Spool) AlertWrite(ctx context.Context, put map[string][]byte, del []string) error {
	for k := range put {
		if k == "" || len(k) > maxAlertKey {
			return fmt.Errorf("spool: writing alert state: %w: key %q is empty or too long", ErrInvalid, k)
		}
	}
	if len(put) == 0 && len(del) == 0 {
		return nil
	}
	if err := s.begin(ctx, true); err != nil {
		return fmt.Errorf("spool: writing alert state: %w", err)
	}
	defer s.end()
	err := s.db.Update(func(tx *bolt.Tx) error {
		b, err := tx.CreateBucketIfNotExists(bktAlerts)
		if err != nil {
			return err
		}
		for _, k := range del {
			if k == "" || len(k) > maxAlertKey {
				continue // never written: nothing to delete
			}
			if err := b.Delete([]byte(k)); err != nil {
				return err
			}
		}
		for k, v := range put {
			if v == nil {
				v = []byte{}
			}
			if err := b.Put([]byte(k), v); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		if isNoSpace(err) {
			return fmt.Errorf("spool: writing alert state: %w: %w", ErrNoSpace, err)
		}
		return fmt.Errorf("spool: writing alert state: %w", err)
	}
	return nil
}

// WaitingByAccount counts, per account, the messages waiting to be sent
// (queued and deferred), from the due index without decoding a message: the
// alerter says how many messages an account's trouble holds up.
func (s *Spool) WaitingByAccount(ctx context.Context) (map[string]int, error) {
	if err := s.begin(ctx, false); err != nil {
		return nil, fmt.Errorf("spool: counting waiting messages: %w", err)
	}
	defer s.end()
	out := map[string]int{}
	err := s.db.View(func(tx *bolt.Tx) error {
		return tx.Bucket(bktAcctDue).ForEach(func(k, _ []byte) error {
			if i := bytes.IndexByte(k, 0); i > 0 {
				out[string(k[:i])]++
			}
			return nil
		})
	})
	if err != nil {
		return nil, fmt.Errorf("spool: counting waiting messages: %w", err)
	}
	return out, nil
}
