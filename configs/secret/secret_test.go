package secret

import (
	"bytes"
	"encoding/json"
	"fmt"
	"log/slog"
	"strings"
	"testing"
)

func TestSecretNeverPrints(t *testing.T) {
	const value = "hunter2-very-secret"
	s := Secret(value)
	type holder struct {
		S Secret
		P *Secret
	}
	h := holder{S: s, P: &s}
	var out []string
	for _, verb := range []string{"%v", "%+v", "%#v", "%s", "%q", "%x", "%X", "%10s", "%-8v"} {
		out = append(out, fmt.Sprintf(verb, s), fmt.Sprintf(verb, h))
	}
	js, _ := json.Marshal(h)
	txt, _ := s.MarshalText()
	y, _ := s.MarshalYAML()
	var logs bytes.Buffer
	slog.New(slog.NewJSONHandler(&logs, nil)).Info("x", "s", s, "h", h)
	slog.New(slog.NewTextHandler(&logs, nil)).Info("x", "s", s)
	out = append(out, string(js), string(txt), fmt.Sprint(y), logs.String(), s.String(), s.GoString())
	for _, o := range out {
		if strings.Contains(o, value) || strings.Contains(o, fmt.Sprintf("%x", value)) {
			t.Fatalf("secret leaked: %s", o)
		}
	}
	if !strings.Contains(string(js), Redacted) || s.Reveal() != value {
		t.Fatalf("json %s, reveal %q", js, s.Reveal())
	}
	if Secret("").String() != "" || fmt.Sprint(Secret("")) != "" {
		t.Fatal("an empty secret must print empty")
	}
}
