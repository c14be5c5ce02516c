package configs

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// TestShippedExamplesValidate parses every YAML file in this directory with
// fake environment variables and fake secret files.
func TestShippedExamplesValidate(t *testing.T) {
	secrets := exampleSecrets(t)
	env := func(name string) (string, bool) {
		switch name {
		case "M365_CLIENT_SECRET", "GOOGLE_CLIENT_SECRET":
			return "from-env-" + name, true
		}
		return "", false
	}
	paths, err := filepath.Glob("*.yaml")
	if err != nil {
		t.Fatal(err)
	}
	want := []string{"default.yaml", "gmail.yaml", "m365-app-only.yaml", "m365-delegated.yaml", "m365-graph.yaml", "m365-usgov.yaml", "relay-password.yaml", "spoold.example.yaml"}
	if strings.Join(paths, " ") != strings.Join(want, " ") {
		t.Fatalf("example files = %v, want %v", paths, want)
	}
	for _, path := range paths {
		t.Run(path, func(t *testing.T) {
			c, err := parseExample(t, path, secrets, env)
			if err != nil {
				t.Fatalf("shipped example does not validate:\n%v", err)
			}
			if len(c.Accounts) == 0 || c.Routes.Default == "" {
				t.Errorf("example has no accounts or default route: %+v", c)
			}
		})
	}
}

// exampleSecrets writes fake versions of the secret files the shipped
// examples read from /etc/spoold/ into a temp dir, for parseExample.
func exampleSecrets(t *testing.T) string {
	t.Helper()
	dir := t.TempDir()
	for name, content := range map[string]string{
		"m365.secret": "app-secret\n", "google-sa.json": `{"type":"service_account"}`,
		"mfd-2nd-floor.hash": hash + "\n", "relay.password": "relay-pw\n", "m365.crt": "cert", "m365.key": "key",
	} {
		if err := os.WriteFile(filepath.Join(dir, name), []byte(content), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	return dir
}

// parseExample parses the shipped example at path with its /etc/spoold/
// paths redirected to secrets (from exampleSecrets) and env for ${ENV}.
func parseExample(t *testing.T, path, secrets string, env func(string) (string, bool)) (*Config, error) {
	t.Helper()
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	data = []byte(strings.ReplaceAll(string(data), "/etc/spoold/", secrets+"/"))
	return parse(path, data, env, nil)
}

// TestExampleDefaultsResolved checks what the examples rely on from this
// layer: secrets read from env and files (cmd/spoold's plan tests check the
// provider presets the daemon applies).
func TestExampleDefaultsResolved(t *testing.T) {
	dir := t.TempDir()
	secretFile := filepath.Join(dir, "m365.secret")
	if err := os.WriteFile(secretFile, []byte("  s3cr3t-from-file \n"), 0o600); err != nil {
		t.Fatal(err)
	}
	data, err := os.ReadFile("m365-app-only.yaml")
	if err != nil {
		t.Fatal(err)
	}
	data = []byte(strings.ReplaceAll(string(data), "/etc/spoold/m365.secret", secretFile))
	c, err := parse("m365-app-only.yaml", data, noEnv, nil)
	if err != nil {
		t.Fatal(err)
	}
	a, _ := c.Account("m365")
	if a.ClientSecret.Reveal() != "s3cr3t-from-file" {
		t.Errorf("client secret from file = %q, want trimmed content", a.ClientSecret.Reveal())
	}
	if !a.ClientSecretExpires.Equal(time.Date(2027, 6, 30, 0, 0, 0, 0, time.UTC)) {
		t.Errorf("client_secret_expires = %v", a.ClientSecretExpires)
	}

	data, err = os.ReadFile("m365-delegated.yaml")
	if err != nil {
		t.Fatal(err)
	}
	c, err = parse("m365-delegated.yaml", data, func(n string) (string, bool) { return "env-" + n, true }, nil)
	if err != nil {
		t.Fatal(err)
	}
	a, _ = c.Account("m365")
	if a.ClientSecret.Reveal() != "env-M365_CLIENT_SECRET" {
		t.Errorf("client secret from env = %q", a.ClientSecret.Reveal())
	}
}
