package auth_test

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/spoold/spoold/auth"
	"github.com/spoold/spoold/auth/authtest"
)

// drainRecovered empties the recovered channel so a later receive means a
// new signal.
func drainRecovered(e *env) {
	for {
		select {
		case <-e.recovered:
		default:
			return
		}
	}
}

// TestClientIDChangeIsReversible: issue 12's half-applied reload. Changing
// client_id blocks the grant (it was issued to the old client), without a
// token request; restoring the config, by reload or across a restart, makes
// the account healthy again without a new sign-in.
func TestClientIDChangeIsReversible(t *testing.T) {
	e := newEnv(t)
	m := e.start()
	e.mustLogin()
	drainRecovered(e)
	good := e.cfg()
	changed := good
	changed.ClientID = "client-2"

	if err := m.Reload([]auth.AccountConfig{changed}); err != nil {
		t.Fatal(err)
	}
	_, err := e.token()
	wantErr(t, err, auth.ErrNeedsReauth)
	if h := e.health(); h.Status != auth.StatusNeedsReauth {
		t.Fatalf("after the client_id change: %+v", h)
	}
	// Something persists the health while blocked (delivery marks, a status
	// write): the block must not stick in the store either.
	if err := m.MarkMisconfigured(context.Background(), testAccount, "SMTP AUTH is disabled for the tenant"); err != nil {
		t.Fatal(err)
	}
	if err := m.Resume(context.Background(), testAccount); err == nil {
		t.Fatal("Resume cleared a grant that does not fit the configured client")
	}

	if err := m.Reload([]auth.AccountConfig{good}); err != nil {
		t.Fatal(err)
	}
	if err := m.Resume(context.Background(), testAccount); err != nil { // the admin's "I fixed SMTP AUTH"
		t.Fatal(err)
	}
	if h := e.health(); h.Status != auth.StatusOK || h.Reason != "" {
		t.Fatalf("after restoring client_id: %+v", h)
	}
	if _, err := e.token(); err != nil {
		t.Fatalf("token after restoring client_id: %v", err)
	}
	select {
	case <-e.recovered:
	case <-time.After(10 * time.Second):
		t.Fatal("no recovery signal when the config came back")
	}

	// The same across restarts: blocked under the changed config, healthy
	// again under the original one.
	e.start(changed)
	if h := e.health(); h.Status != auth.StatusNeedsReauth {
		t.Fatalf("restart with the changed client_id: %+v", h)
	}
	if err := e.m.MarkNeedsReauth(context.Background(), testAccount, "x"); err != nil {
		t.Fatal(err)
	}
	e.start(good)
	if h := e.health(); h.Status != auth.StatusNeedsReauth {
		t.Fatalf("a real needs_reauth (MarkNeedsReauth) was cleared by the config: %+v", h)
	}
	e.mustLogin()
	e.start(changed)
	_ = e.health()
	e.start(good)
	if h := e.health(); h.Status != auth.StatusOK {
		t.Fatalf("restart with the original client_id: %+v", h)
	}
	if got := e.srv.Calls("token:" + authtest.GrantAuthCode); got != 2 {
		t.Fatalf("code exchanges = %d, want 2 (no extra sign-in needed)", got)
	}
	for _, s := range e.srv.Issued() {
		for _, txt := range append(e.errTexts, e.logs.String()) {
			if len(s) > 4 && strings.Contains(txt, s) {
				t.Fatalf("a token or code leaked into logs/errors")
			}
		}
	}
}

// TestPrepareReloadHasNoSideEffects: the daemon validates every subsystem
// before applying any; an unapplied or invalid preparation changes nothing.
func TestPrepareReloadHasNoSideEffects(t *testing.T) {
	e := newEnv(t)
	m := e.start()
	e.mustLogin()
	tok, _ := e.token()
	changed := e.cfg()
	changed.ClientID = "client-2"
	changed.Mailbox = "bob@example.com"
	p, err := m.PrepareReload([]auth.AccountConfig{changed})
	if err != nil {
		t.Fatal(err)
	}
	bad := e.cfg()
	bad.TokenTimeout = time.Millisecond
	if err := auth.ValidateAccounts([]auth.AccountConfig{bad}); err == nil {
		t.Fatal("ValidateAccounts accepted a bad token_timeout")
	}
	if _, err := m.PrepareReload([]auth.AccountConfig{bad}); err == nil {
		t.Fatal("PrepareReload accepted a bad token_timeout")
	}
	if err := auth.ValidateAccounts([]auth.AccountConfig{changed}); err != nil {
		t.Fatal(err)
	}
	// Another subsystem refused its part: the prepared reload is dropped.
	if h := e.health(); h.Status != auth.StatusOK || h.Mailbox != testMailbox {
		t.Fatalf("preparing changed the account: %+v", h)
	}
	if t2, err := e.token(); err != nil || t2 != tok {
		t.Fatalf("token after an unapplied reload: %v", err)
	}
	p.Apply()
	if h := e.health(); h.Status != auth.StatusNeedsReauth || h.Mailbox != "bob@example.com" {
		t.Fatalf("after Apply: %+v", h)
	}
	// The stored record says why too, once the health is written.
	_ = m.MarkMisconfigured(context.Background(), testAccount, "x")
	if h := e.storedHealth(); !strings.Contains(fmt.Sprint(h["grant_mismatch"]), "client_id changed") {
		t.Fatalf("stored health %v", h)
	}
}

// TestLegacyStoredMismatchIsCleared: versions before issue 12's fix stored a
// client_id change as needs_reauth; with the config back as the grant was
// issued, the account starts healthy.
func TestLegacyStoredMismatchIsCleared(t *testing.T) {
	e := newEnv(t)
	e.start()
	e.mustLogin()
	old := `{"v":1,"status":"needs_reauth","reason":"client_id changed since sign-in: run ` + "`spoolctl auth login scanner`" + `"}`
	if err := e.store.AccountPut(context.Background(), testAccount, auth.HealthKey, []byte(old)); err != nil {
		t.Fatal(err)
	}
	e.start()
	if h := e.health(); h.Status != auth.StatusOK {
		t.Fatalf("health %+v", h)
	}
	if _, err := e.token(); err != nil {
		t.Fatal(err)
	}
}
