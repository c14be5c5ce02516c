package configs

import (
	"bytes"
	"path/filepath"
	"strings"
	"testing"

	"github.com/spoold/spoold/configs/secret"
)

// TestPrintReadsBack: what Print writes parses back into the same config,
// for every shipped example (secrets aside: they print as [redacted]).
func TestPrintReadsBack(t *testing.T) {
	secrets := exampleSecrets(t)
	env := func(string) (string, bool) { return "from-env", true }
	paths, _ := filepath.Glob("*.yaml")
	for _, path := range paths {
		t.Run(path, func(t *testing.T) {
			c, err := parseExample(t, path, secrets, env)
			if err != nil {
				t.Fatal(err)
			}
			var out bytes.Buffer
			if err := Print(&out, c); err != nil {
				t.Fatal(err)
			}
			if strings.Contains(out.String(), "app-secret") || strings.Contains(out.String(), "from-env") || strings.Contains(out.String(), "relay-pw") {
				t.Fatalf("printed config shows a secret:\n%s", out.String())
			}
			// A secret given inline prints as [redacted]; read it back as an
			// ${ENV} reference. One read from a file prints its file key too,
			// so the redacted inline copy is dropped.
			printed := out.String()
			printed = dropRedactedTwins(printed)
			printed = strings.ReplaceAll(printed, secret.Redacted, "${FROM_PRINT}")
			back, err := parse("printed", []byte(printed), func(n string) (string, bool) {
				if n == "FROM_PRINT" {
					return hash, true // valid wherever a secret is (a bcrypt hash is also a fine password)
				}
				return env(n)
			}, nil)
			if err != nil {
				t.Fatalf("printed config does not parse:\n%v\n%s", err, printed)
			}
			// Print shows every field, so equal prints mean equal configs
			// (nil and empty lists aside, which the file cannot tell apart).
			redact(c)
			redact(back)
			var a, b bytes.Buffer
			if err := Print(&a, c); err != nil {
				t.Fatal(err)
			}
			if err := Print(&b, back); err != nil {
				t.Fatal(err)
			}
			if a.String() != b.String() {
				t.Errorf("printed config reads back differently:\n--- first\n%s\n--- read back\n%s", a.String(), b.String())
			}
		})
	}
}

// dropRedactedTwins removes "key: [redacted]" where the next line sets
// key_file, the form a secret read from a file prints in.
func dropRedactedTwins(s string) string {
	lines := strings.Split(s, "\n")
	var out []string
	for i, l := range lines {
		k, v, _ := strings.Cut(strings.TrimSpace(l), ": ")
		if v == `"`+secret.Redacted+`"` || v == secret.Redacted {
			if i+1 < len(lines) {
				nk, nv, _ := strings.Cut(strings.TrimSpace(lines[i+1]), ": ")
				if nk == k+"_file" && nv != `""` {
					out = append(out, strings.Replace(l, v, `""`, 1))
					continue
				}
			}
		}
		out = append(out, l)
	}
	return strings.Join(out, "\n")
}

// redact blanks every secret so configs compare without them.
func redact(c *Config) {
	for i := range c.Accounts {
		c.Accounts[i].ClientSecret, c.Accounts[i].Password = "", ""
	}
	for i := range c.SMTPListeners {
		for j := range c.SMTPListeners[i].Users {
			c.SMTPListeners[i].Users[j].PasswordHash = ""
		}
	}
}
