package scanfolder

import (
	"io/fs"
	"mime"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/spoold/spoold/spool"
)

// Issue 12, "Scan file names near the limit": 246-255-byte names are sent
// and moved exactly once, to processed/ or (with a reason file) to failed/,
// also when the name in processed/ is taken and needs a suffix.
func TestLongNamesProcessedOnce(t *testing.T) {
	env := start(t, nil, nil, nil)
	pdf := sample(t, "sample.pdf")
	name := func(n int, multi bool) string {
		stem := strings.Repeat("a", n-len(".pdf"))
		if multi {
			// two-byte characters, so a cut must respect UTF-8
			stem = strings.Repeat("é", (n-len(".pdf"))/2) + strings.Repeat("b", (n-len(".pdf"))%2)
		}
		return stem + ".pdf"
	}
	var sent, failed []string
	for n := 246; n <= 255; n++ {
		for _, multi := range []bool{false, true} {
			base := name(n, multi)
			if len(base) != n {
				t.Fatalf("name is %d bytes, want %d", len(base), n)
			}
			rel := "alice@example.com/" + base
			env.write(rel, pdf)
			sent = append(sent, rel)
			if n%3 == 0 {
				// The same name already in processed/: the move needs a "-1".
				env.write(ProcessedDir+"/"+rel, []byte("older"))
			}
			if n%4 == 0 && !multi {
				failed = append(failed, base) // no route: directly in the folder
				env.write(base, pdf)
			}
		}
	}
	waitFor(t, waitLong, "all long names sent and moved", func() bool {
		if env.enq.count(spool.SourceScan) < len(sent) {
			return false
		}
		for _, rel := range append(append([]string{}, sent...), failed...) {
			if env.exists(rel) {
				return false
			}
		}
		return true
	})
	seen := map[string]int{}
	for _, m := range env.enq.messages(spool.SourceScan) {
		seen[m.req.Source.Path]++
	}
	for _, rel := range sent {
		if seen[rel] != 1 {
			t.Errorf("%s sent %d times", rel[:40], seen[rel])
		}
	}
	// processed/ holds every sent file (a name with a suffix where taken),
	// and every name spoold made fits, with room for .error.txt.
	var processed, errs, failedFiles int
	filepath.WalkDir(env.dir, func(p string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return nil
		}
		base := d.Name()
		if len(base) > maxFileNameBytes {
			t.Errorf("name of %d bytes", len(base))
		}
		rel, _ := filepath.Rel(env.dir, p)
		switch {
		case strings.HasPrefix(rel, ProcessedDir) && strings.HasSuffix(base, ".pdf"):
			if b, _ := os.ReadFile(p); string(b) != "older" {
				processed++
				if len(base)+len(errorSuffix) > maxFileNameBytes {
					t.Errorf("moved name of %d bytes leaves no room for companions", len(base))
				}
			}
		case strings.HasPrefix(rel, FailedDir) && strings.HasSuffix(base, errorSuffix):
			errs++
		case strings.HasPrefix(rel, FailedDir):
			failedFiles++
		}
		return nil
	})
	if processed != len(sent) || failedFiles != len(failed) || errs != len(failed) {
		t.Errorf("processed %d (want %d), failed %d with %d reasons (want %d)", processed, len(sent), failedFiles, errs, len(failed))
	}
	// Nothing is retried: a few more rescans change nothing.
	before := env.w.Folders()[0].LastScan
	waitFor(t, waitLong, "another rescan", func() bool { return env.w.Folders()[0].LastScan.After(before) })
	if n := env.enq.count(spool.SourceScan); n != len(sent) {
		t.Errorf("%d messages after another rescan, want %d", n, len(sent))
	}
}

func TestFitName(t *testing.T) {
	for _, c := range []struct {
		stem, tail string
		limit      int
		want       string
	}{
		{"abc", ".pdf", 10, "abc.pdf"},
		{"abcdefgh", "-1.pdf", 10, "abcd-1.pdf"},
		{"ééé", ".pdf", 9, "éé.pdf"}, // 4+4 bytes; the 3rd é would split
		{"x", "-12345678901", 5, "-12345678901"},
	} {
		if got := fitName(c.stem, c.tail, c.limit); got != c.want {
			t.Errorf("fitName(%q, %q, %d) = %q, want %q", c.stem, c.tail, c.limit, got, c.want)
		}
	}
}

func TestParseModeAndValidation(t *testing.T) {
	for in, want := range map[string]fs.FileMode{"0750": 0o750, "2770": 0o770 | fs.ModeSetgid, "644": 0o644} {
		if got, err := parseMode(in); err != nil || got != want {
			t.Errorf("parseMode(%q) = %v, %v; want %v", in, got, err, want)
		}
	}
	for _, in := range []string{"", "rwx", "4755", "1777", "0999"} {
		if _, err := parseMode(in); err == nil {
			t.Errorf("parseMode(%q) accepted", in)
		}
	}
	base := FolderConfig{Name: "s", Path: t.TempDir(), Account: "a"}
	for name, mod := range map[string]func(*FolderConfig){
		"dir mode without owner rwx": func(c *FolderConfig) { c.DirMode = "0570" },
		"file mode without owner rw": func(c *FolderConfig) { c.FileMode = "0440" },
		"file mode with set-GID":     func(c *FolderConfig) { c.FileMode = "2640" },
		"unknown group":              func(c *FolderConfig) { c.Group = "no-such-group-spoold" },
		"bad time zone":              func(c *FolderConfig) { c.TimeZone = "Mars/Olympus" },
		"negative empty grace":       func(c *FolderConfig) { c.EmptyGrace = -time.Second },
		"negative incomplete limit":  func(c *FolderConfig) { c.IncompleteLimit = -time.Second },
	} {
		c := base
		mod(&c)
		if _, err := c.prepare(); err == nil {
			t.Errorf("%s: accepted", name)
		}
	}
	n, err := base.prepare()
	if err != nil {
		t.Fatal(err)
	}
	if n.IncompleteLimit != DefaultIncompleteLimit || n.EmptyGrace != DefaultEmptyGrace || !*n.WriterCheck ||
		n.dirMode != 0 || n.fileMode != 0 || n.loc != time.Local || n.gid != -1 ||
		n.QuietPeriod != DefaultQuietPeriod {
		t.Errorf("defaults: %+v", n)
	}
	base.Mode = ModePoll
	if n, _ := base.prepare(); n.QuietPeriod != DefaultPollQuietPeriod {
		t.Errorf("poll mode quiet period %v, want %v", n.QuietPeriod, DefaultPollQuietPeriod)
	}
}

// The scan e-mail's Date, subject and text use the configured time zone.
func TestLocalTimeInMessage(t *testing.T) {
	env := start(t, nil, func(c *FolderConfig) { c.TimeZone = "America/New_York" }, nil)
	ny, _ := time.LoadLocation("America/New_York")
	rel := "alice@example.com/tz.pdf"
	p := env.write(rel, sample(t, "sample.pdf"))
	mtime := time.Date(2026, 1, 15, 12, 30, 0, 0, time.UTC) // 07:30 EST
	if err := os.Chtimes(p, mtime, mtime); err != nil {
		t.Fatal(err)
	}
	waitFor(t, waitLong, "sent", func() bool { return env.enq.count(spool.SourceScan) == 1 })
	m := parseMessage(t, env.enq.messages(spool.SourceScan)[0].body)
	if subj, _ := m.header.Subject(); subj != "Scan: tz.pdf (2026-01-15 07:30)" {
		t.Errorf("Subject = %q", subj)
	}
	if !strings.Contains(m.text, "Scanned: 2026-01-15 07:30:00 EST") {
		t.Errorf("text:\n%s", m.text)
	}
	d, err := m.header.Date()
	_, wantOff := time.Now().In(ny).Zone()
	if _, off := d.Zone(); err != nil || off != wantOff {
		t.Errorf("Date = %v (%v); want New York's offset %d", d, err, wantOff)
	}
}

// A non-ASCII attachment name carries an RFC 2047 name=/filename= for old
// clients next to RFC 2231's filename*=, and both decode to the same name.
func TestAttachmentNameFallback(t *testing.T) {
	for _, name := range []string{
		"Überweisung März.pdf",
		"扫描文件 " + strings.Repeat("長い名前", 15) + ".pdf", // long: several encoded words
		"=?utf-8?q?looks-encoded?=.pdf",
	} {
		for _, key := range []string{"filename", "name"} {
			v := withParam("attachment", key, name)
			if strings.ContainsAny(v, "\r\n") {
				t.Fatalf("header value has a line break: %q", v)
			}
			_, params, err := mime.ParseMediaType(v)
			if err != nil || params[key] != name {
				t.Errorf("RFC 2231 reader gets %q (%v) from %q", params[key], err, v)
			}
			plain := regexp.MustCompile(`; ` + key + `="([^"]*)"`).FindStringSubmatch(v)
			if plain == nil {
				t.Fatalf("no RFC 2047 fallback in %q", v)
			}
			for _, w := range strings.Fields(plain[1]) {
				if len(w) > 75 {
					t.Errorf("encoded word of %d characters", len(w))
				}
			}
			dec, err := new(mime.WordDecoder).DecodeHeader(plain[1])
			if err != nil || dec != name {
				t.Errorf("RFC 2047 reader gets %q (%v), want %q", dec, err, name)
			}
		}
	}
	// Plain ASCII names keep the simple form.
	if v := withParam("attachment", "filename", "scan 0042.pdf"); v != `attachment; filename="scan 0042.pdf"` {
		t.Errorf("ASCII name: %q", v)
	}
}
