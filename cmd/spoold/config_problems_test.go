package main

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/spoold/spoold/configs"
)

// These tables are the user's view of a bad config: every problem as
// file:line: key: reason, whichever layer finds it (decoding and references
// in configs, the rest in the subsystem that owns the key), through the same
// path -check takes.

// base is a minimal valid config; rows append to it (it is 5 lines long, so
// appended keys start at line 6).
const base = `accounts:
  - name: out
    transport: file
routes:
  default: out
`

const hash = "$2a$10$N9qo8uLOickgx2ZMRZoMyeIjZAgcfl7p92ldGxad68LJZdL17lhWy"

func noEnv(string) (string, bool) { return "", false }

func parseProblems(t *testing.T, src string) configs.Problems {
	t.Helper()
	var p *plan
	c, err := configs.Parse("test.yaml", []byte(src), noEnv, planChecker(&p))
	if err == nil {
		t.Fatalf("config validated but should not have:\n%s\n=> %+v", src, c)
	}
	var ps *configs.Problems
	if !errors.As(err, &ps) {
		t.Fatalf("error is %T, want *configs.Problems: %v", err, err)
	}
	return *ps
}

func TestProblemTable(t *testing.T) {
	tests := []struct {
		name string
		src  string
		want string // the one expected problem, "file:line: key: reason"
	}{
		{"unknown top-level key", base + "datadir: x\n",
			`test.yaml:6: datadir: unknown key "datadir" (did you mean "data_dir"?)`},
		{"unknown nested key", base + "log:\n  levle: info\n",
			`test.yaml:7: log.levle: unknown key "levle" (did you mean "level"?)`},
		{"unknown key without suggestion", base + "spool:\n  frobnicate: 1\n",
			`test.yaml:7: spool.frobnicate: unknown key "frobnicate"`},
		{"wrong type int", base + "delivery:\n  workers: many\n",
			`test.yaml:7: delivery.workers: want an integer, got "many"`},
		{"wrong type bool", base + "delivery:\n  paused: yes\n",
			`test.yaml:7: delivery.paused: want true or false, got "yes"`},
		{"mapping where list expected", base + "smtp_listeners: {name: x}\n",
			`test.yaml:6: smtp_listeners: want a list, got a mapping`},
		{"list where string expected", base + "data_dir: [a]\n",
			`test.yaml:6: data_dir: want a string, got a list`},
		{"bad duration", base + "spool:\n  lease: 5 minutes\n",
			`test.yaml:7: spool.lease: duration "5 minutes": want a number and a unit (ms, s, m, h, d, w), e.g. 30s, 5m, 24h, 7d`},
		{"duration without unit", base + "spool:\n  lease: 300\n",
			`test.yaml:7: spool.lease: duration "300": want a number and a unit (ms, s, m, h, d, w), e.g. 30s, 5m, 24h, 7d`},
		{"negative duration", base + "spool:\n  lease: -5m\n",
			`test.yaml:7: spool.lease: duration "-5m" must not be negative`},
		{"bad enum", base + "log:\n  level: verbose\n",
			`test.yaml:7: log.level: "verbose" is not valid: want one of debug, info, warn, error`},
		{"bad log format", base + "log:\n  format: xml\n",
			`test.yaml:7: log.format: "xml" is not valid: want one of auto, text, json`},
		{"bad http listen", base + "http:\n  listen: localhost\n",
			`test.yaml:7: http.listen: "localhost" is not host:port, e.g. 127.0.0.1:2525 or [::1]:2525`},
		{"http port out of range", base + "http:\n  listen: 127.0.0.1:70000\n",
			`test.yaml:7: http.listen: port "70000" is out of range 0-65535`},
		{"workers negative", base + "delivery:\n  workers: -1\n",
			`test.yaml:7: delivery.workers: -1 is negative: want at least 1, or 0 for the default 16`},
		{"syntax error", "accounts: [\n",
			"test.yaml:1: YAML syntax: sequence end token ']' not found"},
		{"duplicate key", base + "data_dir: a\ndata_dir: b\n",
			`test.yaml:7: YAML syntax: mapping key "data_dir" already defined at [6:1]`},
		{"two documents", base + "---\ndata_dir: x\n",
			"test.yaml:7: only one YAML document is allowed"},
		{"top level list", "- a\n",
			"test.yaml:1: want a mapping, got a list"},
		{"no accounts", "routes:\n  default: out\n",
			"test.yaml: accounts: at least one account is required"},
		{"negative rate other than -1", "accounts:\n  - name: out\n    host: relay.test\n    auth: none\n    rate_per_minute: -5\nroutes:\n  default: out\n",
			`test.yaml:5: accounts[0].rate_per_minute: -5: want a positive rate up to 1e+06, 0 (the default: unlimited) or -1 (unlimited)`},
		{"no default route", "accounts:\n  - name: out\n    transport: file\n",
			"test.yaml: routes.default: required: the account for mail no other route matches"},
		{"default route to unknown account", "accounts:\n  - name: out\n    transport: file\nroutes:\n  default: m365\n",
			`test.yaml:5: routes.default: account "m365" is not defined in accounts`},
		{"sender domain route to unknown account", base + "  sender_domains:\n    contoso.com: nope\n",
			`test.yaml:7: routes.sender_domains.contoso.com: account "nope" is not defined in accounts`},
		{"sender domain route bad domain", base + "  sender_domains:\n    \"contoso com\": out\n",
			`test.yaml:7: routes.sender_domains.contoso com: "contoso com" is not a domain name`},
		{"duplicate account", base + "  # second\n" + "accounts_dummy: 1\n",
			`test.yaml:7: accounts_dummy: unknown key "accounts_dummy"`},
		{"duplicate account name", "accounts:\n  - name: out\n    transport: file\n  - name: out\n    transport: file\nroutes: {default: out}\n",
			`test.yaml:4: accounts[1].name: duplicate account name "out"`},
		{"account name charset", "accounts:\n  - name: my out\n    transport: file\nroutes: {default: my out}\n",
			`test.yaml:2: accounts[0].name: "my out": use letters, digits, '.', '_' and '-' only`},
		{"bad transport", "accounts:\n  - name: out\n    transport: ftp\nroutes: {default: out}\n",
			`test.yaml:3: accounts[0].transport: "ftp" is not valid: want one of smtp, graph, file`},
		{"smtp account without host", "accounts:\n  - name: relay\nroutes: {default: relay}\n",
			"test.yaml:2: accounts[0].host: required: the upstream SMTP server"},
		{"port out of range", "accounts:\n  - name: relay\n    host: mail.example.com\n    port: 70000\nroutes: {default: relay}\n",
			"test.yaml:4: accounts[0].port: 70000 is out of range 1-65535"},
		{"xoauth2 without provider", "accounts:\n  - name: relay\n    host: mail.example.com\n    auth: xoauth2\n    mailbox: s@example.com\nroutes: {default: relay}\n",
			"test.yaml:4: accounts[0].auth: auth xoauth2 needs a provider (microsoft, microsoft-usgov, google or generic)"},
		{"plain without password", "accounts:\n  - name: relay\n    host: mail.example.com\n    auth: plain\n    username: u\nroutes: {default: relay}\n",
			"test.yaml:2: accounts[0].password: auth plain needs a password"},
		{"login without username", "accounts:\n  - name: relay\n    host: mail.example.com\n    auth: login\n    password: pw\nroutes: {default: relay}\n",
			"test.yaml:2: accounts[0].username: auth login needs a username (or a mailbox to use as one)"},
		{"password over plain text", "accounts:\n  - name: relay\n    host: mail.example.com\n    tls: none\n    username: u\n    password: pw\nroutes: {default: relay}\n",
			"test.yaml:4: accounts[0].tls: auth plain would send credentials in clear text: use starttls or implicit"},
		{"unset env secret", "accounts:\n  - name: relay\n    host: mail.example.com\n    username: u\n    password: ${RELAY_PW}\nroutes: {default: relay}\n",
			"test.yaml:5: accounts[0].password: environment variable RELAY_PW is not set"},
		{"bad env reference", "accounts:\n  - name: relay\n    host: mail.example.com\n    username: u\n    password: ${RELAY-PW}\nroutes: {default: relay}\n",
			"test.yaml:5: accounts[0].password: ${RELAY-PW} is not a valid environment variable reference: want ${NAME} with letters, digits and _"},
		{"secret and file", "accounts:\n  - name: relay\n    host: mail.example.com\n    username: u\n    password: x\n    password_file: /nonexistent\nroutes: {default: relay}\n",
			"test.yaml:6: accounts[0].password_file: set password or password_file, not both"},
		{"missing secret file", "accounts:\n  - name: relay\n    host: mail.example.com\n    username: u\n    password_file: /nonexistent/pw\nroutes: {default: relay}\n",
			"test.yaml:5: accounts[0].password_file: cannot read /nonexistent/pw: no such file or directory"},
		{"bad mailbox", "accounts:\n  - name: out\n    transport: file\n    mailbox: Scanner <scan@example.com>\nroutes: {default: out}\n",
			`test.yaml:4: accounts[0].mailbox: "Scanner <scan@example.com>" is not a plain e-mail address`},
		{"microsoft without tenant", "accounts:\n  - name: m365\n    provider: microsoft\n    client_id: abc\n    mailbox: s@contoso.com\nroutes: {default: m365}\n",
			"test.yaml:2: accounts[0].tenant: required for provider microsoft: the directory (tenant) ID or domain, e.g. contoso.onmicrosoft.com"},
		{"usgov without client id", "accounts:\n  - name: gov\n    provider: microsoft-usgov\n    tenant: agency.onmicrosoft.us\n    mailbox: s@agency.gov\nroutes: {default: gov}\n",
			"test.yaml:2: accounts[0].client_id: required for provider microsoft-usgov: the application (client) ID of the app registration"},
		{"oauth without mailbox", "accounts:\n  - name: m365\n    provider: microsoft\n    tenant: contoso.com\n    client_id: abc\nroutes: {default: m365}\n",
			"test.yaml:2: accounts[0].mailbox: required for OAuth accounts: the mailbox that sends (the signed-in user, or the user to impersonate)"},
		{"client credentials without secret", "accounts:\n  - name: m365\n    provider: microsoft\n    flow: client_credentials\n    tenant: contoso.com\n    client_id: abc\n    mailbox: s@contoso.com\nroutes: {default: m365}\n",
			"test.yaml:2: accounts[0].client_secret: flow client_credentials needs client_secret (or client_secret_file) or certificate_file and private_key_file"},
		{"certificate without key", "accounts:\n  - name: m365\n    provider: microsoft\n    flow: client_credentials\n    tenant: contoso.com\n    client_id: abc\n    mailbox: s@contoso.com\n    certificate_file: @FILE@\nroutes: {default: m365}\n",
			"test.yaml:2: accounts[0].private_key_file: certificate_file is set without private_key_file: set both"},
		{"google authcode without client id", "accounts:\n  - name: gmail\n    provider: google\n    mailbox: s@example.com\nroutes: {default: gmail}\n",
			"test.yaml:2: accounts[0].client_id: required for flow authcode: the OAuth client ID from the Google Cloud console"},
		{"service account without file", "accounts:\n  - name: gmail\n    provider: google\n    flow: service_account\n    mailbox: s@example.com\nroutes: {default: gmail}\n",
			"test.yaml:2: accounts[0].service_account_file: required for flow service_account: the JSON key of the service account"},
		{"google device flow", "accounts:\n  - name: gmail\n    provider: google\n    flow: device\n    client_id: c\n    mailbox: s@example.com\nroutes: {default: gmail}\n",
			"test.yaml:4: accounts[0].flow: Google does not allow the Gmail scope in the device flow: use authcode or service_account"},
		{"generic without token url", "accounts:\n  - name: g\n    provider: generic\n    host: smtp.example.com\n    client_id: c\n    auth_url: https://id.example.com/auth\n    scopes: [mail]\n    mailbox: s@example.com\nroutes: {default: g}\n",
			"test.yaml:2: accounts[0].token_url: required for provider generic"},
		{"bad url", "accounts:\n  - name: g\n    provider: generic\n    host: smtp.example.com\n    client_id: c\n    auth_url: id.example.com/auth\n    token_url: https://id.example.com/token\n    scopes: [mail]\n    mailbox: s@example.com\nroutes: {default: g}\n",
			`test.yaml:6: accounts[0].auth_url: "id.example.com/auth" is not an http(s) URL`},
		{"bad date", "accounts:\n  - name: out\n    transport: file\n    client_secret_expires: 30.06.2027\nroutes: {default: out}\n",
			`test.yaml:4: accounts[0].client_secret_expires: "30.06.2027" is not a date: want YYYY-MM-DD, e.g. 2027-06-30`},
		{"retry jitter", "accounts:\n  - name: out\n    transport: file\n    retry: {jitter: 1.5}\nroutes: {default: out}\n",
			"test.yaml:4: accounts[0].retry.jitter: 1.5: want a fraction from 0 to 1 (0 = the default 0.2), or -1 for no jitter"},
		{"retry max below first", "accounts:\n  - name: out\n    transport: file\n    retry:\n      first: 2h\n      max: 1h\nroutes: {default: out}\n",
			"test.yaml:6: accounts[0].retry.max: 1h0m0s is shorter than first 2h0m0s"},
		{"bad size", "accounts:\n  - name: out\n    transport: file\n    max_message_size: 35 megs\nroutes: {default: out}\n",
			`test.yaml:4: accounts[0].max_message_size: size "35 megs": want bytes or a number with a unit (KB, MB, GB, KiB, MiB, GiB), e.g. 35MB`},
		{"file account with provider", "accounts:\n  - name: out\n    transport: file\n    provider: google\nroutes: {default: out}\n",
			"test.yaml:4: accounts[0].provider: provider is only used with transport smtp"},
		{"open relay", base + "smtp_listeners:\n  - name: l\n    listen: :25\n",
			"test.yaml:7: smtp_listeners[0]: neither allowed_networks nor users is set: this listener would be an open relay"},
		{"legacy without networks", base + "smtp_listeners:\n  - name: l\n    listen: :25\n    legacy: true\n    users: [{name: u, password_hash: \"" + hash + "\"}]\n",
			"test.yaml:9: smtp_listeners[0].legacy: legacy (AUTH without TLS) requires allowed_networks to restrict who may use it"},
		{"listener without listen", base + "smtp_listeners:\n  - name: l\n    allowed_networks: [10.0.0.0/8]\n",
			"test.yaml:7: smtp_listeners[0].listen: required: host:port to listen on, e.g. 127.0.0.1:2525"},
		{"bad network", base + "smtp_listeners:\n  - name: l\n    listen: :25\n    allowed_networks: [10.0.0.0/33]\n",
			`test.yaml:9: smtp_listeners[0].allowed_networks[0]: "10.0.0.0/33" is not a network: want a CIDR like 192.168.1.0/24 or an IP address`},
		{"listener tls bad", base + "smtp_listeners:\n  - name: l\n    listen: :25\n    tls: ssl\n    allowed_networks: [10.0.0.1]\n",
			`test.yaml:9: smtp_listeners[0].tls: "ssl" is not valid: want one of none, starttls, implicit`},
		{"cert without key", base + "smtp_listeners:\n  - name: l\n    listen: :25\n    tls: starttls\n    cert_file: @FILE@\n    allowed_networks: [10.0.0.1]\n",
			"test.yaml:7: smtp_listeners[0].key_file: cert_file is set without key_file: set both, or neither for a self-signed certificate"},
		{"min tls version", base + "smtp_listeners:\n  - name: l\n    listen: :25\n    min_tls_version: 1.4\n    allowed_networks: [10.0.0.1]\n",
			`test.yaml:9: smtp_listeners[0].min_tls_version: "1.4" is not valid: want one of 1.0, 1.1, 1.2, 1.3`},
		{"bad bcrypt", base + "smtp_listeners:\n  - name: l\n    listen: :25\n    tls: starttls\n    users:\n      - name: u\n        password_hash: secret123\n",
			"test.yaml:12: smtp_listeners[0].users[0].password_hash: not a bcrypt hash: want $2a$, $2b$ or $2y$ followed by cost and salt"},
		{"user without hash", base + "smtp_listeners:\n  - name: l\n    listen: :25\n    tls: starttls\n    users:\n      - name: u\n",
			"test.yaml:11: smtp_listeners[0].users[0].password_hash: required: a bcrypt hash (spoolctl hash-password or htpasswd -nbB) or password_hash_file"},
		{"duplicate listener", base + "smtp_listeners:\n  - {name: l, listen: \":25\", allowed_networks: [10.0.0.1]}\n  - {name: l, listen: \":26\", allowed_networks: [10.0.0.1]}\n",
			`test.yaml:8: smtp_listeners[1].name: duplicate listener name "l"`},
		{"listener unknown account", base + "smtp_listeners:\n  - name: l\n    listen: :25\n    allowed_networks: [10.0.0.1]\n    account: m365\n",
			`test.yaml:10: smtp_listeners[0].account: account "m365" is not defined in accounts`},
		{"max line length", base + "smtp_listeners:\n  - name: l\n    listen: :25\n    allowed_networks: [10.0.0.1]\n    max_line_length: 512\n",
			"test.yaml:10: smtp_listeners[0].max_line_length: must be at least 1000 (RFC 5321)"},
		{"listener size negative", base + "smtp_listeners:\n  - name: l\n    listen: :25\n    allowed_networks: [10.0.0.1]\n    max_message_size: -1\n",
			`test.yaml:10: smtp_listeners[0].max_message_size: size "-1": want bytes or a number with a unit (KB, MB, GB, KiB, MiB, GiB), e.g. 35MB`},
		{"bad sender domain", base + "smtp_listeners:\n  - name: l\n    listen: :25\n    allowed_networks: [10.0.0.1]\n    allowed_sender_domains: [\"-bad.com\"]\n",
			`test.yaml:10: smtp_listeners[0].allowed_sender_domains[0]: "-bad.com" is not a domain name`},
		{"bare lf", base + "smtp_listeners:\n  - name: l\n    listen: :25\n    allowed_networks: [10.0.0.1]\n    bare_lf: accept\n",
			`test.yaml:10: smtp_listeners[0].bare_lf: "accept" is not valid: want one of reject, normalize`},
		{"scan folder without path", base + "scan_folders:\n  - name: s\n",
			"test.yaml:7: scan_folders[0].path: required: the directory to watch"},
		{"scan folder mode", base + "scan_folders:\n  - path: ./s\n    mode: inotify\n",
			`test.yaml:8: scan_folders[0].mode: "inotify" is not valid: want one of watch, poll`},
		{"scan user address", base + "scan_folders:\n  - path: ./s\n    users:\n      alice: {name: Alice, address: alice}\n",
			`test.yaml:9: scan_folders[0].users.alice.address: "alice" is not an e-mail address`},
		{"template", base + "scan_folders:\n  - path: ./s\n    subject_template: \"Scan {{.File\"\n",
			"test.yaml:8: scan_folders[0].subject_template: template does not parse: template: subject_template:1: unclosed action"},
		{"duplicate scan folder", base + "scan_folders:\n  - path: ./a/s\n  - path: ./b/s\n",
			`test.yaml:8: scan_folders[1].name: duplicate scan folder name "s"`},
		{"alias to nowhere", base + "data_dir: *nope\n",
			"test.yaml:6: data_dir: alias *nope refers to no anchor"},
	}
	// @FILE@ stands for a private file that exists, so a row has one problem.
	file := filepath.Join(t.TempDir(), "cert.pem")
	if err := os.WriteFile(file, []byte("x"), 0o600); err != nil {
		t.Fatal(err)
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			ps := parseProblems(t, strings.ReplaceAll(tt.src, "@FILE@", file))
			if len(ps) != 1 || ps[0].String() != tt.want {
				t.Errorf("problems:\n%s\nwant exactly:\n%s", ps.Error(), tt.want)
			}
		})
	}
}

func TestCollectsAllProblems(t *testing.T) {
	src := `data_dir: ./data
log:
  level: loud
  colour: red
delivery:
  workers: lots
smtp_listeners:
  - name: open
    listen: 0.0.0.0:25
accounts:
  - name: m365
    provider: microsoft
    client_secret: ${NOT_SET}
routes:
  default: nowhere
`
	ps := parseProblems(t, src)
	want := []string{
		`test.yaml:3: log.level: "loud" is not valid: want one of debug, info, warn, error`,
		`test.yaml:4: log.colour: unknown key "colour"`,
		`test.yaml:6: delivery.workers: want an integer, got "lots"`,
		`test.yaml:8: smtp_listeners[0]: neither allowed_networks nor users is set: this listener would be an open relay`,
		`test.yaml:11: accounts[0].mailbox: required for OAuth accounts: the mailbox that sends (the signed-in user, or the user to impersonate)`,
		`test.yaml:11: accounts[0].tenant: required for provider microsoft: the directory (tenant) ID or domain, e.g. contoso.onmicrosoft.com`,
		`test.yaml:11: accounts[0].client_id: required for provider microsoft: the application (client) ID of the app registration`,
		`test.yaml:13: accounts[0].client_secret: environment variable NOT_SET is not set`,
		`test.yaml:15: routes.default: account "nowhere" is not defined in accounts`,
	}
	got := strings.Split(ps.Error(), "\n")
	if strings.Join(got, "\n") != strings.Join(want, "\n") {
		t.Errorf("problems:\n%s\nwant:\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
	}
}
