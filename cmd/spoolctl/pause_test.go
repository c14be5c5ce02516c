package main

import (
	"encoding/json"
	"strings"
	"testing"
)

func TestPauseResume(t *testing.T) {
	e := newEnv(t)
	if r := e.run(t, "pause"); r.code != 0 || !strings.Contains(r.stdout, "delivery paused") {
		t.Fatalf("pause: exit %d\n%s%s", r.code, r.stdout, r.stderr)
	}
	if !e.acc.DeliveryPaused() {
		t.Fatal("the daemon was not asked to pause")
	}
	r := e.run(t, "status")
	if r.code != 0 || !strings.Contains(r.stdout, "delivery is PAUSED") {
		t.Errorf("status does not show the pause:\n%s%s", r.stdout, r.stderr)
	}
	r = e.run(t, "status", "--json")
	var st struct {
		DeliveryPaused bool `json:"delivery_paused"`
	}
	if err := json.Unmarshal([]byte(r.stdout), &st); err != nil || !st.DeliveryPaused {
		t.Errorf("status --json: delivery_paused missing (%v):\n%s", err, r.stdout)
	}
	r = e.run(t, "resume", "--json")
	var ds struct {
		Paused *bool `json:"paused"`
	}
	if r.code != 0 || json.Unmarshal([]byte(r.stdout), &ds) != nil || ds.Paused == nil || *ds.Paused {
		t.Fatalf("resume --json: exit %d\n%s%s", r.code, r.stdout, r.stderr)
	}
	if e.acc.DeliveryPaused() {
		t.Error("the daemon is still paused after resume")
	}
	if r := e.run(t, "status"); strings.Contains(r.stdout, "PAUSED") {
		t.Errorf("status still shows a pause after resume:\n%s", r.stdout)
	}
	if r := e.run(t, "pause", "extra"); r.code != 2 {
		t.Errorf("pause with an argument: exit %d, want 2", r.code)
	}
}
