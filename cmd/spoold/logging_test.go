package main

import (
	"bytes"
	"encoding/json"
	"testing"
	"time"
)

// TestJSONLogDurations: durations in JSON logs read as "1m30s", not as
// nanoseconds.
func TestJSONLogDurations(t *testing.T) {
	var b bytes.Buffer
	log, _, err := newLogger(&b, "info", "json", false)
	if err != nil {
		t.Fatal(err)
	}
	log.Info("x", "timeout", 90*time.Second, "n", 3)
	var line map[string]any
	if err := json.Unmarshal(b.Bytes(), &line); err != nil {
		t.Fatal(err)
	}
	if line["timeout"] != "1m30s" || line["n"] != float64(3) {
		t.Fatalf("logged %s", b.String())
	}
}
