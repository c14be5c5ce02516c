package spool

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"time"
	"unicode/utf8"

	bolt "go.etcd.io/bbolt"
)

// copyBufs pools the copy buffers so concurrent enqueues of large scans keep
// memory constant.
var copyBufs = sync.Pool{New: func() any { b := make([]byte, 64<<10); return &b }}

// bodyBlock is the size of the writes of a body file: a 1 MB scan is four
// writes instead of the 16-64 the network reads would make. Only the
// maxBodyWriters writers at a time hold one.
const bodyBlock = 256 << 10

var blockBufs = sync.Pool{New: func() any { b := make([]byte, bodyBlock); return &b }}

// commitReq is one renamed body waiting for the group commit.
type commitReq struct {
	msg  *Message
	done chan commitRes
}

type commitRes struct {
	id       string // the committed ID, or the existing ID for a duplicate key
	existing bool
	err      error
}

func validateEnqueue(req EnqueueRequest) error {
	if req.Account == "" {
		return fmt.Errorf("spool: enqueue: %w: account is required", ErrInvalid)
	}
	if strings.ContainsAny(req.Account, "\x00\r\n") || len(req.Account) > 256 {
		return fmt.Errorf("spool: enqueue: %w: bad account name %q", ErrInvalid, req.Account)
	}
	if strings.ContainsAny(req.From, "\x00\r\n") {
		return fmt.Errorf("spool: enqueue: %w: sender contains CR, LF or NUL", ErrInvalid)
	}
	if len(req.To) == 0 {
		return fmt.Errorf("spool: enqueue: %w: no recipients", ErrInvalid)
	}
	for i, to := range req.To {
		if to == "" {
			return fmt.Errorf("spool: enqueue: %w: recipient %d is empty", ErrInvalid, i+1)
		}
		if strings.ContainsAny(to, "\x00\r\n") {
			return fmt.Errorf("spool: enqueue: %w: recipient %d contains CR, LF or NUL", ErrInvalid, i+1)
		}
	}
	// Metadata is stored as JSON, which cannot carry invalid UTF-8; the
	// account and key are also index keys and must round-trip exactly.
	if !utf8.ValidString(req.Account) || !utf8.ValidString(req.From) || !utf8.ValidString(req.IdempotencyKey) {
		return fmt.Errorf("spool: enqueue: %w: account, sender or idempotency key is not valid UTF-8", ErrInvalid)
	}
	for i, to := range req.To {
		if !utf8.ValidString(to) {
			return fmt.Errorf("spool: enqueue: %w: recipient %d is not valid UTF-8", ErrInvalid, i+1)
		}
	}
	if len(req.IdempotencyKey) > 512 {
		return fmt.Errorf("spool: enqueue: %w: idempotency key longer than 512 bytes", ErrInvalid)
	}
	return nil
}

// Enqueue streams body into a new message and returns its ID once body and
// metadata are durable: a body up to InlineBodyMax is stored in the
// group-committed bbolt transaction with the metadata; a larger one goes to
// its own file first (unnamed temp file, link, fsync, directory fsync, then
// the commit). Memory use is constant in the body size. If body returns
// an error, nothing is stored and the error is returned wrapped (errors.Is
// works). Disk full returns an error matching ErrNoSpace. With an
// IdempotencyKey already committed, it returns the existing ID and writes nothing.
func (s *Spool) Enqueue(ctx context.Context, req EnqueueRequest, body io.Reader) (string, error) {
	if err := validateEnqueue(req); err != nil {
		return "", err
	}
	if body == nil {
		return "", fmt.Errorf("spool: enqueue: %w: nil body", ErrInvalid)
	}
	if err := s.begin(ctx, true); err != nil {
		return "", fmt.Errorf("spool: enqueue: %w", err)
	}
	defer s.end()

	if req.IdempotencyKey != "" {
		id, found, err := s.lookupKey(req.IdempotencyKey)
		if err != nil {
			return "", fmt.Errorf("spool: enqueue: %w", err)
		}
		if found {
			return id, nil
		}
	}

	now := s.opts.Clock()
	id, err := s.newID(now)
	if err != nil {
		return "", err
	}
	// A body that fits in one copy buffer and under InlineBodyMax goes into
	// the database with its metadata: one group-committed transaction makes
	// it durable, instead of a file create, fsync and directory fsync of its
	// own (file creation is the slowest sync write a disk does).
	bp := copyBufs.Get().(*[]byte)
	defer copyBufs.Put(bp)
	buf := *bp
	n, complete, err := fill(body, buf)
	if err != nil {
		return "", fmt.Errorf("spool: enqueue: reading body: %w", err)
	}
	var inline []byte
	size := int64(n)
	if complete && n <= s.inlineMax {
		inline = buf[:n]
	} else {
		// Bound concurrent body writers: past a few, parallel creates and
		// fsyncs in one directory only spin on its lock and the journal.
		s.writers <- struct{}{}
		bb := blockBufs.Get().(*[]byte)
		size, err = s.writeBody(id, buf[:n], body, *bb)
		blockBufs.Put(bb)
		<-s.writers
		if err != nil {
			return "", err
		}
	}

	m := s.machine().NewMessage(req, id, size, now)
	m.BodyInline = inline != nil
	if req.Verify != nil {
		if err := req.Verify(); err != nil {
			if inline == nil {
				s.removeBody(id)
			}
			return "", fmt.Errorf("spool: enqueue: verify before commit: %w", err)
		}
	}
	var res commitRes
	if inline != nil {
		res = s.commitInline(m, inline)
	} else {
		r := &commitReq{msg: m, done: make(chan commitRes, 1)}
		// The commit loop outlives every operation (Close waits for us),
		// so this send and receive cannot block forever.
		s.commitCh <- r
		res = <-r.done
	}
	if res.err != nil || res.existing {
		if inline == nil {
			s.removeBody(id)
		}
		if res.err != nil {
			return "", res.err
		}
		return res.id, nil
	}
	if s.opts.Enqueued != nil {
		s.opts.Enqueued(m.Source.Kind)
	}
	s.log.Debug("enqueued", "msg_id", id, "account", m.Account, "size", size)
	return id, nil
}

func (s *Spool) newID(now time.Time) (string, error) {
	var id string
	if s.opts.NewID != nil {
		id = s.opts.NewID(now)
	} else {
		var err error
		id, err = s.ids.next(now)
		if err != nil {
			return "", err
		}
	}
	if !validID(id) {
		return "", fmt.Errorf("spool: enqueue: %w: generated id %q is not usable", ErrInvalid, id)
	}
	return id, nil
}

// writeBody streams head and then body into a durable file named
// messages/<id>.eml: the body goes to a temp file, is fsync'd, and only then
// gets its final name. buf is the block buffer. On any failure nothing is
// left behind.
func (s *Spool) writeBody(id string, head []byte, body io.Reader, buf []byte) (int64, error) {
	if s.anon {
		return s.writeBodyAnon(id, head, body, buf)
	}
	return s.writeBodyNamed(id, head, body, buf)
}

// fill reads body into buf until buf is full or body ends; complete says it
// ended. Read errors other than io.EOF are returned.
func fill(body io.Reader, buf []byte) (n int, complete bool, err error) {
	for n < len(buf) {
		m, err := body.Read(buf[n:])
		n += m
		if err == io.EOF {
			return n, true, nil
		}
		if err != nil {
			return n, false, err
		}
	}
	return n, false, nil
}

// writeBodyAnon writes an unnamed O_TMPFILE file, fsyncs it and links it into
// messages/. Against a named temp file this saves a directory entry, the
// rename and, above all, the create under messages/' directory lock, which
// serialised concurrent writers. The second fsync after the link writes the
// inode's new link count: a directory fsync does not, and on ext4 without a
// journal a crash could otherwise leave an entry to an inode with no links.
func (s *Spool) writeBodyAnon(id string, head []byte, body io.Reader, buf []byte) (size int64, err error) {
	f, err := s.fs.CreateAnon(s.msgDir)
	if err != nil {
		return 0, wrapIO("creating temp file", err)
	}
	final := s.bodyPath(id)
	linked, closed := false, false
	defer func() {
		if err != nil {
			if !closed {
				f.Close()
			}
			if linked {
				s.fs.Remove(final)
			}
		}
	}()
	if size, err = copyBody(f, head, body, buf); err != nil {
		return 0, err
	}
	// One fsync after the link covers the data and the inode with its new
	// link count. A crash before it can leave a named but incomplete body,
	// which is harmless: no metadata names it yet, so recovery removes it as
	// an orphan (the classic fsync-before-rename protects readers that would
	// see the file at once; nothing here reads a body before its commit).
	if err = f.Link(final); err != nil {
		return 0, wrapIO("linking body", err)
	}
	linked = true
	if err = f.Sync(); err != nil {
		return 0, wrapIO("fsync body", err)
	}
	closed = true
	if err = f.Close(); err != nil {
		return 0, wrapIO("closing body", err)
	}
	return size, nil
}

// writeBodyNamed is writeBody where unnamed files are not available: a
// *.tmp file in messages/ (recovery removes leftovers), fsync, rename.
func (s *Spool) writeBodyNamed(id string, head []byte, body io.Reader, buf []byte) (size int64, err error) {
	f, err := s.fs.CreateTemp(s.msgDir, id+".*.tmp")
	if err != nil {
		return 0, wrapIO("creating temp file", err)
	}
	tmp := f.Name()
	closed := false
	defer func() {
		if err != nil {
			if !closed {
				f.Close()
			}
			s.fs.Remove(tmp)
		}
	}()
	if size, err = copyBody(f, head, body, buf); err != nil {
		return 0, err
	}
	if err = f.Sync(); err != nil {
		return 0, wrapIO("fsync body", err)
	}
	closed = true
	if err = f.Close(); err != nil {
		return 0, wrapIO("closing body", err)
	}
	if err = s.fs.Rename(tmp, s.bodyPath(id)); err != nil {
		return 0, wrapIO("renaming body", err)
	}
	return size, nil
}

// copyBody writes head and then body to f in blocks of len(buf): each write
// waits until buf is full (or body ended), so the file gets a few large
// writes whatever sizes body's reads return. Write errors (of the spool) are
// told from read errors (of the caller).
func copyBody(f io.Writer, head []byte, body io.Reader, buf []byte) (int64, error) {
	var size int64
	k := 0
	if len(head) > len(buf) {
		// A head larger than a block (not the case in Enqueue) goes as is.
		if _, err := f.Write(head); err != nil {
			return 0, wrapIO("writing body", err)
		}
		size += int64(len(head))
	} else {
		k = copy(buf, head)
	}
	for {
		n, complete, err := fill(body, buf[k:])
		n += k
		k = 0
		if err != nil {
			return 0, fmt.Errorf("spool: enqueue: reading body: %w", err)
		}
		if n > 0 {
			if _, err := f.Write(buf[:n]); err != nil {
				return 0, wrapIO("writing body", err)
			}
			size += int64(n)
		}
		if complete {
			return size, nil
		}
	}
}

// probeAnon reports whether unnamed temp files can be created and linked in
// messages/ (O_TMPFILE support, /proc or CAP_DAC_READ_SEARCH for linkat).
// The probe name ends in .tmp so recovery removes it if we crash here.
func (s *Spool) probeAnon() bool {
	f, err := s.fs.CreateAnon(s.msgDir)
	if err != nil {
		s.log.Debug("unnamed temp files unavailable, using named ones", "err", err)
		return false
	}
	defer f.Close()
	probe := filepath.Join(s.msgDir, ".probe-"+strconv.Itoa(os.Getpid())+".tmp")
	s.fs.Remove(probe)
	if err := f.Link(probe); err != nil {
		s.log.Debug("linking unnamed temp files fails, using named ones", "err", err)
		return false
	}
	if err := s.fs.Remove(probe); err != nil {
		s.log.Warn("removing probe file", "file", probe, "err", err)
	}
	return true
}

// commitLoop is the group committer, a two-stage pipeline: stage one takes
// every request queued while it was busy and fsyncs the messages directory
// once for all their renames; stage two commits such a batch in one bbolt
// transaction. The stages overlap, so the directory fsync of the next batch
// runs during the database commit of the previous one. Each message still
// gets rename -> directory fsync -> commit in that order.
func (s *Spool) commitLoop() {
	defer close(s.commitDone)
	synced := make(chan []*commitReq, 1)
	committerDone := make(chan struct{})
	go func() {
		defer close(committerDone)
		for batch := range synced {
			s.commitBatch(batch)
		}
	}()
	defer func() {
		close(synced)
		<-committerDone
	}()
	for {
		var batch []*commitReq
		select {
		case r := <-s.commitCh:
			batch = append(batch, r)
		case <-s.commitStop:
			return
		}
	drain:
		for len(batch) < 1000 {
			select {
			case r := <-s.commitCh:
				batch = append(batch, r)
			default:
				break drain
			}
		}
		if err := s.fs.SyncDir(s.msgDir); err != nil {
			err = wrapIO("fsync messages directory", err)
			for _, r := range batch {
				r.done <- commitRes{err: err}
			}
			continue
		}
		synced <- batch
	}
}

// commitBatch commits the metadata of a batch whose body files are durable.
func (s *Spool) commitBatch(batch []*commitReq) {
	results := make([]commitRes, len(batch))
	err := s.db.Update(func(tx *bolt.Tx) error {
		for i, r := range batch {
			var err error
			if results[i], err = insertMsg(tx, r.msg, nil); err != nil {
				return err
			}
		}
		if s.beforeCommit != nil {
			return s.beforeCommit()
		}
		return nil
	})
	if err != nil {
		err = wrapIO("committing metadata", err)
		for _, r := range batch {
			r.done <- commitRes{err: err}
		}
		return
	}
	// Signal before answering so a caller that sees its ID also finds
	// the notification.
	s.signal()
	for i, r := range batch {
		r.done <- results[i]
	}
}

// insertMsg writes a new message (and its inline body) in tx. A duplicate
// idempotency key or ID is an answer in the result, with nothing written; the
// error is for failed writes.
func insertMsg(tx *bolt.Tx, m *Message, body []byte) (commitRes, error) {
	if m.IdempotencyKey != "" {
		if v := tx.Bucket(bktKeys).Get([]byte(m.IdempotencyKey)); v != nil {
			return commitRes{id: string(v), existing: true}, nil
		}
	}
	if tx.Bucket(bktMessages).Get([]byte(m.ID)) != nil {
		return commitRes{err: fmt.Errorf("spool: enqueue: %w: id %s already exists", ErrInvalid, m.ID)}, nil
	}
	if body != nil {
		if err := tx.Bucket(bktBodies).Put([]byte(m.ID), body); err != nil {
			return commitRes{}, err
		}
	}
	if err := writeMsg(tx, nil, m); err != nil {
		return commitRes{}, err
	}
	if m.IdempotencyKey != "" {
		if err := tx.Bucket(bktKeys).Put([]byte(m.IdempotencyKey), []byte(m.ID)); err != nil {
			return commitRes{}, err
		}
	}
	return commitRes{id: m.ID}, nil
}

// commitInline commits a message with an inline body through the shared
// group commit of transitions: with no file to sync first, it can share a
// transaction with delivery's commits instead of taking turns with them.
func (s *Spool) commitInline(m *Message, body []byte) commitRes {
	var res commitRes
	err := s.update(func(tx *bolt.Tx) error {
		var err error
		if res, err = insertMsg(tx, m, body); err != nil {
			return err
		}
		if res.err != nil || res.existing {
			return &refused{errDeclined}
		}
		if s.beforeCommit != nil {
			return s.beforeCommit()
		}
		return nil
	})
	switch {
	case errors.Is(err, errDeclined):
		return res
	case err != nil:
		return commitRes{err: wrapIO("committing metadata", err)}
	}
	s.signal()
	return res
}

// errDeclined rolls back an inline insert that found its key or ID taken.
var errDeclined = errors.New("spool: insert declined")

// LookupKey returns the message ID committed with an idempotency key.
func (s *Spool) LookupKey(ctx context.Context, key string) (id string, found bool, err error) {
	if err := s.begin(ctx, false); err != nil {
		return "", false, fmt.Errorf("spool: lookup key: %w", err)
	}
	defer s.end()
	id, found, err = s.lookupKey(key)
	if err != nil {
		return "", false, fmt.Errorf("spool: lookup key: %w", err)
	}
	return id, found, nil
}

func (s *Spool) lookupKey(key string) (id string, found bool, err error) {
	if key == "" {
		return "", false, nil
	}
	err = s.db.View(func(tx *bolt.Tx) error {
		if v := tx.Bucket(bktKeys).Get([]byte(key)); v != nil {
			id, found = string(v), true
		}
		return nil
	})
	return id, found, err
}
