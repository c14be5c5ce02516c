package auth_test

import (
	"context"
	"io"
	"net/http"
	"testing"
	"time"

	"github.com/spoold/spoold/auth"
)

// TestOnRecoveredRunsBeforeLoginIsReported: issue 12, `spoolctl auth login`
// printed "status ok" and then delivery's stale "needs re-authorization"
// hold, because the recovery reached delivery through a channel it read
// some time after the login had been reported. An OnRecovered hook runs
// before WaitLogin (and the callback page) report the login: while the hook
// blocks, WaitLogin has not returned.
func TestOnRecoveredRunsBeforeLoginIsReported(t *testing.T) {
	e := newEnv(t)
	m := e.start()
	entered, release := make(chan string, 1), make(chan struct{})
	m.OnRecovered(func(account string) {
		entered <- account
		<-release
	})
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	ls, err := m.StartLogin(ctx, testAccount, auth.LoginBrowser)
	if err != nil {
		t.Fatal(err)
	}
	waited := make(chan error, 1)
	go func() {
		_, err := m.WaitLogin(ctx, ls.ID)
		waited <- err
	}()
	browsed := make(chan error, 1)
	go func() { // the browser: authorize redirects to the callback
		resp, err := http.Get(ls.AuthURL)
		if err == nil {
			_, _ = io.Copy(io.Discard, resp.Body)
			resp.Body.Close()
		}
		browsed <- err
	}()
	select {
	case name := <-entered:
		if name != testAccount {
			t.Fatalf("recovered %q", name)
		}
	case <-ctx.Done():
		t.Fatal("login did not run the recovery hook")
	}
	select {
	case err := <-waited:
		t.Fatalf("WaitLogin returned (%v) before the recovery hook finished", err)
	case err := <-browsed:
		t.Fatalf("the callback page answered (%v) before the recovery hook finished", err)
	default:
	}
	close(release)
	if err := <-waited; err != nil {
		t.Fatal(err)
	}
	if err := <-browsed; err != nil {
		t.Fatal(err)
	}

	// A grant that does not fit the config (client_id changed) and then does
	// again: the reload that restores it runs the hook before it returns.
	changed := e.cfg()
	changed.ClientID = "client-2"
	release = make(chan struct{})
	close(release)
	if err := m.Reload([]auth.AccountConfig{changed}); err != nil {
		t.Fatal(err)
	}
	if h := e.health(); h.Status != auth.StatusNeedsReauth {
		t.Fatalf("health %+v", h)
	}
	if err := m.Reload([]auth.AccountConfig{e.cfg()}); err != nil {
		t.Fatal(err)
	}
	select {
	case <-entered:
	default:
		t.Fatal("restoring the config did not run the recovery hook before Reload returned")
	}
}
