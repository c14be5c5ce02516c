package auth_test

import (
	"context"
	"errors"
	"sync"
	"testing"
	"time"

	"github.com/spoold/spoold/auth"
	"github.com/spoold/spoold/auth/seal"
	"github.com/spoold/spoold/spool/pgspool"
	"github.com/spoold/spoold/spool/pgspool/pgtest"
)

// Three nodes on one PostgreSQL spool refresh the same short-lived grant
// with rotating refresh tokens against a server that revokes the grant on
// reuse: each round has one refresh in all, the others use its result, and
// the grant survives. Records stay sealed in the database.
func TestClusterRefreshOncePerGrant(t *testing.T) {
	dsn := pgtest.Start(t).NewSchema(t)
	e := newEnv(t)
	kr := seal.NewKeyring(nil, mustSealKey(t))
	var nodes []*auth.Manager
	sps := pgtest.Nodes(t, dsn, 3, nil)
	e.srv.SetRotate(true)
	nodes = append(nodes, e.startOn(sps[0], kr))
	e.mustLogin()
	for i := 1; i < 3; i++ {
		opts := e.opts
		opts.Sealer = kr
		m, err := auth.NewManager([]auth.AccountConfig{e.cfg()}, sps[i], opts)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { m.Close() })
		nodes = append(nodes, m)
	}
	before := e.srv.Calls("token:refresh_token")
	const rounds = 8
	for r := range rounds {
		e.clock.Advance(2 * time.Hour) // every node's access token is stale
		var wg sync.WaitGroup
		errs := make(chan error, 3*4)
		for _, m := range nodes {
			for range 4 {
				wg.Go(func() {
					ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
					defer cancel()
					if _, err := m.AccessToken(ctx, testAccount); err != nil {
						errs <- err
					}
				})
			}
		}
		wg.Wait()
		close(errs)
		for err := range errs {
			t.Fatalf("round %d: a node could not get a token (a refresh token used twice revokes the grant): %v", r, err)
		}
	}
	if got := e.srv.Calls("token:refresh_token") - before; got != rounds {
		t.Errorf("%d refreshes in %d rounds of three nodes; want one per round", got, rounds)
	}
	rec, ok, err := sps[2].AccountGet(context.Background(), testAccount, auth.TokenKey)
	if err != nil || !ok || !seal.IsSealed(rec) {
		t.Errorf("the stored token record is not sealed (found %v, err %v)", ok, err)
	}
}

// A sign-in through one node is used by another node at its next token
// call, without waiting for that node's periodic re-read (SyncShared): a
// node that still remembers "not signed in yet" looks at the shared record
// before it answers "needs re-authorization", which delivery turns into a
// 15-minute hold. Its recovery is reported, so its held mail goes out too.
func TestClusterSignInSeenAtOnceByOtherNodes(t *testing.T) {
	dsn := pgtest.Start(t).NewSchema(t)
	e := newEnv(t)
	kr := seal.NewKeyring(nil, mustSealKey(t))
	sps := pgtest.Nodes(t, dsn, 2, nil)
	e.startOn(sps[0], kr)
	opts := e.opts
	opts.Sealer = kr
	other, err := auth.NewManager([]auth.AccountConfig{e.cfg()}, sps[1], opts)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { other.Close() })
	var recovered sync.Map
	other.OnRecovered(func(name string) { recovered.Store(name, true) })
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	// The other node has read the account before the sign-in.
	if _, err := other.AccessToken(ctx, testAccount); !errors.Is(err, auth.ErrNeedsReauth) {
		t.Fatalf("before any sign-in the other node's token call = %v; want needs re-authorization", err)
	}
	e.mustLogin()
	before := e.srv.Calls("token:refresh_token")
	tok, err := other.AccessToken(ctx, testAccount)
	if err != nil {
		t.Fatalf("right after a sign-in through node-0, node-1 gets no token (its mail would be held): %v", err)
	}
	if tok == "" {
		t.Fatal("node-1 got an empty token after the sign-in")
	}
	if _, ok := recovered.Load(testAccount); !ok {
		t.Error("node-1 did not report the account recovered: mail it held before the sign-in would stay held")
	}
	if h, err := other.Health(ctx, testAccount); err != nil || h.Status != auth.StatusOK {
		t.Errorf("node-1 health after the sign-in = %v (%v); want ok", h.Status, err)
	}
	if got := e.srv.Calls("token:refresh_token") - before; got != 0 {
		t.Errorf("node-1 made %d refreshes to use a token node-0 had just obtained; want 0", got)
	}
}

// A sign-in through one node while another node refreshes the old grant
// is not undone by that refresh: the sign-in is stored under the grant
// lock the refresh holds, so it lands after the refresh's commit, not
// before it (where the refresh would overwrite it with the old grant's
// rotated token).
func TestClusterSignInDuringRefreshElsewhereStays(t *testing.T) {
	dsn := pgtest.Start(t).NewSchema(t)
	e := newEnv(t)
	sps := pgtest.Nodes(t, dsn, 2, nil)
	e.srv.SetRotate(true)
	first, other := e.signedInOnTwoNodes(t, sps)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	e.clock.Advance(2 * time.Hour) // node-1's token is stale: its next call refreshes the old grant
	refreshes := e.srv.Calls("token:refresh_token")
	e.srv.SetDelay(time.Second)
	done := make(chan error, 1)
	go func() {
		_, err := other.AccessToken(ctx, testAccount)
		done <- err
	}()
	eventually(t, "node-1's refresh to reach the token server", func() bool { return e.srv.Calls("token:refresh_token") > refreshes })
	e.srv.SetDelay(0)
	e.clock.Advance(time.Minute)
	signedIn := e.mustLogin().GrantedAt // through node-0, while node-1's refresh waits for its answer
	if err := <-done; err != nil {
		t.Fatalf("node-1's refresh: %v", err)
	}
	first.SyncShared(ctx)
	h, err := first.Health(ctx, testAccount)
	if err != nil {
		t.Fatal(err)
	}
	if !h.GrantedAt.Equal(signedIn) {
		t.Errorf("the stored grant is from %v, not the sign-in at %v: node-1's refresh of the old grant overwrote the sign-in", h.GrantedAt, signedIn)
	}
}

// A sign-out through one node is not undone by another node that still
// holds the old grant in memory: its next refresh finds the record gone
// and does not refresh and store the grant again.
func TestClusterSignOutNotUndoneByOtherNode(t *testing.T) {
	dsn := pgtest.Start(t).NewSchema(t)
	e := newEnv(t)
	sps := pgtest.Nodes(t, dsn, 2, nil)
	first, other := e.signedInOnTwoNodes(t, sps)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if err := first.Logout(ctx, testAccount); err != nil {
		t.Fatal(err)
	}
	e.clock.Advance(2 * time.Hour) // node-1's token is stale: its next call would refresh
	refreshes := e.srv.Calls("token:refresh_token")
	if _, err := other.AccessToken(ctx, testAccount); !errors.Is(err, auth.ErrNeedsReauth) {
		t.Errorf("node-1's token call after a sign-out through node-0 = %v; want needs re-authorization", err)
	}
	if got := e.srv.Calls("token:refresh_token") - refreshes; got != 0 {
		t.Errorf("node-1 refreshed the signed-out grant %d times", got)
	}
	if _, ok, err := sps[0].AccountGet(ctx, testAccount, auth.TokenKey); err != nil || ok {
		t.Errorf("the grant is stored again after the sign-out (found %v, err %v)", ok, err)
	}
}

// signedInOnTwoNodes signs the account in through a manager on sps[0]
// and returns it with a second manager, on sps[1], that has a token of
// that grant already.
func (e *env) signedInOnTwoNodes(t *testing.T, sps []*pgspool.Spool) (first, other *auth.Manager) {
	t.Helper()
	first = e.startOn(sps[0], nil)
	e.mustLogin()
	other, err := auth.NewManager([]auth.AccountConfig{e.cfg()}, sps[1], e.opts)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { other.Close() })
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if _, err := other.AccessToken(ctx, testAccount); err != nil {
		t.Fatal(err)
	}
	return first, other
}
