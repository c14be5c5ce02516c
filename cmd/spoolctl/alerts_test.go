package main

import (
	"context"
	"encoding/json"
	"strings"
	"testing"
	"time"

	"github.com/spoold/spoold/cmd/spoold/adminapi/wire"
)

// alertInfo is a daemon that runs an alerter.
type alertInfo struct {
	fakeInfo
	status wire.AlertsResponse
	test   wire.AlertTestResponse
}

func (i alertInfo) Alerts() wire.AlertsResponse                       { return i.status }
func (i alertInfo) TestAlerts(context.Context) wire.AlertTestResponse { return i.test }

func TestAlertsList(t *testing.T) {
	info := alertInfo{status: wire.AlertsResponse{
		Active: []wire.ActiveAlert{{Key: "account_needs_reauth/gmail", Kind: "account_needs_reauth", Severity: "critical",
			Title: "Account gmail needs to sign in again", Text: "Account gmail has no valid grant. 3 messages for it wait.",
			Fix: "Run: spoolctl auth login gmail", Since: tEnd.Add(-2 * time.Hour), LastSent: tEnd.Add(-2 * time.Hour), Waiting: 3}},
		Channels: []wire.AlertChannel{{Name: "teams", Kind: "webhook", Target: "teams to https://x.example/...", Sent: 1, Failed: 2, Pending: 1,
			LastError: "the webhook answered 500", LastErrorTime: tEnd.Add(-time.Minute)}},
	}}
	e := newEnvInfo(t, info)
	r := e.run(t, "alerts")
	if r.code != 0 {
		t.Fatalf("exit %d\n%s%s", r.code, r.stdout, r.stderr)
	}
	for _, want := range []string{"1 active alert(s)", "critical  Account gmail needs to sign in again", "fix: Run: spoolctl auth login gmail", "teams", "the webhook answered 500"} {
		if !strings.Contains(r.stdout, want) {
			t.Errorf("output lacks %q:\n%s", want, r.stdout)
		}
	}
	r = e.run(t, "alerts", "--json")
	var back wire.AlertsResponse
	if err := json.Unmarshal([]byte(r.stdout), &back); err != nil || len(back.Active) != 1 || back.Channels[0].Pending != 1 {
		t.Errorf("--json: %v\n%s", err, r.stdout)
	}
}

func TestAlertsTestCommand(t *testing.T) {
	info := alertInfo{test: wire.AlertTestResponse{Results: []wire.AlertTestResult{
		{Channel: "email", Kind: "email", OK: true, Detail: "queued as 01JQ1 through account m365", Duration: 3 * time.Millisecond},
		{Channel: "slack", Kind: "webhook", Error: "the webhook answered 403 Forbidden: invalid_token", Duration: time.Second},
	}}}
	e := newEnvInfo(t, info)
	r := e.run(t, "alerts", "test")
	if r.code != 1 || !strings.Contains(r.stdout, "email (email): ok in 3ms: queued as 01JQ1") || !strings.Contains(r.stdout, "slack (webhook): FAILED after 1s: the webhook answered 403") {
		t.Errorf("exit %d\n%s%s", r.code, r.stdout, r.stderr)
	}
	// A daemon without an alerter (offline mode) says so.
	plain := newEnv(t)
	if r := plain.run(t, "alerts"); r.code != 1 || !strings.Contains(r.stderr, "alerts need the running daemon") {
		t.Errorf("without an alerter: exit %d\n%s%s", r.code, r.stdout, r.stderr)
	}
}
