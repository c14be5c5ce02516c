package delivery

import (
	"bytes"
	"errors"
	"log/slog"
	"math"
	"os"
	"path/filepath"
	"reflect"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/spoold/spoold/configs/field"
)

// problemKeys returns the keys of the field.Problems in err, sorted.
func problemKeys(t *testing.T, err error) []string {
	t.Helper()
	if err == nil {
		return nil
	}
	var ps field.Problems
	if !errors.As(err, &ps) {
		t.Fatalf("error is not field.Problems: %v", err)
	}
	keys := make([]string, len(ps))
	for i, p := range ps {
		keys[i] = p.Key
	}
	slices.Sort(keys)
	return keys
}

func TestAccountConfigWithDefaults(t *testing.T) {
	retry := DefaultRetryPolicy()
	timeouts := func(a AccountConfig) AccountConfig {
		a.ConnectTimeout, a.CommandTimeout, a.DataTimeout = 30*time.Second, 2*time.Minute, 10*time.Minute
		a.Retry, a.MaxMessagesPerConnection = retry, 50
		a.FallbackAfter = 30 * time.Minute
		return a
	}
	for _, tc := range []struct {
		name string
		in   AccountConfig
		want AccountConfig
	}{
		{"smtp generic", AccountConfig{Name: "m", Host: "h", Auth: "xoauth2", Mailbox: "a@b.example"},
			timeouts(AccountConfig{Name: "m", Transport: "smtp", Host: "h", Port: 587, TLS: "starttls", Auth: "xoauth2",
				Username: "a@b.example", Mailbox: "a@b.example", SenderRule: "rewrite", MaxConnections: 10, RatePerMinute: -1})},
		{"xoauth2 has no provider limits of its own", AccountConfig{Name: "m", Host: "h", Auth: "XOAUTH2", Mailbox: "a@b.example"},
			timeouts(AccountConfig{Name: "m", Transport: "smtp", Host: "h", Port: 587, TLS: "starttls", Auth: "xoauth2",
				Username: "a@b.example", Mailbox: "a@b.example", SenderRule: "rewrite", MaxConnections: 10, RatePerMinute: -1})},
		{"preset limits kept", AccountConfig{Name: "m", Host: "h", Auth: "xoauth2", Mailbox: "a@b.example", MaxConnections: 3, RatePerMinute: 30},
			timeouts(AccountConfig{Name: "m", Transport: "smtp", Host: "h", Port: 587, TLS: "starttls", Auth: "xoauth2",
				Username: "a@b.example", Mailbox: "a@b.example", SenderRule: "rewrite", MaxConnections: 3, RatePerMinute: 30})},
		{"implicit", AccountConfig{Name: "m", Host: "h", TLS: "implicit", Auth: "plain", Username: "u", Password: "p", SenderRule: "keep"},
			timeouts(AccountConfig{Name: "m", Transport: "smtp", Host: "h", Port: 465, TLS: "implicit", Auth: "plain",
				Username: "u", Password: "p", SenderRule: "keep", MaxConnections: 10, RatePerMinute: -1})},
		{"relay", AccountConfig{Name: "m", Host: "h", TLS: "none", Auth: "none", SenderRule: "keep"},
			timeouts(AccountConfig{Name: "m", Transport: "smtp", Host: "h", Port: 25, TLS: "none", Auth: "none",
				SenderRule: "keep", MaxConnections: 10, RatePerMinute: -1})},
		{"file", AccountConfig{Name: "o", Transport: "file", Dir: "/x"},
			timeouts(AccountConfig{Name: "o", Transport: "file", Dir: "/x", SenderRule: "keep", MaxConnections: 4, RatePerMinute: -1})},
		{"file with mailbox", AccountConfig{Name: "o", Transport: "file", Dir: "/x", Mailbox: "a@b.example"},
			timeouts(AccountConfig{Name: "o", Transport: "file", Dir: "/x", Mailbox: "a@b.example", SenderRule: "rewrite",
				MaxConnections: 4, RatePerMinute: -1})},
		{"set values stay, negatives are left for Validate",
			AccountConfig{Name: "m", Host: "h", Port: 2525, Auth: "xoauth2", Mailbox: "a@b.example", MaxConnections: -2, RatePerMinute: -5,
				MaxMessagesPerConnection: 7, ConnectTimeout: time.Second, CommandTimeout: -time.Second, DataTimeout: time.Minute,
				Retry: RetryPolicy{First: time.Second, Multiplier: 3, Max: time.Minute, Jitter: NoJitter, Lifetime: time.Hour}},
			AccountConfig{Name: "m", Transport: "smtp", Host: "h", Port: 2525, TLS: "starttls", Auth: "xoauth2",
				Username: "a@b.example", Mailbox: "a@b.example", SenderRule: "rewrite", MaxConnections: -2, RatePerMinute: -5,
				MaxMessagesPerConnection: 7, ConnectTimeout: time.Second, CommandTimeout: -time.Second, DataTimeout: time.Minute,
				Retry:         RetryPolicy{First: time.Second, Multiplier: 3, Max: time.Minute, Jitter: NoJitter, Lifetime: time.Hour},
				FallbackAfter: 30 * time.Minute}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got := tc.in.WithDefaults()
			if !reflect.DeepEqual(got, tc.want) {
				t.Errorf("WithDefaults\n got %+v\nwant %+v", got, tc.want)
			}
			if again := got.WithDefaults(); !reflect.DeepEqual(again, got) {
				t.Errorf("not idempotent:\n%+v\n%+v", got, again)
			}
		})
	}
}

func TestAccountConfigValidateKeys(t *testing.T) {
	dir := t.TempDir()
	notPEM := filepath.Join(dir, "ca.txt")
	if err := os.WriteFile(notPEM, []byte("not a certificate"), 0o600); err != nil {
		t.Fatal(err)
	}
	ok := AccountConfig{Name: "m", Host: "smtp.example", Auth: "xoauth2", Mailbox: "a@b.example"}
	with := func(f func(*AccountConfig)) AccountConfig { a := ok; f(&a); return a }
	for _, tc := range []struct {
		name string
		in   AccountConfig
		keys []string
	}{
		{"valid", ok, nil},
		{"valid file", AccountConfig{Name: "o", Transport: "file", Dir: dir}, nil},
		{"valid relay", AccountConfig{Name: "r", Host: "relay", TLS: "none", Auth: "none", SenderRule: "keep"}, nil},
		{"no name", with(func(a *AccountConfig) { a.Name = " " }), []string{"name"}},
		{"transport", with(func(a *AccountConfig) { a.Transport = "ftp" }), []string{"transport"}},
		{"no host", with(func(a *AccountConfig) { a.Host = "" }), []string{"host"}},
		{"bad host", with(func(a *AccountConfig) { a.Host = "smtp.example/x" }), []string{"host"}},
		{"server name", with(func(a *AccountConfig) { a.ServerName = "a b" }), []string{"server_name"}},
		{"port", with(func(a *AccountConfig) { a.Port = 70000 }), []string{"port"}},
		{"negative port", with(func(a *AccountConfig) { a.Port = -1 }), []string{"port"}},
		{"tls", with(func(a *AccountConfig) { a.TLS = "ssl" }), []string{"tls"}},
		{"auth", with(func(a *AccountConfig) { a.Auth = "cram-md5" }), []string{"auth"}},
		{"clear text credentials", with(func(a *AccountConfig) { a.TLS = "none" }), []string{"tls"}},
		{"ca file missing", with(func(a *AccountConfig) { a.CAFile = filepath.Join(dir, "none.pem") }), []string{"ca_file"}},
		{"ca file not pem", with(func(a *AccountConfig) { a.CAFile = notPEM }), []string{"ca_file"}},
		{"xoauth2 without mailbox", with(func(a *AccountConfig) { a.Mailbox = ""; a.SenderRule = "keep" }), []string{"mailbox"}},
		{"plain without password", with(func(a *AccountConfig) { a.Auth = "plain" }), []string{"password"}},
		{"login without user", AccountConfig{Name: "m", Host: "h", Auth: "login", Password: "p", SenderRule: "keep"}, []string{"username"}},
		{"mailbox with name", with(func(a *AccountConfig) { a.Mailbox = "Bob <a@b.example>" }), []string{"mailbox"}},
		{"sender rule", with(func(a *AccountConfig) { a.SenderRule = "forge" }), []string{"sender_rule"}},
		{"rewrite without mailbox", AccountConfig{Name: "r", Host: "h", Auth: "none", SenderRule: "rewrite"}, []string{"sender_rule"}},
		{"max connections", with(func(a *AccountConfig) { a.MaxConnections = -1 }), []string{"max_connections"}},
		{"rate", with(func(a *AccountConfig) { a.RatePerMinute = -2 }), []string{"rate_per_minute"}},
		{"rate NaN", with(func(a *AccountConfig) { a.RatePerMinute = math.NaN() }), []string{"rate_per_minute"}},
		{"rate unlimited", with(func(a *AccountConfig) { a.RatePerMinute = -1 }), nil},
		{"messages per connection", with(func(a *AccountConfig) { a.MaxMessagesPerConnection = -1 }), []string{"max_messages_per_connection"}},
		{"message size", with(func(a *AccountConfig) { a.MaxMessageSize = -1 }), []string{"max_message_size"}},
		{"notify", with(func(a *AccountConfig) { a.NotifyOnFailure = "sometimes" }), []string{"notify_on_failure"}},
		{"file without dir", AccountConfig{Name: "o", Transport: "file"}, []string{"dir"}},
		{"timeouts", with(func(a *AccountConfig) { a.ConnectTimeout, a.CommandTimeout, a.DataTimeout = -1, -1, -1 }),
			[]string{"command_timeout", "connect_timeout", "data_timeout"}},
		{"retry", with(func(a *AccountConfig) {
			a.Retry = RetryPolicy{First: -time.Second, Multiplier: 0.5, Max: -time.Second, Jitter: 2, Lifetime: -time.Hour}
		}), []string{"retry.first", "retry.jitter", "retry.lifetime", "retry.max", "retry.multiplier"}},
		{"retry max below first", with(func(a *AccountConfig) { a.Retry = RetryPolicy{First: time.Hour, Max: time.Minute} }),
			[]string{"retry.max"}},
		{"retry no jitter", with(func(a *AccountConfig) { a.Retry.Jitter = NoJitter }), nil},
	} {
		t.Run(tc.name, func(t *testing.T) {
			err := tc.in.Validate()
			if got := problemKeys(t, err); !slices.Equal(got, tc.keys) {
				t.Errorf("keys %q, want %q (%v)", got, tc.keys, err)
			}
			if got := problemKeys(t, tc.in.WithDefaults().Validate()); !slices.Equal(got, tc.keys) {
				t.Errorf("after WithDefaults: keys %q, want %q", got, tc.keys)
			}
		})
	}
}

func TestValidateAccountsKeys(t *testing.T) {
	good := AccountConfig{Name: "m", Host: "h", Auth: "plain", Password: "topsecret", Mailbox: "a@b.example"}
	bad := good
	bad.Port = -1
	err := ValidateAccounts([]AccountConfig{good, bad, good})
	if got, want := problemKeys(t, err), []string{"[1].name", "[1].port", "[2].name"}; !slices.Equal(got, want) {
		t.Errorf("keys %q, want %q (%v)", got, want, err)
	}
	if strings.Contains(err.Error(), "topsecret") {
		t.Errorf("password in %v", err)
	}
	if err := ValidateAccounts([]AccountConfig{good}); err != nil {
		t.Errorf("valid list: %v", err)
	}
}

func TestRetryPolicyDefaultsAndKeys(t *testing.T) {
	def := DefaultRetryPolicy()
	for _, tc := range []struct {
		in, want RetryPolicy
	}{
		{RetryPolicy{}, def},
		{RetryPolicy{Jitter: NoJitter}, RetryPolicy{First: time.Minute, Multiplier: 2, Max: time.Hour, Jitter: NoJitter, Lifetime: def.Lifetime}},
		{RetryPolicy{First: 2 * time.Hour}, RetryPolicy{First: 2 * time.Hour, Multiplier: 2, Max: 2 * time.Hour, Jitter: 0.2, Lifetime: def.Lifetime}},
		{RetryPolicy{First: time.Second, Multiplier: 3, Max: time.Minute, Jitter: 0.5, Lifetime: time.Hour},
			RetryPolicy{First: time.Second, Multiplier: 3, Max: time.Minute, Jitter: 0.5, Lifetime: time.Hour}},
	} {
		got := tc.in.WithDefaults()
		if got != tc.want || got.WithDefaults() != got {
			t.Errorf("%+v: got %+v, want %+v", tc.in, got, tc.want)
		}
	}
	for _, tc := range []struct {
		in   RetryPolicy
		keys []string
	}{
		{RetryPolicy{}, nil},
		{RetryPolicy{Jitter: NoJitter}, nil},
		{RetryPolicy{Jitter: -0.2}, []string{"jitter"}},
		{RetryPolicy{Jitter: math.NaN()}, []string{"jitter"}},
		{RetryPolicy{Multiplier: math.Inf(1)}, []string{"multiplier"}},
		{RetryPolicy{First: time.Hour, Max: time.Minute}, []string{"max"}},
		{RetryPolicy{Lifetime: -1}, []string{"lifetime"}},
		{RetryPolicy{First: -1}, []string{"first"}},
	} {
		if got := problemKeys(t, tc.in.Validate()); !slices.Equal(got, tc.keys) {
			t.Errorf("%+v: keys %q, want %q", tc.in, got, tc.keys)
		}
	}
}

func TestOutagePolicyDefaultsAndKeys(t *testing.T) {
	def := DefaultOutagePolicy()
	for _, tc := range []struct {
		in, want OutagePolicy
	}{
		{OutagePolicy{}, def},
		// Jitter off is spelled the same way as in RetryPolicy.
		{OutagePolicy{Jitter: NoJitter}, OutagePolicy{After: 3, First: 10 * time.Second, Multiplier: 2, Max: 3 * time.Minute, Jitter: NoJitter}},
		{OutagePolicy{First: 5 * time.Minute}, OutagePolicy{After: 3, First: 5 * time.Minute, Multiplier: 2, Max: 5 * time.Minute, Jitter: 0.2}},
		{OutagePolicy{After: 1, First: time.Second, Multiplier: 1.5, Max: time.Minute, Jitter: 0.1},
			OutagePolicy{After: 1, First: time.Second, Multiplier: 1.5, Max: time.Minute, Jitter: 0.1}},
	} {
		got := tc.in.WithDefaults()
		if got != tc.want || got.WithDefaults() != got {
			t.Errorf("%+v: got %+v, want %+v", tc.in, got, tc.want)
		}
	}
	for _, tc := range []struct {
		in   OutagePolicy
		keys []string
	}{
		{OutagePolicy{}, nil},
		{OutagePolicy{Jitter: NoJitter}, nil},
		{OutagePolicy{After: -1}, []string{"after"}},
		{OutagePolicy{First: time.Hour, Max: time.Minute}, []string{"max_probe"}},
		{OutagePolicy{First: -time.Second, Max: -time.Second}, []string{"first_probe", "max_probe"}},
		{OutagePolicy{Multiplier: 0.5, Jitter: 2}, []string{"jitter", "multiplier"}},
	} {
		if got := problemKeys(t, tc.in.Validate()); !slices.Equal(got, tc.keys) {
			t.Errorf("%+v: keys %q, want %q", tc.in, got, tc.keys)
		}
	}
}

// Jitter off means no jitter in both schedules.
func TestNoJitterIsExact(t *testing.T) {
	now := time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)
	rnd := func() float64 { return 0 }
	if next, _ := NextRetry(RetryPolicy{Jitter: NoJitter}, 1, now, now, rnd); next.Sub(now) != time.Minute {
		t.Errorf("retry without jitter: %s", next.Sub(now))
	}
	e := &Engine{opts: Options{Rand: rnd, Outage: OutagePolicy{Jitter: NoJitter}.WithDefaults()}}
	if got := e.probeDelay(0, now).Sub(now); got != 10*time.Second {
		t.Errorf("probe without jitter: %s", got)
	}
}

func TestOptionsDefaultsAndKeys(t *testing.T) {
	o := Options{Hostname: "h", Owner: "o"}.WithDefaults()
	if o.Workers != 16 || o.ShutdownTimeout != 30*time.Second || o.Outage != DefaultOutagePolicy() ||
		o.LeaseDuration != 5*time.Minute || o.HoldInterval != 15*time.Minute || o.IdleTimeout != 2*time.Second ||
		o.Clock == nil || o.Rand == nil || o.Logger == nil || o.Dial == nil || o.Registerer == nil {
		t.Errorf("defaults %+v", o)
	}
	if again := o.WithDefaults(); again.Workers != o.Workers || again.Registerer != o.Registerer || again.Outage != o.Outage {
		t.Error("WithDefaults is not idempotent")
	}
	for _, tc := range []struct {
		in   Options
		keys []string
	}{
		{Options{}, nil},
		{Options{Workers: 4, ShutdownTimeout: time.Second}, nil},
		{Options{Workers: -1}, []string{"workers"}},
		{Options{ShutdownTimeout: -time.Second}, []string{"shutdown_timeout"}},
		{Options{Outage: OutagePolicy{After: -1, Jitter: 3}}, []string{"outage.after", "outage.jitter"}},
		{Options{LeaseDuration: -time.Second}, []string{""}},
	} {
		if got := problemKeys(t, tc.in.Validate()); !slices.Equal(got, tc.keys) {
			t.Errorf("%+v: keys %q, want %q", tc.in, got, tc.keys)
		}
	}
	if _, err := New(nil, newFakeSpool(t, time.Now), nil, Options{Workers: -1}); err == nil {
		t.Error("New accepted negative workers")
	}
}

func TestAccountConfigNeverPrintsPassword(t *testing.T) {
	a := AccountConfig{Name: "relay", Host: "smtp.example", Auth: "plain", Username: "u", Password: "hunter2-secret"}
	var buf bytes.Buffer
	slog.New(slog.NewJSONHandler(&buf, nil)).Info("cfg", "account", a)
	for _, s := range []string{buf.String(), a.String()} {
		if strings.Contains(s, "hunter2-secret") {
			t.Errorf("password printed: %s", s)
		}
	}
}
