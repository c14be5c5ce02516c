package main

import (
	"go/parser"
	"go/token"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
)

// offlineFile is the one file of spoolctl that may link the spool (and so
// bbolt) and the admin API's server side, for the modes that work without
// the daemon (DESIGN.md section 2).
const offlineFile = "offline.go"

// migrateFile is spoolctl migrate, the other offline mode: it opens both
// spool backends of a stopped installation.
const migrateFile = "migrate.go"

// daemonSide reports whether dep belongs to the daemon's side: the spool
// and its bbolt backend, or the admin API's server.
func daemonSide(dep string) bool {
	for _, tree := range []string{"github.com/spoold/spoold/spool", "go.etcd.io/bbolt"} {
		if dep == tree || strings.HasPrefix(dep, tree+"/") {
			return true
		}
	}
	return dep == "github.com/spoold/spoold/cmd/spoold/adminapi"
}

// TestImportRule: every non-test file but offline.go talks to the daemon
// through package wire only; neither it nor anything it imports links the
// spool, bbolt or the admin API server.
func TestImportRule(t *testing.T) {
	files, err := filepath.Glob("*.go")
	if err != nil {
		t.Fatal(err)
	}
	imports := map[string][]string{} // import path -> files importing it
	offlineSeen := false
	for _, name := range files {
		if strings.HasSuffix(name, "_test.go") {
			continue
		}
		f, err := parser.ParseFile(token.NewFileSet(), name, nil, parser.ImportsOnly)
		if err != nil {
			t.Fatal(err)
		}
		for _, spec := range f.Imports {
			path, _ := strconv.Unquote(spec.Path.Value)
			if name == offlineFile {
				offlineSeen = offlineSeen || path == "github.com/spoold/spoold/spool"
				continue
			}
			if name == migrateFile {
				continue
			}
			if daemonSide(path) {
				t.Errorf("%s imports %s: only %s may (the offline modes)", name, path, offlineFile)
			}
			imports[path] = append(imports[path], name)
		}
	}
	if !offlineSeen {
		t.Errorf("%s does not import the spool: where did the offline modes go? Update this test with them", offlineFile)
	}
	goBin, err := exec.LookPath("go")
	if err != nil {
		t.Skip("no go command to list indirect dependencies with")
	}
	for path, by := range imports {
		if !strings.Contains(path, ".") { // the standard library
			continue
		}
		out, err := exec.Command(goBin, "list", "-deps", path).CombinedOutput()
		if err != nil {
			t.Fatalf("go list -deps %s: %v\n%s", path, err, out)
		}
		if i := slices.IndexFunc(strings.Fields(string(out)), daemonSide); i >= 0 {
			t.Errorf("%s (imported by %s) links %s: only %s may", path, strings.Join(by, ", "), strings.Fields(string(out))[i], offlineFile)
		}
	}
}
