package pgtest

import (
	"context"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
)

// TestStartQueryStop starts a cluster, checks it runs with fsync and
// synchronous commits on, and that a new database is empty and reachable.
func TestStartQueryStop(t *testing.T) {
	c := Start(t)
	t.Logf("cluster started in %v", c.StartTook)
	dsn := c.NewDatabase(t)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	conn, err := pgx.Connect(ctx, dsn)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close(ctx)
	for setting, want := range map[string]string{"fsync": "on", "synchronous_commit": "on", "listen_addresses": ""} {
		var got string
		if err := conn.QueryRow(ctx, "SELECT current_setting($1)", setting).Scan(&got); err != nil {
			t.Fatal(err)
		}
		if got != want {
			t.Errorf("%s = %q, want %q", setting, got, want)
		}
	}
	var n int
	if err := conn.QueryRow(ctx, "SELECT count(*) FROM pg_tables WHERE schemaname = 'public'").Scan(&n); err != nil || n != 0 {
		t.Fatalf("new database has %d tables (%v), want 0", n, err)
	}
}

// TestStatementsCounted checks the statement counts the spool's
// statements-per-message figures come from: a reset clears them, and a
// statement run three times is counted three times.
func TestStatementsCounted(t *testing.T) {
	c := StartWith(t, Options{StatStatements: true})
	dsn := c.NewSchema(t)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	conn, err := pgx.Connect(ctx, dsn)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close(ctx)
	if _, err := conn.Exec(ctx, "CREATE TABLE counted (n int)"); err != nil {
		t.Fatal(err)
	}
	c.ResetStatements(t)
	for i := range 3 {
		if _, err := conn.Exec(ctx, "INSERT INTO counted VALUES ($1)", i); err != nil {
			t.Fatal(err)
		}
	}
	got := map[string]int64{}
	for _, s := range c.Statements(t) {
		got[s.Query] += s.Calls
	}
	if n := got["INSERT INTO counted VALUES ($1)"]; n != 3 {
		t.Errorf("INSERT counted %d times, want 3; all: %v", n, got)
	}
	if n := got["CREATE TABLE counted (n int)"]; n != 0 {
		t.Errorf("CREATE TABLE from before the reset counted %d times, want 0", n)
	}
}
