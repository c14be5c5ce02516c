package configs

import (
	"errors"
	"os"
	"path/filepath"
	"testing"
)

// FuzzParse: no input panics, hangs or escapes the *Problems contract.
func FuzzParse(f *testing.F) {
	paths, _ := filepath.Glob("*.yaml")
	for _, p := range paths {
		if data, err := os.ReadFile(p); err == nil {
			f.Add(data)
		}
	}
	for _, s := range []string{
		base, "", "---\n", "- a\n", "a: &a [*a]\n", "accounts: [\n", "<<: {data_dir: x}\n",
		"accounts:\n  - <<: [*x]\n", "data_dir: !!binary aGVsbG8=\n", "routes:\n  users: {? [a]: b}\n",
		"smtp_listeners:\n  - allowed_networks: [::ffff:1.2.3.4, 0.0.0.0/0]\n", "spool: {lease: 1.5d3h}\n",
		"accounts:\n  - {name: x, password: \"${\"}\n",
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		c, err := parse("fuzz.yaml", data, noEnv, nil)
		if err == nil {
			if c == nil {
				t.Fatal("nil config without error")
			}
			return
		}
		var ps *Problems
		if !errors.As(err, &ps) || len(*ps) == 0 {
			t.Fatalf("error %T %v is not a non-empty *Problems", err, err)
		}
		for _, p := range *ps {
			if p.File != "fuzz.yaml" || p.Line < 0 || p.Reason == "" {
				t.Fatalf("malformed problem %+v", p)
			}
		}
		_ = err.Error()
	})
}

func BenchmarkParseExample(b *testing.B) {
	data, err := os.ReadFile("spoold.example.yaml")
	if err != nil {
		b.Fatal(err)
	}
	env := func(string) (string, bool) { return "x", true }
	b.ReportAllocs()
	for b.Loop() {
		if _, err := parse("spoold.example.yaml", data, env, nil); err != nil {
			b.Fatal(err)
		}
	}
}
