package main

import (
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"sync"
	"time"

	"github.com/spoold/spoold/spool"
	"github.com/spoold/spoold/spool/pgspool"
)

// With several nodes on one PostgreSQL spool, `spoolctl pause` and the
// console's Pause act on every node: an admin pauses the delivery of the
// queue, not of the one node the request reached. The latest pause or
// resume is a record in the shared spool, numbered by an atomic update
// (node clocks may disagree, so times cannot order it); each node applies
// a higher number when it starts and every time it re-reads the shared
// grants (sharedAuthEvery).
const (
	// clusterRecords is the pseudo-account of records about the whole
	// cluster: "*" is outside the account name charset, so no configured
	// account can own these records.
	clusterRecords = "*cluster"
	pauseRecordKey = "delivery.paused"
)

type pauseRecord struct {
	Seq    int64     `json:"seq"`
	Paused bool      `json:"paused"`
	At     time.Time `json:"at"`
	Node   string    `json:"node"`
}

// pauser is the delivery engine's pause switch.
type pauser interface {
	Pause(bool)
	Paused() bool
}

// sharedPause keeps a node's pause in step with the cluster's record.
type sharedPause struct {
	sp     spool.Backend
	engine pauser
	node   string
	log    *slog.Logger
	now    func() time.Time

	mu   sync.Mutex // orders set and sync, so a stale read never undoes a newer set
	seen int64      // Seq of the record applied last
}

// set records the pause for every node, then applies it here.
func (s *sharedPause) set(ctx context.Context, paused bool) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	var rec pauseRecord
	err := s.sp.AccountUpdate(ctx, clusterRecords, pauseRecordKey, func(old []byte) ([]byte, error) {
		var prev pauseRecord
		if len(old) > 0 {
			// An unreadable record is replaced: it carries nothing to keep.
			_ = json.Unmarshal(old, &prev)
		}
		rec = pauseRecord{Seq: prev.Seq + 1, Paused: paused, At: s.now().UTC(), Node: s.node}
		return json.Marshal(rec)
	})
	if err != nil {
		return fmt.Errorf("recording the pause for the other nodes in the spool: %w", err)
	}
	s.seen = rec.Seq
	s.engine.Pause(paused)
	return nil
}

// newSharedPause returns the pause of a node on a shared spool (nil on
// the embedded one, where pause stays the node's own). It applies a
// cluster pause in force before the engine claims anything, and then keeps
// following the record until ctx ends.
func newSharedPause(ctx context.Context, sp spool.Backend, engine pauser, log *slog.Logger) *sharedPause {
	pg, ok := sp.(*pgspool.Spool)
	if !ok {
		return nil
	}
	s := &sharedPause{sp: sp, engine: engine, node: pg.Node(), log: log.With("component", "delivery"), now: time.Now}
	s.sync(ctx, true)
	go everySharedSync(ctx, func(c context.Context) { s.sync(c, false) })
	return s
}

// sync applies a pause or resume another node recorded since the last one
// seen here. At start only a pause is applied: a resume recorded before
// this node started does not override its delivery.paused: true.
func (s *sharedPause) sync(ctx context.Context, atStart bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	b, ok, err := s.sp.AccountGet(ctx, clusterRecords, pauseRecordKey)
	if err != nil {
		s.log.Debug("reading the cluster's delivery pause", "err", err)
		return
	}
	if !ok {
		return
	}
	var rec pauseRecord
	if err := json.Unmarshal(b, &rec); err != nil {
		s.log.Warn("ignoring an unreadable cluster delivery pause record", "err", err)
		return
	}
	if rec.Seq <= s.seen {
		return
	}
	s.seen = rec.Seq
	if s.engine.Paused() == rec.Paused || atStart && !rec.Paused {
		return
	}
	s.engine.Pause(rec.Paused)
	if rec.Paused {
		s.log.Warn("delivery paused on every node", "by_node", rec.Node, "at", rec.At)
	} else {
		s.log.Info("delivery resumed on every node", "by_node", rec.Node, "at", rec.At)
	}
}
