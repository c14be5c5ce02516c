package scanfolder

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/spoold/spoold/spool"
)

func TestAddressFolderPDF(t *testing.T) {
	env := start(t, nil, nil, nil)
	pdf := sample(t, "sample.pdf")
	env.write("alice@example.com/scan0042.pdf", pdf)

	waitFor(t, waitLong, "scan enqueued and moved", func() bool {
		return env.enq.count(spool.SourceScan) == 1 && env.exists("processed/alice@example.com/scan0042.pdf")
	})
	if env.exists("alice@example.com/scan0042.pdf") {
		t.Error("original file still in the folder after the move")
	}
	m := env.enq.messages(spool.SourceScan)[0]
	if m.req.Account != "outbox" || !m.req.NotifyOnFailure || m.req.IdempotencyKey == "" {
		t.Errorf("request = %+v", m.req)
	}
	if got := m.req.To; len(got) != 1 || got[0] != "alice@example.com" {
		t.Errorf("envelope To = %v", got)
	}
	src := m.req.Source
	if src.Kind != spool.SourceScan || src.Folder != "scans" || src.Path != "alice@example.com/scan0042.pdf" || len(src.SHA256) != 64 {
		t.Errorf("source = %+v", src)
	}
	p := parseMessage(t, m.body)
	if !bytes.Equal(p.attachment, pdf) {
		t.Errorf("attachment differs from the file (%d vs %d bytes)", len(p.attachment), len(pdf))
	}
	if p.filename != "scan0042.pdf" || p.ctype != "application/pdf" {
		t.Errorf("attachment filename %q type %q", p.filename, p.ctype)
	}
	if got := addrs(t, p.header, "From"); len(got) != 1 || got[0] != "alice@example.com" {
		t.Errorf("From = %v", got)
	}
	if got := addrs(t, p.header, "Reply-To"); len(got) != 1 || got[0] != "alice@example.com" {
		t.Errorf("Reply-To = %v", got)
	}
	if got := addrs(t, p.header, "To"); len(got) != 1 || got[0] != "alice@example.com" {
		t.Errorf("To = %v", got)
	}
	if subj, _ := p.header.Subject(); !strings.HasPrefix(subj, "Scan: scan0042.pdf (") {
		t.Errorf("Subject = %q", subj)
	}
	if id, _ := p.header.MessageID(); !strings.HasSuffix(id, "@spoold.test") {
		t.Errorf("Message-ID = %q", id)
	}
	if d, err := p.header.Date(); err != nil || d.IsZero() {
		t.Errorf("Date = %v, %v", d, err)
	}
	if mt, _, _ := p.header.ContentType(); mt != "multipart/mixed" {
		t.Errorf("Content-Type = %q", mt)
	}
	if !containsAll(p.text, "scan0042.pdf", "Pages:   2", "749 bytes") {
		t.Errorf("text part does not name file, pages and size:\n%s", p.text)
	}
}

func TestSampleTypes(t *testing.T) {
	env := start(t, nil, func(c *FolderConfig) {
		c.Users = map[string]User{"bob": {Name: "Bob Builder", Address: "bob@example.com"}}
	}, nil)
	env.write("bob/a.tiff", sample(t, "sample.tiff"))
	env.write("bob/b.jpg", sample(t, "sample.jpg"))
	env.write("bob/noext", sample(t, "sample.pdf"))
	waitFor(t, waitLong, "3 scans", func() bool { return env.enq.count(spool.SourceScan) == 3 })
	types := map[string]string{}
	for _, m := range env.enq.messages(spool.SourceScan) {
		p := parseMessage(t, m.body)
		types[p.filename] = p.ctype
		from, _ := p.header.AddressList("From")
		if len(from) != 1 || from[0].Name != "Bob Builder" || from[0].Address != "bob@example.com" {
			t.Errorf("From = %v", from)
		}
	}
	want := map[string]string{"a.tiff": "image/tiff", "b.jpg": "image/jpeg", "noext": "application/pdf"}
	for k, v := range want {
		if types[k] != v {
			t.Errorf("%s: content type %q, want %q", k, types[k], v)
		}
	}
}

func TestFilesPresentAtStartPollModeWithoutFsnotify(t *testing.T) {
	dir := t.TempDir()
	pre := filepath.Join(dir, "carol@example.com", "before.pdf")
	os.MkdirAll(filepath.Dir(pre), 0o755)
	os.WriteFile(pre, []byte("%PDF-1.4 before\n%%EOF\n"), 0o644)
	env := startIn(t, dir, nil, func(c *FolderConfig) {
		c.Mode = ModePoll
		c.RescanInterval = 300 * time.Millisecond
	}, func(w *Watcher) { w.noFsnotify = true })
	waitFor(t, waitLong, "file present at start", func() bool { return env.enq.count(spool.SourceScan) == 1 })
	// New files (and new subfolders) are found by rescans alone.
	env.write("dave@example.com/later.pdf", []byte("%PDF-1.4 later\n%%EOF\n"))
	waitFor(t, waitLong, "file found by poll rescan", func() bool {
		return env.enq.count(spool.SourceScan) == 2 && env.exists("processed/dave@example.com/later.pdf")
	})
	st := env.w.Folders()
	if len(st) != 1 || st[0].Mode != ModePoll || st[0].LastScan.IsZero() {
		t.Errorf("Folders() = %+v", st)
	}
}

func TestSlowWriterTakenOnlyWhenComplete(t *testing.T) {
	// The quiet period is far above the writer's 60 ms pace: a loaded
	// machine (CI with -race, or the arm64 run under emulation) can stretch
	// one pause by hundreds of ms, and a pause past the quiet period makes
	// taking the file correct, failing the test for nothing.
	env := start(t, nil, func(c *FolderConfig) { c.QuietPeriod = 2 * time.Second }, nil)
	want := make([]byte, 40*16<<10) // 640 KiB in 40 chunks over ~2.4 s
	for i := range want {
		want[i] = byte(i*7 + i/1000)
	}
	p := filepath.Join(env.dir, "erin@example.com", "slow.pdf")
	os.MkdirAll(filepath.Dir(p), 0o755)
	f, err := os.Create(p)
	if err != nil {
		t.Fatal(err)
	}
	chunk := len(want) / 40
	for i := 0; i < 40; i++ {
		if _, err := f.Write(want[i*chunk : (i+1)*chunk]); err != nil {
			t.Fatal(err)
		}
		if env.enq.count(spool.SourceScan) != 0 {
			t.Fatalf("file taken after %d of 40 chunks", i+1)
		}
		time.Sleep(60 * time.Millisecond) // the writer's pace, not a wait for the code under test
	}
	f.Close()
	waitFor(t, waitLong, "slow file enqueued", func() bool { return env.enq.count(spool.SourceScan) == 1 })
	m := env.enq.messages(spool.SourceScan)[0]
	if got := parseMessage(t, m.body).attachment; !bytes.Equal(got, want) {
		t.Fatalf("attachment is %d bytes, want the complete %d bytes", len(got), len(want))
	}
	waitFor(t, waitLong, "moved", func() bool { return env.exists("processed/erin@example.com/slow.pdf") })
	if n := env.enq.count(spool.SourceScan); n != 1 {
		t.Fatalf("%d messages, want 1", n)
	}
}

func TestBurst500ExactlyOnce(t *testing.T) {
	env := start(t, nil, nil, nil)
	for i := 0; i < 500; i++ {
		env.write(fmt.Sprintf("u%d@example.com/scan%03d.pdf", i%5, i), []byte(fmt.Sprintf("%%PDF-1.4 file %d\n%%%%EOF\n", i)))
	}
	waitFor(t, 60*time.Second, "500 scans", func() bool { return env.enq.count(spool.SourceScan) >= 500 })
	waitFor(t, waitLong, "all moved", func() bool {
		n := 0
		filepath.WalkDir(filepath.Join(env.dir, ProcessedDir), func(p string, d os.DirEntry, err error) error {
			if err == nil && !d.IsDir() {
				n++
			}
			return nil
		})
		return n == 500
	})
	paths := map[string]bool{}
	for _, m := range env.enq.messages(spool.SourceScan) {
		if paths[m.req.Source.Path] {
			t.Errorf("%s enqueued twice", m.req.Source.Path)
		}
		paths[m.req.Source.Path] = true
	}
	if len(paths) != 500 || env.enq.count(spool.SourceScan) != 500 {
		t.Fatalf("%d distinct files, %d messages; want 500", len(paths), env.enq.count(spool.SourceScan))
	}
}

func TestRenameInFromTempNameTakenOnce(t *testing.T) {
	env := start(t, nil, nil, nil)
	tmp := env.write("frank@example.com/scan.pdf.part", bytes.Repeat([]byte("x"), 10000))
	os.WriteFile(filepath.Join(env.dir, "frank@example.com", "~$lock.pdf"), []byte("lock"), 0o644)
	os.WriteFile(filepath.Join(env.dir, "frank@example.com", ".hidden.pdf"), []byte("hidden"), 0o644)
	os.WriteFile(filepath.Join(env.dir, "frank@example.com", "x.tmp"), []byte("tmp"), 0o644)
	if err := os.Rename(tmp, filepath.Join(env.dir, "frank@example.com", "scan.pdf")); err != nil {
		t.Fatal(err)
	}
	waitFor(t, waitLong, "renamed file enqueued and moved", func() bool {
		return env.enq.count(spool.SourceScan) == 1 && env.exists("processed/frank@example.com/scan.pdf")
	})
	// Let a couple of rescans pass: temp, lock and hidden files stay untouched.
	before := env.w.Folders()[0].LastScan
	waitFor(t, waitLong, "two more rescans", func() bool {
		return env.w.Folders()[0].LastScan.Sub(before) > 3*time.Second
	})
	if n := env.enq.count(spool.SourceScan); n != 1 {
		t.Fatalf("%d messages, want 1", n)
	}
	for _, n := range []string{"~$lock.pdf", ".hidden.pdf", "x.tmp"} {
		if !env.exists("frank@example.com/" + n) {
			t.Errorf("%s was touched", n)
		}
	}
}

func TestCrashBetweenCommitAndMoveFake(t *testing.T) {
	enq := newFakeSpool()
	dir := t.TempDir()
	var crashed atomic.Bool
	env := startIn(t, dir, enq, nil, func(w *Watcher) {
		w.afterCommitHook = func(string) error {
			crashed.Store(true)
			return errors.New("simulated crash after commit")
		}
	})
	env.write("gina@example.com/scan.pdf", []byte("%PDF-1.4 crash\n%%EOF\n"))
	waitFor(t, waitLong, "commit", func() bool { return crashed.Load() })
	env.w.Close()
	if !env.exists("gina@example.com/scan.pdf") {
		t.Fatal("file moved although the 'crash' happened before the move")
	}
	// Restart: the key is found, the file is only moved.
	env2 := startIn(t, dir, enq, nil, nil)
	waitFor(t, waitLong, "moved after restart", func() bool { return env2.exists("processed/gina@example.com/scan.pdf") })
	if n := enq.count(spool.SourceScan); n != 1 {
		t.Fatalf("%d messages after restart, want exactly 1", n)
	}
}

func TestUnicodeAndSpacesInNames(t *testing.T) {
	env := start(t, nil, func(c *FolderConfig) {
		c.Users = map[string]User{"Jürgen Müller": {Name: "Jürgen Müller", Address: "juergen@example.com"}}
	}, nil)
	name := "Rechnung März 2024 – Ü.pdf"
	data := sample(t, "sample.pdf")
	env.write("Jürgen Müller/"+name, data)
	env.write("Jürgen Müller/plain name with spaces.pdf", data)
	waitFor(t, waitLong, "2 scans", func() bool { return env.enq.count(spool.SourceScan) == 2 })
	got := map[string]parsed{}
	for _, m := range env.enq.messages(spool.SourceScan) {
		p := parseMessage(t, m.body)
		got[p.filename] = p
	}
	p, ok := got[name]
	if !ok {
		t.Fatalf("no attachment named %q; got %v", name, keys(got))
	}
	if !strings.Contains(p.disp, "filename*=utf-8''") {
		t.Errorf("non-ASCII filename not RFC 2231 encoded: %q", p.disp)
	}
	if subj, _ := p.header.Subject(); !strings.HasPrefix(subj, "Scan: "+name+" (") {
		t.Errorf("Subject = %q", subj)
	}
	from, _ := p.header.AddressList("From")
	if len(from) != 1 || from[0].Name != "Jürgen Müller" {
		t.Errorf("From = %v", from)
	}
	if _, ok := got["plain name with spaces.pdf"]; !ok {
		t.Errorf("no attachment with spaces; got %v", keys(got))
	}
	waitFor(t, waitLong, "moved", func() bool { return env.exists("processed/Jürgen Müller/" + name) })
}

func keys[M ~map[string]V, V any](m M) []string {
	var out []string
	for k := range m {
		out = append(out, k)
	}
	return out
}

// failedWith waits for rel to land in failed/ and returns its reason file.
func (e *testEnv) failedWith(rel string) string {
	e.t.Helper()
	waitFor(e.t, waitLong, rel+" in failed/", func() bool {
		return e.exists("failed/"+rel) && e.exists("failed/"+rel+errorSuffix)
	})
	if e.exists(rel) {
		e.t.Errorf("%s still in the folder", rel)
	}
	return e.read("failed/" + rel + errorSuffix)
}

func TestHeaderInjection(t *testing.T) {
	env := start(t, nil, func(c *FolderConfig) {
		c.Users = map[string]User{"helen": {Name: "Helen", Address: "helen@example.com"}}
	}, nil)
	evil := "x.pdf\r\nBcc: victim@evil.example\r\n"
	env.write("helen/"+evil, []byte("%PDF evil name"))
	env.write("helen/side.pdf", []byte("%PDF side"))
	env.write("helen/side.pdf.json", []byte(`{"subject":"hi\r\nBcc: victim@evil.example"}`))
	env.write("helen/side2.pdf", []byte("%PDF side2"))
	env.write("helen/side2.pdf.json", []byte(`{"to":"a@example.com\nBcc: victim@evil.example"}`))
	env.write("helen/side3.pdf", []byte("%PDF side3"))
	env.write("helen/side3.pdf.json", []byte(`{"to":["\"Evil\" <a@example.com>"]}`))

	if r := env.failedWith("helen/" + evil); !strings.Contains(r, "control characters") {
		t.Errorf("reason for evil name: %q", r)
	}
	for _, n := range []string{"side.pdf", "side2.pdf", "side3.pdf"} {
		r := env.failedWith("helen/" + n)
		if !strings.Contains(r, "sidecar") {
			t.Errorf("%s reason %q does not name the sidecar", n, r)
		}
		// The sidecar follows the scan in a second rename (a crash between
		// leaves a lone sidecar, never a scan without its sidecar): wait.
		waitFor(t, waitLong, n+"'s sidecar moved along", func() bool {
			return env.exists("failed/helen/"+n+SidecarSuffix) && !env.exists("helen/"+n+SidecarSuffix)
		})
	}
	waitFor(t, waitLong, "4 notices", func() bool { return env.enq.count(spool.SourceNotice) == 4 })
	if n := env.enq.count(spool.SourceScan); n != 0 {
		t.Errorf("%d scans sent despite injection attempts", n)
	}
	for _, m := range env.enq.messages(spool.SourceNotice) {
		if bytes.Contains(bytes.ToLower(m.body), []byte("\nbcc:")) {
			t.Errorf("notice carries an injected header:\n%s", m.body)
		}
		if len(m.req.To) != 1 || m.req.To[0] != "helen@example.com" || m.req.NotifyOnFailure {
			t.Errorf("notice request %+v", m.req)
		}
		p := parseMessage(t, m.body)
		if p.header.Get("Bcc") != "" {
			t.Errorf("notice has Bcc")
		}
	}
}

func TestSidecarRouting(t *testing.T) {
	env := start(t, nil, nil, nil)
	env.write("report.pdf", []byte("%PDF report"))
	env.write("report.pdf.json", []byte(`{"to":["ivan@example.com"],"cc":"judy@example.com","subject":"Quarterly report","body":"Here it is.\n"}`))
	waitFor(t, waitLong, "sidecar scan", func() bool {
		return env.enq.count(spool.SourceScan) == 1 && env.exists("processed/report.pdf.json")
	})
	m := env.enq.messages(spool.SourceScan)[0]
	if strings.Join(m.req.To, ",") != "ivan@example.com,judy@example.com" {
		t.Errorf("envelope To = %v", m.req.To)
	}
	p := parseMessage(t, m.body)
	if s, _ := p.header.Subject(); s != "Quarterly report" {
		t.Errorf("Subject = %q", s)
	}
	if got := addrs(t, p.header, "Cc"); len(got) != 1 || got[0] != "judy@example.com" {
		t.Errorf("Cc = %v", got)
	}
	if strings.TrimSpace(p.text) != "Here it is." {
		t.Errorf("text = %q", p.text)
	}
	if p.header.Get("Reply-To") != "" {
		t.Errorf("Reply-To set without a known user: %q", p.header.Get("Reply-To"))
	}
}

func TestSymlinkEscapeRefused(t *testing.T) {
	outside := filepath.Join(t.TempDir(), "secret.pdf")
	os.WriteFile(outside, []byte("%PDF secret"), 0o600)
	outsideDir := t.TempDir()
	os.WriteFile(filepath.Join(outsideDir, "deep.pdf"), []byte("%PDF deep"), 0o600)

	env := start(t, nil, nil, nil)
	os.MkdirAll(filepath.Join(env.dir, "kim@example.com"), 0o755)
	if err := os.Symlink(outside, filepath.Join(env.dir, "kim@example.com", "link.pdf")); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink(outsideDir, filepath.Join(env.dir, "kim@example.com", "linkdir")); err != nil {
		t.Fatal(err)
	}
	if r := env.failedWith("kim@example.com/link.pdf"); !strings.Contains(r, "symbolic link") {
		t.Errorf("reason %q", r)
	}
	env.failedWith("kim@example.com/linkdir")
	if fi, err := os.Lstat(filepath.Join(env.dir, "failed", "kim@example.com", "link.pdf")); err != nil || fi.Mode()&os.ModeSymlink == 0 {
		t.Errorf("the link itself should be in failed/: %v %v", fi, err)
	}
	if b, _ := os.ReadFile(outside); string(b) != "%PDF secret" {
		t.Error("the link target was touched")
	}
	if _, err := os.Stat(filepath.Join(outsideDir, "deep.pdf")); err != nil {
		t.Error("file behind a linked directory was touched")
	}
	waitFor(t, waitLong, "notices", func() bool { return env.enq.count(spool.SourceNotice) == 2 })
	for _, m := range env.enq.messages(spool.SourceScan) {
		t.Errorf("sent %s", m.req.Source.Path)
	}
}

func TestUnreadableBoundedRetries(t *testing.T) {
	var opens atomic.Int32
	env := start(t, nil, func(c *FolderConfig) { c.MaxReadRetries = 3 }, func(w *Watcher) {
		// We run as root, which reads mode-000 files; inject the failure.
		w.openHook = func(rel string) error {
			if strings.HasSuffix(rel, "locked.pdf") {
				opens.Add(1)
				return os.ErrPermission
			}
			return nil
		}
	})
	env.write("leo@example.com/locked.pdf", []byte("%PDF locked"))
	r := env.failedWith("leo@example.com/locked.pdf")
	if !containsAll(r, "unreadable after 3 attempts", "permission denied") {
		t.Errorf("reason %q", r)
	}
	if n := opens.Load(); n != 3 {
		t.Errorf("%d open attempts, want 3", n)
	}
	waitFor(t, waitLong, "notice", func() bool { return env.enq.count(spool.SourceNotice) == 1 })
	n := env.enq.messages(spool.SourceNotice)[0]
	if !bytes.Contains(n.body, []byte("locked.pdf")) || n.req.To[0] != "leo@example.com" {
		t.Errorf("notice %+v\n%s", n.req, n.body)
	}
}

func TestMode000File(t *testing.T) {
	if os.Geteuid() == 0 {
		t.Skip("root reads mode-000 files; TestUnreadableBoundedRetries covers this with an injected open failure")
	}
	env := start(t, nil, func(c *FolderConfig) { c.MaxReadRetries = 2 }, nil)
	p := env.write("mia@example.com/locked.pdf", []byte("%PDF locked"))
	os.Chmod(p, 0)
	env.failedWith("mia@example.com/locked.pdf")
}

func TestOversizeFile(t *testing.T) {
	env := start(t, nil, func(c *FolderConfig) { c.MaxMessageSize = 30_000 }, nil)
	env.write("nina@example.com/big.pdf", bytes.Repeat([]byte("a"), 25_000))
	env.write("nina@example.com/small.pdf", bytes.Repeat([]byte("a"), 15_000))
	if r := env.failedWith("nina@example.com/big.pdf"); !containsAll(r, "too big", "limit of 0.03 MB") {
		t.Errorf("reason %q does not name the limit", r)
	}
	waitFor(t, waitLong, "small one sent", func() bool { return env.enq.count(spool.SourceScan) == 1 })
	if m := env.enq.messages(spool.SourceScan)[0]; len(m.body) > 30_000 {
		t.Errorf("accepted message is %d bytes, over the limit", len(m.body))
	}
	waitFor(t, waitLong, "notice", func() bool { return env.enq.count(spool.SourceNotice) == 1 })
	if n := env.enq.messages(spool.SourceNotice)[0]; !bytes.Contains(n.body, []byte("0.03 MB")) {
		t.Errorf("notice does not name the limit:\n%s", n.body)
	}
}

func TestZeroByteFile(t *testing.T) {
	var waits atomic.Int32
	env := start(t, nil, func(c *FolderConfig) { c.EmptyGrace = 600 * time.Millisecond }, func(w *Watcher) {
		w.waitHook = func(rel, why string) {
			if why == waitEmpty {
				waits.Add(1)
			}
		}
	})
	t0 := time.Now()
	env.write("oscar@example.com/empty.pdf", nil)
	if r := env.failedWith("oscar@example.com/empty.pdf"); !strings.Contains(r, "empty file") {
		t.Errorf("reason %q", r)
	}
	// It waited out the grace period (looked at more than once) first.
	if waits.Load() < 2 || time.Since(t0) < 600*time.Millisecond {
		t.Errorf("failed after %v and %d looks; want the 600ms grace period first", time.Since(t0), waits.Load())
	}
	waitFor(t, waitLong, "notice", func() bool { return env.enq.count(spool.SourceNotice) == 1 })
}

func TestNoRoute(t *testing.T) {
	env := start(t, nil, nil, nil)
	env.write("lost.pdf", []byte("%PDF lost"))
	env.write("not-a-user/lost2.pdf", []byte("%PDF lost"))
	if r := env.failedWith("lost.pdf"); !strings.Contains(r, "no route") {
		t.Errorf("reason %q", r)
	}
	env.failedWith("not-a-user/lost2.pdf")
	if n := len(env.enq.msgs); n != 0 {
		t.Errorf("%d messages for unroutable files (no user to notify)", n)
	}
}

func TestSpoolFullLeavesFileAndRetries(t *testing.T) {
	enq := newFakeSpool()
	var fails atomic.Int32
	enq.fail = func(req spool.EnqueueRequest) error {
		if fails.Add(1) <= 3 {
			return fmt.Errorf("fake: writing body: %w", spool.ErrNoSpace)
		}
		return nil
	}
	env := start(t, enq, nil, nil)
	env.write("pat@example.com/scan.pdf", []byte("%PDF full"))
	waitFor(t, waitLong, "3 failed attempts", func() bool { return fails.Load() >= 3 })
	if env.exists("failed/pat@example.com/scan.pdf") {
		t.Fatal("file moved to failed/ on a spool error")
	}
	waitFor(t, waitLong, "sent after space returned", func() bool {
		return enq.count(spool.SourceScan) == 1 && env.exists("processed/pat@example.com/scan.pdf")
	})
	if st := env.w.Folders()[0]; !strings.Contains(st.LastError, "no space") {
		t.Errorf("LastError = %q", st.LastError)
	}
}

func TestAfterDelete(t *testing.T) {
	env := start(t, nil, func(c *FolderConfig) { c.AfterSuccess = AfterDelete }, nil)
	env.write("quinn@example.com/scan.pdf", []byte("%PDF del"))
	waitFor(t, waitLong, "sent and deleted", func() bool {
		return env.enq.count(spool.SourceScan) == 1 && !env.exists("quinn@example.com/scan.pdf")
	})
	if env.exists("processed") {
		t.Error("processed/ created in delete mode")
	}
}

func TestProcessedNameCollision(t *testing.T) {
	env := start(t, nil, nil, nil)
	env.write("processed/rob@example.com/scan.pdf", []byte("old"))
	env.write("rob@example.com/scan.pdf", []byte("%PDF new"))
	waitFor(t, waitLong, "moved with a unique name", func() bool { return env.exists("processed/rob@example.com/scan-1.pdf") })
	if env.read("processed/rob@example.com/scan.pdf") != "old" {
		t.Error("existing processed file overwritten")
	}
	if n := env.enq.count(spool.SourceScan); n != 1 {
		t.Errorf("%d messages; processed/ must not be scanned", n)
	}
}

func TestQuietPeriodUsesInjectedClock(t *testing.T) {
	var now atomic.Int64
	now.Store(time.Date(2025, 1, 2, 3, 4, 5, 0, time.UTC).UnixNano())
	clock := func() time.Time { return time.Unix(0, now.Load()) }
	dir := t.TempDir()
	cfg := testConfig(dir)
	cfg.QuietPeriod = time.Hour
	enq := newFakeSpool()
	w, err := New([]FolderConfig{cfg}, enq, Options{Logger: quietLogger(), Clock: clock, Hostname: "spoold.test"})
	if err != nil {
		t.Fatal(err)
	}
	os.MkdirAll(filepath.Join(dir, "sam@example.com"), 0o755)
	os.WriteFile(filepath.Join(dir, "sam@example.com", "a.pdf"), []byte("%PDF clock"), 0o644)
	if err := w.Start(context.Background()); err != nil {
		t.Fatal(err)
	}
	defer w.Close()
	f := w.folders["scans"]
	waitFor(t, waitLong, "file tracked", func() bool { return w.Folders()[0].Pending == 1 })
	c0 := f.checks.Load()
	waitFor(t, waitLong, "several readiness passes", func() bool { return f.checks.Load() > c0+5 })
	if n := enq.count(spool.SourceScan); n != 0 {
		t.Fatalf("taken before the (fake) quiet period elapsed")
	}
	now.Add(int64(time.Hour + time.Second))
	waitFor(t, waitLong, "taken after the clock moved", func() bool { return enq.count(spool.SourceScan) == 1 })
	p := parseMessage(t, enq.messages(spool.SourceScan)[0].body)
	if d, _ := p.header.Date(); !d.Equal(clock().Truncate(time.Second)) {
		t.Errorf("Date = %v, want the injected clock %v", d, clock())
	}
}

func TestReloadAndFolders(t *testing.T) {
	env := start(t, nil, nil, nil)
	second := t.TempDir()
	cfg1 := testConfig(env.dir)
	cfg2 := testConfig(second)
	cfg2.Name = "second"
	if err := env.w.Reload([]FolderConfig{cfg1, cfg2}); err != nil {
		t.Fatal(err)
	}
	os.MkdirAll(filepath.Join(second, "tom@example.com"), 0o755)
	os.WriteFile(filepath.Join(second, "tom@example.com", "x.pdf"), []byte("%PDF reload"), 0o644)
	waitFor(t, waitLong, "file in the added folder", func() bool { return env.enq.count(spool.SourceScan) == 1 })
	st := env.w.Folders()
	if len(st) != 2 || st[1].Name != "second" || st[1].Path != second {
		t.Errorf("Folders() = %+v", st)
	}
	bad := cfg2
	bad.Mode = "bogus"
	if err := env.w.Reload([]FolderConfig{cfg1, bad}); err == nil {
		t.Error("Reload accepted a bad mode")
	}
	if len(env.w.Folders()) != 2 {
		t.Error("a failed Reload changed the folders")
	}
	if err := env.w.Reload([]FolderConfig{cfg1}); err != nil {
		t.Fatal(err)
	}
	if st := env.w.Folders(); len(st) != 1 {
		t.Errorf("after removing: %+v", st)
	}
}

func TestNewValidates(t *testing.T) {
	base := testConfig(t.TempDir())
	cases := map[string]func(*FolderConfig){
		"no name":     func(c *FolderConfig) { c.Name, c.Path = "", "" }, // the name defaults to the path's base name
		"no account":  func(c *FolderConfig) { c.Account = "" },
		"bad mode":    func(c *FolderConfig) { c.Mode = "inotify" },
		"bad after":   func(c *FolderConfig) { c.AfterSuccess = "copy" },
		"bad tmpl":    func(c *FolderConfig) { c.SubjectTemplate = "{{.File" },
		"bad user":    func(c *FolderConfig) { c.Users = map[string]User{"x": {Address: "not an address"}} },
		"crlf name":   func(c *FolderConfig) { c.Users = map[string]User{"x": {Name: "a\r\nBcc: b", Address: "a@b.example"}} },
		"neg quiet":   func(c *FolderConfig) { c.QuietPeriod = -1 },
		"slash users": func(c *FolderConfig) { c.Users = map[string]User{"a/b": {Address: "a@b.example"}} },
	}
	for name, mod := range cases {
		c := base
		mod(&c)
		if _, err := New([]FolderConfig{c}, newFakeSpool(), Options{}); err == nil {
			t.Errorf("%s: New accepted it", name)
		}
	}
	if _, err := New([]FolderConfig{base, base}, newFakeSpool(), Options{}); err == nil {
		t.Error("duplicate folder names accepted")
	}
	if _, err := New([]FolderConfig{base}, newFakeSpool(), Options{}); err != nil {
		t.Errorf("valid config refused: %v", err)
	}
}

func TestMissingFolderReportedAndPickedUpLater(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "later")
	cfg := testConfig(dir)
	cfg.RescanInterval = 200 * time.Millisecond
	enq := newFakeSpool()
	w, err := New([]FolderConfig{cfg}, enq, Options{Logger: quietLogger()})
	if err != nil {
		t.Fatal(err)
	}
	if err := w.Start(context.Background()); err == nil {
		t.Error("Start did not report the missing folder")
	}
	defer w.Close()
	if st := w.Folders()[0]; st.LastError == "" {
		t.Error("missing folder not in LastError")
	}
	os.MkdirAll(filepath.Join(dir, "uma@example.com"), 0o755)
	os.WriteFile(filepath.Join(dir, "uma@example.com", "a.pdf"), []byte("%PDF late"), 0o644)
	waitFor(t, waitLong, "folder picked up once it exists", func() bool { return enq.count(spool.SourceScan) == 1 })
}

// The failed/ reason for a sidecar with a typo suggests the key meant.
func TestSidecarTypoReason(t *testing.T) {
	env := start(t, nil, nil, nil)
	env.write("report.pdf", []byte("%PDF report"))
	env.write("report.pdf.json", []byte(`{"to":"ivan@example.com","subjcet":"Quarterly report"}`))
	if r := env.failedWith("report.pdf"); !strings.Contains(r, `did you mean "subject"?`) {
		t.Errorf("reason %q has no suggestion", r)
	}
}
