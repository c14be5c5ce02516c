package spool

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"runtime/debug"
	"sync"
	"time"

	bolt "go.etcd.io/bbolt"
	berrors "go.etcd.io/bbolt/errors"
)

// Options configures Open. Zero values take the defaults noted.
type Options struct {
	Clock              func() time.Time         // default time.Now
	NewID              func(t time.Time) string // default: time-sortable ID (ms timestamp + random)
	Rand               io.Reader                // randomness for IDs; default crypto/rand
	Logger             *slog.Logger             // default slog.Default()
	LockTimeout        time.Duration            // bbolt file-lock wait; default 2s
	LeaseDuration      time.Duration            // Claim lease; default 5m
	DeliveredRetention time.Duration            // how long delivered records are kept; default 24h
	RescueInterval     time.Duration            // rescuer period for expired leases/retention; default 30s; <0 disables
	HistoryLimit       int                      // attempts kept per message; default 20
	ReadOnly           bool                     // open read-only (spoolctl --spool); every write returns ErrReadOnly
	// InlineBodyMax is the largest body stored inside the database instead
	// of a file of its own; default and upper bound MaxInlineBody, <0 stores
	// every body in a file.
	InlineBodyMax int

	// Enqueued, if set, is called once for every message an Enqueue
	// commits, after the commit is durable, with the message's source kind:
	// the one place spoold counts spoold_enqueued_total, so every source
	// (SMTP, scans, failure notices, salvage) is counted once. A failed
	// commit or a duplicate idempotency key commits nothing and is not
	// counted. It runs on the enqueuing goroutine and must not block.
	Enqueued func(SourceKind)

	// Verify, if set, checks an existing database file before Open maps it
	// (ChildVerifier: bbolt's check in a child process, so that damage that
	// makes bbolt panic cannot crash this one). An error refuses the Open.
	Verify func(dbPath string) error

	// allowNew lets Salvage create a database where an earlier spool's
	// marker is (it has moved the bodies aside first).
	allowNew bool
}

// MaxInlineBody is the default and largest Options.InlineBodyMax: bodies
// that fit in one copy buffer. Larger values would need a buffer per
// session in memory; files cost one extra sync write, which is small
// against the transfer time of a message that size.
const MaxInlineBody = 64<<10 - 1

// WithDefaults returns o with every zero field set to its default; the
// daemon prints and passes on these values (delivery's lease is spool.lease).
func (o Options) WithDefaults() Options {
	if o.Clock == nil {
		o.Clock = time.Now
	}
	if o.Logger == nil {
		o.Logger = slog.Default()
	}
	if o.LockTimeout <= 0 {
		o.LockTimeout = 2 * time.Second
	}
	if o.LeaseDuration <= 0 {
		o.LeaseDuration = 5 * time.Minute
	}
	if o.DeliveredRetention <= 0 {
		o.DeliveredRetention = 24 * time.Hour
	}
	if o.RescueInterval == 0 {
		o.RescueInterval = 30 * time.Second
	}
	if o.HistoryLimit <= 0 {
		o.HistoryLimit = 20
	}
	if o.InlineBodyMax == 0 || o.InlineBodyMax > MaxInlineBody {
		o.InlineBodyMax = MaxInlineBody
	}
	return o
}

// DBFile and MessagesDir are the names of the database and body directory in
// the spool directory.
const (
	DBFile      = "spool.db"
	MessagesDir = "messages"
)

// maxBodyWriters bounds concurrent body writes (see Enqueue).
const maxBodyWriters = 16

// Spool is the durable queue. Safe for concurrent use.
type Spool struct {
	dir    string
	msgDir string
	dbPath string
	opts   Options
	log    *slog.Logger
	db     *bolt.DB
	fs     fsys
	ids    *idGen

	// mu is held shared by every operation and exclusively by Close, so
	// Close waits for in-flight work and later calls see closed.
	mu     sync.RWMutex
	closed bool

	notify chan struct{}

	writers   chan struct{} // semaphore of concurrent body writers
	inlineMax int           // bodies up to this size are stored inline; <0 none
	anon      bool          // bodies are written as O_TMPFILE files (see writeBodyAnon)

	txb txBatcher // group commit of state transitions

	commitCh   chan *commitReq
	commitStop chan struct{}
	commitDone chan struct{}

	// beforeCommit, when set by tests, runs inside the group-commit
	// transaction; an error aborts it as a failed bbolt commit would.
	beforeCommit func() error

	stopRescue sync.Once
	rescueStop chan struct{}
	rescueDone chan struct{}
}

// inUseError is the lock-timeout error; its text is what an admin needs to read.
type inUseError struct{ path string }

func (e *inUseError) Error() string {
	return fmt.Sprintf("spool %s is in use by another process", e.path)
}
func (e *inUseError) Unwrap() error { return ErrInUse }

// Open opens (creating if needed, dirs 0700, db 0600) the spool in dir:
// dir/spool.db and dir/messages/. It runs recovery (leftover temp files
// removed, body files no message names moved to OrphansDir, missing bodies
// dead-lettered, every lease requeued: the lock proves its owner is gone) and
// starts the rescuer.
// A second process gets ErrInUse ("spool <path> is in use by another process");
// a corrupt database gets ErrCorrupt and is left untouched.
func Open(dir string, opts Options) (*Spool, error) { return open(dir, opts, osFS{}) }

func open(dir string, opts Options, fs fsys) (*Spool, error) {
	opts = opts.WithDefaults()
	if dir == "" {
		return nil, fmt.Errorf("spool: open: %w: empty directory", ErrInvalid)
	}
	s := &Spool{
		dir:     dir,
		msgDir:  filepath.Join(dir, MessagesDir),
		dbPath:  filepath.Join(dir, DBFile),
		opts:    opts,
		log:     opts.Logger.With("component", "spool"),
		fs:      fs,
		ids:     newIDGen(opts.Rand),
		notify:  make(chan struct{}, 1),
		writers: make(chan struct{}, maxBodyWriters),

		inlineMax: opts.InlineBodyMax,
	}
	if !opts.ReadOnly {
		for _, d := range []string{dir, s.msgDir} {
			if err := os.MkdirAll(d, 0o700); err != nil {
				return nil, fmt.Errorf("spool: creating %s: %w", d, err)
			}
		}
	} else if _, err := os.Stat(s.dbPath); err != nil {
		return nil, fmt.Errorf("spool: opening %s read-only: %w", s.dbPath, err)
	}
	if err := checkDatabaseFile(dir, s.dbPath); err != nil && !(opts.allowNew && errors.Is(err, ErrNoDatabase)) {
		return nil, err
	}
	if fi, err := os.Stat(s.dbPath); err == nil && fi.Size() > 0 && opts.Verify != nil {
		if err := opts.Verify(s.dbPath); err != nil {
			return nil, err
		}
	}
	db, err := openBolt(s.dbPath, opts)
	if err != nil {
		return nil, err
	}
	s.db = db
	if !opts.ReadOnly {
		// Make the creation of spool.db and messages/ themselves durable.
		if err := fs.SyncDir(dir); err != nil {
			db.Close()
			return nil, fmt.Errorf("spool: fsync %s: %w", dir, err)
		}
		// The spool's directory may be new (spoold creates the data dir
		// before it opens the spool): until its parent is fsync'd, a power
		// cut can take the whole directory, and every message acknowledged
		// since, with it; the power-cut test found this. Every Open does it,
		// not only the first: a crash between creating spool.db and this
		// fsync would otherwise leave the entry unsynced for good.
		if parent := filepath.Dir(dir); parent != dir {
			if err := fs.SyncDir(parent); err != nil {
				db.Close()
				return nil, fmt.Errorf("spool: fsync %s: %w", parent, err)
			}
		}
	}
	if err := s.init(); err != nil {
		db.Close()
		return nil, err
	}
	if !opts.ReadOnly {
		if err := s.writeMarker(); err != nil {
			db.Close()
			return nil, err
		}
	}
	if err := db.View(releaseMapping); err != nil {
		s.log.Warn("releasing the database mapping after recovery", "err", err)
	}
	if !opts.ReadOnly {
		s.anon = s.probeAnon()
		s.commitCh = make(chan *commitReq, 256)
		s.commitStop = make(chan struct{})
		s.commitDone = make(chan struct{})
		go s.commitLoop()
		if opts.RescueInterval > 0 {
			s.rescueStop = make(chan struct{})
			s.rescueDone = make(chan struct{})
			go s.rescueLoop()
		}
	}
	return s, nil
}

// openBolt opens the database, turning lock timeouts into ErrInUse and
// corruption (errors or panics inside bbolt) into ErrCorrupt.
func openBolt(path string, opts Options) (db *bolt.DB, err error) {
	// A damaged file can still send bbolt to a page outside the mapping
	// (checkDatabaseFile catches the common case, truncation): let the
	// fault be a panic that becomes ErrCorrupt, not a crash.
	defer debug.SetPanicOnFault(debug.SetPanicOnFault(true))
	defer func() {
		if r := recover(); r != nil {
			db = nil
			err = fmt.Errorf("spool: opening %s: %w: %v", path, ErrCorrupt, r)
		}
	}()
	db, err = bolt.Open(path, 0o600, &bolt.Options{
		FreelistType: bolt.FreelistMapType,
		// Bodies stored inline leave many free pages behind once delivered;
		// a synced freelist would be rewritten whole on every commit. Open
		// rebuilds it from a page walk instead (as etcd does).
		NoFreelistSync: true,
		Timeout:        opts.LockTimeout,
		ReadOnly:       opts.ReadOnly,
	})
	switch {
	case err == nil:
		return db, nil
	case errors.Is(err, berrors.ErrTimeout):
		return nil, &inUseError{path: path}
	case errors.Is(err, berrors.ErrInvalid), errors.Is(err, berrors.ErrChecksum),
		errors.Is(err, berrors.ErrVersionMismatch), errors.Is(err, berrors.ErrInvalidMapping):
		return nil, fmt.Errorf("spool: opening %s: %w: %w", path, ErrCorrupt, err)
	default:
		return nil, fmt.Errorf("spool: opening %s: %w", path, err)
	}
}

// init creates the buckets, checks the schema and runs recovery. A panic here
// means bbolt hit a corrupt page.
func (s *Spool) init() (err error) {
	defer debug.SetPanicOnFault(debug.SetPanicOnFault(true))
	defer func() {
		if r := recover(); r != nil {
			err = fmt.Errorf("spool: opening %s: %w: %v", s.dbPath, ErrCorrupt, r)
		}
	}()
	if s.opts.ReadOnly {
		return s.db.View(func(tx *bolt.Tx) error {
			for _, b := range allBuckets {
				if tx.Bucket(b) == nil && !bytes.Equal(b, bktBodies) {
					return fmt.Errorf("spool: opening %s: %w: bucket %s missing", s.dbPath, ErrCorrupt, b)
				}
			}
			return checkSchema(tx)
		})
	}
	err = s.db.Update(func(tx *bolt.Tx) error {
		for _, b := range allBuckets {
			if _, err := tx.CreateBucketIfNotExists(b); err != nil {
				return fmt.Errorf("spool: creating bucket %s: %w", b, err)
			}
		}
		meta := tx.Bucket(bktMeta)
		if meta.Get([]byte("schema")) == nil {
			return meta.Put([]byte("schema"), []byte{schemaVersion})
		}
		return checkSchema(tx)
	})
	if err != nil {
		return err
	}
	return s.reconcile()
}

func checkSchema(tx *bolt.Tx) error {
	v := tx.Bucket(bktMeta).Get([]byte("schema"))
	if len(v) == 1 && v[0] > schemaVersion {
		return fmt.Errorf("spool: %w: spool.db has schema version %d, newer than this spoold knows (%d): run the spoold that wrote it, or a newer one", ErrNewerSchema, v[0], schemaVersion)
	}
	if len(v) != 1 || v[0] != schemaVersion {
		return fmt.Errorf("spool: %w: unsupported schema version %v", ErrCorrupt, v)
	}
	return nil
}

// Close stops the rescuer, waits for in-flight commits and closes the database.
func (s *Spool) Close() error {
	// Stop the rescuer before taking the exclusive lock: it takes the
	// shared lock itself.
	s.stopRescue.Do(func() {
		if s.rescueStop != nil {
			close(s.rescueStop)
			<-s.rescueDone
		}
	})
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		return ErrClosed
	}
	s.closed = true
	s.mu.Unlock()
	if s.commitStop != nil {
		close(s.commitStop)
		<-s.commitDone
	}
	if err := s.db.Close(); err != nil {
		return fmt.Errorf("spool: closing %s: %w", s.dbPath, err)
	}
	return nil
}

// Dir returns the spool directory.
func (s *Spool) Dir() string { return s.dir }

// Check runs bbolt's consistency check (tx.Check) and returns the first problem.
func (s *Spool) Check() error {
	if err := s.begin(context.Background(), false); err != nil {
		return err
	}
	defer s.end()
	// A read-only Check races with concurrent commits on the freelist, so
	// check inside a writable transaction (serialised with writers) and
	// roll it back.
	var tx *bolt.Tx
	var err error
	if s.opts.ReadOnly {
		tx, err = s.db.Begin(false)
	} else {
		tx, err = s.db.Begin(true)
	}
	if err != nil {
		return fmt.Errorf("spool: check %s: %w", s.dbPath, err)
	}
	defer tx.Rollback()
	// Drain the channel: the checker goroutine uses tx until it closes it.
	var first error
	for err := range tx.Check() {
		if first == nil {
			first = fmt.Errorf("spool: check %s: %w: %w", s.dbPath, ErrCorrupt, err)
		}
	}
	return first
}

// begin takes the shared lock for one operation; end releases it.
func (s *Spool) begin(ctx context.Context, write bool) error {
	if ctx != nil {
		if err := ctx.Err(); err != nil {
			return err
		}
	}
	s.mu.RLock()
	if s.closed {
		s.mu.RUnlock()
		return ErrClosed
	}
	if write && s.opts.ReadOnly {
		s.mu.RUnlock()
		return ErrReadOnly
	}
	return nil
}

func (s *Spool) end() { s.mu.RUnlock() }

// Notify returns a channel that receives (non-blocking, capacity 1) after a
// commit that may make a message due now: Enqueue, Release, Requeue, Flush,
// lease rescue.
func (s *Spool) Notify() <-chan struct{} { return s.notify }

func (s *Spool) signal() {
	select {
	case s.notify <- struct{}{}:
	default:
	}
}

func (s *Spool) bodyPath(id string) string { return filepath.Join(s.msgDir, id+".eml") }

// OpenBody opens a message's body for reading.
func (s *Spool) OpenBody(id string) (io.ReadCloser, error) {
	if err := s.begin(context.Background(), false); err != nil {
		return nil, fmt.Errorf("spool: open body %s: %w", id, err)
	}
	defer s.end()
	if !validID(id) {
		return nil, fmt.Errorf("spool: open body %q: %w: bad id", id, ErrInvalid)
	}
	var inline []byte
	found := false
	err := s.db.View(func(tx *bolt.Tx) error {
		if b := tx.Bucket(bktBodies); b != nil {
			// A cursor tells an empty body from a missing one.
			if k, v := b.Cursor().Seek([]byte(id)); string(k) == id {
				inline, found = bytes.Clone(v), true // v lives only as long as tx
			}
		}
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("spool: open body %s: %w", id, err)
	}
	if found {
		return io.NopCloser(bytes.NewReader(inline)), nil
	}
	f, err := os.Open(s.bodyPath(id))
	if errors.Is(err, os.ErrNotExist) {
		// Only a message that still needs its body has lost it; a
		// delivered one dropped it on purpose.
		var m *Message
		_ = s.db.View(func(tx *bolt.Tx) error { m, _ = getMsg(tx, id); return nil })
		if m != nil && m.State != StateDelivered {
			return nil, fmt.Errorf("spool: open body %s: %w", id, ErrBodyMissing)
		}
		return nil, fmt.Errorf("spool: open body %s: %w", id, ErrNotFound)
	}
	if err != nil {
		return nil, fmt.Errorf("spool: open body %s: %w", id, err)
	}
	return f, nil
}

// removeBody deletes a body file after its metadata no longer needs it.
// Failure only leaves an orphan that the next Open removes, so it is logged.
func (s *Spool) removeBody(id string) {
	if err := s.fs.Remove(s.bodyPath(id)); err != nil && !errors.Is(err, os.ErrNotExist) {
		s.log.Warn("removing body file", "msg_id", id, "err", err)
	}
}
