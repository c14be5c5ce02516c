package main

import (
	"bytes"
	"strings"
	"testing"

	"github.com/spoold/spoold/configs"
)

// TestAlertsConfigProblems: -check reports the alerts: section's problems
// at their lines with their YAML keys, and never quotes a webhook URL (it
// is a secret).
func TestAlertsConfigProblems(t *testing.T) {
	src := base + `alerts:
  queue_age: 10s
  email:
    account: nobody
    to: [not-an-address]
  webhooks:
    - url: ftp://hooks.example/SECRETKEY
      format: xml
  commands:
    - command: [notify]
`
	var got []string
	for _, p := range parseProblems(t, src) {
		got = append(got, p.String())
		if strings.Contains(p.String(), "SECRETKEY") {
			t.Errorf("a problem quotes the webhook URL: %s", p)
		}
	}
	want := []string{
		`test.yaml:7: alerts.queue_age: 10s is too short: use at least 1m, or 0 to turn it off`,
		`test.yaml:9: alerts.email.account: account "nobody" is not defined in accounts`,
		`test.yaml:10: alerts.email.to[0]: "not-an-address" is not a plain e-mail address like admin@example.com`,
		`test.yaml:12: alerts.webhooks[0].url: is not an http:// or https:// URL`,
		`test.yaml:13: alerts.webhooks[0].format: "xml" is not valid: want one of "", json, teams, slack`,
		`test.yaml:15: alerts.commands[0].command: "notify" is not an absolute path: spoold runs the program without a shell or PATH search`,
	}
	if strings.Join(got, "\n") != strings.Join(want, "\n") {
		t.Errorf("problems:\n%s\nwant:\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
	}
}

// TestAlertsPrintConfig: -print-config shows the alerter's defaults and
// redacts webhook URLs.
func TestAlertsPrintConfig(t *testing.T) {
	src := base + `alerts:
  queue_depth: 0
  webhooks:
    - url: https://hooks.slack.com/services/T0/B0/SECRETKEY
      format: slack
`
	var p *plan
	if _, err := configs.Parse("test.yaml", []byte(src), noEnv, planChecker(&p)); err != nil {
		t.Fatal(err)
	}
	var out bytes.Buffer
	if err := configs.Print(&out, p.effective()); err != nil {
		t.Fatal(err)
	}
	s := out.String()
	for _, want := range []string{"  queue_depth: 0\n", "  queue_age: 4h\n", "  reminder_interval: 1d\n", "    - name: webhook1\n", "      url: \"[redacted]\"\n", "      timeout: 10s\n"} {
		if !strings.Contains(s, want) {
			t.Errorf("-print-config lacks %q:\n%s", want, s[strings.Index(s, "alerts:"):])
		}
	}
	if strings.Contains(s, "SECRETKEY") {
		t.Error("-print-config shows the webhook URL")
	}
}
