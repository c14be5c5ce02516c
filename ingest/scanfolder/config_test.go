package scanfolder

import (
	"bytes"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/spoold/spoold/configs/field/fieldtest"
)

func TestFolderWithDefaults(t *testing.T) {
	c := FolderConfig{Path: "/srv/scans/", Account: "a"}.WithDefaults()
	for _, f := range []struct {
		name      string
		got, want any
	}{
		{"Name", c.Name, "scans"},
		{"Mode", c.Mode, ModeWatch},
		{"RescanInterval", c.RescanInterval, 30 * time.Second},
		{"QuietPeriod", c.QuietPeriod, 3 * time.Second},
		{"AfterSuccess", c.AfterSuccess, AfterMove},
		{"IncompleteLimit", c.IncompleteLimit, 10 * time.Minute},
		{"EmptyGrace", c.EmptyGrace, time.Minute},
		{"WriterCheck", *c.WriterCheck, true},
		{"FailureNotice", *c.FailureNotice, true},
		{"MaxReadRetries", c.MaxReadRetries, 5},
		{"RetryDelay", c.RetryDelay, 10 * time.Second},
		{"SubjectTemplate", c.SubjectTemplate, DefaultSubjectTemplate},
		{"BodyTemplate", c.BodyTemplate, DefaultBodyTemplate},
		{"DirMode", c.DirMode, ""},
		{"FileMode", c.FileMode, ""},
	} {
		if f.got != f.want {
			t.Errorf("%s = %v, want %v", f.name, f.got, f.want)
		}
	}
	if again := c.WithDefaults(); !sameConfig(again, c) || again.Name != c.Name {
		t.Errorf("WithDefaults is not idempotent:\n%+v\n%+v", c, again)
	}
	if q := (FolderConfig{Mode: ModePoll}).WithDefaults().QuietPeriod; q != 30*time.Second {
		t.Errorf("poll quiet period %v, want 30s", q)
	}
	off := false
	if c := (FolderConfig{WriterCheck: &off, FailureNotice: &off}).WithDefaults(); *c.WriterCheck || *c.FailureNotice {
		t.Error("WithDefaults turned an explicit false on")
	}
}

func TestFolderValidateKeys(t *testing.T) {
	dir := t.TempDir()
	cases := []struct {
		name string
		mod  func(*FolderConfig)
		want []string
	}{
		{"ok", func(*FolderConfig) {}, nil},
		{"no name or path", func(c *FolderConfig) { c.Name, c.Path = "", "" }, []string{"name", "path"}},
		{"control in name", func(c *FolderConfig) { c.Name = "a\nb" }, []string{"name"}},
		{"no account", func(c *FolderConfig) { c.Account = "" }, []string{"account"}},
		{"mode", func(c *FolderConfig) { c.Mode = "inotify" }, []string{"mode"}},
		{"after success", func(c *FolderConfig) { c.AfterSuccess = "keep" }, []string{"after_success"}},
		{"rescan", func(c *FolderConfig) { c.RescanInterval = -1 }, []string{"rescan_interval"}},
		{"quiet", func(c *FolderConfig) { c.QuietPeriod = -1 }, []string{"quiet_period"}},
		{"incomplete", func(c *FolderConfig) { c.IncompleteLimit = -1 }, []string{"incomplete_limit"}},
		{"empty grace", func(c *FolderConfig) { c.EmptyGrace = -1 }, []string{"empty_grace"}},
		{"read retries", func(c *FolderConfig) { c.MaxReadRetries = -1 }, []string{"max_read_retries"}},
		{"dir mode not octal", func(c *FolderConfig) { c.DirMode = "rwx" }, []string{"dir_mode"}},
		{"dir mode sticky", func(c *FolderConfig) { c.DirMode = "1777" }, []string{"dir_mode"}},
		{"dir mode owner", func(c *FolderConfig) { c.DirMode = "0570" }, []string{"dir_mode"}},
		{"file mode owner", func(c *FolderConfig) { c.FileMode = "0440" }, []string{"file_mode"}},
		{"file mode set-GID", func(c *FolderConfig) { c.FileMode = "2660" }, []string{"file_mode"}},
		{"group", func(c *FolderConfig) { c.Group = "no-such-group-spoold" }, []string{"group"}},
		{"time zone", func(c *FolderConfig) { c.TimeZone = "Mars/Olympus" }, []string{"time_zone"}},
		{"subject", func(c *FolderConfig) { c.SubjectTemplate = "{{.File" }, []string{"subject_template"}},
		{"body", func(c *FolderConfig) { c.BodyTemplate = "{{end}}" }, []string{"body_template"}},
		{"subfolder", func(c *FolderConfig) { c.Users = map[string]User{"a/b": {Address: "a@example.com"}} },
			[]string{"users.a/b"}},
		{"no address", func(c *FolderConfig) { c.Users = map[string]User{"alice": {}} }, []string{"users.alice.address"}},
		{"bad address", func(c *FolderConfig) {
			c.Users = map[string]User{"alice": {Address: "Alice <alice@example.com>"}, "bob": {Address: "bob@example.com"}}
		}, []string{"users.alice.address"}},
		{"display name", func(c *FolderConfig) { c.Users = map[string]User{"alice": {Name: "A\r\nB", Address: "a@example.com"}} },
			[]string{"users.alice.name"}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			c := FolderConfig{Name: "s", Path: dir, Account: "a"}
			tc.mod(&c)
			err := c.Validate()
			if got := fieldtest.Keys(t, err); !slices.Equal(got, tc.want) {
				t.Errorf("keys %q, want %q (%v)", got, tc.want, err)
			}
		})
	}
}

func TestValidateFoldersKeys(t *testing.T) {
	dir := t.TempDir()
	a := FolderConfig{Name: "s", Path: dir, Account: "a"}
	b := FolderConfig{Path: filepath.Join(dir, "s"), Account: "a", DirMode: "9"} // name defaults to "s" too
	err := ValidateFolders([]FolderConfig{a, b})
	if got, want := fieldtest.Keys(t, err), []string{"[1].dir_mode", "[1].name"}; !slices.Equal(got, want) {
		t.Errorf("keys %q, want %q (%v)", got, want, err)
	}
	if _, err := New([]FolderConfig{a, b}, newFakeSpool(), Options{}); !slices.Equal(fieldtest.Keys(t, err),
		[]string{"[1].dir_mode", "[1].name"}) {
		t.Errorf("New: %v", err)
	}
	if err := ValidateFolders([]FolderConfig{a}); err != nil {
		t.Errorf("valid folder: %v", err)
	}
}

// Log records say which subsystem wrote them in the component attribute.
func TestLogComponent(t *testing.T) {
	var (
		logs bytes.Buffer
		mu   sync.Mutex
	)
	cfg := FolderConfig{Name: "s", Path: filepath.Join(t.TempDir(), "missing"), Account: "a"}
	w, err := New([]FolderConfig{cfg}, newFakeSpool(), Options{Logger: newSyncLogger(&logs, &mu), Hostname: "spoold.test"})
	if err != nil {
		t.Fatal(err)
	}
	defer w.Close()
	_ = w.Start(t.Context()) // the missing folder is logged
	waitFor(t, waitLong, "a log record", func() bool {
		mu.Lock()
		defer mu.Unlock()
		return logs.Len() > 0
	})
	mu.Lock()
	defer mu.Unlock()
	if out := logs.String(); !strings.Contains(out, "component=scanfolder") || strings.Contains(out, `msg="scan folder: `) {
		t.Errorf("want component=scanfolder and no message prefix:\n%s", out)
	}
}
