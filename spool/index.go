package spool

import (
	"bytes"
	"encoding/binary"
	"encoding/json"
	"fmt"
	"math"
	"time"

	bolt "go.etcd.io/bbolt"
)

// Bucket names. Index keys put a big-endian time first so cursors walk them in
// time order; account and state prefixes end in 0x00 (neither may contain NUL).
var (
	bktMessages = []byte("messages") // id -> JSON Message
	bktDue      = []byte("due")      // due||id -> nil (queued and deferred)
	bktAcctDue  = []byte("acctdue")  // account||0x00||due||id -> nil
	bktState    = []byte("state")    // state||0x00||id -> nil
	bktLeases   = []byte("leases")   // leaseUntil||id -> nil (active)
	bktKeys     = []byte("keys")     // idempotency key -> id
	bktCounts   = []byte("counts")   // state -> uint64 big-endian
	bktAccounts = []byte("accounts") // account -> nested bucket of key -> value
	bktMeta     = []byte("meta")     // "schema" -> version
	bktBodies   = []byte("bodies")   // id -> body of a message stored inline

	allBuckets = [][]byte{bktMessages, bktDue, bktAcctDue, bktState, bktLeases, bktKeys, bktCounts, bktAccounts, bktMeta, bktBodies}
)

const schemaVersion = 1

// encTime maps a time to 8 bytes that sort like the time. Times outside the
// UnixNano range are clamped (they only occur with absurd inputs).
func encTime(t time.Time) []byte {
	var n int64
	switch {
	case t.Year() < 1678:
		n = math.MinInt64
	case t.Year() > 2261:
		n = math.MaxInt64
	default:
		n = t.UnixNano()
	}
	var b [8]byte
	binary.BigEndian.PutUint64(b[:], uint64(n)^(1<<63))
	return b[:]
}

func decTime(b []byte) time.Time {
	return time.Unix(0, int64(binary.BigEndian.Uint64(b)^(1<<63)))
}

func dueKey(t time.Time, id string) []byte {
	return append(encTime(t), id...)
}

func acctPrefix(account string) []byte {
	return append([]byte(account), 0)
}

func acctDueKey(account string, t time.Time, id string) []byte {
	k := acctPrefix(account)
	k = append(k, encTime(t)...)
	return append(k, id...)
}

func statePrefix(s State) []byte { return append([]byte(s), 0) }

func stateKey(s State, id string) []byte { return append(statePrefix(s), id...) }

func leaseKey(t time.Time, id string) []byte { return append(encTime(t), id...) }

// isDueState reports whether messages in state s belong in the due indexes.
func isDueState(s State) bool { return s == StateQueued || s == StateDeferred }

func getMsg(tx *bolt.Tx, id string) (*Message, error) {
	v := tx.Bucket(bktMessages).Get([]byte(id))
	if v == nil {
		return nil, ErrNotFound
	}
	m := new(Message)
	if err := json.Unmarshal(v, m); err != nil {
		return nil, fmt.Errorf("%w: message %s: decoding metadata: %v", ErrCorrupt, id, err)
	}
	return m, nil
}

// indexMsg adds (add=true) or removes the index entries and count of m.
func indexMsg(tx *bolt.Tx, m *Message, add bool) error {
	put := func(b []byte, k, v []byte) error {
		if add {
			return tx.Bucket(b).Put(k, v)
		}
		return tx.Bucket(b).Delete(k)
	}
	if err := put(bktState, stateKey(m.State, m.ID), nil); err != nil {
		return err
	}
	if isDueState(m.State) {
		if err := put(bktDue, dueKey(m.NextAttempt, m.ID), nil); err != nil {
			return err
		}
		if err := put(bktAcctDue, acctDueKey(m.Account, m.NextAttempt, m.ID), nil); err != nil {
			return err
		}
	}
	if m.State == StateActive {
		if err := put(bktLeases, leaseKey(m.LeaseUntil, m.ID), nil); err != nil {
			return err
		}
	}
	delta := int64(1)
	if !add {
		delta = -1
	}
	return addCount(tx, m.State, delta)
}

func addCount(tx *bolt.Tx, s State, delta int64) error {
	b := tx.Bucket(bktCounts)
	var n int64
	if v := b.Get([]byte(s)); len(v) == 8 {
		n = int64(binary.BigEndian.Uint64(v))
	}
	n += delta
	if n < 0 {
		return fmt.Errorf("%w: count of %s below zero", ErrCorrupt, s)
	}
	var v [8]byte
	binary.BigEndian.PutUint64(v[:], uint64(n))
	return b.Put([]byte(s), v[:])
}

// writeMsg replaces old with m (old nil: insert; m nil: delete), keeping every
// index and count in step within the same transaction.
func writeMsg(tx *bolt.Tx, old, m *Message) error {
	if old != nil {
		if err := indexMsg(tx, old, false); err != nil {
			return err
		}
	}
	// An inline body lives exactly as long as it is needed: it goes with
	// the record, or when the message is delivered.
	if old != nil && old.BodyInline && (m == nil || m.State == StateDelivered) {
		if err := tx.Bucket(bktBodies).Delete([]byte(old.ID)); err != nil {
			return err
		}
		if m != nil {
			m.BodyInline = false
		}
	}
	if m == nil {
		if old.IdempotencyKey != "" {
			keys := tx.Bucket(bktKeys)
			if string(keys.Get([]byte(old.IdempotencyKey))) == old.ID {
				if err := keys.Delete([]byte(old.IdempotencyKey)); err != nil {
					return err
				}
			}
		}
		// The fallback route DeliveredVia reports goes with the message
		// (delete, purge, retention); it outlived it before.
		if r := tx.Bucket(bktRoutes); r != nil {
			if err := r.Delete([]byte(old.ID)); err != nil {
				return err
			}
		}
		return tx.Bucket(bktMessages).Delete([]byte(old.ID))
	}
	if err := indexMsg(tx, m, true); err != nil {
		return err
	}
	v, err := json.Marshal(m)
	if err != nil {
		return fmt.Errorf("encoding message %s: %w", m.ID, err)
	}
	return tx.Bucket(bktMessages).Put([]byte(m.ID), v)
}

// hasPrefix is bytes.HasPrefix, named for readability in cursor loops.
func hasPrefix(k, p []byte) bool { return bytes.HasPrefix(k, p) }
