package auth

import (
	"context"
	"fmt"
	"time"

	"github.com/spoold/spoold/configs/secret"
)

// One refresh at a time per grant, across nodes. Several spoold nodes that
// share a PostgreSQL spool share the token records too, and both Microsoft
// and Google revoke a whole grant whose refresh token is presented twice
// (Microsoft identity platform: refresh tokens are replaced on use;
// Google: "invalid_grant" after reuse detection). A store that offers a
// grant lock (pgspool's RefreshLocked: the account's row lock, held across
// the token request and the commit of the rotated token) runs each refresh
// under it: the node that waited reads the record the other one wrote and
// uses it instead of refreshing again with a spent token.

// grantLocker is spool.GrantLocker, named here so auth keeps to its Store.
type grantLocker interface {
	RefreshLocked(ctx context.Context, account, key string, refresh func(ctx context.Context, current []byte, found bool) (next []byte, err error)) ([]byte, error)
}

// lockedWrite receives, instead of the store, the token record a refresh
// under the grant lock writes: RefreshLocked commits it in its own
// transaction. value is the record as stored (sealed when a Sealer is set).
type lockedWrite struct{ value []byte }

type lockedWriteKey struct{}

// lockedWriteFrom returns the pending write of a refresh under the grant lock, if any.
func lockedWriteFrom(ctx context.Context) *lockedWrite {
	w, _ := ctx.Value(lockedWriteKey{}).(*lockedWrite)
	return w
}

// rawStore is the store below the sealing layer, and the sealer (nil
// without one).
func (m *Manager) rawStore() (Store, Sealer) {
	if ss, ok := m.store.(sealedStore); ok {
		return ss.Store, ss.s
	}
	return m.store, nil
}

// refresh obtains a new access token for a, under the grant lock when the
// store has one (refreshOnce does the work).
func (m *Manager) refresh(ctx context.Context, a *account, force bool) (secret.Secret, time.Time, error) {
	raw, sealer := m.rawStore()
	gl, ok := raw.(grantLocker)
	if !ok {
		return m.refreshOnce(ctx, a, force)
	}
	var tok secret.Secret
	var exp time.Time
	var refreshErr error
	w := &lockedWrite{}
	_, err := gl.RefreshLocked(ctx, a.name, TokenKey, func(ctx context.Context, cur []byte, found bool) ([]byte, error) {
		if !found {
			a.mu.Lock()
			if a.r.flow.Delegated() && a.tok != nil && a.tok.RefreshToken != "" && !a.dirty {
				// Signed out through another node: refreshing the grant
				// this node still remembers would store it again.
				a.tok = nil
				m.log.Info("account signed out through another node", "account", a.name)
			}
			a.mu.Unlock()
		}
		if found {
			stored, err := openRecord(a.name, cur, sealer)
			if err != nil {
				return nil, err
			}
			a.mu.Lock()
			had := a.tok
			changed := had == nil || had.RefreshToken != stored.RefreshToken || had.AccessToken != stored.AccessToken
			if changed && !a.dirty {
				// Another node refreshed (or signed in) meanwhile: its
				// record is the grant now.
				a.tok = stored
			}
			usable := changed && !a.dirty && fresh(stored, m.now(), a.r.cfg.RefreshBefore) && verified(a)
			a.mu.Unlock()
			if usable {
				// Forced or not, a token another node has just obtained is
				// the fresh one the caller wants.
				tok, exp = stored.AccessToken, stored.Expiry
				m.log.Debug("token refreshed by another node; using it", "account", a.name)
				return nil, nil
			}
		}
		tok, exp, refreshErr = m.refreshOnce(context.WithValue(ctx, lockedWriteKey{}, w), a, force)
		return w.value, nil // nil: nothing to write
	})
	if err != nil {
		if w.value != nil {
			// The provider may have rotated the refresh token: keep the new
			// record in memory and save it first next time (refreshOnce).
			a.mu.Lock()
			a.dirty = true
			a.mu.Unlock()
		}
		return "", time.Time{}, acctErr(ErrTransient, err, "account %s: the refresh under the grant lock shared by the nodes failed (%v); spoold will retry", a.name, err)
	}
	return tok, exp, refreshErr
}

// openRecord reads a stored token record, opening its seal.
func openRecord(account string, b []byte, sealer Sealer) (*tokenRecord, error) {
	if sealer != nil {
		plain, _, err := sealer.Open(account, TokenKey, b)
		if err != nil {
			return nil, fmt.Errorf("opening the stored token: %w", err)
		}
		b = plain
	}
	return unmarshalToken(b)
}

// putLocked hands the record to the refresh under the grant lock, sealed
// as the store would seal it.
func (m *Manager) putLocked(w *lockedWrite, name string, b []byte) error {
	if _, sealer := m.rawStore(); sealer != nil {
		sealed, err := sealer.Seal(name, TokenKey, b)
		if err != nil {
			return fmt.Errorf("sealing token record: %w", err)
		}
		b = sealed
	}
	w.value = b
	return nil
}

// SyncShared re-reads every account's token and health records from a
// store other nodes write too (a no-op on a store of one node's own): a
// sign-in, sign-out or status change made through another node then
// shows here within one call. An account that was waiting for a sign-in
// and is now usable is reported to the OnRecovered hooks, so its parked
// mail goes out from this node too. Accounts in the middle of a refresh,
// or with a rotated token not yet saved, are left alone.
func (m *Manager) SyncShared(ctx context.Context) {
	raw, _ := m.rawStore()
	if _, ok := raw.(grantLocker); !ok {
		return
	}
	m.mu.RLock()
	accounts := make([]*account, 0, len(m.accounts))
	for _, a := range m.accounts {
		accounts = append(accounts, a)
	}
	m.mu.RUnlock()
	for _, a := range accounts {
		a.mu.Lock()
		if a.flight != nil || a.dirty || !a.loaded {
			a.mu.Unlock()
			continue
		}
		before, _ := m.statusLocked(a)
		a.loaded = false
		err := m.loadLocked(ctx, a) // on failure the next use reads again
		after, _ := m.statusLocked(a)
		a.mu.Unlock()
		if err != nil {
			m.log.Debug("re-reading an account's records shared by the nodes", "account", a.name, "err", err)
			continue
		}
		if before != StatusOK && after == StatusOK {
			m.log.Info("account usable again (changed through another node)", "account", a.name)
			m.signalRecovered(a.name)
		}
	}
}

// rereadBlockedLocked re-reads a blocked account's records from a store
// other nodes write too, and reports whether the account is usable now.
// A node learns of a sign-in through another node from the shared record
// (SyncShared re-reads it every few seconds); until then it still holds
// "needs re-authorization", and delivery would hold the account's mail
// for the whole authorization hold on that stale answer. So before a
// token call says the account is blocked, it looks at the record once: a
// sign-in committed before the call is always seen. A plain read is
// enough (no grant lock): a sign-in is committed before it is reported,
// and a refresh never unblocks an account. An account with a rotated
// token not yet saved keeps it (a.dirty), as SyncShared does. The caller
// holds a.mu and reports the recovery after releasing it.
func (m *Manager) rereadBlockedLocked(ctx context.Context, a *account) bool {
	raw, _ := m.rawStore()
	if _, ok := raw.(grantLocker); !ok || a.dirty {
		return false
	}
	prevTok, prevHR := a.tok, a.hr
	a.loaded = false
	if err := m.loadLocked(ctx, a); err != nil {
		// Keep what this node knew; the caller answers with it.
		a.tok, a.hr, a.loaded = prevTok, prevHR, true
		m.log.Debug("re-reading a blocked account's records shared by the nodes", "account", a.name, "err", err)
		return false
	}
	if blockedErr(m, a) != nil {
		return false
	}
	m.log.Info("account usable again (signed in or resumed through another node)", "account", a.name)
	return true
}

// underGrantLock runs write, which stores a new grant (putToken), under
// the grant lock when the store has one: a sign-in then lands between two
// refreshes by the nodes. Without it, a refresh of the old grant running
// on another node (it read the record before the sign-in) commits its
// rotated token over the new grant, and the sign-in is lost. The record
// write puts is committed when write returns; write's own error is
// returned as is, and a failure of the lock's transaction wrapped.
func (m *Manager) underGrantLock(ctx context.Context, name string, write func(ctx context.Context) error) error {
	raw, _ := m.rawStore()
	gl, ok := raw.(grantLocker)
	if !ok {
		return write(ctx)
	}
	w := &lockedWrite{}
	var writeErr error
	_, err := gl.RefreshLocked(ctx, name, TokenKey, func(ctx context.Context, _ []byte, _ bool) ([]byte, error) {
		if writeErr = write(context.WithValue(ctx, lockedWriteKey{}, w)); writeErr != nil {
			return nil, writeErr
		}
		return w.value, nil // nil: write stored nothing
	})
	switch {
	case writeErr != nil:
		return writeErr
	case err != nil:
		return fmt.Errorf("storing the grant under the lock shared by the nodes: %w", err)
	}
	return nil
}
