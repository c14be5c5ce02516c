package main

import (
	"strings"
	"testing"
	"time"

	"github.com/spoold/spoold/cmd/spoold/adminapi/wire"
)

// An account held for its daily recipient budget shows why, the count, and
// the fallback sending its mail.
func TestAccountsShowBudgetAndFallback(t *testing.T) {
	now := time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)
	ac := wire.AccountInfo{Name: "m365", Transport: "smtp", Status: "ok",
		Reason:          "daily recipient budget reached: 9999 of 10000 recipients sent in the last 24 hours and the next message has 2",
		RecipientsToday: 9999, DailyRecipientLimit: 10000, FallbackVia: "relay"}
	var list, detail strings.Builder
	printAccountsTable(&list, []wire.AccountInfo{ac}, now, "")
	printAccount(&detail, ac, now)
	for _, want := range []string{"m365: daily recipient budget reached: 9999 of 10000", "m365: its mail goes through the fallback account relay"} {
		if !strings.Contains(list.String(), want) {
			t.Errorf("accounts list lacks %q:\n%s", want, list.String())
		}
	}
	for _, want := range []string{"Recipients (24 h):", "9999 of 10000", "Sending through:", "relay (fallback, while held)"} {
		if !strings.Contains(detail.String(), want) {
			t.Errorf("account detail lacks %q:\n%s", want, detail.String())
		}
	}
	var plain strings.Builder
	printAccount(&plain, wire.AccountInfo{Name: "outbox", Status: "ok"}, now)
	if strings.Contains(plain.String(), "Recipients (24 h)") || strings.Contains(plain.String(), "Sending through") {
		t.Errorf("an account without a limit or fallback shows them:\n%s", plain.String())
	}
}

func TestShowNamesTheFallbackAccount(t *testing.T) {
	now := time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)
	var out strings.Builder
	printMessage(&out, wire.MessageView{ID: "01X", State: wire.StateDelivered, Account: "m365", DeliveredAt: now, DeliveredVia: "relay"}, now)
	if !strings.Contains(out.String(), "relay (fallback for m365)") {
		t.Fatalf("show lacks the delivering account:\n%s", out.String())
	}
	out.Reset()
	printMessage(&out, wire.MessageView{ID: "01Y", State: wire.StateDelivered, Account: "m365", DeliveredAt: now}, now)
	if strings.Contains(out.String(), "Delivered via") {
		t.Fatalf("show names a fallback for a message its own account delivered:\n%s", out.String())
	}
}
