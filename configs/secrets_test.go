package configs

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"testing"

	"github.com/spoold/spoold/configs/secret"
)

func TestSecretFilePermissions(t *testing.T) {
	if runtime.GOOS == "windows" {
		t.Skip("no Unix permission bits")
	}
	dir := t.TempDir()
	path := filepath.Join(dir, "relay.password")
	if err := os.WriteFile(path, []byte("pw\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	src := "accounts:\n  - name: relay\n    host: mail.example.com\n    username: u\n    password_file: " + path + "\nroutes: {default: relay}\n"
	for _, tt := range []struct {
		mode os.FileMode
		want string
	}{
		{0o600, ""},
		{0o400, ""},
		{0o640, "test.yaml:5: accounts[0].password_file: secret file " + path + " is readable by group/others: run chmod 600 " + path},
		{0o604, "test.yaml:5: accounts[0].password_file: secret file " + path + " is readable by group/others: run chmod 600 " + path},
		{0o620, "test.yaml:5: accounts[0].password_file: secret file " + path + " is writable by group/others: run chmod 600 " + path},
	} {
		if err := os.Chmod(path, tt.mode); err != nil {
			t.Fatal(err)
		}
		c, err := parse("test.yaml", []byte(src), noEnv, nil)
		if tt.want == "" {
			if err != nil {
				t.Errorf("mode %o: %v", tt.mode, err)
			} else if a, _ := c.Account("relay"); a.Password.Reveal() != "pw" {
				t.Errorf("mode %o: password %q, want the trimmed file content", tt.mode, a.Password.Reveal())
			}
			continue
		}
		if err == nil || err.Error() != tt.want {
			t.Errorf("mode %o: got %v\nwant %s", tt.mode, err, tt.want)
		}
	}
	if err := os.Chmod(path, 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(path, []byte(" \n"), 0o600); err != nil {
		t.Fatal(err)
	}
	_, err := parse("test.yaml", []byte(src), noEnv, nil)
	if want := "test.yaml:5: accounts[0].password_file: secret file " + path + " is empty"; err == nil || err.Error() != want {
		t.Errorf("empty secret file: %v", err)
	}
}

func TestEnvExpansion(t *testing.T) {
	env := func(n string) (string, bool) {
		m := map[string]string{"A": "alpha", "B_2": "beta", "EMPTY": ""}
		v, ok := m[n]
		return v, ok
	}
	for _, tt := range []struct{ in, out, err string }{
		{"plain", "plain", ""},
		{"${A}", "alpha", ""},
		{"x-${A}-${B_2}-y", "x-alpha-beta-y", ""},
		{"${EMPTY}", "", ""},
		{hash, hash, ""}, // $ without { is literal
		{"${A", "", "unterminated ${ in value: write ${NAME}"},
		{"${}", "", "${} is not a valid environment variable reference: want ${NAME} with letters, digits and _"},
		{"${1A}", "", "${1A} is not a valid environment variable reference: want ${NAME} with letters, digits and _"},
	} {
		out, missing, err := expandEnv(tt.in, env)
		if tt.err != "" {
			if err == nil || err.Error() != tt.err {
				t.Errorf("%q: err %v, want %s", tt.in, err, tt.err)
			}
			continue
		}
		if err != nil || out != tt.out || len(missing) != 0 {
			t.Errorf("%q: %q %v %v, want %q", tt.in, out, missing, err, tt.out)
		}
	}
	_, missing, _ := expandEnv("${A}${NOPE}${ALSO_NOPE}", env)
	if strings.Join(missing, ",") != "NOPE,ALSO_NOPE" {
		t.Errorf("missing = %v", missing)
	}
}

// TestSecretsNeverShown dumps a whole Config every way it might be logged and
// checks that no secret value appears.
func TestSecretsNeverShown(t *testing.T) {
	dir := t.TempDir()
	hashFile := filepath.Join(dir, "u.hash")
	if err := os.WriteFile(hashFile, []byte(hash), 0o600); err != nil {
		t.Fatal(err)
	}
	src := `smtp_listeners:
  - name: l
    listen: 127.0.0.1:2525
    users:
      - name: u1
        password_hash: "` + hash + `"
      - name: u2
        password_hash_file: ` + hashFile + `
accounts:
  - name: m365
    provider: microsoft
    flow: client_credentials
    tenant: contoso.com
    client_id: cid
    client_secret: ${CS}
    mailbox: s@contoso.com
  - name: relay
    host: smtp.example.com
    username: relay-user
    password: "hunter2-literal"
routes: {default: m365}
`
	env := func(n string) (string, bool) { return "client-secret-from-env", n == "CS" }
	c, err := parse("test.yaml", []byte(src), env, nil)
	if err != nil {
		t.Fatal(err)
	}
	secrets := []string{"client-secret-from-env", "hunter2-literal", hash, "N9qo8uLOickgx2ZMRZoMyeIjZAgcfl7p92ldGxad68LJZdL17lhWy"}
	a, _ := c.Account("m365")
	if a.ClientSecret.Reveal() != secrets[0] {
		t.Fatalf("secret not resolved: Reveal() = %q", a.ClientSecret.Reveal())
	}
	if c.SMTPListeners[0].Users[1].PasswordHash.Reveal() != hash {
		t.Fatal("password_hash_file not read")
	}
	var outputs []string
	for _, f := range []string{"%v", "%+v", "%#v", "%s", "%q", "%x"} {
		outputs = append(outputs, fmt.Sprintf(f, c), fmt.Sprintf(f, *c), fmt.Sprintf(f, a.ClientSecret))
	}
	js, err := json.Marshal(c)
	if err != nil {
		t.Fatal(err)
	}
	outputs = append(outputs, string(js))
	var buf bytes.Buffer
	log := slog.New(slog.NewJSONHandler(&buf, nil))
	log.Info("config", "config", c, "secret", a.ClientSecret, "account", *a)
	slog.New(slog.NewTextHandler(&buf, nil)).Info("config", "config", c, "secret", a.ClientSecret)
	outputs = append(outputs, buf.String())
	for _, out := range outputs {
		for _, s := range secrets {
			if strings.Contains(out, s) {
				t.Fatalf("secret %q leaked in output:\n%s", s, out)
			}
		}
	}
	if !strings.Contains(string(js), `"client_secret":"[redacted]"`) {
		t.Errorf("JSON does not show the redaction marker: %s", js)
	}
	if fmt.Sprint(secret.Secret("")) != "" {
		t.Error("an empty secret should print empty, to show it is unset")
	}
}

// TestProblemsNeverShowSecrets: a bad value in a secret field is reported
// without echoing it.
func TestProblemsNeverShowSecrets(t *testing.T) {
	src := "accounts:\n  - name: relay\n    host: mail.example.com\n    username: u\n    password: [\"hunter2\"]\nroutes: {default: relay}\n"
	_, err := parse("test.yaml", []byte(src), noEnv, nil)
	var ps *Problems
	if !errors.As(err, &ps) {
		t.Fatalf("want problems, got %v", err)
	}
	if strings.Contains(err.Error(), "hunter2") {
		t.Fatalf("problem shows the secret: %v", err)
	}
	if want := "test.yaml:5: accounts[0].password: want a string, got a list"; !strings.Contains(err.Error(), want) {
		t.Errorf("got %v, want %s", err, want)
	}
}
