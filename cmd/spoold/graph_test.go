package main

import (
	"bytes"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// graphAccount is a valid app-only Graph account; rows add a key to it.
const graphAccount = `accounts:
  - name: m365
    transport: graph
    provider: microsoft
    flow: client_credentials
    tenant: contoso.com
    client_id: app
    client_secret: s3cret
    mailbox: scanner@contoso.com
routes:
  default: m365
`

func TestGraphConfigProblems(t *testing.T) {
	tests := []struct {
		name, src, want string
	}{
		{"google cannot use graph", strings.Replace(graphAccount, "provider: microsoft", "provider: google", 1),
			"accounts[0].transport: graph is Microsoft Graph: it needs provider microsoft or microsoft-usgov, not google"},
		{"graph needs a provider", "accounts:\n  - name: m365\n    transport: graph\n    mailbox: a@contoso.com\nroutes:\n  default: m365\n",
			"accounts[0].provider: transport graph needs provider microsoft or microsoft-usgov"},
		{"smtp keys on a graph account", strings.Replace(graphAccount, "    mailbox:", "    host: smtp.office365.com\n    mailbox:", 1),
			"accounts[0].host: host is only used with transport smtp"},
		{"graph_endpoint on an smtp account", strings.Replace(strings.Replace(graphAccount, "transport: graph", "transport: smtp", 1), "    mailbox:", "    graph_endpoint: https://graph.microsoft.com\n    mailbox:", 1),
			"accounts[0].graph_endpoint: graph_endpoint is only used with transport graph"},
		{"endpoint must be https", strings.Replace(graphAccount, "    mailbox:", "    graph_endpoint: http://graph.microsoft.com\n    mailbox:", 1),
			`accounts[0].graph_endpoint: "http://graph.microsoft.com": want an https:// URL`},
		{"endpoint is the root", strings.Replace(graphAccount, "    mailbox:", "    graph_endpoint: https://graph.microsoft.com/v1.0\n    mailbox:", 1),
			"accounts[0].graph_endpoint: \"https://graph.microsoft.com/v1.0\": want the Graph root only"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			ps := parseProblems(t, tt.src)
			if !strings.Contains(ps.Error(), tt.want) {
				t.Errorf("problems:\n%v\nwant one containing %q", ps.Error(), tt.want)
			}
		})
	}
}

// TestGraphPrintConfig: -print-config shows what a Graph account runs
// with, per cloud: its endpoint, scopes and limits.
func TestGraphPrintConfig(t *testing.T) {
	cases := []struct {
		name       string
		edit, want []string
	}{
		{"app-only global", nil, []string{"transport: graph", `graph_endpoint: "https://graph.microsoft.com"`, "https://graph.microsoft.com/.default",
			"graph_large_messages: true", "max_connections: 4", "rate_per_minute: 30"}},
		{"delegated GCC High", []string{"provider: microsoft", "provider: microsoft-usgov", "    flow: client_credentials\n", "", "    client_secret: s3cret\n", ""},
			[]string{`graph_endpoint: "https://graph.microsoft.us"`, "https://graph.microsoft.us/Mail.Send", "https://graph.microsoft.us/Mail.ReadWrite", "offline_access", "login.microsoftonline.us"}},
		{"DoD, sendMail only", []string{"provider: microsoft", "provider: microsoft-usgov\n    graph_endpoint: https://dod-graph.microsoft.us\n    graph_large_messages: false"},
			[]string{`graph_endpoint: "https://dod-graph.microsoft.us"`, "https://dod-graph.microsoft.us/.default", "graph_large_messages: false"}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			src := graphAccount
			for i := 0; i+1 < len(c.edit); i += 2 {
				src = strings.Replace(src, c.edit[i], c.edit[i+1], 1)
			}
			path := filepath.Join(t.TempDir(), "spoold.yaml")
			if err := os.WriteFile(path, []byte("data_dir: "+filepath.Dir(path)+"\n"+src), 0o600); err != nil {
				t.Fatal(err)
			}
			var out, errb bytes.Buffer
			if code := run([]string{"-config", path, "-print-config"}, &out, &errb); code != exitOK {
				t.Fatalf("-print-config: exit %d: %s", code, errb.String())
			}
			for _, w := range c.want {
				if !strings.Contains(out.String(), w) {
					t.Errorf("-print-config lacks %q", w)
				}
			}
			if strings.Contains(out.String(), "s3cret") {
				t.Error("-print-config shows the client secret")
			}
		})
	}
}
