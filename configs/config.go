// Package configs owns spoold's configuration: the strict YAML schema (Config
// and its parts), decoding with file:line problems, defaults, secret
// resolution (${ENV} and *_file), semantic validation, the embedded default
// configuration, the shipped example configs and the systemd unit.
//
// It is a leaf package: the daemon converts these typed structs into each
// subsystem's own options.
//
// Relative paths in a config (data_dir, scan folder paths, *_file, cert and
// key files) are resolved against the daemon's working directory, not the
// config file's directory; the systemd unit sets WorkingDirectory so that
// relative paths land in the state directory.
package configs

import (
	"net/netip"
	"time"

	"github.com/spoold/spoold/configs/secret"
)

// Config is a whole spoold configuration after Parse: defaults applied,
// secrets resolved, validated.
type Config struct {
	DataDir       string         `yaml:"data_dir" json:"data_dir"`
	Log           Log            `yaml:"log" json:"log"`
	HTTP          HTTP           `yaml:"http" json:"http"`
	Admin         Admin          `yaml:"admin" json:"admin"`
	Spool         Spool          `yaml:"spool" json:"spool"`
	Delivery      Delivery       `yaml:"delivery" json:"delivery"`
	SMTPListeners []SMTPListener `yaml:"smtp_listeners" json:"smtp_listeners"`
	ScanFolders   []ScanFolder   `yaml:"scan_folders" json:"scan_folders"`
	Accounts      []Account      `yaml:"accounts" json:"accounts"`
	Routes        Routes         `yaml:"routes" json:"routes"`
	Alerts        Alerts         `yaml:"alerts" json:"alerts"`
	Secrets       Secrets        `yaml:"secrets" json:"secrets"`
}

// Log is the log section.
type Log struct {
	Level  LogLevel  `yaml:"level" json:"level"`   // default info
	Format LogFormat `yaml:"format" json:"format"` // default auto
}

// HTTP is the metrics/health/OAuth callback listener.
type HTTP struct {
	Listen string `yaml:"listen" json:"listen"` // host:port; "" disables; default 127.0.0.1:8925
	// The web console and the listener's TLS, users and metrics token: see
	// console.go; package console owns their defaults and checks.
	Console          *bool         `yaml:"console" json:"console"` // nil = the console's default (true)
	TLS              bool          `yaml:"tls" json:"tls"`
	CertFile         string        `yaml:"cert_file" json:"cert_file"`
	KeyFile          string        `yaml:"key_file" json:"key_file"`
	ConsoleUsers     []ConsoleUser `yaml:"console_users" json:"console_users"`
	MetricsToken     secret.Secret `yaml:"metrics_token" json:"metrics_token"`
	MetricsTokenFile string        `yaml:"metrics_token_file" json:"metrics_token_file"`
}

// Admin is the admin API socket.
type Admin struct {
	Socket string `yaml:"socket" json:"socket"` // default <data_dir>/spoold.sock
	Group  string `yaml:"group" json:"group"`   // optional group owner of the socket
	// Who may do what on the socket (SO_PEERCRED): root and spoold's own
	// user always; members of ReadGroup may look, members of AdminGroup
	// may act. adminapi owns the defaults (AdminGroup: Group).
	ReadGroup      string        `yaml:"read_group" json:"read_group"`
	AdminGroup     string        `yaml:"admin_group" json:"admin_group"`
	AuditRetention time.Duration `yaml:"audit_retention" json:"audit_retention"` // default 90d
}

// Secrets is the key that seals stored OAuth tokens; auth/seal owns the
// defaults and checks.
type Secrets struct {
	Key          string   `yaml:"key" json:"key"`                     // file:PATH, credential:NAME or env:VAR; default file:<data_dir>/spoold.key
	PreviousKeys []string `yaml:"previous_keys" json:"previous_keys"` // keys that still open records (re-sealed at start-up)
}

// Spool tunes the durable queue.
type Spool struct {
	LockTimeout        time.Duration `yaml:"lock_timeout" json:"lock_timeout"`               // default 2s
	Lease              time.Duration `yaml:"lease" json:"lease"`                             // default 5m
	DeliveredRetention time.Duration `yaml:"delivered_retention" json:"delivered_retention"` // default 24h
	// Backend bbolt (default) or postgres; DSN (or DSNFile) is the
	// database of postgres, Node this node's name among those sharing it.
	Backend SpoolBackend  `yaml:"backend" json:"backend"`
	DSN     secret.Secret `yaml:"dsn" json:"dsn"`
	DSNFile string        `yaml:"dsn_file" json:"dsn_file"`
	Node    string        `yaml:"node" json:"node"` // default the host name
}

// Delivery tunes the scheduler.
type Delivery struct {
	Workers         int           `yaml:"workers" json:"workers"`                   // default 16
	ShutdownTimeout time.Duration `yaml:"shutdown_timeout" json:"shutdown_timeout"` // default 30s
	Paused          bool          `yaml:"paused" json:"paused"`                     // start with delivery paused
	// Outage tunes the upstream_down state; delivery owns the defaults
	// and validation (zero = its default).
	Outage Outage `yaml:"outage" json:"outage"`
}

// Outage is delivery.outage: when an account's upstream counts as down and
// how often it is probed then.
type Outage struct {
	After      int           `yaml:"after" json:"after"`             // connection failures in a row; default 3
	FirstProbe time.Duration `yaml:"first_probe" json:"first_probe"` // default 10s
	MaxProbe   time.Duration `yaml:"max_probe" json:"max_probe"`     // default 3m
	Multiplier float64       `yaml:"multiplier" json:"multiplier"`   // default 2
	Jitter     float64       `yaml:"jitter" json:"jitter"`           // default 0.2
}

// SMTPListener is one SMTP ingest listener.
type SMTPListener struct {
	Name                    string         `yaml:"name" json:"name"`
	Listen                  string         `yaml:"listen" json:"listen"`
	Hostname                string         `yaml:"hostname" json:"hostname"` // default os.Hostname()
	TLS                     ListenerTLS    `yaml:"tls" json:"tls"`           // default none
	CertFile                string         `yaml:"cert_file" json:"cert_file"`
	KeyFile                 string         `yaml:"key_file" json:"key_file"`
	MinTLSVersion           TLSVersion     `yaml:"min_tls_version" json:"min_tls_version"` // default 1.2
	AllowedNetworks         []netip.Prefix `yaml:"allowed_networks" json:"allowed_networks"`
	Legacy                  bool           `yaml:"legacy" json:"legacy"`
	RequireAuth             bool           `yaml:"require_auth" json:"require_auth"`
	Users                   []SMTPUser     `yaml:"users" json:"users"`
	AllowedSenderDomains    []string       `yaml:"allowed_sender_domains" json:"allowed_sender_domains"`
	AllowedRecipientDomains []string       `yaml:"allowed_recipient_domains" json:"allowed_recipient_domains"`
	MaxMessageSize          int64          `yaml:"max_message_size" json:"max_message_size"` // bytes; default 35MB
	MaxRecipients           int            `yaml:"max_recipients" json:"max_recipients"`     // default 100
	ReadTimeout             time.Duration  `yaml:"read_timeout" json:"read_timeout"`         // default 5m
	WriteTimeout            time.Duration  `yaml:"write_timeout" json:"write_timeout"`       // default 1m
	MaxConnections          int            `yaml:"max_connections" json:"max_connections"`   // default 200
	MaxConnectionsPerIP     int            `yaml:"max_connections_per_ip" json:"max_connections_per_ip"`
	MaxLineLength           int            `yaml:"max_line_length" json:"max_line_length"` // default 4000
	BareLF                  BareLF         `yaml:"bare_lf" json:"bare_lf"`                 // default reject
	AuthFailureLimit        int            `yaml:"auth_failure_limit" json:"auth_failure_limit"`
	AuthFailureWindow       time.Duration  `yaml:"auth_failure_window" json:"auth_failure_window"`
	// Session bounds; smtpd owns their defaults and validation (zero = its
	// default, negative = off where it says so).
	DataMinRate      int64         `yaml:"data_min_rate" json:"data_min_rate"`
	DataRateGrace    time.Duration `yaml:"data_rate_grace" json:"data_rate_grace"`
	StressThreshold  int           `yaml:"stress_threshold" json:"stress_threshold"`
	StressTimeout    time.Duration `yaml:"stress_timeout" json:"stress_timeout"`
	JunkCommandLimit int           `yaml:"junk_command_limit" json:"junk_command_limit"`
	HardErrorLimit   int           `yaml:"hard_error_limit" json:"hard_error_limit"`
	Account          string        `yaml:"account" json:"account"`
}

// SMTPUser is an AUTH user of a listener. PasswordHash is a bcrypt hash,
// given inline (may use ${ENV}) or read from PasswordHashFile.
type SMTPUser struct {
	Name             string        `yaml:"name" json:"name"`
	PasswordHash     secret.Secret `yaml:"password_hash" json:"password_hash"`
	PasswordHashFile string        `yaml:"password_hash_file" json:"password_hash_file"`
	Account          string        `yaml:"account" json:"account"`
}

// ScanFolder is one watched scan folder.
type ScanFolder struct {
	Name            string              `yaml:"name" json:"name"` // default base name of path
	Path            string              `yaml:"path" json:"path"`
	Mode            ScanMode            `yaml:"mode" json:"mode"`                       // default watch
	RescanInterval  time.Duration       `yaml:"rescan_interval" json:"rescan_interval"` // default 30s
	QuietPeriod     time.Duration       `yaml:"quiet_period" json:"quiet_period"`       // default by mode: watch 3s, poll 30s (scan folder's)
	AfterSuccess    AfterSuccess        `yaml:"after_success" json:"after_success"`     // default move
	Account         string              `yaml:"account" json:"account"`                 // default routes.default
	Users           map[string]ScanUser `yaml:"users" json:"users"`
	SubjectTemplate string              `yaml:"subject_template" json:"subject_template"`
	BodyTemplate    string              `yaml:"body_template" json:"body_template"`
	FailureNotice   *bool               `yaml:"failure_notice" json:"failure_notice"`     // nil = the scan folder's default (true)
	MaxReadRetries  int                 `yaml:"max_read_retries" json:"max_read_retries"` // default 5
	// Readiness, file modes and time; the scan folder owns their defaults
	// and validation (zero = its default).
	IncompleteLimit time.Duration `yaml:"incomplete_limit" json:"incomplete_limit"`
	EmptyGrace      time.Duration `yaml:"empty_grace" json:"empty_grace"`
	WriterCheck     *bool         `yaml:"writer_check" json:"writer_check"` // nil = the scan folder's default (true)
	DirMode         string        `yaml:"dir_mode" json:"dir_mode"`         // octal, e.g. "2770"
	FileMode        string        `yaml:"file_mode" json:"file_mode"`       // octal, e.g. "0640"
	Group           string        `yaml:"group" json:"group"`
	TimeZone        string        `yaml:"time_zone" json:"time_zone"`
}

// ScanUser maps a scan subfolder to a person.
type ScanUser struct {
	Name    string `yaml:"name" json:"name"`
	Address string `yaml:"address" json:"address"`
}

// Account is one upstream (delivery) account.
type Account struct {
	Name      string    `yaml:"name" json:"name"`
	Transport Transport `yaml:"transport" json:"transport"` // default smtp
	Dir       string    `yaml:"dir" json:"dir"`             // file transport; default <data_dir>/outbox
	// Graph transport: the Graph root (default the provider's cloud) and
	// whether messages too large for one sendMail request go as drafts
	// with uploaded attachments (nil = true; needs Mail.ReadWrite).
	GraphEndpoint      string `yaml:"graph_endpoint" json:"graph_endpoint"`
	GraphLargeMessages *bool  `yaml:"graph_large_messages" json:"graph_large_messages"`

	Provider            Provider      `yaml:"provider" json:"provider"`
	Flow                Flow          `yaml:"flow" json:"flow"` // default authcode with a provider
	Tenant              string        `yaml:"tenant" json:"tenant"`
	ClientID            string        `yaml:"client_id" json:"client_id"`
	ClientSecret        secret.Secret `yaml:"client_secret" json:"client_secret"`
	ClientSecretFile    string        `yaml:"client_secret_file" json:"client_secret_file"`
	ClientSecretExpires time.Time     `yaml:"client_secret_expires" json:"client_secret_expires"` // zero = unknown
	CertificateFile     string        `yaml:"certificate_file" json:"certificate_file"`
	PrivateKeyFile      string        `yaml:"private_key_file" json:"private_key_file"`
	ServiceAccountFile  string        `yaml:"service_account_file" json:"service_account_file"`
	Mailbox             string        `yaml:"mailbox" json:"mailbox"`
	SignInAs            string        `yaml:"sign_in_as" json:"sign_in_as"` // the sign-in name when it is not the mailbox's address
	Scopes              []string      `yaml:"scopes" json:"scopes"`         // default from the provider and flow
	AuthURL             string        `yaml:"auth_url" json:"auth_url"`
	TokenURL            string        `yaml:"token_url" json:"token_url"`
	DeviceAuthURL       string        `yaml:"device_auth_url" json:"device_auth_url"`
	RedirectURL         string        `yaml:"redirect_url" json:"redirect_url"`
	RefreshBefore       time.Duration `yaml:"refresh_before" json:"refresh_before"` // default 5m
	KeepAlive           time.Duration `yaml:"keep_alive" json:"keep_alive"`         // default 24h
	// TokenTimeout bounds each token endpoint request; auth owns its
	// default (2m) and range.
	TokenTimeout time.Duration `yaml:"token_timeout" json:"token_timeout"`

	Host         string        `yaml:"host" json:"host"`
	Port         int           `yaml:"port" json:"port"`
	TLS          UpstreamTLS   `yaml:"tls" json:"tls"` // default starttls
	CAFile       string        `yaml:"ca_file" json:"ca_file"`
	ServerName   string        `yaml:"server_name" json:"server_name"`
	Auth         AuthMech      `yaml:"auth" json:"auth"`
	Username     string        `yaml:"username" json:"username"`
	Password     secret.Secret `yaml:"password" json:"password"`
	PasswordFile string        `yaml:"password_file" json:"password_file"`

	SenderRule               SenderRule    `yaml:"sender_rule" json:"sender_rule"`
	MaxConnections           int           `yaml:"max_connections" json:"max_connections"`
	RatePerMinute            float64       `yaml:"rate_per_minute" json:"rate_per_minute"`
	MaxMessagesPerConnection int           `yaml:"max_messages_per_connection" json:"max_messages_per_connection"`
	MaxMessageSize           int64         `yaml:"max_message_size" json:"max_message_size"` // bytes; 0 = no limit
	NotifyOnFailure          NotifyPolicy  `yaml:"notify_on_failure" json:"notify_on_failure"`
	ConnectTimeout           time.Duration `yaml:"connect_timeout" json:"connect_timeout"` // dial, TLS, greeting, EHLO, AUTH; default 30s
	CommandTimeout           time.Duration `yaml:"command_timeout" json:"command_timeout"` // each command's reply; default 2m
	DataTimeout              time.Duration `yaml:"data_timeout" json:"data_timeout"`       // body and the reply after the final dot; default 10m
	Retry                    Retry         `yaml:"retry" json:"retry"`
	// DailyRecipientLimit: recipients in a rolling 24 h; 0 = the provider's
	// budget (microsoft 10,000, google 2,000) or none; -1 = no limit.
	DailyRecipientLimit int           `yaml:"daily_recipient_limit" json:"daily_recipient_limit"`
	Fallback            string        `yaml:"fallback" json:"fallback"`             // account that sends this one's mail while it is held
	FallbackAfter       time.Duration `yaml:"fallback_after" json:"fallback_after"` // how long the hold lasts first; default 30m
}

// IsOAuth reports whether the account authenticates with OAuth2 tokens.
func (a *Account) IsOAuth() bool { return a.Transport != TransportFile && a.Provider != ProviderNone }

// Retry is an account's retry schedule (DESIGN.md section 5).
type Retry struct {
	First      time.Duration `yaml:"first" json:"first"`           // default 1m
	Multiplier float64       `yaml:"multiplier" json:"multiplier"` // default 2
	Max        time.Duration `yaml:"max" json:"max"`               // default 1h
	Jitter     float64       `yaml:"jitter" json:"jitter"`         // default 0.2
	Lifetime   time.Duration `yaml:"lifetime" json:"lifetime"`     // default 5d
}

// Routes picks the account for a message: AUTH user first, then sender
// domain, then Default.
type Routes struct {
	Default       string            `yaml:"default" json:"default"`
	SenderDomains map[string]string `yaml:"sender_domains" json:"sender_domains"`
	Users         map[string]string `yaml:"users" json:"users"`
}

// Account returns the account with that name.
func (c *Config) Account(name string) (*Account, bool) {
	for i := range c.Accounts {
		if c.Accounts[i].Name == name {
			return &c.Accounts[i], true
		}
	}
	return nil, false
}
