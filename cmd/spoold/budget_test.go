package main

import (
	"testing"

	"github.com/spoold/spoold/auth"
	"github.com/spoold/spoold/configs"
)

// The daily recipient budget comes from auth's provider preset unless the
// account states one; -1 turns it off and a relay has none.
func TestDailyRecipientLimitFromThePreset(t *testing.T) {
	ms, err := auth.Preset(auth.Provider(configs.ProviderMicrosoft), "contoso.onmicrosoft.com")
	if err != nil {
		t.Fatal(err)
	}
	gs, err := auth.Preset(auth.Provider(configs.ProviderGoogle), "")
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name string
		in   configs.Account
		want int
	}{
		{"microsoft preset", configs.Account{Name: "m", Provider: configs.ProviderMicrosoft, Tenant: "contoso.onmicrosoft.com"}, ms.DailyRecipients},
		{"google preset", configs.Account{Name: "g", Provider: configs.ProviderGoogle}, gs.DailyRecipients},
		{"stated", configs.Account{Name: "m", Provider: configs.ProviderMicrosoft, Tenant: "contoso.onmicrosoft.com", DailyRecipientLimit: 500}, 500},
		{"off", configs.Account{Name: "m", Provider: configs.ProviderMicrosoft, Tenant: "contoso.onmicrosoft.com", DailyRecipientLimit: -1}, -1},
		{"relay", configs.Account{Name: "r", Host: "relay.example"}, 0},
	} {
		if got := deliveryAccount(tc.in, t.TempDir()).DailyRecipientLimit; got != tc.want {
			t.Errorf("%s: daily recipient limit %d, want %d", tc.name, got, tc.want)
		}
	}
	if ms.DailyRecipients != 10000 || gs.DailyRecipients != 2000 {
		t.Errorf("presets: microsoft %d, google %d; want 10000 and 2000", ms.DailyRecipients, gs.DailyRecipients)
	}
}
