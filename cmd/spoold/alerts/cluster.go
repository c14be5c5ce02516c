package alerts

import (
	"context"
	"encoding/json"
	"errors"
	"strings"
	"time"

	"github.com/spoold/spoold/spool"
)

// Several spoold nodes may share one spool (spool/pgspool) and with it the
// alert state. Every node sees the same accounts, queue and dead letters,
// so if each alerted what it saw, each condition would be alerted once per
// node, and each node would send the notifications the others queued. So
// one node at a time leads the alerts: it checks the conditions of the
// whole spool, sends the shared outbox, the dead-letter digest and the
// delay warnings. Every node checks its own conditions (its data
// directory's free space, its paused delivery) under keys naming it, and
// keeps its own run marker ("run/" + node), so an unclean stop is reported
// for the node that stopped uncleanly and never because another one runs;
// what a node that does not lead raises goes into the shared outbox for the
// leader to send.
//
// The leadership is a connection slot of the spool with one slot under a
// name no account can have (account names are letters, digits, '.', '_'
// and '-'): on PostgreSQL a session advisory lock on a connection of its
// own, so a leader that dies, or loses its database session, gives it up
// at once, and Slot.Lost tells a leader that lost it to stop sending. The
// others try to take it on every check, so one takes over within
// alerts.check_interval; on taking it, a node reads the whole shared state
// again (the active alerts, the outbox, the digest and delay-warning
// records), so nothing is alerted twice and nothing owed is dropped. The
// alerter of a spool that is not shared (bbolt) always leads.
//
// What remains: a leader whose session is lost while a webhook call is in
// flight finishes that call; if the new leader reads the outbox before the
// old one has recorded the send, that one notification is sent twice (the
// same at-least-once as a kill -9 mid-send on one node).

// leaderSlot is the connection-slot name of the alerts leadership.
const leaderSlot = "spoold alerts leader"

// leaderStore is what a spool shared by nodes offers for the leadership
// (pgspool.Spool): its connection slots and this node's name.
type leaderStore interface {
	AcquireConnSlot(ctx context.Context, account string, limit int) (spool.ConnSlot, error)
	Node() string
}

// localKinds are the conditions each node checks for itself.
var localKinds = []string{KindDiskFree, KindPaused, KindUncleanStop}

// Leading reports whether this node leads the alerts (always, on a spool
// that is not shared).
func (a *Alerter) Leading() bool { return a.leading.Load() }

// runKey is this node's run marker.
func (a *Alerter) runKey() string {
	if a.node == "" {
		return keyRun
	}
	return keyRun + "/" + a.node
}

// pausedKey records when this node's delivery was first seen paused.
func (a *Alerter) pausedKey() string {
	if a.node == "" {
		return keyPaused
	}
	return keyPaused + "/" + a.node
}

// localKey is the condition key of a kind checked per node.
func (a *Alerter) localKey(kind string) string {
	if a.node == "" {
		return kind
	}
	return kind + "/" + a.node
}

// onNode names this node in an alert's text (" on node relay-a"); "" on a
// spool that is not shared.
func (a *Alerter) onNode() string {
	if a.node == "" {
		return ""
	}
	return " on node " + a.node
}

// owns reports whether this node decides the condition key: its own local
// conditions always, the others while it leads. A local condition under a
// bare key (from a single-node spool moved to PostgreSQL) is the leader's,
// which resolves it.
func (a *Alerter) owns(key string, leading bool) bool {
	if a.node == "" {
		return true
	}
	for _, k := range localKinds {
		if node, ok := strings.CutPrefix(key, k+"/"); ok {
			return node == a.node
		}
	}
	return leading
}

// lead takes the leadership if this node does not have it and it is free,
// and returns the channel closed when it is lost (nil: not leading).
func (a *Alerter) lead(ctx context.Context) <-chan struct{} {
	if a.leading.Load() {
		return a.slot.Lost()
	}
	sl, err := a.slots.AcquireConnSlot(ctx, leaderSlot, 1)
	if errors.Is(err, spool.ErrNoSlot) {
		return nil // another node leads
	}
	if err != nil {
		// An unreachable database is logged by the spool already.
		if ctx.Err() == nil && !errors.Is(err, spool.ErrUnavailable) {
			a.log.Warn("cannot ask whether another node leads the alerts; trying again at the next check", "err", err)
		}
		return nil
	}
	if err := a.takeOver(ctx); err != nil {
		if rerr := sl.Release(); rerr != nil {
			a.log.Warn("releasing the alerts leadership", "err", rerr)
		}
		if ctx.Err() == nil {
			a.log.Warn("cannot take over the alerts: reading the shared alert state failed; trying again at the next check", "err", err)
		}
		return nil
	}
	a.slot = sl
	lctx, cancel := context.WithCancel(ctx)
	a.leadCancel = cancel
	a.leading.Store(true)
	a.startSenders(lctx)
	a.log.Info("this node now leads the alerts: it checks the shared conditions and sends the notifications of every node", "node", a.node)
	return sl.Lost()
}

// resign stops sending and gives the leadership back; why, if not "", is
// logged.
func (a *Alerter) resign(why string) {
	if a.slot == nil {
		return
	}
	a.leading.Store(false)
	a.leadCancel()
	a.sendLoops.Wait()
	if err := a.slot.Release(); err != nil {
		a.log.Warn("releasing the alerts leadership (its session ends with the node anyway)", "err", err)
	}
	a.slot, a.leadCancel = nil, nil
	if why != "" {
		a.log.Warn("this node no longer leads the alerts: "+why, "node", a.node)
	}
}

// takeOver replaces what this node knows of the shared state with the
// database's, as the new leader: the previous leader may have raised,
// resolved and sent since this node last looked.
func (a *Alerter) takeOver(ctx context.Context) error {
	a.checkMu.Lock()
	defer a.checkMu.Unlock()
	a.mu.Lock()
	defer a.mu.Unlock()
	st, err := a.store.AlertState(ctx)
	if err != nil {
		return err
	}
	a.active, a.out = a.parseShared(st)
	a.delayed = map[string]time.Time{}
	for k, v := range st {
		if _, err := a.readLeaderRecord(k, v); err != nil {
			a.log.Warn("ignoring an unreadable alert record", "key", k, "err", err)
		}
	}
	a.lastDead = -1 // the digest rescans
	return nil
}

// readLeaderRecord reads record k if it is the digest or a delay warning,
// the leader's bookkeeping that Load and takeOver both restore; ok is
// false for any other key (a.mu held).
func (a *Alerter) readLeaderRecord(k string, v []byte) (ok bool, err error) {
	switch {
	case k == keyDigest:
		return true, json.Unmarshal(v, &a.digest)
	case strings.HasPrefix(k, keyDelay):
		var t time.Time
		if err := json.Unmarshal(v, &t); err != nil {
			return true, err
		}
		a.delayed[strings.TrimPrefix(k, keyDelay)] = t
		return true, nil
	}
	return false, nil
}

// refresh reads the shared state on every check of a shared spool. The
// leader adds what other nodes queued to its outbox and takes their own
// conditions as they wrote them; a node that does not lead takes it all,
// so spoolctl alerts shows the same everywhere. It runs under a.mu from
// the read on, so a send recorded meanwhile cannot come back from an older
// read.
func (a *Alerter) refresh(ctx context.Context) error {
	a.checkMu.Lock()
	defer a.checkMu.Unlock()
	leading := a.leading.Load()
	a.mu.Lock()
	defer a.mu.Unlock()
	st, err := a.store.AlertState(ctx)
	if err != nil {
		return err
	}
	active, out := a.parseShared(st)
	if !leading {
		a.active, a.out = active, out
		return nil
	}
	// What it decides is as it has it; the rest as the other nodes wrote it.
	for k := range active {
		if a.owns(k, true) {
			delete(active, k)
		}
	}
	for k, r := range a.active {
		if a.owns(k, true) {
			active[k] = r
		}
	}
	a.active = active
	added := false
	for k, o := range out {
		if _, ok := a.out[k]; !ok {
			a.out[k] = o
			added = true
		}
	}
	if added {
		a.kickAll()
	}
	return nil
}

// parseShared reads the active alerts and the outbox out of the stored
// records; notifications for channels this node does not have are left
// alone (a node with another config may have them).
func (a *Alerter) parseShared(st map[string][]byte) (map[string]*activeRecord, map[string]*outItem) {
	active := map[string]*activeRecord{}
	out := map[string]*outItem{}
	for k, v := range st {
		switch {
		case strings.HasPrefix(k, keyActive):
			var r activeRecord
			if err := json.Unmarshal(v, &r); err == nil {
				active[strings.TrimPrefix(k, keyActive)] = &r
			}
		case strings.HasPrefix(k, keyOut):
			var o outItem
			if err := json.Unmarshal(v, &o); err == nil {
				if _, ok := a.stats[o.Channel]; ok {
					out[k] = &o
				}
			}
		}
	}
	return active, out
}
