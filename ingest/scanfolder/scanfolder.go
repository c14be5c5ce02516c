// Package scanfolder owns the scan hot folder: it watches one or more
// directories (fsnotify plus periodic rescans, or rescans only in poll mode),
// waits until each dropped file is ready, routes it to a user, builds a
// multipart e-mail with the file attached and streams it into the spool. After
// the spool commits, the file moves to processed/ (or is deleted); files that
// cannot be sent move to failed/ with a <file>.error.txt saying why.
//
// Readiness rests on several signals, because a quiet period alone cannot
// tell a paused writer (a scanner between pages, an SMB client holding the
// file open) from a finished one. A file is taken when all of these hold:
//   - its size and mtime were unchanged for QuietPeriod;
//   - no process has it open for writing (a read-lease probe; skipped with a
//     one-time warning where leases are unavailable or meaningless: spoold
//     without CAP_LEASE on files it does not own, network file systems);
//   - in watch mode on Linux, it was not modified since its last
//     IN_CLOSE_WRITE (a raw inotify instance of its own, since fsnotify does
//     not export it; it also reports creates, moves and deletes so that all
//     of a name's history arrives in order). A file whose writes inotify did
//     not see whole (there at start or at a reload, in a new or renamed
//     subfolder, after lost events) needs a close-write or the poll quiet
//     period (DefaultPollQuietPeriod) unless the lease probe found no writer;
//   - PDF, JPEG, PNG and TIFF files pass a format completeness check (within
//     a read budget; past it the format cannot be told and does not count);
//   - it is not empty.
//
// In poll mode without the lease probe (a network share), a writer that
// pauses with a finished-looking file (a multi-page TIFF between pages, an
// unchecked type) is held back by the quiet period alone.
//
// A file failing one of them waits and is looked at again; only after
// IncompleteLimit (EmptyGrace for empty files) unchanged does it go to
// failed/. Size and mtime are checked again once the message is built, before
// the spool sees the end of the body (so a changed file stores nothing), and
// after the commit (a message built from a file that changed in that window
// is held, and the file is sent again).
//
// The package owns every folder setting's default and validation
// (FolderConfig.WithDefaults and Validate, ValidateFolders): spoold -check
// and start-up judge the same FolderConfig.
//
// The package talks to the spool only through the Enqueuer interface. An
// idempotency key (relative path + size + mtime + SHA-256) is committed with
// each message and looked up before a file is sent, so a crash between the
// commit and the move never sends a scan twice and never loses it.
package scanfolder

import (
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"log/slog"
	"maps"
	"os"
	"os/user"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"text/template"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/spoold/spoold/configs/field"
	"github.com/spoold/spoold/spool"
)

// Enqueuer is the part of the spool the watcher uses. *spool.Spool satisfies it.
type Enqueuer interface {
	// Enqueue streams body into a new message and returns its ID once durable.
	// With an IdempotencyKey already committed it returns the first ID and
	// writes nothing. It must honour req.Verify: call it after the body is
	// read to its end and before the commit, and on its error store nothing
	// and return an error wrapping it. That is the scan folder's only check
	// that the file did not change between its last read and the commit.
	Enqueue(ctx context.Context, req spool.EnqueueRequest, body io.Reader) (string, error)
	// LookupKey returns the message ID committed with an idempotency key.
	LookupKey(ctx context.Context, key string) (id string, found bool, err error)
}

// User is a scanning user: the display name and address a subfolder maps to.
type User struct {
	Name    string
	Address string
}

// Folder modes.
const (
	ModeWatch = "watch" // fsnotify events plus periodic rescans (default)
	ModePoll  = "poll"  // periodic rescans only (SMB/NFS mounts, where inotify sees nothing)
)

// After-success actions.
const (
	AfterMove   = "move"   // move to processed/, mirroring subfolders (default)
	AfterDelete = "delete" // delete the file (and its sidecar)
)

// Names of the folder's own trees; they are never scanned.
const (
	ProcessedDir = "processed"
	FailedDir    = "failed"
)

// Defaults WithDefaults applies to zero FolderConfig fields.
const (
	DefaultRescanInterval = 30 * time.Second
	// DefaultQuietPeriod is watch mode's: there the close-write event and
	// the open-writer check carry most of the weight.
	DefaultQuietPeriod = 3 * time.Second
	// DefaultPollQuietPeriod is poll mode's: on a network mount the quiet
	// period is the main signal that a remote writer has finished (with the
	// format checks), and MFDs pause between pages for several seconds.
	DefaultPollQuietPeriod = 30 * time.Second
	DefaultRetryDelay      = 10 * time.Second
	DefaultMaxReadRetries  = 5
	DefaultWorkers         = 4
	// DefaultIncompleteLimit is how long a file may stay incomplete (format
	// check) or open for writing before it goes to failed/: generous, since
	// a scanner may wait for the user to feed the next batch of pages.
	DefaultIncompleteLimit = 10 * time.Minute
	// DefaultEmptyGrace is how long an empty file waits: scanners create
	// the file first and write into it seconds later.
	DefaultEmptyGrace = time.Minute
)

// DefaultSubjectTemplate and DefaultBodyTemplate are used when a folder
// configures none. The template data is TemplateData; its Time is in the
// folder's time zone.
const (
	DefaultSubjectTemplate = `Scan: {{.File}} ({{.Time.Format "2006-01-02 15:04"}})`
	DefaultBodyTemplate    = `Your scan {{.File}} is attached.

File:    {{.File}}
Size:    {{.SizeText}}{{if .Pages}}
Pages:   {{.Pages}}{{end}}
Scanned: {{.Time.Format "2006-01-02 15:04:05 MST"}}
Folder:  {{.Folder}}
`
)

// TemplateData is what SubjectTemplate and BodyTemplate are executed with.
type TemplateData struct {
	File        string    // base name of the scanned file
	Path        string    // path relative to the folder, slash-separated
	Folder      string    // folder name from the config
	Size        int64     // bytes
	SizeText    string    // human-readable size, e.g. "1.2 MB"
	Pages       int       // PDF page count when it can be seen cheaply; 0 = unknown
	ContentType string    // attachment media type
	Time        time.Time // file modification time, in the folder's TimeZone
	UserName    string    // scanning user's display name ("" if unknown)
	UserAddress string    // scanning user's address ("" if unknown)
}

// FolderConfig configures one watched folder. Zero values take the defaults
// noted (WithDefaults); Validate reports problems under the YAML key names of
// scan_folders[]. New applies both.
type FolderConfig struct {
	Name string // unique; used in logs, metrics and the message source; default the base name of Path
	Path string // directory to watch

	Mode           string        // ModeWatch (default) or ModePoll
	RescanInterval time.Duration // full rescan period; default 30s
	// QuietPeriod: size and mtime must be unchanged this long; default 3s
	// in watch mode (DefaultQuietPeriod), 30s in poll mode
	// (DefaultPollQuietPeriod).
	QuietPeriod  time.Duration
	AfterSuccess string // AfterMove (default) or AfterDelete

	// IncompleteLimit: a file the format check finds cut short, or that a
	// process keeps open for writing, waits and is checked again; after
	// this long unchanged it goes to failed/. Default 10m.
	IncompleteLimit time.Duration
	// EmptyGrace: an empty file waits this long (for its writer) before it
	// goes to failed/. Default 1m.
	EmptyGrace time.Duration
	// WriterCheck probes, with a read lease, that no process has the file
	// open for writing before it is taken. A pointer so that the zero
	// FolderConfig takes the default: nil means on (WithDefaults sets it).
	// Off only for file systems whose leases misbehave.
	WriterCheck *bool

	// DirMode is the mode of the top-level processed/ and failed/, in octal
	// as admins write it ("2770": permission bits and set-GID); "" (the
	// default) means the scan folder's own mode and group. Subfolders
	// spoold creates under them always copy the mode and group of the
	// source subfolder they mirror, so a per-user 0700 folder stays 0700.
	// FileMode ("0640", permission bits only) is <file>.error.txt's; ""
	// (the default) means the failed file's own mode and group. Modes are
	// set explicitly, so the unit's UMask=0077 neither hides them from the
	// share's users nor widens them.
	DirMode  string
	FileMode string
	// Group, if set (a name or a numeric GID), owns all those folders and
	// files. spoold must be a member (SupplementaryGroups= in the unit).
	Group string

	// TimeZone is an IANA name ("Europe/Berlin") for the times in the scan
	// e-mail (Date header, subject and text); "" = the system's, "UTC".
	TimeZone string

	Account        string // routed upstream account (required)
	MaxMessageSize int64  // upstream limit for the encoded message in bytes; 0 = no limit

	// Users maps subfolder names to scanning users. A subfolder named as an
	// e-mail address routes to that address without an entry here.
	Users map[string]User

	SubjectTemplate string // text/template; default DefaultSubjectTemplate
	BodyTemplate    string // text/template; default DefaultBodyTemplate

	// FailureNotice tells the scanning user (if known) when a scan fails.
	// Nil means the default, on (WithDefaults sets it).
	FailureNotice *bool

	MaxReadRetries int           // unreadable files: attempts before failed/; default 5
	RetryDelay     time.Duration // wait before retrying unreadable files and spool errors; default 10s

	// Resolved by New from the fields above.
	loc      *time.Location // TimeZone
	gid      int            // Group; -1 = unchanged
	dirMode  fs.FileMode    // DirMode; 0 = unset
	fileMode fs.FileMode    // FileMode; 0 = unset
}

// Options configures the Watcher. Zero values take the defaults noted.
type Options struct {
	Logger     *slog.Logger          // default slog.Default(); records carry component=scanfolder
	Clock      func() time.Time      // default time.Now
	Hostname   string                // Message-ID domain; default os.Hostname(), else "localhost"
	Registerer prometheus.Registerer // metrics are registered here when non-nil
	Workers    int                   // files processed concurrently per folder; default 4
}

// FolderStatus is one folder's state for `spoolctl status`.
type FolderStatus struct {
	Name string
	Path string
	Mode string
	// QuietPeriod is how long the running folder waits for a file to stop
	// changing before it takes it.
	QuietPeriod time.Duration
	Pending     int       // files seen and not yet finished
	LastScan    time.Time // end of the last full rescan
	LastError   string    // last folder-level or file error; "" if none
}

// Watcher watches the configured folders. Safe for concurrent use.
type Watcher struct {
	enq      Enqueuer
	log      *slog.Logger
	clock    func() time.Time
	hostname string
	workers  int
	metrics  *metrics

	// Test hooks; nil in production.
	openHook        func(rel string) error                                // fails the open of a file
	afterCommitHook func(rel string) error                                // runs after Enqueue returned; an error abandons the file
	noFsnotify      bool                                                  // forces poll behaviour even in watch mode
	waitHook        func(rel, why string)                                 // a file was found not ready (why: waitEmpty, ...)
	beforeEOFHook   func(rel string)                                      // runs when the message is built, before the spool sees its end
	writerCheck     func(*os.File) (writing, unsupported bool, err error) // replaces the lease probe
	chmodHook       func(name string) error                               // fails setting a mode
	// untrackedQuiet (a time.Duration) is the quiet period for files
	// without inotify history in watch mode: DefaultPollQuietPeriod, set
	// lower or higher by tests.
	untrackedQuiet atomic.Int64

	mu       sync.Mutex
	configs  []FolderConfig
	folders  map[string]*folder
	ctx      context.Context
	started  bool
	closed   bool
	stopRoot context.CancelFunc
}

// New fills the folders' defaults, validates them as ValidateFolders does
// (its error wraps the field.Problems) and returns a Watcher that does
// nothing until Start.
func New(folders []FolderConfig, enq Enqueuer, opts Options) (*Watcher, error) {
	if enq == nil {
		return nil, errors.New("scanfolder: nil Enqueuer")
	}
	cfgs, ps := prepareAll(folders)
	if len(ps) > 0 {
		return nil, foldersError(ps)
	}
	w := &Watcher{
		enq:      enq,
		log:      opts.Logger,
		clock:    opts.Clock,
		hostname: opts.Hostname,
		workers:  opts.Workers,
		configs:  cfgs,
		folders:  map[string]*folder{},
	}
	if w.log == nil {
		w.log = slog.Default()
	}
	w.log = w.log.With("component", "scanfolder")
	if w.clock == nil {
		w.clock = time.Now
	}
	if w.hostname == "" {
		if h, err := os.Hostname(); err == nil {
			w.hostname = h
		}
	}
	if !validHostname(w.hostname) {
		w.hostname = "localhost"
	}
	if w.workers <= 0 {
		w.workers = DefaultWorkers
	}
	w.untrackedQuiet.Store(int64(DefaultPollQuietPeriod))
	var err error
	if w.metrics, err = newMetrics(opts.Registerer); err != nil {
		return nil, err
	}
	return w, nil
}

// WithDefaults returns f with every zero field set to its default (noted on
// the field). It never fails and is idempotent; Validate judges the result.
func (f FolderConfig) WithDefaults() FolderConfig {
	if f.Name == "" && f.Path != "" {
		f.Name = filepath.Base(filepath.Clean(f.Path))
	}
	if f.Mode == "" {
		f.Mode = ModeWatch
	}
	if f.AfterSuccess == "" {
		f.AfterSuccess = AfterMove
	}
	if f.RescanInterval == 0 {
		f.RescanInterval = DefaultRescanInterval
	}
	if f.QuietPeriod == 0 {
		f.QuietPeriod = DefaultQuietPeriod
		if f.Mode == ModePoll {
			f.QuietPeriod = DefaultPollQuietPeriod
		}
	}
	if f.IncompleteLimit == 0 {
		f.IncompleteLimit = DefaultIncompleteLimit
	}
	if f.EmptyGrace == 0 {
		f.EmptyGrace = DefaultEmptyGrace
	}
	if f.WriterCheck == nil {
		on := true
		f.WriterCheck = &on
	}
	if f.FailureNotice == nil {
		on := true
		f.FailureNotice = &on
	}
	if f.RetryDelay == 0 {
		f.RetryDelay = DefaultRetryDelay
	}
	if f.MaxReadRetries == 0 {
		f.MaxReadRetries = DefaultMaxReadRetries
	}
	if f.SubjectTemplate == "" {
		f.SubjectTemplate = DefaultSubjectTemplate
	}
	if f.BodyTemplate == "" {
		f.BodyTemplate = DefaultBodyTemplate
	}
	return f
}

// Validate reports every problem of f with its defaults filled (as New runs
// it), as field.Problems keyed by the YAML names of scan_folders[]
// ("users.<subfolder>.address", "dir_mode"). It resolves the time zone and
// the group as New does. Whether Account names a configured account is the
// caller's check.
func (f FolderConfig) Validate() error {
	_, ps := f.WithDefaults().resolve()
	return ps.Err()
}

// ValidateFolders checks folder configs exactly as New does (defaults,
// templates, time zone, group, modes, names used twice) without watching
// anything, so spoold -check and a reload refuse what start-up would. The
// error is nil or field.Problems keyed "[i].<yaml key>" by the folder's
// index, for the caller to merge under scan_folders.
func ValidateFolders(folders []FolderConfig) error {
	_, ps := prepareAll(folders)
	return ps.Err()
}

// prepareAll fills defaults, validates and resolves every folder, and
// refuses a name used twice.
func prepareAll(folders []FolderConfig) ([]FolderConfig, field.Problems) {
	var ps field.Problems
	seen := map[string]bool{}
	out := make([]FolderConfig, 0, len(folders))
	for i, f := range folders {
		n, fps := f.WithDefaults().resolve()
		if n.Name != "" {
			if seen[n.Name] {
				fps.Add("name", "duplicate scan folder name %q", clip(n.Name))
			}
			seen[n.Name] = true
		}
		ps.Merge(field.Index("", i), fps)
		out = append(out, n)
	}
	return out, ps
}

// foldersError is New's and Reload's error for invalid configs: the
// problems, still reachable with errors.As.
func foldersError(ps field.Problems) error {
	return fmt.Errorf("scanfolder: invalid folder configuration:\n%w", ps)
}

// prepare is WithDefaults, Validate and the resolution New does, for one
// folder.
func (f FolderConfig) prepare() (FolderConfig, error) {
	n, ps := f.WithDefaults().resolve()
	return n, ps.Err()
}

// resolve validates f, which has its defaults filled, and fills what New
// derives from it: the absolute path, time zone, group, modes and the
// checked users.
func (f FolderConfig) resolve() (FolderConfig, field.Problems) {
	var ps field.Problems
	switch {
	case strings.TrimSpace(f.Name) == "":
		ps.Add("name", "required: every scan folder needs a name")
	case hasCtl(f.Name):
		ps.Add("name", "%q contains control characters", clip(f.Name))
	}
	if strings.TrimSpace(f.Path) == "" {
		ps.Add("path", "required: the directory to watch")
	} else if abs, err := filepath.Abs(f.Path); err != nil {
		ps.Add("path", "%q: %v", clip(f.Path), err)
	} else {
		f.Path = abs
	}
	if f.Account == "" {
		ps.Add("account", "required: the account that sends this folder's mail")
	}
	if f.Mode != ModeWatch && f.Mode != ModePoll {
		ps.Add("mode", "%q: want %q or %q", clip(f.Mode), ModeWatch, ModePoll)
	}
	if f.AfterSuccess != AfterMove && f.AfterSuccess != AfterDelete {
		ps.Add("after_success", "%q: want %q or %q", clip(f.AfterSuccess), AfterMove, AfterDelete)
	}
	if f.RescanInterval < 0 {
		ps.Add("rescan_interval", "must be greater than 0")
	}
	for _, n := range []struct {
		key string
		v   int64
	}{
		{"quiet_period", int64(f.QuietPeriod)},
		{"incomplete_limit", int64(f.IncompleteLimit)},
		{"empty_grace", int64(f.EmptyGrace)},
		{"max_read_retries", int64(f.MaxReadRetries)},
		{"retry_delay", int64(f.RetryDelay)},
		{"max_message_size", f.MaxMessageSize},
	} {
		if n.v < 0 {
			ps.Add(n.key, "must not be negative")
		}
	}
	f.dirMode, f.fileMode = 0, 0
	if f.DirMode != "" {
		m, err := parseMode(f.DirMode)
		switch {
		case err != nil:
			ps.Add("dir_mode", "%v", err)
		case m&0o700 != 0o700:
			ps.Add("dir_mode", "%s: the owner (spoold) needs rwx on the folders it creates", formatMode(m))
		default:
			f.dirMode = m
		}
	}
	if f.FileMode != "" {
		m, err := parseMode(f.FileMode)
		switch {
		case err != nil:
			ps.Add("file_mode", "%v", err)
		case m&fs.ModeSetgid != 0:
			ps.Add("file_mode", "%s: file_mode takes permission bits only (for example 0640)", formatMode(m))
		case m&0o600 != 0o600:
			ps.Add("file_mode", "%s: the owner (spoold) needs rw on the files it writes", formatMode(m))
		default:
			f.fileMode = m
		}
	}
	f.gid = -1
	if f.Group != "" {
		if gid, err := checkGroup(f.Group); err != nil {
			ps.Add("group", "%v", err)
		} else {
			f.gid = gid
		}
	}
	f.loc = time.Local
	if f.TimeZone != "" {
		if loc, err := time.LoadLocation(f.TimeZone); err != nil {
			ps.Add("time_zone", "%q: %v", clip(f.TimeZone), err)
		} else {
			f.loc = loc
		}
	}
	for _, t := range []struct{ key, text string }{
		{"subject_template", f.SubjectTemplate},
		{"body_template", f.BodyTemplate},
	} {
		if _, err := template.New(t.key).Option("missingkey=error").Parse(t.text); err != nil {
			ps.Add(t.key, "template does not parse: %v", err)
		}
	}
	users := make(map[string]User, len(f.Users))
	for _, name := range slices.Sorted(maps.Keys(f.Users)) {
		u, key := f.Users[name], "users."+name
		if name == "" || strings.ContainsAny(name, `/\`) || hasCtl(name) {
			ps.Add(key, "%q is not a subfolder name", clip(name))
		}
		if u.Address == "" {
			ps.Add(key+".address", "required: the user's e-mail address")
		} else if addr, err := checkAddress(u.Address); err != nil {
			ps.Add(key+".address", "%q is not an e-mail address", clip(u.Address))
		} else {
			u.Address = addr
		}
		if hasCtl(u.Name) || len(u.Name) > maxNameLen {
			ps.Add(key+".name", "bad display name: no control characters, at most %d bytes", maxNameLen)
		}
		users[name] = u
	}
	f.Users = users
	return f, ps
}

// checkGroup resolves a group spoold can give its files.
func checkGroup(group string) (int, error) {
	gid, err := lookupGroup(group)
	if err != nil {
		return 0, err
	}
	groups, err := os.Getgroups()
	if err != nil {
		return 0, fmt.Errorf("group %q: listing spoold's groups: %w", group, err)
	}
	if err := checkGroupMember(group, gid, os.Geteuid(), os.Getegid(), groups); err != nil {
		return 0, err
	}
	return gid, nil
}

// clip shortens a value quoted in a problem, so a pasted blob stays one line.
func clip(s string) string {
	if len(s) > 60 {
		return s[:57] + "..."
	}
	return s
}

// Start runs the initial rescan and starts watching every folder. It returns
// at once; folders that cannot be opened are reported in the returned error
// (joined) and in Folders, and the others run. Cancelling ctx stops the
// watcher like Close does, but Close must still be called to wait.
func (w *Watcher) Start(ctx context.Context) error {
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.closed {
		return errors.New("scanfolder: watcher is closed")
	}
	if w.started {
		return errors.New("scanfolder: already started")
	}
	w.started = true
	w.ctx, w.stopRoot = context.WithCancel(ctx)
	var errs []error
	for _, cfg := range w.configs {
		f, err := w.startFolder(cfg)
		if err != nil {
			errs = append(errs, err)
		}
		w.folders[cfg.Name] = f
	}
	return errors.Join(errs...)
}

// Reload replaces the folder configuration (SIGHUP). Folders whose config is
// unchanged keep running; changed ones are restarted (after their in-flight
// files finish); removed ones stop. On a validation error nothing changes.
func (w *Watcher) Reload(folders []FolderConfig) error {
	cfgs, ps := prepareAll(folders)
	if len(ps) > 0 {
		return foldersError(ps)
	}
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.closed {
		return errors.New("scanfolder: watcher is closed")
	}
	w.configs = cfgs
	if !w.started {
		return nil
	}
	want := map[string]FolderConfig{}
	for _, c := range cfgs {
		want[c.Name] = c
	}
	for name, f := range w.folders {
		if c, ok := want[name]; ok && sameConfig(c, f.cfg) {
			continue
		}
		f.stop()
		delete(w.folders, name)
	}
	var errs []error
	for _, c := range cfgs {
		if _, ok := w.folders[c.Name]; ok {
			continue
		}
		f, err := w.startFolder(c)
		if err != nil {
			errs = append(errs, err)
		}
		w.folders[c.Name] = f
	}
	return errors.Join(errs...)
}

// Close stops watching and waits for files in flight. It is idempotent.
func (w *Watcher) Close() error {
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.closed {
		return nil
	}
	w.closed = true
	for _, f := range w.folders {
		f.stop()
	}
	if w.stopRoot != nil {
		w.stopRoot()
	}
	return nil
}

// Folders reports each folder's state, in config order.
func (w *Watcher) Folders() []FolderStatus {
	w.mu.Lock()
	defer w.mu.Unlock()
	out := make([]FolderStatus, 0, len(w.configs))
	for _, c := range w.configs {
		st := FolderStatus{Name: c.Name, Path: c.Path, Mode: c.Mode, QuietPeriod: c.QuietPeriod}
		if f := w.folders[c.Name]; f != nil {
			st = f.status()
		}
		out = append(out, st)
	}
	return out
}

func sameConfig(a, b FolderConfig) bool {
	if a.Name != b.Name || a.Path != b.Path || a.Mode != b.Mode || a.RescanInterval != b.RescanInterval ||
		a.QuietPeriod != b.QuietPeriod || a.AfterSuccess != b.AfterSuccess || a.Account != b.Account ||
		a.MaxMessageSize != b.MaxMessageSize || a.SubjectTemplate != b.SubjectTemplate ||
		a.BodyTemplate != b.BodyTemplate || *a.FailureNotice != *b.FailureNotice ||
		a.MaxReadRetries != b.MaxReadRetries || a.RetryDelay != b.RetryDelay || len(a.Users) != len(b.Users) ||
		a.IncompleteLimit != b.IncompleteLimit || a.EmptyGrace != b.EmptyGrace || *a.WriterCheck != *b.WriterCheck ||
		a.dirMode != b.dirMode || a.fileMode != b.fileMode || a.Group != b.Group || a.TimeZone != b.TimeZone {
		return false
	}
	for k, v := range a.Users {
		if bv, ok := b.Users[k]; !ok || bv != v {
			return false
		}
	}
	return true
}

func validHostname(h string) bool {
	if h == "" || len(h) > 253 {
		return false
	}
	return !slices.ContainsFunc([]byte(h), func(c byte) bool {
		return !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '-' || c == '.')
	})
}

// lookupGroup resolves a group name or numeric GID.
func lookupGroup(g string) (int, error) {
	if n, err := strconv.Atoi(g); err == nil {
		if n < 0 {
			return 0, fmt.Errorf("group %q: negative GID", g)
		}
		return n, nil
	}
	gr, err := user.LookupGroup(g)
	if err != nil {
		return 0, fmt.Errorf("group %q: %w", g, err)
	}
	n, err := strconv.Atoi(gr.Gid)
	if err != nil {
		return 0, fmt.Errorf("group %q: GID %q is not a number", g, gr.Gid)
	}
	return n, nil
}

// checkGroupMember refuses a group the process cannot give its files (it
// is neither its group nor a supplementary one, and it is not root): every
// move would fail with EPERM, every RetryDelay.
func checkGroupMember(name string, gid, euid, egid int, groups []int) error {
	if euid == 0 || gid == egid || slices.Contains(groups, gid) {
		return nil
	}
	return fmt.Errorf("group %q (GID %d): spoold is not a member, so it cannot give files that group; "+
		"add SupplementaryGroups=%s to the systemd unit (or run spoold with that group)", name, gid, name)
}

// formatMode prints a mode the way parseMode reads it ("2770", "0640").
func formatMode(m fs.FileMode) string {
	n := uint32(m.Perm())
	if m&fs.ModeSetgid != 0 {
		n |= 0o2000
	}
	return fmt.Sprintf("%04o", n)
}

// parseMode parses an octal mode as admins write it ("0750", "2770"): the
// permission bits plus set-GID (02000), which makes files created in a
// folder inherit its group. Other special bits are refused.
func parseMode(s string) (fs.FileMode, error) {
	n, err := strconv.ParseUint(s, 8, 32)
	if err != nil {
		return 0, fmt.Errorf("mode %q: want octal digits such as 0750", s)
	}
	if n&^0o2777 != 0 {
		return 0, fmt.Errorf("mode %q: only permission bits and set-GID (2000) are allowed", s)
	}
	m := fs.FileMode(n & 0o777)
	if n&0o2000 != 0 {
		m |= fs.ModeSetgid
	}
	return m, nil
}
