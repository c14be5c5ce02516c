package scanfolder

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"os"
	"path"
	"path/filepath"
	"sync"
	"sync/atomic"
	"time"

	"github.com/fsnotify/fsnotify"
)

// pendingFile is a file seen in the folder and not finished yet.
type pendingFile struct {
	size      int64
	mtime     time.Time
	since     time.Time // when size/mtime were last seen to change (or the file was first seen)
	notBefore time.Time // retry delay after an unreadable file or a spool error
	queued    bool      // found stable, waiting for a worker
	inFlight  bool      // a worker has it
	stableAt  time.Time // when it was found stable (latency metric)
	readFails int

	// A file that is not ready yet (empty, cut short, open for writing)
	// waits; waitSince is when it was first found so with the size and mtime
	// below. A change starts the wait afresh: the writer is still at work.
	waitSince time.Time
	waitSize  int64
	waitMtime time.Time
}

// folder runs one watched folder: a loop goroutine that tracks files and a
// small pool of workers that process the stable ones.
type folder struct {
	w   *Watcher
	cfg FolderConfig
	log *slog.Logger

	cancel context.CancelFunc
	done   chan struct{}

	rescanReq chan struct{} // cap 1
	kick      chan struct{} // cap 1: a worker finished; dispatch more
	work      chan string

	checks atomic.Int64 // readiness passes, for tests

	leaseWarned atomic.Bool // the "leases unsupported" warning is logged once per folder
	moveMu      sync.Mutex  // serialises moves into processed/ and failed/

	mu   sync.Mutex
	root *os.Root
	fsw  *fsnotify.Watcher // nil in poll mode
	cw   *closeWatcher     // IN_CLOSE_WRITE source; nil in poll mode and off Linux
	// writing holds files modified since their last close-write (watch mode
	// on Linux): a writer is between writes, so the file is not a candidate.
	writing map[string]bool
	// tracked holds files whose writes inotify saw whole: created while
	// watched, or closed after writing. Other files (there at start or
	// after a reload, in a new or renamed subfolder, after lost events)
	// may have a writer pausing between writes we never saw; without a
	// working open-writer probe they need the poll quiet period.
	tracked  map[string]bool
	moved    map[uint32]fileHistory // IN_MOVED_FROM history by cookie, for the IN_MOVED_TO that follows
	pending  map[string]*pendingFile
	ready    []string
	inFlight int
	watched  map[string]bool // relative dirs with an fsnotify watch ("." = root)
	lastScan time.Time
	lastErr  string
}

// startFolder starts a folder's goroutines. The returned folder is valid even
// with an error (the folder could not be opened yet; the loop retries at
// every rescan).
func (w *Watcher) startFolder(cfg FolderConfig) (*folder, error) {
	ctx, cancel := context.WithCancel(w.ctx)
	f := &folder{
		w:         w,
		cfg:       cfg,
		log:       w.log.With("folder", cfg.Name),
		cancel:    cancel,
		done:      make(chan struct{}),
		rescanReq: make(chan struct{}, 1),
		kick:      make(chan struct{}, 1),
		work:      make(chan string, w.workers),
		pending:   map[string]*pendingFile{},
		watched:   map[string]bool{},
		writing:   map[string]bool{},
		tracked:   map[string]bool{},
		moved:     map[uint32]fileHistory{},
	}
	err := f.openRoot()
	go f.run(ctx)
	return f, err
}

func (f *folder) openRoot() error {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.root != nil {
		return nil
	}
	// The configured path itself may be a symlink (admin's choice); below
	// it, os.Root refuses anything that resolves outside.
	r, err := os.OpenRoot(f.cfg.Path)
	if err != nil {
		err = fmt.Errorf("scanfolder: opening folder %q (%s): %w", f.cfg.Name, f.cfg.Path, err)
		f.lastErr = err.Error()
		return err
	}
	f.root = r
	return nil
}

func (f *folder) getRoot() *os.Root {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.root
}

// stop cancels the loop and waits for it and the in-flight files.
func (f *folder) stop() {
	f.cancel()
	<-f.done
}

func (f *folder) status() FolderStatus {
	f.mu.Lock()
	defer f.mu.Unlock()
	return FolderStatus{
		Name: f.cfg.Name, Path: f.cfg.Path, Mode: f.cfg.Mode, QuietPeriod: f.cfg.QuietPeriod,
		Pending: len(f.pending), LastScan: f.lastScan, LastError: f.lastErr,
	}
}

func (f *folder) setErr(err error) {
	f.mu.Lock()
	f.lastErr = err.Error()
	f.mu.Unlock()
}

func (f *folder) requestRescan() {
	select {
	case f.rescanReq <- struct{}{}:
	default:
	}
}

// checkInterval is how often pending files are looked at: a fraction of the
// quiet period so a stable file is taken soon after it becomes stable.
func (f *folder) checkInterval() time.Duration {
	return min(max(f.cfg.QuietPeriod/4, 20*time.Millisecond), 250*time.Millisecond)
}

func (f *folder) run(ctx context.Context) {
	defer close(f.done)
	var wg sync.WaitGroup
	workCtx := f.w.ctx // in-flight files finish on Close; cancelling Start's ctx aborts them
	for range f.w.workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for rel := range f.work {
				f.handle(workCtx, rel)
			}
		}()
	}
	defer func() {
		close(f.work)
		wg.Wait()
		f.mu.Lock()
		if f.root != nil {
			f.root.Close()
			f.root = nil
		}
		f.mu.Unlock()
	}()

	var events chan fsnotify.Event
	var errs chan error
	var closes chan closeEvent
	if f.cfg.Mode == ModeWatch && !f.w.noFsnotify {
		fw, err := fsnotify.NewWatcher()
		if err != nil {
			f.log.Error("fsnotify unavailable; rescans only", "err", err)
			f.setErr(fmt.Errorf("scanfolder: fsnotify: %w", err))
		} else {
			defer fw.Close()
			f.mu.Lock()
			f.fsw = fw
			f.mu.Unlock()
			events, errs = fw.Events, fw.Errors
			if closeWatchSupported {
				if cw, err := newCloseWatcher(); err != nil {
					f.log.Warn("close-write events unavailable; files need the poll quiet period "+
						"unless the open-writer check can vouch for them", "err", err, "poll_quiet_period", f.untrackedQuiet())
				} else {
					defer cw.close()
					f.mu.Lock()
					f.cw = cw
					f.mu.Unlock()
					closes = cw.events
				}
			}
		}
	}

	f.rescan()
	rescan := time.NewTicker(f.cfg.RescanInterval)
	defer rescan.Stop()
	check := time.NewTicker(f.checkInterval())
	defer check.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-rescan.C:
			f.rescan()
		case <-f.rescanReq:
			f.rescan()
		case <-check.C:
			f.checkPending()
		case <-f.kick:
		case ev, ok := <-closes:
			if !ok {
				closes = nil
				continue
			}
			f.closeEvent(ev)
		case ev, ok := <-events:
			if !ok {
				events = nil
				continue
			}
			f.event(ev)
		case err, ok := <-errs:
			if !ok {
				errs = nil
				continue
			}
			if errors.Is(err, fsnotify.ErrEventOverflow) {
				f.log.Warn("fsnotify event queue overflowed; rescanning")
			} else {
				f.log.Error("fsnotify error; rescanning", "err", err)
				f.setErr(fmt.Errorf("scanfolder: fsnotify: %w", err))
			}
			f.rescan()
		}
		f.dispatch()
	}
}

// rescan walks the folder (never following symlinks), adds watches for
// directories in watch mode and starts tracking files it does not know yet.
func (f *folder) rescan() {
	if err := f.openRoot(); err != nil {
		f.log.Error("cannot open", "err", err)
		return
	}
	root := f.getRoot()
	now := f.w.clock()
	seenDirs := map[string]bool{}
	seenFiles := map[string]bool{}
	f.mu.Lock()
	wasWriting := make([]string, 0, len(f.writing)+len(f.tracked))
	for rel := range f.writing {
		wasWriting = append(wasWriting, rel)
	}
	for rel := range f.tracked {
		wasWriting = append(wasWriting, rel)
	}
	f.mu.Unlock()
	walkErr := fs.WalkDir(root.FS(), ".", func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			if p == "." {
				return err
			}
			f.log.Warn("cannot read", "path", p, "err", err)
			return nil
		}
		if p != "." && ignoredPath(p) {
			if d.IsDir() {
				return fs.SkipDir
			}
			return nil
		}
		if d.IsDir() {
			seenDirs[p] = true
			f.watchDir(p)
			return nil
		}
		if ignoredName(path.Base(p)) {
			return nil
		}
		seenFiles[p] = true
		info, err := d.Info()
		if err != nil {
			return nil // vanished
		}
		f.track(p, info, now)
		return nil
	})
	f.mu.Lock()
	removed := false
	for d := range f.watched {
		if !seenDirs[d] {
			delete(f.watched, d)
			removed = true
			if f.fsw != nil {
				_ = f.fsw.Remove(filepath.Join(f.cfg.Path, filepath.FromSlash(d)))
			}
			if f.cw != nil {
				f.cw.remove(d)
			}
		}
	}
	if removed && f.fsw != nil {
		// A renamed directory keeps its kernel watch under the new name,
		// added by the walk above; fsnotify's Remove of the old name drops
		// that watch. Adding every directory again restores it (for a
		// watch that is still there, Add changes nothing).
		for d := range f.watched {
			if err := f.fsw.Add(filepath.Join(f.cfg.Path, filepath.FromSlash(d))); err != nil {
				f.log.Warn("cannot watch directory", "path", d, "err", err)
			}
		}
	}
	if walkErr == nil {
		// Writers' files that went away without an event we saw (deleted
		// with their folder, moved out) no longer need tracking.
		// Only entries older than the walk: a file created during it may
		// have been missed by it.
		for _, rel := range wasWriting {
			if !seenFiles[rel] {
				delete(f.writing, rel)
				delete(f.tracked, rel)
			}
		}
	}
	f.lastScan = f.w.clock()
	if walkErr != nil {
		f.lastErr = fmt.Sprintf("scanfolder: scanning %s: %v", f.cfg.Path, walkErr)
	}
	f.mu.Unlock()
	if walkErr != nil {
		f.log.Error("rescan failed", "err", walkErr)
	}
}

func (f *folder) watchDir(rel string) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.fsw == nil || f.watched[rel] {
		return
	}
	abs := filepath.Join(f.cfg.Path, filepath.FromSlash(rel))
	// The close-write watch goes first: a file written between the two adds
	// is then at worst seen modified without its create event (the rescan
	// that follows finds it), never created without its close. Files written
	// into a new subfolder before its watch exists carry no close-write
	// history; for them the open-writer check (lease) and the format checks
	// decide.
	if f.cw != nil {
		if err := f.cw.add(abs, rel); err != nil {
			f.log.Warn("cannot watch directory for close-write", "path", rel, "err", err)
		}
	}
	if err := f.fsw.Add(abs); err != nil {
		f.log.Warn("cannot watch directory", "path", rel, "err", err)
		return
	}
	f.watched[rel] = true
}

// track starts tracking a file (or refreshes nothing if known: the
// readiness check notices changes itself).
func (f *folder) track(rel string, info fs.FileInfo, now time.Time) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if _, ok := f.pending[rel]; ok {
		return
	}
	f.pending[rel] = &pendingFile{size: info.Size(), mtime: info.ModTime(), since: now}
}

// touch restarts a known file's quiet period after a write event, taking
// its current size and mtime so the next look can find it stable at once.
func (f *folder) touch(rel string, now time.Time) bool {
	f.mu.Lock()
	p, ok := f.pending[rel]
	busy := ok && (p.queued || p.inFlight)
	root := f.root
	f.mu.Unlock()
	if !ok || busy || root == nil {
		return ok
	}
	info, err := root.Lstat(rel)
	f.mu.Lock()
	defer f.mu.Unlock()
	if p, ok := f.pending[rel]; ok && !p.queued && !p.inFlight {
		p.since = now
		if err == nil {
			p.size, p.mtime = info.Size(), info.ModTime()
		}
	}
	return true
}

func (f *folder) event(ev fsnotify.Event) {
	rel, err := filepath.Rel(f.cfg.Path, ev.Name)
	if err != nil || !filepath.IsLocal(rel) {
		return
	}
	rel = filepath.ToSlash(rel)
	if ignoredPath(rel) {
		return
	}
	now := f.w.clock()
	if ev.Has(fsnotify.Remove) || ev.Has(fsnotify.Rename) {
		// The writer history of the name is the close watcher's business:
		// this event comes from another inotify instance and may be handled
		// after events about a new file of the same name.
		f.mu.Lock()
		isDir := f.watched[rel]
		f.mu.Unlock()
		if isDir {
			// A watched directory went away or moved: its files may now be
			// elsewhere in the tree. A rescan sorts it out.
			f.requestRescan()
		}
		return
	}
	if f.touch(rel, now) {
		return
	}
	if !ev.Has(fsnotify.Create) && !ev.Has(fsnotify.Write) {
		return
	}
	root := f.getRoot()
	if root == nil {
		return
	}
	info, err := root.Lstat(rel)
	if err != nil {
		return
	}
	if info.IsDir() {
		// Files created before the watch was added are found by this walk.
		f.requestRescan()
		return
	}
	if ignoredName(path.Base(rel)) {
		return
	}
	f.track(rel, info, now)
}

// fileHistory is what the close watcher knows about one name.
type fileHistory struct{ writing, tracked bool }

// closeEvent keeps the writer history of each name from the close
// watcher's events: a file modified after its last close-write has a writer
// between writes; a file created while watched, or closed after writing, is
// tracked (all its writes were seen).
func (f *folder) closeEvent(ev closeEvent) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if ev.overflow {
		// Events were lost: a modify or a close may be among them. Forget
		// what we knew; every file needs a fresh close-write or the poll
		// quiet period (or the writer check) from here on.
		f.log.Warn("inotify event queue overflowed; files need a close-write event or the poll quiet period")
		clear(f.writing)
		clear(f.tracked)
		clear(f.moved)
		return
	}
	switch ev.kind {
	case evModified:
		f.writing[ev.rel] = true
	case evClosed:
		delete(f.writing, ev.rel)
		f.tracked[ev.rel] = true
	case evCreated:
		f.tracked[ev.rel] = true
	case evGone:
		h := fileHistory{writing: f.writing[ev.rel], tracked: f.tracked[ev.rel]}
		delete(f.writing, ev.rel)
		delete(f.tracked, ev.rel)
		if ev.cookie != 0 {
			if len(f.moved) > 1000 {
				clear(f.moved) // pairs whose IN_MOVED_TO went elsewhere
			}
			f.moved[ev.cookie] = h
		}
	case evMovedIn:
		// A rename within the watched tree keeps the file's history; a
		// file moved in from elsewhere has none (untracked).
		h, ok := f.moved[ev.cookie]
		delete(f.moved, ev.cookie)
		delete(f.writing, ev.rel)
		delete(f.tracked, ev.rel)
		if ok && ev.cookie != 0 {
			if h.writing {
				f.writing[ev.rel] = true
			}
			if h.tracked {
				f.tracked[ev.rel] = true
			}
		}
	}
}

// isTracked reports whether inotify saw all of rel's writes (see tracked).
func (f *folder) isTracked(rel string) bool {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.tracked[rel]
}

// dropWriting forgets a writer mark the open-writer check contradicts.
func (f *folder) dropWriting(rel string) {
	f.mu.Lock()
	defer f.mu.Unlock()
	delete(f.writing, rel)
}

// untrackedQuiet is the quiet period a file without inotify history needs
// in watch mode when no open-writer check vouches for it.
func (f *folder) untrackedQuiet() time.Duration {
	return max(f.cfg.QuietPeriod, time.Duration(f.w.untrackedQuiet.Load()))
}

// isWriting reports whether rel was modified and not closed since.
func (f *folder) isWriting(rel string) bool {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.writing[rel]
}

// checkPending looks at files whose quiet period may be over: unchanged size
// and mtime since the last look means stable, so the file is queued for a
// worker; a change restarts the quiet period; a vanished file is dropped.
func (f *folder) checkPending() {
	f.checks.Add(1)
	root := f.getRoot()
	if root == nil {
		return
	}
	now := f.w.clock()
	type cand struct {
		rel         string
		size        int64
		mtime, from time.Time
	}
	var cands []cand
	f.mu.Lock()
	for rel, p := range f.pending {
		if p.queued || p.inFlight || now.Before(p.notBefore) || now.Sub(p.since) < f.cfg.QuietPeriod {
			continue
		}

		cands = append(cands, cand{rel, p.size, p.mtime, p.since})
	}
	f.mu.Unlock()
	for _, c := range cands {
		info, err := root.Lstat(c.rel)
		f.mu.Lock()
		p, ok := f.pending[c.rel]
		switch {
		case !ok || p.queued || p.inFlight || !p.since.Equal(c.from):
			// Changed by an event meanwhile; look again next time.
		case err != nil:
			delete(f.pending, c.rel)
		case info.Size() != c.size || !info.ModTime().Equal(c.mtime):
			p.size, p.mtime, p.since = info.Size(), info.ModTime(), now
		default:
			p.queued, p.stableAt = true, now
			f.ready = append(f.ready, c.rel)
		}
		f.mu.Unlock()
	}
}

// dispatch hands queued files to idle workers; the work channel has room for
// one file per worker, so this never blocks.
func (f *folder) dispatch() {
	f.mu.Lock()
	defer f.mu.Unlock()
	for len(f.ready) > 0 && f.inFlight < f.w.workers {
		rel := f.ready[0]
		f.ready = f.ready[1:]
		p, ok := f.pending[rel]
		if !ok {
			continue
		}
		p.queued, p.inFlight = false, true
		f.inFlight++
		f.work <- rel
	}
}

// outcome is what a worker decided about a file.
type outcome int

const (
	outDone     outcome = iota // finished (sent, moved to failed/, or gone): forget it
	outChanged                 // changed while being read: restart its quiet period
	outRetry                   // spool error or move failure: try again after RetryDelay
	outReadFail                // could not be read: counts towards MaxReadRetries
	outWait                    // not ready (empty, incomplete, open for writing): look again soon
)

// Reasons a file waits, passed to the test hook.
const (
	waitWriting    = "modified and not closed"
	waitEmpty      = "empty"
	waitOpen       = "open for writing"
	waitIncomplete = "incomplete"
	waitUntracked  = "writes not seen whole; waiting for the poll quiet period"
)

// fileState is a worker's copy of what the folder knows about a file.
type fileState struct {
	since     time.Time // size and mtime unchanged since
	stableAt  time.Time
	readFails int
	waitSince time.Time
	waitSize  int64
	waitMtime time.Time
}

// waited returns how long the file has waited unchanged with this size and
// mtime; 0 if this is the first look at this version.
func (s fileState) waited(now time.Time, size int64, mtime time.Time) time.Duration {
	if s.waitSince.IsZero() || s.waitSize != size || !s.waitMtime.Equal(mtime) {
		return 0
	}
	return now.Sub(s.waitSince)
}

// waitRecheck is how soon a waiting file is looked at again: often enough
// that it goes soon after it becomes ready, rarely enough that a 35 MB file
// waiting for ten minutes costs little (each look reads only a few blocks).
func (f *folder) waitRecheck() time.Duration {
	return min(max(f.cfg.QuietPeriod/2, 50*time.Millisecond), 2*time.Second)
}

func (f *folder) handle(ctx context.Context, rel string) {
	f.mu.Lock()
	var st fileState
	if p := f.pending[rel]; p != nil {
		st = fileState{p.since, p.stableAt, p.readFails, p.waitSince, p.waitSize, p.waitMtime}
	}
	f.mu.Unlock()

	var seen fs.FileInfo
	out := f.process(ctx, rel, st, &seen)

	now := f.w.clock()
	f.mu.Lock()
	f.inFlight--
	if p := f.pending[rel]; p != nil {
		p.inFlight = false
		switch out {
		case outDone:
			delete(f.pending, rel)
		case outChanged:
			p.since = now
			p.size = -1 // force a fresh look
		case outRetry:
			p.since, p.notBefore, p.size = now, now.Add(f.cfg.RetryDelay), -1
		case outReadFail:
			p.readFails++
			p.since, p.notBefore, p.size = now, now.Add(f.cfg.RetryDelay), -1
		case outWait:
			if seen != nil && (p.waitSince.IsZero() || p.waitSize != seen.Size() || !p.waitMtime.Equal(seen.ModTime())) {
				p.waitSince, p.waitSize, p.waitMtime = now, seen.Size(), seen.ModTime()
			}
			// The quiet period is not restarted: an unchanged file is
			// looked at again after waitRecheck.
			p.notBefore = now.Add(f.waitRecheck())
		}
	}
	f.mu.Unlock()
	select {
	case f.kick <- struct{}{}:
	default:
	}
}
