//go:build linux

package benchtest

import (
	"flag"
	"fmt"
	"io"
	"slices"
	"strings"
	"testing"

	"github.com/spoold/spoold/spool/pgspool/pgtest"
)

var flagStatements = flag.Bool("bench.statements", false,
	"BenchmarkSpoolBackends: load pg_stat_statements and report the database statements per delivered message, by kind (costs the server a little CPU per statement)")

// stmtKinds are the kinds of statement counted per message, in table order.
var stmtKinds = []string{"enqueue", "claim", "due", "notify", "transition", "body", "limits", "accounts", "heartbeat", "rescue", "tx", "other"}

// stmtKind sorts a statement, normalised by pg_stat_statements, into what
// spoold does with it. The patterns are the spool's and delivery's own
// SQL (spool/pgspool): a new statement lands in "other" until named here.
func stmtKind(q string) string {
	q = strings.ToLower(strings.Join(strings.Fields(q), " "))
	has := func(subs ...string) bool {
		for _, s := range subs {
			if strings.Contains(q, s) {
				return true
			}
		}
		return false
	}
	switch {
	case has("pg_notify"):
		return "notify"
	case has("select distinct account from spool_messages", "min(next_attempt_ns)"):
		return "due"
	case has("next_attempt_ns <=") && has("skip locked"):
		return "claim"
	case has("lease_until_ns <", "updated_ns <"):
		return "rescue" // expired leases, and the purge of delivered records in the same pass
	case has("spool_nodes"):
		return "heartbeat"
	case has("insert into spool_messages", "insert into spool_body_chunks", "body_present = true", "idempotency_key", "spool_routes",
		"for key share"): // the foreign-key check of each body chunk stored
		return "enqueue"
	case has("select state, body_present, body_chunks"):
		return "body" // opening a body
	case has("spool_body_chunks"):
		return "body" // reading a body to send it, deleting it once delivered
	case has("where id = $1 for update", "update spool_messages set"):
		return "transition" // attempt started, delivered, deferred, postponed
	case has("spool_budget", "spool_rates", "advisory"):
		return "limits" // daily budget, rate, connection slots
	case has("spool_accounts", "spool_grants", "spool_alerts", "spool_audit"):
		return "accounts"
	case q == "begin" || q == "commit" || q == "rollback" || strings.HasPrefix(q, "begin ") || strings.HasPrefix(q, "set "):
		return "tx"
	}
	return "other"
}

// stmtCounts is statements per message by kind, one repetition.
type stmtCounts map[string]float64

func countStatements(stmts []pgtest.Statement, msgs int) stmtCounts {
	out := stmtCounts{}
	if msgs <= 0 {
		return out
	}
	for _, s := range stmts {
		out[stmtKind(s.Query)] += float64(s.Calls) / float64(msgs)
	}
	return out
}

// total is the statements per message; the sessions opened are no
// statements and are left out.
func (c stmtCounts) total() float64 {
	t := 0.0
	for k, v := range c {
		if k != "sessions" {
			t += v
		}
	}
	return t
}

// writeStatements writes the statements-per-message table of the
// PostgreSQL rows: the median per kind over the repetitions.
func writeStatements(w io.Writer, rows []backendRow) {
	var pg []backendRow
	for _, r := range rows {
		if len(r.Stmts) > 0 {
			pg = append(pg, r)
		}
	}
	if len(pg) == 0 {
		return
	}
	io.WriteString(w, "Database sessions opened and statements run per delivered message (pg_stat_database, pg_stat_statements from after the warm-up until the nodes stopped; median of the repetitions):\n\n")
	io.WriteString(w, "| nodes | C | sessions opened | total | "+strings.Join(stmtKinds, " | ")+" |\n|"+strings.Repeat(" --- |", len(stmtKinds)+4)+"\n")
	for _, r := range pg {
		fmt.Fprintf(w, "| %d | %d | %.2f | %.1f |", r.Nodes, r.Clients, medianOf(r.Stmts, func(c stmtCounts) float64 { return c["sessions"] }),
			medianOf(r.Stmts, func(c stmtCounts) float64 { return c.total() }))
		for _, k := range stmtKinds {
			fmt.Fprintf(w, " %.2f |", medianOf(r.Stmts, func(c stmtCounts) float64 { return c[k] }))
		}
		io.WriteString(w, "\n")
	}
	io.WriteString(w, "\n")
}

func medianOf(cs []stmtCounts, f func(stmtCounts) float64) float64 {
	xs := make([]float64, len(cs))
	for i, c := range cs {
		xs[i] = f(c)
	}
	return median(xs)
}

// TestStatementKinds pins the sorting of the spool's own statements, as
// pg_stat_statements normalises them: the per-kind figures are only as
// good as this.
func TestStatementKinds(t *testing.T) {
	for q, want := range map[string]string{
		"SELECT pg_notify($1, $2)": "notify",
		"SELECT DISTINCT account FROM spool_messages WHERE state IN ($1, $2) AND next_attempt_ns <= $3 ORDER BY account":                                                 "due",
		"SELECT min(next_attempt_ns) FROM spool_messages WHERE state IN ($1, $2)":                                                                                        "due",
		"SELECT msg FROM spool_messages WHERE state IN ($1, $2) AND next_attempt_ns <= $3 AND account = $4 ORDER BY next_attempt_ns, id LIMIT $5 FOR UPDATE SKIP LOCKED": "claim",
		"SELECT msg FROM spool_messages WHERE state = $1 AND lease_until_ns < $2 FOR UPDATE SKIP LOCKED":                                                                 "rescue",
		"INSERT INTO spool_body_chunks (id, seq, data) VALUES ($1, $2, $3)":                                                                                              "enqueue",
		"SELECT data FROM spool_body_chunks WHERE id = $1 AND seq = $2":                                                                                                  "body",
		"SELECT msg, body_present FROM spool_messages WHERE id = $1 FOR UPDATE":                                                                                          "transition",
		"SELECT pg_try_advisory_lock($1, $2)":                                                                                                                            "limits",
		"begin":                                                                                                                                                          "tx",
		"COMMIT":                                                                                                                                                         "tx",
		"SELECT 42":                                                                                                                                                      "other",
	} {
		if got := stmtKind(q); got != want {
			t.Errorf("stmtKind(%q) = %s, want %s", q, got, want)
		}
	}
	if !slices.Contains(stmtKinds, "other") {
		t.Error("stmtKinds lacks other")
	}
}

func fmtCounts(c stmtCounts) string {
	parts := []string{fmt.Sprintf("sessions opened %.2f", c["sessions"])}
	for _, k := range stmtKinds {
		if c[k] > 0 {
			parts = append(parts, fmt.Sprintf("%s %.2f", k, c[k]))
		}
	}
	return strings.Join(parts, ", ")
}
