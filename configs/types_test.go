package configs

import (
	"strings"
	"testing"
	"time"
)

func TestParseSize(t *testing.T) {
	for _, tt := range []struct {
		in   string
		want int64
		ok   bool
	}{
		{"1048576", 1048576, true},
		{"35MB", 35_000_000, true},
		{"35mb", 35_000_000, true},
		{"20MiB", 20 << 20, true},
		{"1.5GB", 1_500_000_000, true},
		{"512 KiB", 512 << 10, true},
		{"100B", 100, true},
		{"0", 0, true},
		{"", 0, false},
		{"MB", 0, false},
		{"35 megs", 0, false},
		{"-5MB", 0, false},
		{"99999999999999999999", 0, false},
		{"9999999999GiB", 0, false},
		{"1e3MB", 0, false},
	} {
		got, err := ParseSize(tt.in)
		if (err == nil) != tt.ok || got != tt.want {
			t.Errorf("ParseSize(%q) = %v, %v; want %v ok=%v", tt.in, got, err, tt.want, tt.ok)
		}
	}
}

func TestDecodeValueTypes(t *testing.T) {
	src := base + `smtp_listeners:
  - name: l
    listen: "[::1]:2525"
    allowed_networks: [10.1.2.3, "2001:db8::1", 192.168.1.77/24]
    max_message_size: 20MiB
    read_timeout: 1d
    min_tls_version: "1.0"
delivery:
  paused: true
http:
  listen: ""
`
	c, err := parse("t.yaml", []byte(src), noEnv, nil)
	if err != nil {
		t.Fatal(err)
	}
	l := c.SMTPListeners[0]
	var nets []string
	for _, p := range l.AllowedNetworks {
		nets = append(nets, p.String())
	}
	if got := strings.Join(nets, " "); got != "10.1.2.3/32 2001:db8::1/128 192.168.1.0/24" {
		t.Errorf("networks = %s", got)
	}
	if l.MaxMessageSize != 20<<20 || l.ReadTimeout != 24*time.Hour || l.MinTLSVersion.Uint16() != 0x0301 {
		t.Errorf("listener = %+v", l)
	}
	// Keys left out stay zero: smtpd and delivery own their defaults.
	if l.Hostname != "" || l.MaxConnections != 0 || l.BareLF != "" {
		t.Errorf("listener defaults: %+v", l)
	}
	if !c.Delivery.Paused || c.Delivery.Workers != 0 {
		t.Errorf("delivery = %+v", c.Delivery)
	}
	if c.HTTP.Listen != "" {
		t.Errorf(`explicit http.listen "" (disabled) was replaced by %q`, c.HTTP.Listen)
	}
}

func TestExplicitZeroAndNullKeepMeaning(t *testing.T) {
	src := base + `scan_folders:
  - path: ./in
    failure_notice: false
    max_read_retries: 0
    quiet_period:
http:
  listen: 127.0.0.1:8080
accounts:
  - name: out
    transport: file
  - name: m365
    provider: microsoft
    tenant: contoso.com
    client_id: cid
    mailbox: s@contoso.com
    max_connections: 1
`
	// base already has accounts; the later key would be a duplicate, so
	// build the document without it.
	src = strings.Replace(src, base, "routes:\n  default: out\n", 1)
	c, err := parse("t.yaml", []byte(src), noEnv, nil)
	if err != nil {
		t.Fatal(err)
	}
	// An explicit false is kept apart from "not set" (nil), so the scan
	// folder's default (true) applies only to the latter; null keeps zero.
	f := c.ScanFolders[0]
	if f.FailureNotice == nil || *f.FailureNotice || f.WriterCheck != nil || f.QuietPeriod != 0 {
		t.Errorf("scan folder = %+v", f)
	}
	if a, _ := c.Account("m365"); a.MaxConnections != 1 || a.RatePerMinute != 0 {
		t.Errorf("account = %+v", a)
	}
}

func TestAnchorsAndMergeKeys(t *testing.T) {
	src := `x-common: &common
  host: smtp.example.com
  port: 2525
  tls: none
accounts:
  - <<: *common
    name: a
    port: 25
  - <<: *common
    name: b
routes: {default: a}
`
	c, err := parse("t.yaml", []byte(src), noEnv, nil)
	if err == nil {
		t.Fatal("x-common is an unknown key and must be reported")
	}
	if err.Error() != `t.yaml:1: x-common: unknown key "x-common"` {
		t.Fatalf("got %v", err)
	}
	src = `accounts:
  - &relay
    name: a
    host: smtp.example.com
    port: 2525
    tls: none
  - <<: *relay
    name: b
    port: 26
routes: {default: a}
`
	c, err = parse("t.yaml", []byte(src), noEnv, nil)
	if err != nil {
		t.Fatal(err)
	}
	b, _ := c.Account("b")
	if b.Host != "smtp.example.com" || b.Port != 26 || b.TLS != UpstreamNone {
		t.Errorf("merged account = %+v", b)
	}
}

func TestAliasExpansionIsBounded(t *testing.T) {
	var b strings.Builder
	b.WriteString("a0: &a0 [x, x, x, x, x, x, x, x, x, x]\n")
	for i := 1; i < 8; i++ {
		b.WriteString(strings.Repeat(" ", 0))
		b.WriteString("a" + string(rune('0'+i)) + ": &a" + string(rune('0'+i)) + " [")
		for j := 0; j < 10; j++ {
			if j > 0 {
				b.WriteString(", ")
			}
			b.WriteString("*a" + string(rune('0'+i-1)))
		}
		b.WriteString("]\n")
	}
	b.WriteString("accounts:\n  - name: out\n    transport: file\n    scopes: *a7\n")
	_, err := parse("t.yaml", []byte(b.String()), noEnv, nil)
	if err == nil {
		t.Fatal("want problems")
	}
	if !strings.Contains(err.Error(), "document is too large or expands too many aliases") && !strings.Contains(err.Error(), "want a string, got a list") {
		t.Errorf("got %v", err)
	}
}
