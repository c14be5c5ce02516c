package scanfolder

import (
	"context"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"testing"

	"github.com/spoold/spoold/spool"
	"github.com/spoold/spoold/spool/pgspool/pgtest"
)

// Two nodes watch one scan folder (a share mounted on both) and share one
// PostgreSQL spool: every file is sent once, and a file the other node
// took is neither sent again nor turned into a failed/ file.
func TestTwoNodesOneFolderSendEachFileOnce(t *testing.T) {
	dsn := pgtest.Start(t).NewSchema(t)
	dir := t.TempDir()
	sps := pgtest.Nodes(t, dsn, 2, nil)
	a := startIn(t, dir, sps[0], nil, nil)
	startIn(t, dir, sps[1], nil, nil)
	data := sample(t, "sample.pdf")
	const n = 20
	for i := range n {
		a.write(fmt.Sprintf("alice@example.com/scan-%02d.pdf", i), data)
	}
	count := func(sub string) int {
		c := 0
		filepath.WalkDir(filepath.Join(dir, sub), func(_ string, d fs.DirEntry, err error) error {
			if err == nil && !d.IsDir() {
				c++
			}
			return nil
		})
		return c
	}
	waitFor(t, waitLong, "every file in processed/", func() bool { return count(ProcessedDir) == n })
	a.w.Close()
	st, err := sps[1].Stats(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	total := 0
	for _, c := range st {
		total += c
	}
	if total != n {
		t.Errorf("%d messages in the shared spool for %d files: %v", total, n, st)
	}
	if st[spool.StateHeld] != 0 {
		t.Errorf("%d messages held", st[spool.StateHeld])
	}
	if c := count(FailedDir); c != 0 {
		t.Errorf("%d files in failed/: a file the other node took must not fail", c)
	}
	if _, err := os.Stat(filepath.Join(dir, "alice@example.com", "scan-00.pdf")); err == nil {
		t.Errorf("a file is still in the folder")
	}
}
