// Package pgtest starts throwaway PostgreSQL clusters for tests: initdb into
// a private temporary directory, postgres listening only on a unix socket
// in that directory (never TCP, never a server the test did not start),
// fsync on, and everything stopped and removed when the test ends.
//
// Tests skip with a clear message when the PostgreSQL server binaries are
// not installed, except under CI (CI=true), where a missing server fails
// the test: CI installs Debian's postgresql package (.ci/run).
package pgtest

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
)

// Cluster is one running throwaway PostgreSQL server.
type Cluster struct {
	dir     string // holds data/ and the socket; removed at cleanup
	data    string
	sockDir string
	bin     string
	cred    *syscall.Credential // the unprivileged user the server runs as when the test runs as root
	dbs     atomic.Int64
	// sharedOnce creates the database NewSchema's schemas live in.
	sharedOnce sync.Once
	sharedErr  error
	// StartTook is how long initdb and the server start took.
	StartTook time.Duration
}

// superuser is the cluster's only role (initdb -U); local connections are
// trusted, and only this process's user can reach the private socket directory.
const superuser = "spoold"

// FindBin returns the directory holding initdb and pg_ctl: PATH first, then
// Debian's /usr/lib/postgresql/<version>/bin (newest version).
func FindBin() (string, error) {
	if p, err := exec.LookPath("pg_ctl"); err == nil {
		if real, err := filepath.EvalSymlinks(p); err == nil {
			p = real
		}
		dir := filepath.Dir(p)
		if _, err := os.Stat(filepath.Join(dir, "initdb")); err == nil {
			return dir, nil
		}
	}
	matches, _ := filepath.Glob("/usr/lib/postgresql/*/bin/pg_ctl")
	sort.Slice(matches, func(i, j int) bool { return pgVersion(matches[i]) > pgVersion(matches[j]) })
	for _, m := range matches {
		dir := filepath.Dir(m)
		if _, err := os.Stat(filepath.Join(dir, "initdb")); err == nil {
			return dir, nil
		}
	}
	return "", fmt.Errorf("PostgreSQL server binaries (initdb, pg_ctl) not found in PATH or /usr/lib/postgresql/*/bin: install the postgresql package")
}

func pgVersion(pgctl string) int {
	v, _ := strconv.Atoi(filepath.Base(filepath.Dir(filepath.Dir(pgctl))))
	return v
}

// Options are what a test may ask of its cluster beyond the defaults.
type Options struct {
	// StatStatements loads pg_stat_statements, so a test or benchmark can
	// count the statements the spool runs (Cluster.Statements). Off by
	// default: it costs the server a little CPU per statement.
	StatStatements bool
}

// Start initialises and starts a cluster, stopped and removed in t.Cleanup.
// Without PostgreSQL it skips the test, or fails it when CI=true.
func Start(t testing.TB) *Cluster { return StartWith(t, Options{}) }

// StartWith is Start with opts.
func StartWith(t testing.TB, o Options) *Cluster {
	t.Helper()
	bin, err := FindBin()
	if err != nil {
		if os.Getenv("CI") == "true" {
			t.Fatalf("pgtest: %v (CI must run the PostgreSQL tests)", err)
		}
		t.Skipf("pgtest: %v; skipping the PostgreSQL tests", err)
	}
	begin := time.Now()
	// Not t.TempDir: its parents are 0700 and owned by the test's user,
	// which the unprivileged server user could not traverse.
	dir, err := os.MkdirTemp("", "spoold-pgtest-")
	if err != nil {
		t.Fatalf("pgtest: creating the cluster directory: %v", err)
	}
	c := &Cluster{dir: dir, data: filepath.Join(dir, "data"), sockDir: filepath.Join(dir, "sock"), bin: bin}
	t.Cleanup(func() {
		c.stop(t)
		if err := os.RemoveAll(dir); err != nil {
			t.Errorf("pgtest: removing %s: %v", dir, err)
		}
	})
	if err := os.Mkdir(c.sockDir, 0o700); err != nil {
		t.Fatalf("pgtest: %v", err)
	}
	if os.Geteuid() == 0 {
		// initdb refuses to run as root: run the server as the postgres
		// user the Debian package creates.
		u, err := user.Lookup("postgres")
		if err != nil {
			t.Fatalf("pgtest: running as root needs an unprivileged user for the server: %v (install the postgresql package, which creates user postgres)", err)
		}
		uid, _ := strconv.Atoi(u.Uid)
		gid, _ := strconv.Atoi(u.Gid)
		c.cred = &syscall.Credential{Uid: uint32(uid), Gid: uint32(gid)}
		for _, p := range []string{dir, c.sockDir} {
			if err := os.Chown(p, uid, gid); err != nil {
				t.Fatalf("pgtest: %v", err)
			}
		}
	}
	// --no-sync only skips initdb's own flush of a cluster that is thrown
	// away; the server itself runs with fsync on (below).
	if out, err := c.run("initdb", "-D", c.data, "-U", superuser, "--auth=trust", "-E", "UTF8", "--locale=C", "--no-sync", "--no-instructions"); err != nil {
		t.Fatalf("pgtest: initdb: %v\n%s", err, out)
	}
	if o.StatStatements {
		// In postgresql.conf rather than on the command line, so that
		// Restart keeps it. track = all: statements inside functions too.
		conf := "\nshared_preload_libraries = 'pg_stat_statements'\npg_stat_statements.track = all\npg_stat_statements.max = 10000\n"
		if err := appendFile(filepath.Join(c.data, "postgresql.conf"), conf); err != nil {
			t.Fatalf("pgtest: enabling pg_stat_statements: %v", err)
		}
	}
	opts := strings.Join([]string{
		"-c listen_addresses=''", // unix socket only: never a port another test or server uses
		"-k " + c.sockDir,
		"-c fsync=on",
		"-c synchronous_commit=on",
		"-c max_connections=200",
		"-c shared_buffers=32MB",
	}, " ")
	logFile := filepath.Join(dir, "server.log")
	if out, err := c.run("pg_ctl", "-D", c.data, "-l", logFile, "-w", "-t", "60", "-o", opts, "start"); err != nil {
		log, _ := os.ReadFile(logFile)
		t.Fatalf("pgtest: starting postgres: %v\n%s\n%s", err, out, log)
	}
	c.StartTook = time.Since(begin)
	return c
}

// appendFile appends text to an existing file (postgresql.conf, owned by
// the server's user when the test runs as root, who may still write it).
func appendFile(path, text string) error {
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_APPEND, 0)
	if err != nil {
		return err
	}
	if _, err := f.WriteString(text); err != nil {
		f.Close()
		return err
	}
	return f.Close()
}

func (c *Cluster) run(name string, args ...string) ([]byte, error) {
	cmd := exec.Command(filepath.Join(c.bin, name), args...)
	cmd.Dir = c.dir
	cmd.Env = append(os.Environ(), "LC_ALL=C")
	if c.cred != nil {
		cmd.SysProcAttr = &syscall.SysProcAttr{Credential: c.cred}
	}
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	err := cmd.Run()
	return out.Bytes(), err
}

func (c *Cluster) stop(t testing.TB) {
	if _, err := os.Stat(filepath.Join(c.data, "postmaster.pid")); err != nil {
		return // never started
	}
	// immediate: the data is thrown away, so no shutdown checkpoint.
	if out, err := c.run("pg_ctl", "-D", c.data, "-m", "immediate", "-w", "stop"); err != nil {
		t.Errorf("pgtest: stopping postgres: %v\n%s", err, out)
	}
}

// Stop stops the server (immediate mode, as a crash would) without
// removing it; Restart brings it back. For tests of a database that goes
// away under load.
func (c *Cluster) Stop(t testing.TB) {
	t.Helper()
	if out, err := c.run("pg_ctl", "-D", c.data, "-m", "immediate", "-w", "stop"); err != nil {
		t.Fatalf("pgtest: stopping postgres: %v\n%s", err, out)
	}
}

// Restart starts a server stopped with Stop.
func (c *Cluster) Restart(t testing.TB) {
	t.Helper()
	opts := "-c listen_addresses='' -k " + c.sockDir + " -c fsync=on -c max_connections=200"
	if out, err := c.run("pg_ctl", "-D", c.data, "-l", filepath.Join(c.dir, "server.log"), "-w", "-t", "60", "-o", opts, "start"); err != nil {
		t.Fatalf("pgtest: restarting postgres: %v\n%s", err, out)
	}
}

// DSN returns a connection string for database db on the cluster's socket.
func (c *Cluster) DSN(db string) string {
	return fmt.Sprintf("host=%s user=%s dbname=%s sslmode=disable", c.sockDir, superuser, db)
}

// errUnreachable is exec's error when the cluster cannot be reached: at a
// test's end it is gone already, and there is nothing left to drop.
var errUnreachable = errors.New("cannot connect to the cluster")

// exec runs one statement on a connection of its own to database db.
func (c *Cluster) exec(db, sql string) error {
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	conn, err := pgx.Connect(ctx, c.DSN(db))
	if err != nil {
		return fmt.Errorf("%w: %w", errUnreachable, err)
	}
	defer conn.Close(ctx)
	_, err = conn.Exec(ctx, sql)
	return err
}

// NewDatabase creates an empty database, dropped at the end of the test,
// and returns its DSN: tests share one cluster but never each other's data.
func (c *Cluster) NewDatabase(t testing.TB) string {
	t.Helper()
	name := fmt.Sprintf("t%d", c.dbs.Add(1))
	if err := c.exec("postgres", "CREATE DATABASE "+name); err != nil {
		t.Fatalf("pgtest: creating database %s: %v", name, err)
	}
	t.Cleanup(func() {
		// FORCE: a test that failed may have left a connection open.
		if err := c.exec("postgres", "DROP DATABASE IF EXISTS "+name+" WITH (FORCE)"); err != nil && !errors.Is(err, errUnreachable) {
			t.Errorf("pgtest: dropping database %s: %v", name, err)
		}
	})
	return c.DSN(name)
}

// NewSchema creates an empty schema in one database shared by the test's
// schemas, dropped at the end of the test, and returns a DSN whose
// search_path puts it first: a store far cheaper to make than a database
// (no checkpoint, no copy of template1), for tests that open many.
func (c *Cluster) NewSchema(t testing.TB) string {
	t.Helper()
	c.sharedOnce.Do(func() { c.sharedErr = c.exec("postgres", "CREATE DATABASE schemas") })
	if c.sharedErr != nil {
		t.Fatalf("pgtest: creating the database for schemas: %v", c.sharedErr)
	}
	name := fmt.Sprintf("s%d", c.dbs.Add(1))
	if err := c.exec("schemas", "CREATE SCHEMA "+name); err != nil {
		t.Fatalf("pgtest: creating schema %s: %v", name, err)
	}
	t.Cleanup(func() {
		if err := c.exec("schemas", "DROP SCHEMA IF EXISTS "+name+" CASCADE"); err != nil && !errors.Is(err, errUnreachable) {
			t.Errorf("pgtest: dropping schema %s: %v", name, err)
		}
	})
	return c.DSN("schemas") + " search_path=" + name
}

// Statement is one normalised statement pg_stat_statements counted, summed
// over the databases and roles it ran in.
type Statement struct {
	Query string
	Calls int64
}

// ResetStatements zeroes the cluster's statement counts (every database).
// The cluster must have been started with Options.StatStatements.
func (c *Cluster) ResetStatements(t testing.TB) {
	t.Helper()
	c.statements(t, "SELECT pg_stat_statements_reset()")
}

// Statements returns the statements counted since the last
// ResetStatements, most called first; the reset itself and these reads
// are left out.
func (c *Cluster) Statements(t testing.TB) []Statement {
	t.Helper()
	return c.statements(t, `SELECT query, sum(calls)::bigint FROM pg_stat_statements
		WHERE query NOT LIKE '%pg_stat_statements%' GROUP BY query ORDER BY 2 DESC, 1`)
}

// Sessions returns how many sessions (connections) the server has
// accepted so far, over every database: each is a backend process forked
// and authenticated, work no statement count shows.
func (c *Cluster) Sessions(t testing.TB) int64 {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	conn, err := pgx.Connect(ctx, c.DSN("postgres"))
	if err != nil {
		t.Fatalf("pgtest: connecting to the cluster: %v", err)
	}
	defer conn.Close(ctx)
	// Statistics are read once per transaction from a snapshot; outside
	// one each query sees fresh counts.
	var n int64
	if err := conn.QueryRow(ctx, "SELECT coalesce(sum(sessions), 0)::bigint FROM pg_stat_database").Scan(&n); err != nil {
		t.Fatalf("pgtest: reading pg_stat_database: %v", err)
	}
	return n
}

func (c *Cluster) statements(t testing.TB, q string) []Statement {
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	conn, err := pgx.Connect(ctx, c.DSN("postgres"))
	if err != nil {
		t.Fatalf("pgtest: connecting to the cluster: %v", err)
	}
	defer conn.Close(ctx)
	if _, err := conn.Exec(ctx, "CREATE EXTENSION IF NOT EXISTS pg_stat_statements"); err != nil {
		t.Fatalf("pgtest: pg_stat_statements (start the cluster with StartWith(t, Options{StatStatements: true})): %v", err)
	}
	rows, err := conn.Query(ctx, q)
	if err != nil {
		t.Fatalf("pgtest: reading pg_stat_statements: %v", err)
	}
	var out []Statement
	for rows.Next() {
		vals, err := rows.Values()
		if err != nil {
			t.Fatalf("pgtest: reading pg_stat_statements: %v", err)
		}
		if len(vals) == 2 {
			q, _ := vals[0].(string)
			n, _ := vals[1].(int64)
			out = append(out, Statement{Query: q, Calls: n})
		}
	}
	if err := rows.Err(); err != nil {
		t.Fatalf("pgtest: reading pg_stat_statements: %v", err)
	}
	return out
}
