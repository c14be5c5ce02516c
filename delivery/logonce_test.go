package delivery

import (
	"context"
	"log/slog"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/spoold/spoold/delivery/smtpfake"
	"github.com/spoold/spoold/spool"
	"github.com/spoold/spoold/spool/spooltest"
)

// Reported defect (issue 15): each delivery and each dead letter was logged
// twice, once by the spool and once by delivery; and log lines and metrics
// carried empty class="" values. The spool and the engine share one log
// here, as in the daemon.
func TestEachOutcomeLoggedOnce(t *testing.T) {
	srv, err := smtpfake.Start(smtpfake.Options{Dir: t.TempDir(), Script: func(c smtpfake.Command) smtpfake.Reply {
		if c.Name == "RCPT" && strings.HasPrefix(c.Arg, "gone@") {
			return smtpfake.Reply{Code: 550, Enhanced: "5.1.1", Text: "no such user"}
		}
		return smtpfake.Reply{}
	}})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(srv.Close)
	var logs logBuffer
	log := slog.New(slog.NewTextHandler(&logs, nil))
	sp := spooltest.OpenTemp(t, spool.Options{Logger: log})
	reg := prometheus.NewRegistry()
	eng, err := New([]AccountConfig{testAccount(srv)}, sp, newTokens(), Options{Owner: "node-1", ShutdownTimeout: time.Second,
		Logger: log, Hostname: "spoold.test", Registerer: reg})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- eng.Run(ctx) }()
	var stopOnce sync.Once
	stop := func() { stopOnce.Do(func() { cancel(); <-done }) }
	t.Cleanup(stop)

	ok := realEnqueue(t, sp, spool.EnqueueRequest{From: "a@office.example", To: []string{"b@dest.example"}}, simpleBody)
	gone := realEnqueue(t, sp, spool.EnqueueRequest{From: "a@office.example", To: []string{"gone@dest.example"}}, simpleBody)
	realWait(t, sp, ok, func(m *spool.Message) bool { return m.State == spool.StateDelivered })
	realWait(t, sp, gone, func(m *spool.Message) bool { return m.State == spool.StateDead })
	// The engine logs an outcome after the spool commits it: stop the engine
	// so every line it will write is written before counting.
	stop()

	count := func(msg, id string) int {
		n := 0
		for _, l := range strings.Split(logs.String(), "\n") {
			if strings.Contains(l, "msg="+msg+" ") && strings.Contains(l, "msg_id="+id) {
				n++
			}
		}
		return n
	}
	if n := count("delivered", ok); n != 1 {
		t.Errorf("delivery of %s logged %d times, want once", ok, n)
	}
	if n := count("dead-lettered", gone); n != 1 {
		t.Errorf("dead letter %s logged %d times, want once", gone, n)
	}
	if strings.Contains(logs.String(), `=""`) {
		t.Errorf("log has an empty attribute:\n%s", logs.String())
	}
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, mf := range mfs {
		for _, m := range mf.GetMetric() {
			for _, lp := range m.GetLabel() {
				if lp.GetValue() == "" {
					t.Errorf("%s has an empty label %s", mf.GetName(), lp.GetName())
				}
			}
		}
	}
	if t.Failed() {
		t.Logf("log:\n%s", logs.String())
	}
}
