package scanfolder

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"hash"
	"io"
	"io/fs"
	"log/slog"
	"os"
	"path"
	"strconv"
	"strings"
	"syscall"
	"text/template"
	"time"

	"github.com/emersion/go-message/mail"

	"github.com/spoold/spoold/spool"
	"github.com/spoold/spoold/spool/notice"
)

// errorSuffix names the reason file next to a file in failed/.
const errorSuffix = ".error.txt"

// errFileChanged means the file changed between the hashing pass and the
// build pass; nothing was stored and the file gets a new quiet period.
var errFileChanged = errors.New("scanfolder: file changed while being read")

// readError wraps an error reading the scan itself (not the spool's).
type readError struct{ err error }

func (e *readError) Error() string { return "reading file: " + e.err.Error() }
func (e *readError) Unwrap() error { return e.err }

// IdempotencyKey is the key committed with a scan's message: folder name,
// relative path, size, mtime and content hash, hashed to a fixed length.
func IdempotencyKey(folder, rel string, size int64, mtime time.Time, sha string) string {
	h := sha256.New()
	for _, s := range []string{folder, rel, strconv.FormatInt(size, 10), strconv.FormatInt(mtime.UnixNano(), 10), sha} {
		h.Write([]byte(s))
		h.Write([]byte{0})
	}
	return "scan:" + hex.EncodeToString(h.Sum(nil))
}

// process handles one stable file from start to finish. seen receives the
// file's Lstat info (for the wait bookkeeping).
func (f *folder) process(ctx context.Context, rel string, st fileState, seen *fs.FileInfo) outcome {
	root := f.getRoot()
	if root == nil {
		return outRetry
	}
	log := f.log.With("path", rel, "account", f.cfg.Account)
	user := userFor(rel, f.cfg.Users) // safe: only validated names and addresses
	stableAt, readFails := st.stableAt, st.readFails

	info, err := root.Lstat(rel)
	if errors.Is(err, fs.ErrNotExist) {
		return outDone
	}
	if err != nil {
		return f.readFailed(ctx, root, rel, user, info, readFails, err)
	}
	*seen = info
	if err := checkName(rel); err != nil {
		return f.fail(ctx, root, rel, user, info, "refused: "+err.Error())
	}
	switch {
	case info.Mode()&fs.ModeSymlink != 0:
		return f.fail(ctx, root, rel, user, info, "refused: symbolic link (links are never followed)")
	case !info.Mode().IsRegular():
		return f.fail(ctx, root, rel, user, info, "refused: not a regular file")
	}

	// Readiness: each check below can hold the file back; a held file
	// waits (outWait) and is looked at again, and only a file that stays
	// unready and unchanged past its limit fails.
	now := f.w.clock()
	waited := st.waited(now, info.Size(), info.ModTime())
	if f.w.openHook != nil {
		if err := f.w.openHook(rel); err != nil {
			return f.readFailed(ctx, root, rel, user, info, readFails, err)
		}
	}
	file, err := root.OpenFile(rel, os.O_RDONLY|openFlags, 0)
	if err != nil {
		return f.readFailed(ctx, root, rel, user, info, readFails, err)
	}
	defer file.Close()
	if fi, err := file.Stat(); err != nil || !os.SameFile(fi, info) || !fi.Mode().IsRegular() {
		return outChanged // swapped between Lstat and open
	}
	// noWriter: the open-writer check positively found no writer. It then
	// overrules what inotify could not tell us (a file with no history) or
	// told us wrongly (truncate(2) by path is an IN_MODIFY without a close).
	noWriter := false
	if *f.cfg.WriterCheck {
		check := writerCheck
		if f.w.writerCheck != nil {
			check = f.w.writerCheck
		}
		writing, unsupported, err := check(file)
		switch {
		case unsupported:
			if f.leaseWarned.CompareAndSwap(false, true) {
				f.log.Warn("cannot check for open writers (read leases need spoold to own the files or have CAP_LEASE, "+
					"and a file system that supports them); relying on inotify, the quiet period and the format checks", "err", err)
			}
		case err != nil:
			log.Warn("open-writer check failed; relying on the other signals", "err", err)
		case writing:
			if waited >= f.cfg.IncompleteLimit {
				return f.fail(ctx, root, rel, user, info, fmt.Sprintf(
					"never became complete: still open for writing by another process after %v", f.cfg.IncompleteLimit))
			}
			return f.wait(rel, waitOpen, "", waited == 0)
		default:
			noWriter = true
		}
	}
	if f.isWriting(rel) {
		if noWriter {
			// Modified without a close we saw, and nobody has it open
			// (truncate by path, or a close still in the event queue).
			f.dropWriting(rel)
		} else {
			// Modified and not closed since (watch mode): a writer is
			// pausing between writes. Its close-write event ends this.
			if waited >= f.cfg.IncompleteLimit {
				return f.fail(ctx, root, rel, user, info, fmt.Sprintf(
					"never became complete: still open for writing (written to, never closed) after %v", f.cfg.IncompleteLimit))
			}
			return f.wait(rel, waitWriting, "", waited == 0)
		}
	}
	if info.Size() == 0 {
		// Scanners often create the file first and write it seconds later.
		if waited >= f.cfg.EmptyGrace {
			return f.fail(ctx, root, rel, user, info, fmt.Sprintf("empty file (0 bytes), still empty after %v", f.cfg.EmptyGrace))
		}
		return f.wait(rel, waitEmpty, "", waited == 0)
	}
	if f.cfg.Mode == ModeWatch && !noWriter && !f.isTracked(rel) {
		// inotify did not see this file's writes whole (it was there at
		// start or at a reload, events were lost, or its subfolder is new
		// or renamed), and nothing else says its writer is done: a scanner
		// pausing between pages of an unknown type, or of a multi-page TIFF
		// that is whole after every page, looks finished. Only a close-write
		// event or the poll quiet period lets it go.
		if q := f.untrackedQuiet(); now.Sub(st.since) < q {
			return f.wait(rel, waitUntracked, "", waited == 0)
		}
	}
	verdict, why, err := completeness(file, info.Size())
	if errors.Is(err, errFileChanged) {
		return outChanged // shrank under the check: a writer at work, not a read failure
	}
	if err != nil {
		return f.readFailed(ctx, root, rel, user, info, readFails, err)
	}
	if verdict == formatIncomplete {
		if waited >= f.cfg.IncompleteLimit {
			return f.fail(ctx, root, rel, user, info, fmt.Sprintf(
				"never became complete: %s, unchanged for %v (the scanner or the network may have stopped mid-file)",
				why, f.cfg.IncompleteLimit))
		}
		return f.wait(rel, waitIncomplete, why, waited == 0)
	}

	sc, wait, err := f.readSidecar(root, rel)
	if wait {
		return outChanged
	}
	if err != nil {
		return f.fail(ctx, root, rel, user, info, err.Error())
	}
	rt, err := resolveRoute(rel, f.cfg.Users, sc)
	if err != nil {
		return f.fail(ctx, root, rel, user, info, err.Error())
	}
	if lim := f.cfg.MaxMessageSize; lim > 0 {
		if est := encodedSize(info.Size(), max(len(rt.body), 1024)); est > lim {
			return f.fail(ctx, root, rel, user, info, fmt.Sprintf(
				"too big: the file is %s, about %s as an e-mail, over the account's limit of %s",
				mb(info.Size()), mb(est), mb(lim)))
		}
	}

	// Pass 1: hash, sniff, count pages.
	sum, head, pages, err := scanPass(file, info.Size())
	if err != nil {
		if errors.Is(err, errFileChanged) {
			return outChanged
		}
		return f.readFailed(ctx, root, rel, user, info, readFails, err)
	}
	if again, err := root.Lstat(rel); err != nil || again.Size() != info.Size() || !again.ModTime().Equal(info.ModTime()) {
		return outChanged
	}
	key := IdempotencyKey(f.cfg.Name, rel, info.Size(), info.ModTime(), sum)

	if id, found, err := f.w.enq.LookupKey(ctx, key); err != nil {
		log.Error("spool lookup failed; will retry", "err", err)
		f.setErr(fmt.Errorf("scanfolder: spool lookup: %w", err))
		f.w.metrics.files.WithLabelValues(f.cfg.Name, resultRetry).Inc()
		return outRetry
	} else if found {
		// Committed before, not moved (crash between commit and move): only move.
		log.Info("file was already enqueued; finishing the move", "msg_id", id)
		f.w.metrics.files.WithLabelValues(f.cfg.Name, resultDuplicate).Inc()
		return f.finish(root, rel, id, log)
	}

	base := path.Base(rel)
	ctype := contentType(base, head)
	data := TemplateData{
		File: base, Path: rel, Folder: f.cfg.Name, Size: info.Size(), SizeText: sizeText(info.Size()),
		Pages: pages, ContentType: ctype, Time: info.ModTime().In(f.cfg.loc),
	}
	if user != nil {
		data.UserName, data.UserAddress = user.Name, user.Address
	}
	subject := rt.subject
	if subject == "" {
		if subject, err = render("subject", f.cfg.SubjectTemplate, data); err != nil {
			return f.fail(ctx, root, rel, user, info, err.Error())
		}
		subject = oneLine(subject)
	}
	body := rt.body
	if body == "" {
		if body, err = render("body", f.cfg.BodyTemplate, data); err != nil {
			return f.fail(ctx, root, rel, user, info, err.Error())
		}
	}
	from := f.fallbackSender()
	var replyTo *mail.Address
	if user != nil {
		from = mail.Address{Name: user.Name, Address: user.Address}
		replyTo = &from
	}
	hdr := msgHeader{
		from: from, replyTo: replyTo, to: rt.to, cc: rt.cc, subject: subject,
		date: f.w.clock().In(f.cfg.loc), messageID: notice.MessageID(key, f.w.hostname),
	}
	req := spool.EnqueueRequest{
		From:            from.Address,
		To:              append(append([]string{}, rt.to...), rt.cc...),
		Account:         f.cfg.Account,
		Source:          spool.Source{Kind: spool.SourceScan, Folder: f.cfg.Name, Path: rel, SHA256: sum},
		IdempotencyKey:  key,
		NotifyOnFailure: true,
	}

	// Pass 2: stream the message into the spool; the bytes are hashed again
	// and must match pass 1, so the committed message is exactly the file
	// the key names. The spool runs Verify after the body is durable and
	// right before the commit: a change up to then stores nothing.
	req.Verify = func() error { return f.unchanged(root, rel, file, info) }
	id, err := f.stream(ctx, req, hdr, body, base, ctype, file, info.Size(), sum)
	if err != nil {
		var re *readError
		switch {
		case errors.Is(err, errFileChanged):
			log.Info("file changed while being sent; waiting again")
			return outChanged
		case errors.As(err, &re):
			return f.readFailed(ctx, root, rel, user, info, readFails, re.err)
		}
		if errors.Is(err, spool.ErrNoSpace) {
			log.Error("spool is out of space; file left in place, will retry", "err", err)
		} else {
			log.Error("enqueue failed; file left in place, will retry", "err", err)
		}
		f.setErr(fmt.Errorf("scanfolder: %s: enqueue: %w", rel, err))
		f.w.metrics.files.WithLabelValues(f.cfg.Name, resultRetry).Inc()
		return outRetry
	}
	f.w.metrics.files.WithLabelValues(f.cfg.Name, resultEnqueued).Inc()
	if !stableAt.IsZero() {
		f.w.metrics.latency.WithLabelValues(f.cfg.Name).Observe(f.w.clock().Sub(stableAt).Seconds())
	}
	log.Info("enqueued", "msg_id", id, "to", req.To, "size", info.Size(), "type", ctype)
	if f.w.afterCommitHook != nil {
		if err := f.w.afterCommitHook(rel); err != nil {
			return outRetry
		}
	}
	if err := f.unchanged(root, rel, file, info); err != nil {
		if movedAway(root, rel, file, info) {
			// Its bytes did not change, the file just left: another node
			// sharing the spool committed the same key and moved it (or a
			// user removed it). The message is exactly the file.
			log.Info("file was moved away right after the commit; the message stands", "msg_id", id)
			return outDone
		}
		// Changed during the commit itself (Verify ran just before it):
		// the message holds the earlier bytes. It is held so it is not
		// delivered, and the file stays to be sent again when it is ready,
		// under a new idempotency key.
		f.supersede(ctx, id, log)
		return outChanged
	}
	return f.finish(root, rel, id, log)
}

// stream builds the message in a goroutine writing into a pipe that Enqueue
// reads; memory use does not depend on the file size. Whether the file
// changed after it was read is req.Verify's question, which Enqueue asks
// after the body is durable and before the commit.
func (f *folder) stream(ctx context.Context, req spool.EnqueueRequest, hdr msgHeader, body, base, ctype string,
	file *os.File, size int64, sum string) (string, error) {
	if _, err := file.Seek(0, io.SeekStart); err != nil {
		return "", &readError{err}
	}
	pr, pw := io.Pipe()
	writeErr := make(chan error, 1)
	go func() {
		h := sha256.New()
		src := &verifyReader{r: io.TeeReader(io.LimitReader(file, size+1), h), h: h, want: sum, size: size}
		err := writeScanMessage(pw, hdr, body, base, ctype, src)
		if src.err != nil {
			err = src.err // the file's error, not the writer's wrapping of it
		}
		if err == nil {
			if h := f.w.beforeEOFHook; h != nil {
				h(req.Source.Path)
			}
		}
		pw.CloseWithError(err)
		writeErr <- err
	}()
	id, err := f.w.enq.Enqueue(ctx, req, pr)
	pr.CloseWithError(errors.New("scanfolder: enqueue returned")) // unblock the writer if Enqueue stopped early
	werr := <-writeErr
	if werr != nil && (errors.Is(werr, errFileChanged) || isReadError(werr)) {
		if err == nil {
			// The spool must not have stored a body whose reader failed;
			// if it claims it did, treat the result as untrustworthy.
			return "", fmt.Errorf("scanfolder: spool accepted a failed body: %w", werr)
		}
		return "", werr
	}
	if err != nil {
		return "", err
	}
	return id, nil
}

func isReadError(err error) bool {
	var re *readError
	return errors.As(err, &re)
}

// unchanged checks, through the open file and through its name, that the
// file is still the one (same inode, size and mtime) the message was built
// from.
func (f *folder) unchanged(root *os.Root, rel string, file *os.File, info fs.FileInfo) error {
	fi, err := file.Stat()
	if err != nil || fi.Size() != info.Size() || !fi.ModTime().Equal(info.ModTime()) {
		return errFileChanged
	}
	again, err := root.Lstat(rel)
	if err != nil || !os.SameFile(again, info) || again.Size() != info.Size() || !again.ModTime().Equal(info.ModTime()) {
		return errFileChanged
	}
	return nil
}

// movedAway reports whether the open file is unchanged but no longer at
// rel: moved or removed, not rewritten.
func movedAway(root *os.Root, rel string, file *os.File, info fs.FileInfo) bool {
	fi, err := file.Stat()
	if err != nil || fi.Size() != info.Size() || !fi.ModTime().Equal(info.ModTime()) {
		return false
	}
	_, err = root.Lstat(rel)
	return errors.Is(err, fs.ErrNotExist)
}

// Holder is implemented by spools that can hold a message (*spool.Spool
// does). The watcher uses it to keep a message built from a file that
// changed right after the commit from being delivered.
type Holder interface {
	Hold(ctx context.Context, id, reason string) error
}

func (f *folder) supersede(ctx context.Context, id string, log *slog.Logger) {
	h, ok := f.w.enq.(Holder)
	if !ok {
		log.Warn("file changed right after its message was committed; the spool cannot hold it, "+
			"so the earlier version may be delivered too", "msg_id", id)
		return
	}
	if err := h.Hold(ctx, id, "scan file changed right after enqueue; superseded by a later version"); err != nil {
		log.Warn("file changed right after its message was committed; holding it failed, "+
			"so the earlier version may be delivered too", "msg_id", id, "err", err)
		return
	}
	log.Warn("file changed right after its message was committed; message held, file will be sent again", "msg_id", id)
}

// wait records that a file is not ready yet. The first look at each
// version of the file logs at Info (an admin wondering why a scan has not
// arrived finds the reason), later looks at Debug.
func (f *folder) wait(rel, why, detail string, first bool) outcome {
	if h := f.w.waitHook; h != nil {
		h(rel, why)
	}
	level := slog.LevelDebug
	if first {
		level = slog.LevelInfo
	}
	args := []any{"path", rel, "why", why}
	if detail != "" {
		args = append(args, "detail", detail)
	}
	f.log.Log(context.Background(), level, "file not ready; waiting", args...)
	return outWait
}

// verifyReader passes the file through and, at EOF, checks that exactly size
// bytes with the expected SHA-256 were read.
type verifyReader struct {
	r    io.Reader
	h    hash.Hash
	want string
	size int64
	n    int64
	err  error
}

func (v *verifyReader) Read(p []byte) (int, error) {
	if v.err != nil {
		return 0, v.err
	}
	n, err := v.r.Read(p)
	v.n += int64(n)
	if v.n > v.size {
		v.err = errFileChanged
		return 0, v.err
	}
	if errors.Is(err, io.EOF) {
		if v.n != v.size || hex.EncodeToString(v.h.Sum(nil)) != v.want {
			v.err = errFileChanged
			return 0, v.err
		}
		return n, io.EOF
	}
	if err != nil {
		v.err = &readError{err}
		return n, v.err
	}
	return n, nil
}

// scanPass reads the whole file once: SHA-256, the first 512 bytes for
// content sniffing and a best-effort PDF page count.
func scanPass(r io.Reader, size int64) (sum string, head []byte, pages int, err error) {
	h := sha256.New()
	pc := &pageCounter{}
	buf := make([]byte, 64<<10)
	var n int64
	for {
		k, rerr := r.Read(buf)
		if k > 0 {
			n += int64(k)
			if n > size {
				return "", nil, 0, errFileChanged
			}
			h.Write(buf[:k])
			if len(head) < 512 {
				head = append(head, buf[:min(k, 512-len(head))]...)
			}
			if bytes.HasPrefix(head, []byte("%PDF-")) {
				pc.Write(buf[:k])
			}
		}
		if errors.Is(rerr, io.EOF) {
			break
		}
		if rerr != nil {
			return "", nil, 0, rerr
		}
	}
	if n != size {
		return "", nil, 0, errFileChanged
	}
	if !bytes.HasPrefix(head, []byte("%PDF-")) {
		pc.n = 0
	}
	return hex.EncodeToString(h.Sum(nil)), head, pc.n, nil
}

// pageCounter counts "/Type /Page" objects (not "/Pages") across chunk
// boundaries. PDFs with compressed object streams hide them; then it says 0.
type pageCounter struct {
	carry []byte
	n     int
}

const pageCarry = 32 // longer than any match

func (c *pageCounter) Write(p []byte) {
	buf := append(c.carry, p...)
	from := len(c.carry)
	i := 0
	for {
		j := bytes.Index(buf[i:], []byte("/Type"))
		if j < 0 {
			break
		}
		j += i
		k := j + len("/Type")
		for sp := 0; k < len(buf) && sp < 8 && isPDFSpace(buf[k]); sp++ {
			k++
		}
		if bytes.HasPrefix(buf[k:], []byte("/Page")) && k+len("/Page") < len(buf) {
			end := k + len("/Page")
			next := buf[end]
			if end+1 > from && !isPDFNameChar(next) {
				c.n++
			}
		}
		i = j + 1
	}
	keep := min(len(buf), pageCarry)
	c.carry = append(c.carry[:0:0], buf[len(buf)-keep:]...)
}

func isPDFSpace(b byte) bool {
	return b == ' ' || b == '\n' || b == '\r' || b == '\t' || b == '\f' || b == 0
}

func isPDFNameChar(b byte) bool {
	return b > ' ' && b < 0x7f && !strings.ContainsRune("/<>[]()%{}", rune(b))
}

func render(name, text string, data TemplateData) (string, error) {
	t, err := template.New(name).Option("missingkey=error").Parse(text)
	if err != nil {
		return "", fmt.Errorf("%s template: %w", name, err)
	}
	var b strings.Builder
	if err := t.Execute(&b, data); err != nil {
		return "", fmt.Errorf("%s template: %w", name, err)
	}
	return b.String(), nil
}

// oneLine makes a rendered subject a single header-safe line.
func oneLine(s string) string {
	s = strings.Map(func(r rune) rune {
		if r < ' ' || r == 0x7f || r == '\u2028' || r == '\u2029' {
			return ' '
		}
		return r
	}, s)
	s = strings.TrimSpace(s)
	if len(s) > maxSubjectLen {
		s = s[:maxSubjectLen]
		for len(s) > 0 && !utf8RuneStart(s[len(s)-1]) {
			s = s[:len(s)-1]
		}
	}
	return s
}

func utf8RuneStart(b byte) bool { return b&0xC0 != 0x80 }

func (f *folder) fallbackSender() mail.Address {
	return mail.Address{Name: "Scan folder " + f.cfg.Name, Address: "scanner@" + f.w.hostname}
}

func mb(n int64) string {
	prec := 1
	if n < 10e6 {
		prec = 2
	}
	return strconv.FormatFloat(float64(n)/1e6, 'f', prec, 64) + " MB"
}

// readSidecar reads <rel>.json if present. wait is true when the sidecar
// changed too recently (it may still be being written).
func (f *folder) readSidecar(root *os.Root, rel string) (sc *Sidecar, wait bool, err error) {
	name := rel + SidecarSuffix
	info, err := root.Lstat(name)
	if errors.Is(err, fs.ErrNotExist) || errors.Is(err, syscall.ENAMETOOLONG) {
		// A file whose name is too long to take the suffix cannot have a
		// sidecar: that is "no sidecar", not an error.
		return nil, false, nil
	}
	if err != nil {
		return nil, false, fmt.Errorf("sidecar %s: %w", path.Base(name), err)
	}
	if !info.Mode().IsRegular() {
		return nil, false, fmt.Errorf("sidecar %s: refused: not a regular file (links are never followed)", path.Base(name))
	}
	if f.w.clock().Sub(info.ModTime()) < f.cfg.QuietPeriod {
		return nil, true, nil
	}
	file, err := root.OpenFile(name, os.O_RDONLY|openFlags, 0)
	if err != nil {
		return nil, false, fmt.Errorf("sidecar %s: %w", path.Base(name), err)
	}
	defer file.Close()
	data, err := io.ReadAll(io.LimitReader(file, maxSidecarSize+1))
	if err != nil {
		return nil, false, fmt.Errorf("sidecar %s: %w", path.Base(name), err)
	}
	sc, err = ParseSidecar(data)
	if err != nil {
		return nil, false, fmt.Errorf("sidecar %s: %w", path.Base(name), err)
	}
	return sc, false, nil
}

// readFailed counts an unreadable file; after MaxReadRetries it goes to failed/.
func (f *folder) readFailed(ctx context.Context, root *os.Root, rel string, user *User, info fs.FileInfo, fails int, err error) outcome {
	if fails+1 >= f.cfg.MaxReadRetries {
		return f.fail(ctx, root, rel, user, info, fmt.Sprintf("unreadable after %d attempts: %v", fails+1, err))
	}
	f.log.Warn("cannot read file; will retry", "path", rel, "attempt", fails+1, "err", err)
	f.w.metrics.files.WithLabelValues(f.cfg.Name, resultRetry).Inc()
	return outReadFail
}

// finish moves a committed file to processed/ or deletes it, with its sidecar.
func (f *folder) finish(root *os.Root, rel, id string, log interface {
	Error(string, ...any)
}) outcome {
	if f.cfg.AfterSuccess == AfterDelete {
		if err := root.Remove(rel); err != nil && !errors.Is(err, fs.ErrNotExist) {
			log.Error("cannot delete sent file; will retry", "msg_id", id, "err", err)
			f.setErr(fmt.Errorf("scanfolder: deleting %s: %w", rel, err))
			return outRetry
		}
		if err := root.Remove(rel + SidecarSuffix); err != nil && !errors.Is(err, fs.ErrNotExist) {
			log.Error("cannot delete sidecar", "msg_id", id, "err", err)
		}
		return outDone
	}
	if _, err := f.moveAside(root, ProcessedDir, rel, nil); err != nil {
		if _, serr := root.Lstat(rel); errors.Is(serr, fs.ErrNotExist) {
			return outDone // moved by another node sharing the spool, which committed the same key
		}
		log.Error("cannot move sent file to processed/; will retry", "msg_id", id, "err", err)
		f.setErr(fmt.Errorf("scanfolder: moving %s: %w", rel, err))
		return outRetry
	}
	return outDone
}

// moveAside moves rel (and its sidecar) to dir/rel, mirroring subfolders,
// with a unique name when one exists. before, if set, runs with the
// destination just before the rename. It returns the new relative path.
func (f *folder) moveAside(root *os.Root, dir, rel string, before func(dst string) error) (string, error) {
	// Workers move concurrently, and shortened long names can coincide: the
	// free-name check and the rename must not interleave (a rename replaces
	// an existing destination).
	f.moveMu.Lock()
	defer f.moveMu.Unlock()
	dst, err := uniqueName(root, path.Join(dir, rel))
	if err != nil {
		return "", err
	}
	if err := f.mkdirs(root, path.Dir(dst)); err != nil {
		return "", err
	}
	if before != nil {
		if err := before(dst); err != nil {
			return "", fmt.Errorf("preparing %s: %w", dst, err)
		}
	}
	if err := root.Rename(rel, dst); err != nil {
		if before != nil {
			_ = root.Remove(dst + errorSuffix)
		}
		return "", fmt.Errorf("moving to %s: %w", dst, err)
	}
	err = root.Rename(rel+SidecarSuffix, dst+SidecarSuffix)
	if err != nil && !errors.Is(err, fs.ErrNotExist) && !errors.Is(err, syscall.ENAMETOOLONG) {
		f.log.Warn("cannot move sidecar", "path", rel, "err", err)
	}
	return dst, nil
}

// mkdirs creates dir (under processed/ or failed/) and its missing
// parents. Nothing becomes more readable than it was: a mirrored subfolder
// copies the permission bits and group of the source subfolder it mirrors
// (a per-user 0700 folder stays 0700 once its files move), and the
// top-level processed/ and failed/ take DirMode if set, else the scan
// folder's own mode and group. A configured Group owns them all. Each
// folder is made private (0700) and then given its mode, so the umask
// cannot narrow it and it is never wider than meant, even for a moment; one
// whose mode or group cannot be set is removed again (a later attempt would
// find it existing and never fix it).
func (f *folder) mkdirs(root *os.Root, dir string) error {
	parts := strings.Split(dir, "/")
	for i := range parts {
		p := strings.Join(parts[:i+1], "/")
		err := root.Mkdir(p, 0o700)
		if errors.Is(err, fs.ErrExist) {
			continue
		}
		if err != nil {
			return fmt.Errorf("creating %s: %w", p, err)
		}
		mode, gid := f.cfg.dirMode, -1
		like := "." // the scan folder itself, for processed/ and failed/
		if i > 0 {
			like = strings.Join(parts[1:i+1], "/")
		}
		if i > 0 || mode == 0 {
			src, err := root.Lstat(like)
			if err != nil || !src.IsDir() {
				src, err = root.Lstat(strings.Join(parts[:i], "/")) // source gone: as private as its new parent
			}
			if err == nil {
				mode = src.Mode() & (fs.ModePerm | fs.ModeSetgid)
				gid = fileGid(src)
			} else {
				mode = 0o700
			}
		}
		mode |= 0o700 // spoold moves files into it
		if err := f.setOwnership(root, p, mode, gid); err != nil {
			_ = root.Remove(p)
			return err
		}
	}
	return nil
}

// setOwnership gives a file or folder spoold made its mode and group: the
// configured Group if any (an error if that fails: New checked spoold is a
// member), else gid copied from the source, best effort (spoold may not be
// in the share user's group; the file keeps spoold's group, which is no
// wider).
func (f *folder) setOwnership(root *os.Root, name string, mode fs.FileMode, gid int) error {
	if f.cfg.gid >= 0 {
		if err := root.Lchown(name, -1, f.cfg.gid); err != nil {
			return fmt.Errorf("setting group of %s: %w", name, err)
		}
	} else if gid >= 0 {
		_ = root.Lchown(name, -1, gid)
	}
	// After the chown: changing the group clears set-GID bits on some systems.
	if h := f.w.chmodHook; h != nil {
		if err := h(name); err != nil {
			return fmt.Errorf("setting mode of %s: %w", name, err)
		}
	}
	if err := root.Chmod(name, mode); err != nil {
		return fmt.Errorf("setting mode of %s: %w", name, err)
	}
	return nil
}

// writeErrorFile writes a failed file's reason next to where it goes. It
// is created exclusively (never through a link someone planted in a
// group-writable failed/) and removed again if it cannot be set up, so a
// retry does not leave one more .error.txt each time. Its mode and group are
// FileMode and Group if set, else the failed file's own: whoever could read
// the scan can read why it failed.
func (f *folder) writeErrorFile(root *os.Root, name, text string, info fs.FileInfo) error {
	mode, gid := f.cfg.fileMode, -1
	if info != nil {
		if mode == 0 {
			mode = info.Mode().Perm()
		}
		gid = fileGid(info)
	}
	mode |= 0o600
	fh, err := root.OpenFile(name, os.O_WRONLY|os.O_CREATE|os.O_EXCL|openFlags, 0o600)
	if err != nil {
		return err
	}
	_, err = io.WriteString(fh, text)
	if cerr := fh.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = f.setOwnership(root, name, mode, gid)
	}
	if err != nil {
		_ = root.Remove(name)
		return err
	}
	return nil
}

// companionSuffixes are appended to names in processed/ and failed/; the
// longest must still fit in a file name.
var companionSuffixes = []string{errorSuffix, SidecarSuffix}

// uniqueName returns name, or name with "-N" before the extension, such that
// neither it nor its .error.txt/.json companions exist. Base names are
// shortened (at a UTF-8 boundary, keeping the extension) so that the
// candidate plus its longest companion suffix fits in maxFileNameBytes: a
// scan with a 255-byte name still gets its .error.txt.
func uniqueName(root *os.Root, name string) (string, error) {
	dir, base := path.Split(name)
	ext := path.Ext(base)
	if len(ext) > 32 {
		ext = "" // not an extension worth keeping whole
	}
	stem := strings.TrimSuffix(base, ext)
	for i := 0; i < 10000; i++ {
		suffix := ""
		if i > 0 {
			suffix = "-" + strconv.Itoa(i)
		}
		cand := dir + fitName(stem, suffix+ext, maxFileNameBytes-len(errorSuffix))
		free := true
		for _, c := range append([]string{cand}, cand+errorSuffix, cand+SidecarSuffix) {
			if _, err := root.Lstat(c); !errors.Is(err, fs.ErrNotExist) {
				free = false
				break
			}
		}
		if free {
			return cand, nil
		}
	}
	return "", fmt.Errorf("no free name for %s", name)
}

// fitName returns stem+tail, with stem cut at a UTF-8 boundary so that the
// result is at most limit bytes.
func fitName(stem, tail string, limit int) string {
	keep := limit - len(tail)
	if len(stem) > keep {
		keep = max(keep, 0)
		for keep > 0 && !utf8RuneStart(stem[keep]) {
			keep--
		}
		stem = stem[:keep]
	}
	return stem + tail
}

// fail moves a file to failed/ with a reason file and tells the scanning
// user. If the file cannot be moved it is left alone and retried later.
func (f *folder) fail(ctx context.Context, root *os.Root, rel string, user *User, info fs.FileInfo, reason string) outcome {
	log := f.log.With("path", rel, "account", f.cfg.Account)
	log.Warn("file failed", "reason", reason)
	f.setErr(fmt.Errorf("scanfolder: %s: %s", rel, reason))
	if user != nil && *f.cfg.FailureNotice {
		if id, err := f.notify(ctx, rel, user, info, reason); err != nil {
			log.Error("failure notice not enqueued", "err", err)
		} else {
			log.Info("failure notice enqueued", "msg_id", id, "to", user.Address)
		}
	}
	text := fmt.Sprintf("spoold could not send this scan.\n\nFile:   %s\nFolder: %s\nTime:   %s\nReason: %s\n",
		rel, f.cfg.Name, f.w.clock().In(f.cfg.loc).Format(time.RFC3339), reason)
	// The reason file is written before the move so that whoever sees the
	// file in failed/ also finds the complete reason.
	if _, err := f.moveAside(root, FailedDir, rel, func(dst string) error {
		return f.writeErrorFile(root, dst+errorSuffix, text, info)
	}); err != nil {
		log.Error("cannot move failed file to failed/; will retry", "err", err)
		f.setErr(fmt.Errorf("scanfolder: %s: %s; cannot move it to %s/: %w", rel, reason, FailedDir, err))
		f.w.metrics.files.WithLabelValues(f.cfg.Name, resultRetry).Inc()
		return outRetry
	}
	f.w.metrics.files.WithLabelValues(f.cfg.Name, resultFailed).Inc()
	return outDone
}

// notify enqueues a short failure notice to the scanning user through the
// folder's account. Its idempotency key makes a retry after a crash harmless.
func (f *folder) notify(ctx context.Context, rel string, user *User, info fs.FileInfo, reason string) (string, error) {
	var size int64
	var mtime time.Time
	if info != nil {
		size, mtime = info.Size(), info.ModTime()
	}
	key := "notice:" + strings.TrimPrefix(IdempotencyKey(f.cfg.Name, rel, size, mtime, reason), "scan:")
	from := "postmaster@" + f.w.hostname
	body, err := notice.Bytes(notice.Notice{
		From: from, FromName: "spoold scan folder", To: user.Address,
		Subject: oneLine("Scan failed: " + path.Base(rel)), Date: f.w.clock().In(f.cfg.loc),
		MessageID: notice.MessageID(key, f.w.hostname),
		Text:      fmt.Sprintf("Your scan %q could not be sent.", path.Base(rel)),
		Reason:    reason,
		Footer:    fmt.Sprintf("The file was moved to the %s/ folder of the scan folder %q.", FailedDir, f.cfg.Name),
	})
	if err != nil {
		return "", err
	}
	req := spool.EnqueueRequest{
		From:           from,
		To:             []string{user.Address},
		Account:        f.cfg.Account,
		Source:         spool.Source{Kind: spool.SourceNotice, Folder: f.cfg.Name, Path: rel},
		IdempotencyKey: key,
	}
	return f.w.enq.Enqueue(ctx, req, bytes.NewReader(body))
}
