package configs

import (
	"crypto/tls"
	"fmt"
	"log/slog"
	"math"
	"slices"
	"strconv"
	"strings"
)

// enum is implemented by the string enum types: values lists the accepted
// spellings (the empty string is accepted where the zero value means a
// default and is listed).
type enum interface {
	values() []string
}

func checkEnum(e enum, s string) error {
	vals := e.values()
	if slices.Contains(vals, s) {
		return nil
	}
	var show []string
	for _, v := range vals {
		if v == "" {
			show = append(show, `""`)
		} else {
			show = append(show, v)
		}
	}
	return fmt.Errorf("%q is not valid: want one of %s", s, strings.Join(show, ", "))
}

// LogLevel is log.level.
type LogLevel string

// Log levels.
const (
	LogDebug LogLevel = "debug"
	LogInfo  LogLevel = "info"
	LogWarn  LogLevel = "warn"
	LogError LogLevel = "error"
)

func (LogLevel) values() []string { return []string{"debug", "info", "warn", "error"} }

// Level converts to a slog level.
func (l LogLevel) Level() slog.Level {
	switch l {
	case LogDebug:
		return slog.LevelDebug
	case LogWarn:
		return slog.LevelWarn
	case LogError:
		return slog.LevelError
	}
	return slog.LevelInfo
}

// LogFormat is log.format.
type LogFormat string

// Log formats: auto is tint on a terminal and JSON otherwise.
const (
	LogFormatAuto LogFormat = "auto"
	LogFormatText LogFormat = "text"
	LogFormatJSON LogFormat = "json"
)

func (LogFormat) values() []string { return []string{"auto", "text", "json"} }

// ListenerTLS is smtp_listeners[].tls.
type ListenerTLS string

// Listener TLS modes.
const (
	ListenerTLSNone     ListenerTLS = "none"
	ListenerTLSStartTLS ListenerTLS = "starttls"
	ListenerTLSImplicit ListenerTLS = "implicit"
)

func (ListenerTLS) values() []string { return []string{"none", "starttls", "implicit"} }

// TLSVersion is a minimum TLS version: "1.0" to "1.3".
type TLSVersion string

func (TLSVersion) values() []string { return []string{"1.0", "1.1", "1.2", "1.3"} }

// Uint16 is the crypto/tls constant (tls.VersionTLS12 for an unknown value).
func (v TLSVersion) Uint16() uint16 {
	switch v {
	case "":
		return 0 // smtpd's default (TLS 1.2)
	case "1.0":
		return tls.VersionTLS10
	case "1.1":
		return tls.VersionTLS11
	case "1.3":
		return tls.VersionTLS13
	}
	return tls.VersionTLS12
}

// BareLF is smtp_listeners[].bare_lf.
type BareLF string

// Bare LF policies.
const (
	BareLFReject    BareLF = "reject"
	BareLFNormalize BareLF = "normalize"
)

func (BareLF) values() []string { return []string{"reject", "normalize"} }

// ScanMode is scan_folders[].mode.
type ScanMode string

// Scan modes: poll for SMB/NFS mounts where inotify sees nothing.
const (
	ScanWatch ScanMode = "watch"
	ScanPoll  ScanMode = "poll"
)

func (ScanMode) values() []string { return []string{"watch", "poll"} }

// AfterSuccess is scan_folders[].after_success.
type AfterSuccess string

// What happens to a scanned file once its message is spooled.
const (
	AfterMove   AfterSuccess = "move"
	AfterDelete AfterSuccess = "delete"
)

func (AfterSuccess) values() []string { return []string{"move", "delete"} }

// Transport is accounts[].transport.
type Transport string

// Transports.
const (
	TransportSMTP  Transport = "smtp"
	TransportFile  Transport = "file"
	TransportGraph Transport = "graph" // Microsoft Graph sendMail (microsoft providers)
)

func (Transport) values() []string { return []string{"smtp", "graph", "file"} }

// Provider is accounts[].provider; "" is a relay with a password or no AUTH.
type Provider string

// Providers (DESIGN.md section 6).
const (
	ProviderNone           Provider = ""
	ProviderMicrosoft      Provider = "microsoft"
	ProviderMicrosoftUSGov Provider = "microsoft-usgov"
	ProviderGoogle         Provider = "google"
	ProviderGeneric        Provider = "generic"
)

func (Provider) values() []string {
	return []string{"microsoft", "microsoft-usgov", "google", "generic", ""}
}

// IsMicrosoft reports whether p is a Microsoft cloud.
func (p Provider) IsMicrosoft() bool { return p == ProviderMicrosoft || p == ProviderMicrosoftUSGov }

// Flow is accounts[].flow, the OAuth2 grant.
type Flow string

// OAuth2 flows.
const (
	FlowAuthCode          Flow = "authcode"
	FlowDevice            Flow = "device"
	FlowClientCredentials Flow = "client_credentials"
	FlowServiceAccount    Flow = "service_account"
)

func (Flow) values() []string {
	return []string{"authcode", "device", "client_credentials", "service_account"}
}

// UpstreamTLS is accounts[].tls.
type UpstreamTLS string

// Upstream TLS modes.
const (
	UpstreamStartTLS UpstreamTLS = "starttls"
	UpstreamImplicit UpstreamTLS = "implicit"
	UpstreamNone     UpstreamTLS = "none"
)

func (UpstreamTLS) values() []string { return []string{"starttls", "implicit", "none"} }

// AuthMech is accounts[].auth.
type AuthMech string

// SASL mechanisms towards the upstream.
const (
	AuthXOAuth2 AuthMech = "xoauth2"
	AuthPlain   AuthMech = "plain"
	AuthLogin   AuthMech = "login"
	AuthNone    AuthMech = "none"
)

func (AuthMech) values() []string { return []string{"xoauth2", "plain", "login", "none"} }

// SenderRule is accounts[].sender_rule.
type SenderRule string

// Sender rules (DESIGN.md section 5).
const (
	SenderRewrite SenderRule = "rewrite"
	SenderKeep    SenderRule = "keep"
)

func (SenderRule) values() []string { return []string{"rewrite", "keep"} }

// NotifyPolicy is accounts[].notify_on_failure.
type NotifyPolicy string

// Failure notice policies: "" sends notices for scan-folder mail only.
const (
	NotifyDefault NotifyPolicy = ""
	NotifyAlways  NotifyPolicy = "always"
	NotifyNever   NotifyPolicy = "never"
)

func (NotifyPolicy) values() []string { return []string{"", "always", "never"} }

var sizeUnits = map[string]int64{
	"": 1, "b": 1,
	"k": 1000, "kb": 1000, "m": 1000 * 1000, "mb": 1000 * 1000, "g": 1000 * 1000 * 1000, "gb": 1000 * 1000 * 1000,
	"kib": 1 << 10, "mib": 1 << 20, "gib": 1 << 30,
}

// ParseSize parses a byte size: "1048576", "35MB" (10^6), "20MiB" (2^20),
// "1.5GB"; units B, KB, MB, GB, KiB, MiB, GiB, case-insensitive.
func ParseSize(s string) (int64, error) {
	orig := s
	s = strings.TrimSpace(s)
	i := 0
	for i < len(s) && (s[i] >= '0' && s[i] <= '9' || s[i] == '.') {
		i++
	}
	num, unit := s[:i], strings.ToLower(strings.TrimSpace(s[i:]))
	mult, ok := sizeUnits[unit]
	if num == "" || !ok {
		return 0, fmt.Errorf("size %q: want bytes or a number with a unit (KB, MB, GB, KiB, MiB, GiB), e.g. 35MB", orig)
	}
	if !strings.Contains(num, ".") {
		n, err := strconv.ParseInt(num, 10, 64)
		if err != nil || (n != 0 && mult > math.MaxInt64/n) {
			return 0, fmt.Errorf("size %q is too large", orig)
		}
		return n * mult, nil
	}
	f, err := strconv.ParseFloat(num, 64)
	if err != nil {
		return 0, fmt.Errorf("size %q is not a number", orig)
	}
	v := f * float64(mult)
	if v >= math.MaxInt64 {
		return 0, fmt.Errorf("size %q is too large", orig)
	}
	return int64(v), nil
}
