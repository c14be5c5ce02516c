package spool

import (
	"encoding/binary"
	"errors"
	"fmt"
	"hash/fnv"
	"io"
	"os"
	"path/filepath"
	"strings"
	"time"
)

// markerFile names the spool marker: a small file written next to spool.db
// once a database has been created. It is the sign of an earlier spool that
// survives the loss of spool.db even when every body was stored inline, so a
// missing database is refused instead of silently started empty.
const markerFile = "spool.marker"

// OrphansDir is where Open moves body files that no message names. It never
// deletes them: after a crash they are enqueues interrupted before their
// acknowledgement (the client sent them again), but after spool.db was
// replaced by an older copy they are accepted mail whose metadata was lost,
// and nothing at start-up can tell the two apart for certain. 'spoolctl
// salvage' re-queues them (held, for review); an admin may delete them.
const OrphansDir = "orphaned"

// manyOrphans is more bodies without metadata than interrupted enqueues
// usually leave: the move is then logged as an error, since metadata was
// more likely lost.
const manyOrphans = 64

// ErrNoDatabase is returned by Open for a directory that holds an earlier
// spool's bodies or marker but no usable database.
var ErrNoDatabase = errors.New("spool: database is missing or empty")

// noDatabaseError explains what was found and what the admin can do.
type noDatabaseError struct {
	dir, what string
	bodies    int
	marker    bool
}

func (e *noDatabaseError) Error() string {
	dir := absDir(e.dir)
	var signs []string
	if e.bodies > 0 {
		signs = append(signs, fmt.Sprintf("%d body files in %s/", e.bodies, MessagesDir))
	}
	if e.marker {
		signs = append(signs, "the spool marker "+markerFile)
	}
	return fmt.Sprintf("spool: %s in %s is %s, but the directory holds %s of an earlier spool; "+
		"refusing to start with an empty queue so that nothing is deleted. Restore %s from a backup, "+
		"or run 'spoolctl salvage --data-dir %s --account NAME' to re-queue the bodies as held messages, "+
		"or move the directory away to start afresh",
		DBFile, dir, e.what, strings.Join(signs, " and "), DBFile, dir)
}

// absDir names a directory as an admin can use it from anywhere (spoold may
// run with a relative data_dir from its working directory).
func absDir(dir string) string {
	if a, err := filepath.Abs(dir); err == nil {
		return a
	}
	return dir
}

// restoreHint ends a refusal of a damaged database with the ways out.
func restoreHint(dbPath string) string {
	return fmt.Sprintf("it was left untouched: restore it from a backup, or run 'spoolctl salvage --data-dir %s --account NAME' "+
		"to re-queue the bodies of its messages", absDir(filepath.Dir(dbPath)))
}

func (e *noDatabaseError) Unwrap() error { return ErrNoDatabase }

// checkDatabaseFile runs before bbolt sees the file. bbolt would initialise a
// missing or empty file as a new database and map a truncated one whole, so
// that reading a page past its end faults. Nothing here writes.
func checkDatabaseFile(dir, dbPath string) error {
	fi, err := os.Stat(dbPath)
	switch {
	case errors.Is(err, os.ErrNotExist):
		return checkNoEarlierSpool(dir, "missing")
	case err != nil:
		return fmt.Errorf("spool: %s: %w", dbPath, err)
	case !fi.Mode().IsRegular():
		return fmt.Errorf("spool: %s: %w: not a regular file", dbPath, ErrCorrupt)
	case fi.Size() == 0:
		return checkNoEarlierSpool(dir, "empty (0 bytes)")
	}
	return checkPageExtent(dbPath, fi.Size())
}

func checkNoEarlierSpool(dir, what string) error {
	e := &noDatabaseError{dir: dir, what: what}
	if _, err := os.Stat(filepath.Join(dir, markerFile)); err == nil {
		e.marker = true
	}
	for _, pattern := range []string{MessagesDir, OrphansDir, salvageDirPrefix + "*"} {
		names, _ := filepath.Glob(filepath.Join(dir, pattern, "*.eml"))
		e.bodies += len(names)
	}
	if e.marker || e.bodies > 0 {
		return e
	}
	return nil
}

// bbolt's on-disk meta page (go.etcd.io/bbolt internal/common: page header
// of 16 bytes, then magic, version, page size, flags, root bucket, freelist,
// high-water page id, txid and an FNV-64a checksum of the fields before it),
// in the host's byte order as bbolt writes it.
const (
	boltMagic       = 0xED0CDAED
	boltVersion     = 2
	metaOffset      = 16
	metaChecksumEnd = metaOffset + 56
	metaSize        = metaChecksumEnd + 8
)

type boltMeta struct {
	pageSize uint32
	pgid     uint64 // high-water mark: pages 0..pgid-1 are in use
	txid     uint64
}

func parseMeta(b []byte) (boltMeta, bool) {
	if len(b) < metaSize {
		return boltMeta{}, false
	}
	ne := binary.NativeEndian
	if ne.Uint32(b[metaOffset:]) != boltMagic || ne.Uint32(b[metaOffset+4:]) != boltVersion {
		return boltMeta{}, false
	}
	h := fnv.New64a()
	h.Write(b[metaOffset:metaChecksumEnd])
	if h.Sum64() != ne.Uint64(b[metaChecksumEnd:]) {
		return boltMeta{}, false
	}
	m := boltMeta{
		pageSize: ne.Uint32(b[metaOffset+8:]),
		pgid:     ne.Uint64(b[metaOffset+40:]),
		txid:     ne.Uint64(b[metaOffset+48:]),
	}
	if m.pageSize < 512 || m.pageSize > 1<<20 || m.pageSize&(m.pageSize-1) != 0 {
		return boltMeta{}, false
	}
	return m, true
}

// checkPageExtent refuses a file shorter than the pages its newest valid
// meta page claims (a copy cut short, a full disk during a restore).
func checkPageExtent(dbPath string, size int64) error {
	f, err := os.Open(dbPath)
	if err != nil {
		return fmt.Errorf("spool: %s: %w", dbPath, err)
	}
	defer f.Close()
	var best boltMeta
	found := false
	buf := make([]byte, metaSize)
	// Meta page 0 is at offset 0; page 1 at one page size, which page 0
	// gives when it is valid and the usual sizes are tried when it is not.
	offsets := []int64{0, 4096, 8192, 16384, 32768, 65536}
	for _, off := range offsets {
		n, err := f.ReadAt(buf, off)
		if err != nil && !errors.Is(err, io.EOF) {
			return fmt.Errorf("spool: reading %s: %w", dbPath, err)
		}
		m, ok := parseMeta(buf[:n])
		if !ok || (off != 0 && int64(m.pageSize) != off) {
			continue
		}
		if !found || m.txid > best.txid {
			best, found = m, true
		}
	}
	if !found {
		return fmt.Errorf("spool: %s: %w: no valid meta page (not a spool database, or its first pages are damaged); %s",
			dbPath, ErrCorrupt, restoreHint(dbPath))
	}
	need := int64(best.pgid) * int64(best.pageSize)
	if best.pgid < 2 || need < 0 || size < need {
		return fmt.Errorf("spool: %s: %w: the file is %d bytes but its pages need %d (a truncated copy or restore?); %s",
			dbPath, ErrCorrupt, size, need, restoreHint(dbPath))
	}
	return nil
}

// writeMarker records that this directory holds a spool (see markerFile).
// It is written once, durably, after the database was opened.
func (s *Spool) writeMarker() error {
	path := filepath.Join(s.dir, markerFile)
	if _, err := os.Stat(path); err == nil {
		return nil
	}
	tmp := path + ".tmp"
	content := fmt.Sprintf("This directory holds a spoold spool (created or first opened %s).\n"+
		"spoold refuses to start here without %s: see 'spoolctl salvage'.\n",
		s.opts.Clock().UTC().Format(time.RFC3339), DBFile)
	f, err := os.OpenFile(tmp, os.O_WRONLY|os.O_CREATE|os.O_TRUNC, 0o600)
	if err != nil {
		return fmt.Errorf("spool: writing %s: %w", path, err)
	}
	_, err = f.WriteString(content)
	if err == nil {
		err = f.Sync()
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = os.Rename(tmp, path)
	}
	if err == nil {
		err = s.fs.SyncDir(s.dir)
	}
	if err != nil {
		os.Remove(tmp)
		return fmt.Errorf("spool: writing %s: %w", path, err)
	}
	return nil
}
