package main

import (
	"context"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/spoold/spoold/cmd/spoold/adminapi/wire"
)

// A refused reload was only a log line; now the admin API reports it, with
// the problems as file:line, and status keeps the last outcome.
func TestReloadOutcomeOverAdminAPI(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "spoold.yaml")
	good := fmt.Sprintf(`data_dir: %s/data
admin: {socket: %s}
http: {listen: ""}
accounts:
  - name: out
    transport: file
routes:
  default: out
`, dir, filepath.Join(shortSocketDir(t), "s.sock"))
	writeFile(t, path, good)
	p, err := loadPlan(path)
	if err != nil {
		t.Fatal(err)
	}
	d, err := startDaemon(context.Background(), p, path, slog.New(slog.DiscardHandler), new(slog.LevelVar))
	if err != nil {
		t.Fatal(err)
	}
	defer d.shutdown()
	c := wire.NewClient(d.cfg.Admin.Socket)
	defer c.CloseIdleConnections()
	ctx := context.Background()

	st, err := c.Status(ctx)
	if err != nil || st.LastReload != nil {
		t.Fatalf("status before any reload: %+v %v", st.LastReload, err)
	}
	writeFile(t, path, strings.Replace(good, "routes:", "bogus_key: 1\nroutes:", 1))
	ri, err := c.Reload(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if ri.OK || ri.Config != path || len(ri.Problems) != 1 || !strings.HasPrefix(ri.Problems[0], path+":7: bogus_key: ") ||
		!strings.Contains(ri.Problems[0], "bogus_key") {
		t.Fatalf("refused reload: %+v", ri)
	}
	st, err = c.Status(ctx)
	if err != nil || st.LastReload == nil || st.LastReload.OK || st.LastReload.Problems[0] != ri.Problems[0] {
		t.Fatalf("status after a refused reload: %+v %v", st.LastReload, err)
	}

	// SIGHUP's path (reload()) records too.
	writeFile(t, path, good)
	if err := d.reload(); err != nil {
		t.Fatal(err)
	}
	st, err = c.Status(ctx)
	if err != nil || st.LastReload == nil || !st.LastReload.OK || len(st.LastReload.Problems) != 0 {
		t.Fatalf("status after a good reload: %+v %v", st.LastReload, err)
	}
}

func TestReloadEmbeddedDefaultIsRecorded(t *testing.T) {
	d := &daemon{log: slog.New(slog.DiscardHandler)}
	if err := d.reload(); err == nil {
		t.Fatal("reload without -config reported success")
	}
	last := d.reloads.lastReload()
	if last == nil || last.OK || !strings.Contains(last.Problems[0], "restart it with -config FILE") {
		t.Fatalf("last reload %+v", last)
	}
}

// shortSocketDir is a temporary directory short enough for a unix socket
// path (about 108 bytes), which t.TempDir() may exceed.
func shortSocketDir(t *testing.T) string {
	t.Helper()
	d, err := os.MkdirTemp("", "rls")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(d) })
	return d
}
