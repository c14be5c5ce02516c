// Package pgspool is the spool on PostgreSQL, for several spoold nodes that
// share one queue. It keeps the contract of spool.Backend exactly as the
// embedded bbolt spool does (the conformance suite in spool/conformance
// runs against both) and adds what sharing needs: claims with FOR UPDATE
// SKIP LOCKED and leases, a rescuer on every node that returns the expired
// leases of any node, wake-ups by LISTEN/NOTIFY, idempotency keys and
// account records shared by all nodes.
//
// Durability: every commit runs with synchronous_commit on (set on each
// connection, whatever the server's default), so Enqueue returns, and
// spoold answers 250, only once the commit is flushed to the primary's
// WAL. With a synchronous standby configured (synchronous_standby_names),
// "on" also waits for the standby to flush it: the message survives the
// loss of the primary's disk. A connection lost during COMMIT leaves the
// outcome unknown: Enqueue then returns ErrUnavailable and the client
// sends again, so such a message may be stored twice (at least once, never
// lost). The schema is applied at Open from embedded, versioned migrations
// under an advisory lock, so nodes starting together migrate once.
package pgspool

import (
	"context"
	"crypto/rand"
	"embed"
	"encoding/hex"
	"errors"
	"fmt"
	"hash/fnv"
	"log/slog"
	"os"
	"sort"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/spoold/spoold/spool"
)

// Options configures Open. Zero values take the defaults noted.
type Options struct {
	// DSN is the PostgreSQL connection string (keyword/value or URL). It may
	// hold a password; it is never logged or put in an error.
	DSN                string
	Clock              func() time.Time // default time.Now
	Logger             *slog.Logger     // default slog.Default()
	LeaseDuration      time.Duration    // claim lease; default 5m
	DeliveredRetention time.Duration    // delivered records kept; default 24h
	RescueInterval     time.Duration    // rescuer period; default 30s; <0 disables
	HistoryLimit       int              // attempts kept per message; default 20
	// MaxConns is the connection pool size. Zero takes pool_max_conns
	// from the DSN (pgx's own key, so an admin sizes the pool where the
	// PostgreSQL docs and pgx's say), else defaultPoolSize.
	MaxConns       int32
	ConnectTimeout time.Duration // per connection attempt; default 5s
	// Node names this process in spool_nodes; default hostname:pid.
	Node string
	// Enqueued is called once per committed Enqueue, as spool.Options.Enqueued.
	Enqueued func(spool.SourceKind)
	// PeerWakeDelay is how long a wake-up from another node's commit waits
	// before it is passed on (Notify), the ones arriving meanwhile merged
	// into it; default 50ms, <0 passes each on at once. The committing
	// node wakes at once and usually claims the message itself: without
	// the delay every node ran a scheduling pass, and started a connection
	// worker that took a slot and claimed in vain, for every message (with
	// three nodes 55 database statements per message against 30 with one;
	// 39 with the delay). The others still look within the delay, for mail
	// the committer cannot send (its slots or workers in use, or it died
	// after the commit).
	PeerWakeDelay time.Duration
}

// WithDefaults returns o with every zero field set to its default.
func (o Options) WithDefaults() Options {
	// The fields both backends have take the embedded spool's defaults,
	// written once in spool.Options.WithDefaults.
	c := spool.Options{Clock: o.Clock, Logger: o.Logger, LeaseDuration: o.LeaseDuration,
		DeliveredRetention: o.DeliveredRetention, RescueInterval: o.RescueInterval, HistoryLimit: o.HistoryLimit}.WithDefaults()
	o.Clock, o.Logger, o.LeaseDuration = c.Clock, c.Logger, c.LeaseDuration
	o.DeliveredRetention, o.RescueInterval, o.HistoryLimit = c.DeliveredRetention, c.RescueInterval, c.HistoryLimit
	if o.ConnectTimeout <= 0 {
		o.ConnectTimeout = 5 * time.Second
	}
	if o.PeerWakeDelay == 0 {
		o.PeerWakeDelay = 50 * time.Millisecond
	}
	if o.Node == "" {
		h, _ := os.Hostname()
		o.Node = h + ":" + strconv.Itoa(os.Getpid())
	}
	return o
}

// poolConfig parses the DSN into the pool's configuration with spoold's
// settings on top.
func poolConfig(opts Options) (*pgxpool.Config, error) {
	cfg, err := pgxpool.ParseConfig(opts.DSN)
	if err != nil {
		// pgx's parse errors can quote the string, password included.
		return nil, fmt.Errorf("pgspool: %w: spool.dsn is not a valid PostgreSQL connection string", spool.ErrInvalid)
	}
	cfg.MaxConns = poolSize(opts.MaxConns, cfg.MaxConns, dsnSetsPoolSize(opts.DSN))
	cfg.ConnConfig.ConnectTimeout = opts.ConnectTimeout
	// Durable before return, whatever the server's default.
	cfg.ConnConfig.RuntimeParams["synchronous_commit"] = "on"
	cfg.ConnConfig.RuntimeParams["application_name"] = "spoold"
	return cfg, nil
}

// defaultPoolSize is the pool a node opens when neither Options nor the DSN
// size it: enough for the SMTP sessions committing at once on two cores.
const defaultPoolSize = 16

// poolSize picks the pool size: the caller's, then the DSN's
// pool_max_conns (parsed already into fromDSN), then defaultPoolSize.
// Before, the DSN's value was overwritten without a word.
func poolSize(explicit, fromDSN int32, dsnSets bool) int32 {
	switch {
	case explicit > 0:
		return explicit
	case dsnSets:
		return fromDSN
	}
	return defaultPoolSize
}

// dsnSetsPoolSize reports whether the DSN has pool_max_conns: pgxpool
// removes the key as it parses, and fills in its own default (4 or the
// CPU count) when it is absent, so the parsed value cannot tell.
func dsnSetsPoolSize(dsn string) bool {
	c, err := pgconn.ParseConfig(dsn)
	if err != nil {
		return false
	}
	_, ok := c.RuntimeParams["pool_max_conns"]
	return ok
}

// chunkSize is the largest body chunk row: big enough that a 35 MB scan is
// 140 rows, small enough that a few hundred concurrent sessions stay in
// constant memory.
const chunkSize = 256 << 10

// dueChannel is the LISTEN/NOTIFY channel of commits that may make a
// message due now.
const dueChannel = "spoold_spool_due"

// Spool is the PostgreSQL spool. Safe for concurrent use.
type Spool struct {
	opts  Options
	log   *slog.Logger
	pool  *pgxpool.Pool
	mc    spool.Machine
	newID func(time.Time) (string, error)

	// mu is held shared by every operation and exclusively by Close.
	mu     sync.RWMutex
	closed bool

	notify chan struct{}
	// token is this Spool's NOTIFY payload: the listener tells its own
	// commits (signalled locally already) from other nodes'.
	token string
	// peerWake is the pending delayed wake-up of other nodes' commits
	// (nil: none pending); guarded by peerMu.
	peerMu   sync.Mutex
	peerWake *time.Timer
	// channel is the LISTEN/NOTIFY channel: dueChannel, suffixed with the
	// schema when the spool lives in one other than public (several
	// spools may share a database, one schema each).
	channel string
	// lockKey is the advisory lock key of migrations, per schema likewise.
	lockKey int64

	stop     context.CancelFunc // stops the listener and the rescuer
	loops    sync.WaitGroup
	stopOnce sync.Once
}

// The PostgreSQL spool keeps the contract.
var _ spool.Backend = (*Spool)(nil)

//go:embed migrations/*.sql
var migrations embed.FS

// Open connects, applies the schema migrations and starts the listener
// and the rescuer. Unlike the embedded spool it does not requeue leases at
// start: other nodes may hold them; expired ones come back through any
// node's rescuer.
func Open(ctx context.Context, opts Options) (*Spool, error) {
	opts = opts.WithDefaults()
	if opts.DSN == "" {
		return nil, fmt.Errorf("pgspool: %w: spool.dsn is empty: give a PostgreSQL connection string", spool.ErrInvalid)
	}
	cfg, err := poolConfig(opts)
	if err != nil {
		return nil, err
	}
	pool, err := pgxpool.NewWithConfig(ctx, cfg)
	if err != nil {
		return nil, fmt.Errorf("pgspool: connecting: %w", dbErr(err))
	}
	s := &Spool{
		opts:   opts,
		log:    opts.Logger.With("component", "spool", "backend", "postgres"),
		pool:   pool,
		mc:     spool.Machine{Clock: opts.Clock, HistoryLimit: opts.HistoryLimit, LeaseDuration: opts.LeaseDuration},
		newID:  spool.NewIDFunc(nil),
		notify: make(chan struct{}, 1),
	}
	token, err := newToken()
	if err != nil {
		pool.Close()
		return nil, fmt.Errorf("pgspool: %w", err)
	}
	s.token = token
	var schema string
	if err := pool.QueryRow(ctx, "SELECT current_schema()").Scan(&schema); err != nil {
		pool.Close()
		return nil, fmt.Errorf("pgspool: connecting: %w", dbErr(err))
	}
	s.channel, s.lockKey = dueChannel, advisoryKey
	if schema != "public" {
		s.channel = dueChannel + "_" + schema
		h := fnv.New64a()
		h.Write([]byte(schema))
		s.lockKey = advisoryKey ^ int64(h.Sum64()>>16)
	}
	if err := s.migrate(ctx); err != nil {
		pool.Close()
		return nil, err
	}
	if err := s.heartbeat(ctx, true); err != nil {
		pool.Close()
		return nil, err
	}
	loopCtx, stop := context.WithCancel(context.Background())
	s.stop = stop
	// Open returns once LISTEN runs (or the attempt timed out and the loop
	// goes on retrying): a commit by another node right after Open must
	// wake this one.
	listening := make(chan struct{})
	s.loops.Add(1)
	go s.listen(loopCtx, listening)
	select {
	case <-listening:
	case <-time.After(opts.ConnectTimeout):
	}
	if opts.RescueInterval > 0 {
		s.loops.Add(1)
		go s.rescueLoop(loopCtx)
	}
	return s, nil
}

// advisoryKey is the pg_advisory_lock key of schema migrations ("spoold" in ASCII).
const advisoryKey = 0x73706f6f6c64

// migrate applies the embedded migrations the database has not seen, one
// transaction each, holding an advisory lock so that nodes starting
// together apply each once.
func (s *Spool) migrate(ctx context.Context) error {
	conn, err := s.pool.Acquire(ctx)
	if err != nil {
		return fmt.Errorf("pgspool: connecting: %w", dbErr(err))
	}
	defer conn.Release()
	if _, err := conn.Exec(ctx, "SELECT pg_advisory_lock($1)", s.lockKey); err != nil {
		return fmt.Errorf("pgspool: locking the schema for migration: %w", dbErr(err))
	}
	defer conn.Exec(context.Background(), "SELECT pg_advisory_unlock($1)", s.lockKey)
	if _, err := conn.Exec(ctx, `CREATE TABLE IF NOT EXISTS spool_schema (
		version integer PRIMARY KEY, name text NOT NULL, applied timestamptz NOT NULL DEFAULT now())`); err != nil {
		return fmt.Errorf("pgspool: creating the schema table: %w", dbErr(err))
	}
	var have int
	if err := conn.QueryRow(ctx, "SELECT coalesce(max(version), 0) FROM spool_schema").Scan(&have); err != nil {
		return fmt.Errorf("pgspool: reading the schema version: %w", dbErr(err))
	}
	files, err := migrations.ReadDir("migrations")
	if err != nil {
		return fmt.Errorf("pgspool: reading embedded migrations: %w", err)
	}
	names := make([]string, 0, len(files))
	for _, f := range files {
		names = append(names, f.Name())
	}
	sort.Strings(names)
	latest := 0
	for _, name := range names {
		v, err := strconv.Atoi(strings.SplitN(name, "_", 2)[0])
		if err != nil {
			return fmt.Errorf("pgspool: migration %s: name must start with its version number", name)
		}
		latest = v
		if v <= have {
			continue
		}
		sql, err := migrations.ReadFile("migrations/" + name)
		if err != nil {
			return fmt.Errorf("pgspool: reading migration %s: %w", name, err)
		}
		err = pgx.BeginFunc(ctx, conn, func(tx pgx.Tx) error {
			if _, err := tx.Exec(ctx, string(sql)); err != nil {
				return err
			}
			_, err := tx.Exec(ctx, "INSERT INTO spool_schema (version, name) VALUES ($1, $2)", v, name)
			return err
		})
		if err != nil {
			return fmt.Errorf("pgspool: applying schema migration %s: %w", name, dbErr(err))
		}
		s.log.Info("schema migration applied", "migration", name)
	}
	if have > latest {
		return fmt.Errorf("pgspool: %w: the database's spool schema is version %d, newer than this spoold knows (%d): upgrade spoold on this node before starting it", spool.ErrNewerSchema, have, latest)
	}
	return nil
}

// heartbeat records this node in spool_nodes (start says it just started).
func (s *Spool) heartbeat(ctx context.Context, start bool) error {
	q := `INSERT INTO spool_nodes (node, started, heartbeat) VALUES ($1, now(), now())
		ON CONFLICT (node) DO UPDATE SET heartbeat = now()`
	if start {
		q += ", started = now()"
	}
	if _, err := s.pool.Exec(ctx, q, s.opts.Node); err != nil {
		return fmt.Errorf("pgspool: recording node %s: %w", s.opts.Node, dbErr(err))
	}
	return nil
}

// Node is one spoold node sharing the spool.
type Node struct {
	Name      string
	Started   time.Time
	Heartbeat time.Time // refreshed by each rescuer pass
}

// Nodes lists the nodes that have used this spool, most recently seen first.
func (s *Spool) Nodes(ctx context.Context) ([]Node, error) {
	if err := s.begin(ctx, false); err != nil {
		return nil, fmt.Errorf("spool: listing nodes: %w", err)
	}
	defer s.end()
	rows, err := s.pool.Query(ctx, "SELECT node, started, heartbeat FROM spool_nodes ORDER BY heartbeat DESC, node")
	if err != nil {
		return nil, fmt.Errorf("spool: listing nodes: %w", dbErr(err))
	}
	out, err := pgx.CollectRows(rows, func(r pgx.CollectableRow) (Node, error) {
		var n Node
		err := r.Scan(&n.Name, &n.Started, &n.Heartbeat)
		return n, err
	})
	if err != nil {
		return nil, fmt.Errorf("spool: listing nodes: %w", dbErr(err))
	}
	return out, nil
}

// Close stops the listener and the rescuer, waits for in-flight work and
// closes the connections.
func (s *Spool) Close() error {
	s.stopOnce.Do(func() {
		s.stop()
		s.loops.Wait()
		s.peerMu.Lock()
		if s.peerWake != nil {
			s.peerWake.Stop()
		}
		s.peerMu.Unlock()
	})
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		return spool.ErrClosed
	}
	s.closed = true
	s.mu.Unlock()
	s.pool.Close()
	return nil
}

func (s *Spool) begin(ctx context.Context, _ bool) error {
	if ctx != nil {
		if err := ctx.Err(); err != nil {
			return err
		}
	}
	s.mu.RLock()
	if s.closed {
		s.mu.RUnlock()
		return spool.ErrClosed
	}
	return nil
}

func (s *Spool) end() { s.mu.RUnlock() }

// Notify returns a channel that receives after a commit, on any node,
// that may make a message due now.
func (s *Spool) Notify() <-chan struct{} { return s.notify }

func (s *Spool) signal() {
	select {
	case s.notify <- struct{}{}:
	default:
	}
}

// signalPeer passes on a wake-up from another node's commit after
// PeerWakeDelay, merging the ones that arrive meanwhile: the wait is
// bounded by the delay from the first, however many follow.
func (s *Spool) signalPeer() {
	if s.opts.PeerWakeDelay < 0 {
		s.signal()
		return
	}
	s.peerMu.Lock()
	defer s.peerMu.Unlock()
	if s.peerWake != nil {
		return // one is pending and covers this commit too
	}
	s.peerWake = time.AfterFunc(s.opts.PeerWakeDelay, func() {
		// Cleared before signalling: a commit seen after the receiver's
		// pass started arms a new one instead of being merged into a
		// wake-up already consumed.
		s.peerMu.Lock()
		s.peerWake = nil
		s.peerMu.Unlock()
		s.signal()
	})
}

// newToken returns a random NOTIFY payload naming this Spool.
func newToken() (string, error) {
	var b [8]byte
	if _, err := rand.Read(b[:]); err != nil {
		return "", fmt.Errorf("reading randomness for the wake-up token: %w", err)
	}
	return hex.EncodeToString(b[:]), nil
}

// listen keeps one connection LISTENing on the due channel and turns each
// notification into a Notify signal. It closes listening once the first
// LISTEN runs. After a lost connection it reconnects with backoff and
// signals once LISTEN runs again (a notification may have been missed in
// between).
func (s *Spool) listen(ctx context.Context, listening chan struct{}) {
	defer s.loops.Done()
	wait := 100 * time.Millisecond
	first := true
	ready := func() {
		if first {
			first = false
			close(listening)
			return
		}
		s.signal()
	}
	for ctx.Err() == nil {
		err := s.listenOnce(ctx, ready)
		if ctx.Err() != nil {
			return
		}
		s.log.Warn("listening for queue wake-ups: reconnecting", "err", err, "retry_in", wait)
		s.signal()
		select {
		case <-ctx.Done():
			return
		case <-time.After(wait):
		}
		wait = min(2*wait, 10*time.Second)
	}
}

func (s *Spool) listenOnce(ctx context.Context, ready func()) error {
	conn, err := pgx.ConnectConfig(ctx, s.pool.Config().ConnConfig.Copy())
	if err != nil {
		return dbErr(err)
	}
	defer conn.Close(context.Background())
	if _, err := conn.Exec(ctx, "LISTEN "+pgx.Identifier{s.channel}.Sanitize()); err != nil {
		return dbErr(err)
	}
	ready()
	for {
		n, err := conn.WaitForNotification(ctx)
		if err != nil {
			return dbErr(err)
		}
		if n.Payload == s.token {
			// Our own commit: it signalled locally right after it
			// committed, and LISTEN hands it back to us as well.
			continue
		}
		// Another node's (or, empty, a node from before payloads).
		s.signalPeer()
	}
}

// dbErr maps a database error onto the spool's typed errors: the server
// unreachable, restarting or shutting down is ErrUnavailable (ingest
// answers 4xx and the client retries), a full disk ErrNoSpace. The
// original error stays wrapped for the log.
func dbErr(err error) error {
	if err == nil {
		return nil
	}
	if errors.Is(err, context.Canceled) || errors.Is(err, context.DeadlineExceeded) {
		return err
	}
	for _, known := range spoolErrors {
		if errors.Is(err, known) {
			return err // already says what it is
		}
	}
	var pgErr *pgconn.PgError
	if errors.As(err, &pgErr) {
		switch {
		case pgErr.Code == "53100": // disk_full
			return fmt.Errorf("%w: %w", spool.ErrNoSpace, err)
		case strings.HasPrefix(pgErr.Code, "08"), // connection exceptions
			pgErr.Code == "57P01", pgErr.Code == "57P02", pgErr.Code == "57P03", // shutting down, starting
			pgErr.Code == "53300",                        // too many connections
			pgErr.Code == "40001", pgErr.Code == "40P01", // serialization failure, deadlock: retry
			pgErr.Code == "25006": // read-only transaction: a standby, or failover in progress
			return fmt.Errorf("%w: %w", spool.ErrUnavailable, err)
		}
		return err
	}
	if errors.Is(err, pgx.ErrNoRows) || errors.Is(err, pgx.ErrTxClosed) {
		return err
	}
	// Anything else from the driver is the connection: refused, reset,
	// timed out, closed under us.
	return fmt.Errorf("%w: %w", spool.ErrUnavailable, err)
}

// spoolErrors are the typed errors dbErr passes through unchanged.
var spoolErrors = []error{spool.ErrNotFound, spool.ErrBodyMissing, spool.ErrWrongState, spool.ErrLeaseLost,
	spool.ErrNoSpace, spool.ErrClosed, spool.ErrInvalid, spool.ErrCorrupt, spool.ErrUnavailable}

// ns converts a time to the stored Unix nanoseconds (0 for the zero time).
func ns(t time.Time) int64 {
	if t.IsZero() {
		return 0
	}
	return t.UnixNano()
}

func fromNS(n int64) time.Time {
	if n == 0 {
		return time.Time{}
	}
	return time.Unix(0, n).UTC()
}
