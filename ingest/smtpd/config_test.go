package smtpd

import (
	"crypto/tls"
	"fmt"
	"net/netip"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/spoold/spoold/configs/field/fieldtest"
)

func TestListenerWithDefaults(t *testing.T) {
	c := ListenerConfig{Name: "l", Addr: "127.0.0.1:0", Hostname: "h.test", AllowedNetworks: loopback}.WithDefaults()
	for _, f := range []struct {
		name      string
		got, want any
	}{
		{"TLS", c.TLS, TLSNone},
		{"MinTLSVersion", c.MinTLSVersion, uint16(0)}, // tls none: no TLS to configure
		{"BareLF", c.BareLF, BareLFReject},
		{"MaxMessageSize", c.MaxMessageSize, int64(35_000_000)},
		{"MaxRecipients", c.MaxRecipients, 100},
		{"ReadTimeout", c.ReadTimeout, 5 * time.Minute},
		{"WriteTimeout", c.WriteTimeout, time.Minute},
		{"MaxConnections", c.MaxConnections, 200},
		{"MaxConnectionsPerIP", c.MaxConnectionsPerIP, 20},
		{"MaxLineLength", c.MaxLineLength, 4000},
		{"AuthFailureLimit", c.AuthFailureLimit, 5},
		{"AuthFailureWindow", c.AuthFailureWindow, 5 * time.Minute},
		{"DataMinRate", c.DataMinRate, int64(4096)},
		{"DataRateGrace", c.DataRateGrace, 5 * time.Minute},
		{"StressThreshold", c.StressThreshold, 160},
		{"StressTimeout", c.StressTimeout, 10 * time.Second},
		{"JunkCommandLimit", c.JunkCommandLimit, 100},
		{"HardErrorLimit", c.HardErrorLimit, 20},
		{"Hostname", c.Hostname, "h.test"},
	} {
		if f.got != f.want {
			t.Errorf("%s = %v, want %v", f.name, f.got, f.want)
		}
	}
	if again := c.WithDefaults(); !equalListeners(again, c) {
		t.Errorf("WithDefaults is not idempotent:\n%+v\n%+v", c, again)
	}
	if h := (ListenerConfig{}).WithDefaults().Hostname; h == "" {
		t.Error("no default hostname")
	}
	// Set values are kept; domains are canonical.
	d := ListenerConfig{MaxConnections: 10, ReadTimeout: 3 * time.Second, AllowedSenderDomains: []string{" Example.COM "}}.WithDefaults()
	if d.StressThreshold != 8 || d.StressTimeout != 3*time.Second || d.DataRateGrace != 3*time.Second ||
		!slices.Equal(d.AllowedSenderDomains, []string{"example.com"}) {
		t.Errorf("derived defaults: stress %d/%v grace %v domains %q", d.StressThreshold, d.StressTimeout,
			d.DataRateGrace, d.AllowedSenderDomains)
	}
}

func equalListeners(a, b ListenerConfig) bool {
	return a.Hostname == b.Hostname && a.TLS == b.TLS && a.MinTLSVersion == b.MinTLSVersion && a.BareLF == b.BareLF &&
		a.MaxMessageSize == b.MaxMessageSize && a.MaxRecipients == b.MaxRecipients && a.ReadTimeout == b.ReadTimeout &&
		a.WriteTimeout == b.WriteTimeout && a.MaxConnections == b.MaxConnections &&
		a.MaxConnectionsPerIP == b.MaxConnectionsPerIP && a.MaxLineLength == b.MaxLineLength &&
		a.AuthFailureLimit == b.AuthFailureLimit && a.AuthFailureWindow == b.AuthFailureWindow &&
		a.DataMinRate == b.DataMinRate && a.DataRateGrace == b.DataRateGrace && a.StressThreshold == b.StressThreshold &&
		a.StressTimeout == b.StressTimeout && a.JunkCommandLimit == b.JunkCommandLimit &&
		a.HardErrorLimit == b.HardErrorLimit && slices.Equal(a.AllowedSenderDomains, b.AllowedSenderDomains)
}

func TestListenerValidateKeys(t *testing.T) {
	hash := mustHash(t, "x")
	dir := t.TempDir()
	pem := filepath.Join(dir, "x.pem")
	if err := os.WriteFile(pem, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	cases := []struct {
		name string
		mod  func(*ListenerConfig)
		want []string
	}{
		{"ok", func(*ListenerConfig) {}, nil},
		{"no name", func(l *ListenerConfig) { l.Name = " " }, []string{"name"}},
		{"no listen", func(l *ListenerConfig) { l.Addr = "" }, []string{"listen"}},
		{"bad listen", func(l *ListenerConfig) { l.Addr = "localhost" }, []string{"listen"}},
		{"bad port", func(l *ListenerConfig) { l.Addr = "127.0.0.1:70000" }, []string{"listen"}},
		{"hostname", func(l *ListenerConfig) { l.Hostname = "a b" }, []string{"hostname"}},
		{"tls mode", func(l *ListenerConfig) { l.TLS = "ssl" }, []string{"tls"}},
		{"key without cert", func(l *ListenerConfig) { l.TLS = TLSStartTLS; l.KeyFile = dir }, []string{"cert_file", "key_file"}},
		{"cert without key", func(l *ListenerConfig) { l.TLS = TLSStartTLS; l.CertFile = filepath.Join(dir, "none") },
			[]string{"key_file", "cert_file"}},
		{"cert with tls none", func(l *ListenerConfig) {
			l.CertFile, l.KeyFile = pem, pem
		}, []string{"tls"}},
		{"min tls", func(l *ListenerConfig) { l.MinTLSVersion = 0x0300 }, []string{"min_tls_version"}},
		{"legacy", func(l *ListenerConfig) {
			l.AllowedNetworks, l.Legacy, l.Users = nil, true, []User{{Name: "u", PasswordHash: hash}}
		}, []string{"legacy"}},
		{"bad network", func(l *ListenerConfig) { l.AllowedNetworks = []netip.Prefix{{}} }, []string{"allowed_networks[0]"}},
		{"open relay", func(l *ListenerConfig) { l.AllowedNetworks = nil }, []string{""}},
		{"require auth", func(l *ListenerConfig) { l.RequireAuth = true }, []string{"require_auth"}},
		{"users without tls", func(l *ListenerConfig) { l.Users = []User{{Name: "u", PasswordHash: hash}} }, []string{"tls"}},
		{"user without name", func(l *ListenerConfig) {
			l.Legacy, l.Users = true, []User{{PasswordHash: hash}}
		}, []string{"users[0].name"}},
		{"user twice", func(l *ListenerConfig) {
			l.Legacy, l.Users = true, []User{{Name: "u", PasswordHash: hash}, {Name: "u", PasswordHash: hash}}
		}, []string{"users[1].name"}},
		{"no hash", func(l *ListenerConfig) { l.Legacy, l.Users = true, []User{{Name: "u"}} }, []string{"users[0].password_hash"}},
		{"bad hash", func(l *ListenerConfig) {
			l.Legacy, l.Users = true, []User{{Name: "u", PasswordHash: "plain"}}
		}, []string{"users[0].password_hash"}},
		{"sender domain", func(l *ListenerConfig) { l.AllowedSenderDomains = []string{"ok.example", "a b"} },
			[]string{"allowed_sender_domains[1]"}},
		{"recipient domain", func(l *ListenerConfig) { l.AllowedRecipientDomains = []string{"-x"} },
			[]string{"allowed_recipient_domains[0]"}},
		{"max message size", func(l *ListenerConfig) { l.MaxMessageSize = -1 }, []string{"max_message_size"}},
		{"max recipients", func(l *ListenerConfig) { l.MaxRecipients = -1 }, []string{"max_recipients"}},
		{"read timeout", func(l *ListenerConfig) { l.ReadTimeout = -1 }, []string{"read_timeout"}},
		{"write timeout", func(l *ListenerConfig) { l.WriteTimeout = -1 }, []string{"write_timeout"}},
		{"max connections", func(l *ListenerConfig) { l.MaxConnections = -1 }, []string{"max_connections"}},
		{"per ip", func(l *ListenerConfig) { l.MaxConnectionsPerIP = -1 }, []string{"max_connections_per_ip"}},
		{"line length", func(l *ListenerConfig) { l.MaxLineLength = 999 }, []string{"max_line_length"}},
		{"negative line length", func(l *ListenerConfig) { l.MaxLineLength = -1 }, []string{"max_line_length"}},
		{"auth limit", func(l *ListenerConfig) { l.AuthFailureLimit = -1 }, []string{"auth_failure_limit"}},
		{"auth window", func(l *ListenerConfig) { l.AuthFailureWindow = -1 }, []string{"auth_failure_window"}},
		{"grace", func(l *ListenerConfig) { l.DataRateGrace = -1 }, []string{"data_rate_grace"}},
		{"stress threshold", func(l *ListenerConfig) { l.MaxConnections, l.StressThreshold = 10, 11 }, []string{"stress_threshold"}},
		{"stress timeout", func(l *ListenerConfig) { l.StressTimeout = time.Hour }, []string{"stress_timeout"}},
		{"negative stress timeout", func(l *ListenerConfig) { l.StressTimeout = -1 }, []string{"stress_timeout"}},
		{"bare lf", func(l *ListenerConfig) { l.BareLF = "ignore" }, []string{"bare_lf"}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			lc := baseListener()
			c.mod(&lc)
			if got := fieldtest.Keys(t, lc.Validate()); !slices.Equal(got, c.want) {
				t.Errorf("keys %q, want %q (%v)", got, c.want, lc.Validate())
			}
		})
	}
}

func TestValidateListenersKeys(t *testing.T) {
	dir := t.TempDir()
	junk := filepath.Join(dir, "junk.pem")
	if err := os.WriteFile(junk, []byte("not a certificate"), 0o600); err != nil {
		t.Fatal(err)
	}
	ok := baseListener()
	dup := baseListener()
	badCert := baseListener()
	badCert.Name, badCert.TLS, badCert.CertFile, badCert.KeyFile = "tls", TLSStartTLS, junk, junk
	selfSigned := baseListener()
	selfSigned.Name, selfSigned.TLS = "self", TLSImplicit
	err := ValidateListeners([]ListenerConfig{ok, dup, badCert, selfSigned}, "")
	want := []string{"[1].name", "[3].tls", "[2].cert_file"}
	if got := fieldtest.Keys(t, err); !slices.Equal(got, want) {
		t.Errorf("keys %q, want %q (%v)", got, want, err)
	}
	if err := ValidateListeners([]ListenerConfig{ok, selfSigned}, dir); err != nil {
		t.Errorf("valid listeners: %v", err)
	}
	// New refuses the same, with the same problems.
	if _, err := New([]ListenerConfig{ok, dup}, Routes{}, &fakeSpool{}, Options{}); !slices.Equal(fieldtest.Keys(t, err), []string{"[1].name"}) {
		t.Errorf("New: %v", err)
	}
}

// Log records say which subsystem wrote them in the component attribute.
func TestLogComponent(t *testing.T) {
	var logs logBuf
	lc := baseListener()
	lc.AllowedNetworks = []netip.Prefix{netip.MustParsePrefix("0.0.0.0/0")} // logs a warning at New
	if _, err := New([]ListenerConfig{lc}, Routes{}, &fakeSpool{}, Options{Logger: slogTo(&logs)}); err != nil {
		t.Fatal(err)
	}
	if out := logs.String(); !strings.Contains(out, "component=smtpd") || strings.Contains(out, `msg="smtp `) {
		t.Errorf("want component=smtpd and no message prefix:\n%s", out)
	}
}

// Reported defect (issue 15): two listeners on one address passed -check and
// start-up then failed with "address already in use". The second listener's
// listen key gets the problem, naming the first; a wildcard host overlaps
// every address on its port; port 0 never conflicts.
func TestValidateListenersSameAddress(t *testing.T) {
	at := func(name, addr string) ListenerConfig {
		l := baseListener()
		l.Name, l.Addr = name, addr
		return l
	}
	cases := []struct {
		name  string
		addrs []string
		want  []string
	}{
		{"same address", []string{"127.0.0.1:2525", "127.0.0.1:2525"}, []string{"[1].listen"}},
		{"different ports", []string{"127.0.0.1:2525", "127.0.0.1:2526"}, nil},
		{"different hosts", []string{"127.0.0.1:2525", "192.0.2.1:2525"}, nil},
		{"ipv4 wildcard first", []string{"0.0.0.0:2525", "127.0.0.1:2525"}, []string{"[1].listen"}},
		{"ipv4 wildcard second", []string{"127.0.0.1:2525", "0.0.0.0:2525"}, []string{"[1].listen"}},
		{"ipv6 wildcard", []string{"[::]:2525", "192.0.2.1:2525"}, []string{"[1].listen"}},
		{"both wildcards", []string{"0.0.0.0:2525", "[::]:2525"}, []string{"[1].listen"}},
		{"empty host", []string{":2525", "127.0.0.1:2525"}, []string{"[1].listen"}},
		{"same ipv6 spelled twice", []string{"[::1]:2525", "[0:0::1]:2525"}, []string{"[1].listen"}},
		{"port 0", []string{"127.0.0.1:0", "127.0.0.1:0"}, nil},
		{"third overlaps first", []string{"127.0.0.1:2525", "127.0.0.1:2526", "127.0.0.1:2525"}, []string{"[2].listen"}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			var ls []ListenerConfig
			for i, a := range c.addrs {
				ls = append(ls, at(fmt.Sprintf("l%d", i), a))
			}
			err := ValidateListeners(ls, "")
			if got := fieldtest.Keys(t, err); !slices.Equal(got, c.want) {
				t.Fatalf("keys %q, want %q (%v)", got, c.want, err)
			}
			if err != nil && !strings.Contains(err.Error(), `"l0"`) {
				t.Errorf("problem does not name the first listener: %v", err)
			}
		})
	}
}

// Reported defect (issue 15): min_tls_version on a tls: none listener has no
// effect and passed silently; a TLS listener still gets TLS 1.2 by default.
func TestMinTLSVersionWithoutTLS(t *testing.T) {
	l := baseListener()
	l.MinTLSVersion = tls.VersionTLS12
	if got := fieldtest.Keys(t, l.Validate()); !slices.Equal(got, []string{"min_tls_version"}) {
		t.Errorf("tls none with min_tls_version: keys %q, want min_tls_version (%v)", got, l.Validate())
	}
	if got := fieldtest.Keys(t, ValidateListeners([]ListenerConfig{l}, "")); !slices.Equal(got, []string{"[0].min_tls_version"}) {
		t.Errorf("ValidateListeners: keys %q", got)
	}
	if err := baseListener().Validate(); err != nil {
		t.Errorf("tls none without min_tls_version: %v", err)
	}
	s := baseListener()
	s.TLS = TLSStartTLS
	if v := s.WithDefaults().MinTLSVersion; v != tls.VersionTLS12 {
		t.Errorf("starttls listener's default min TLS version %#04x, want TLS 1.2", v)
	}
	s.MinTLSVersion = tls.VersionTLS10
	if err := s.Validate(); err != nil {
		t.Errorf("starttls with min_tls_version 1.0: %v", err)
	}
}
