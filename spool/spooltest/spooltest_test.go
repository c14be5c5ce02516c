package spooltest

import (
	"context"
	"strings"
	"testing"

	"github.com/spoold/spoold/spool"
)

func TestOpenTemp(t *testing.T) {
	s := OpenTemp(t, spool.Options{RescueInterval: -1})
	id, err := s.Enqueue(context.Background(), spool.EnqueueRequest{To: []string{"a@example.com"}, Account: "outbox"}, strings.NewReader("hi"))
	if err != nil {
		t.Fatal(err)
	}
	if m, err := s.Get(context.Background(), id); err != nil || m.State != spool.StateQueued {
		t.Fatalf("Get = %v, %v", m, err)
	}
}
