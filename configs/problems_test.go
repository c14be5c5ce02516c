package configs

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// base is a minimal valid config; rows append to it (it is 5 lines long, so
// appended keys start at line 6).
const base = `accounts:
  - name: out
    transport: file
routes:
  default: out
`

func noEnv(string) (string, bool) { return "", false }

const hash = "$2a$10$N9qo8uLOickgx2ZMRZoMyeIjZAgcfl7p92ldGxad68LJZdL17lhWy"

func TestLoadReportsPathAndUnreadableFile(t *testing.T) {
	dir := t.TempDir()
	_, err := Load(filepath.Join(dir, "missing.yaml"), nil)
	var ps *Problems
	if !errors.As(err, &ps) || len(*ps) != 1 || !strings.Contains((*ps)[0].Reason, "cannot read config") {
		t.Fatalf("Load of a missing file: %v", err)
	}
	path := filepath.Join(dir, "spoold.yaml")
	if err := os.WriteFile(path, []byte(base+"bogus: 1\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	_, err = Load(path, nil)
	if err == nil || err.Error() != path+`:6: bogus: unknown key "bogus"` {
		t.Fatalf("Load: %v", err)
	}
	if err := os.WriteFile(path, []byte(base), 0o600); err != nil {
		t.Fatal(err)
	}
	c, err := Load(path, nil)
	if err != nil || c.Routes.Default != "out" {
		t.Fatalf("Load of a valid file: %v, %+v", err, c)
	}
}

// TestWindowsNotepadFiles: a config saved by Windows Notepad starts with a
// UTF-8 byte order mark; it is read as if it were not there. A tab used to
// indent gets the fix in its problem.
func TestWindowsNotepadFiles(t *testing.T) {
	if _, err := parse("bom.yaml", []byte("\ufeff"+base), noEnv, nil); err != nil {
		t.Errorf("a UTF-8 BOM is refused: %v", err)
	}
	_, err := parse("tab.yaml", []byte("accounts:\n\t- name: out\n    transport: file\nroutes:\n  default: out\n"), noEnv, nil)
	if err == nil || !strings.Contains(err.Error(), "tab.yaml:2: YAML syntax") || !strings.Contains(err.Error(), "indent with spaces, not tabs") {
		t.Errorf("a tab: %v", err)
	}
}
