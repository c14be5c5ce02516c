//go:build linux

package lazyfs

import (
	"bytes"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"testing"

	bolt "go.etcd.io/bbolt"
	"golang.org/x/sys/unix"
)

// rig is a Rig that tests cut and remount with the same options.
type rig struct {
	*Rig
	opts Options
}

func newRig(t *testing.T, opts Options) *rig {
	t.Helper()
	Require(t)
	r := &rig{Rig: NewRig(t, t.TempDir()), opts: opts}
	r.Mount(opts)
	return r
}

// cut cuts power and mounts again (the reboot).
func (r *rig) cut() Stats {
	r.t.Helper()
	st := r.Cut()
	r.Mount(r.opts)
	return st
}

func syncPath(t *testing.T, path string) {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if err := f.Sync(); err != nil {
		t.Fatalf("fsync %s: %v", path, err)
	}
}

// writeFile writes data to a new file and fsyncs it if sync.
func writeFile(t *testing.T, path, data string, sync bool) {
	t.Helper()
	f, err := os.OpenFile(path, os.O_CREATE|os.O_WRONLY|os.O_TRUNC, 0o644)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := f.WriteString(data); err != nil {
		t.Fatal(err)
	}
	if sync {
		if err := f.Sync(); err != nil {
			t.Fatal(err)
		}
	}
	if err := f.Close(); err != nil {
		t.Fatal(err)
	}
}

func wantContent(t *testing.T, path, want string) {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatalf("after the cut: %v", err)
	}
	if string(b) != want {
		t.Fatalf("after the cut %s holds %q, want %q", filepath.Base(path), b, want)
	}
}

func wantGone(t *testing.T, path string) {
	t.Helper()
	if _, err := os.Lstat(path); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("after the cut %s: %v, want it gone", filepath.Base(path), err)
	}
}

func TestSyncedDataSurvivesUnsyncedIsGone(t *testing.T) {
	r := newRig(t, Options{})
	writeFile(t, r.Path("synced"), "durable", true)
	writeFile(t, r.Path("datanotsynced"), "lost", false)
	syncPath(t, r.Mnt) // both names durable, only one file's data
	writeFile(t, r.Path("namenotsynced"), "lost too", true)
	// A write after the fsync is pending again.
	f, err := os.OpenFile(r.Path("synced"), os.O_WRONLY|os.O_APPEND, 0)
	if err != nil {
		t.Fatal(err)
	}
	f.WriteString(" and more")
	f.Close()
	if b, _ := os.ReadFile(r.Path("synced")); string(b) != "durable and more" {
		t.Fatalf("before the cut: %q", b)
	}

	st := r.cut()
	if st.PendingFiles < 2 || st.PendingDirs < 1 {
		t.Errorf("cut stats %+v: want at least 2 pending files and 1 pending directory", st)
	}
	wantContent(t, r.Path("synced"), "durable")
	wantContent(t, r.Path("datanotsynced"), "")
	wantGone(t, r.Path("namenotsynced"))
	// The backing directory holds exactly the durable state.
	if b, err := os.ReadFile(filepath.Join(r.Backing, "synced")); err != nil || string(b) != "durable" {
		t.Errorf("backing synced: %q, %v", b, err)
	}
}

func TestFdatasyncAndTruncate(t *testing.T) {
	r := newRig(t, Options{})
	f, err := os.Create(r.Path("db"))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	syncPath(t, r.Mnt)
	big := bytes.Repeat([]byte("x"), 3*pageSize+100)
	if _, err := f.WriteAt(big, 0); err != nil {
		t.Fatal(err)
	}
	if err := unix.Fdatasync(int(f.Fd())); err != nil {
		t.Fatal(err)
	}
	if err := f.Truncate(pageSize + 10); err != nil {
		t.Fatal(err)
	}
	if err := f.Truncate(2 * pageSize); err != nil { // grows with zeros
		t.Fatal(err)
	}
	b, _ := os.ReadFile(r.Path("db"))
	want := append(bytes.Repeat([]byte("x"), pageSize+10), make([]byte, pageSize-10)...)
	if !bytes.Equal(b, want) {
		t.Fatalf("after truncate and growth: %d bytes, tail %q", len(b), b[pageSize:pageSize+20])
	}
	f.Close()
	r.cut()
	wantContent(t, r.Path("db"), string(big))
}

func TestNamespaceChangesPendingUntilDirSync(t *testing.T) {
	r := newRig(t, Options{})
	for _, d := range []string{"a", "b"} {
		if err := os.Mkdir(r.Path(d), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	writeFile(t, r.Path("a/f"), "f", true)
	writeFile(t, r.Path("a/gone"), "g", true)
	syncPath(t, r.Path("a"))
	syncPath(t, r.Mnt)
	r.cut()
	wantContent(t, r.Path("a/f"), "f")

	// Rename within a, unlink in a, rename a -> b: nothing synced.
	if err := os.Rename(r.Path("a/f"), r.Path("a/f2")); err != nil {
		t.Fatal(err)
	}
	if err := os.Remove(r.Path("a/gone")); err != nil {
		t.Fatal(err)
	}
	r.cut()
	wantContent(t, r.Path("a/f"), "f")
	wantContent(t, r.Path("a/gone"), "g")
	wantGone(t, r.Path("a/f2"))

	// Across directories, each side is durable on its own directory's
	// fsync: only b synced keeps the file in both.
	if err := os.Rename(r.Path("a/f"), r.Path("b/f")); err != nil {
		t.Fatal(err)
	}
	syncPath(t, r.Path("b"))
	r.cut()
	wantContent(t, r.Path("a/f"), "f")
	wantContent(t, r.Path("b/f"), "f")

	// Only the source synced loses it from both.
	if err := os.Rename(r.Path("a/gone"), r.Path("b/gone")); err != nil {
		t.Fatal(err)
	}
	syncPath(t, r.Path("a"))
	r.cut()
	wantGone(t, r.Path("a/gone"))
	wantGone(t, r.Path("b/gone"))

	// Both synced: moved.
	if err := os.Rename(r.Path("a/f"), r.Path("b/f3")); err != nil {
		t.Fatal(err)
	}
	syncPath(t, r.Path("a"))
	syncPath(t, r.Path("b"))
	if err := os.Mkdir(r.Path("c"), 0o755); err != nil { // root not synced
		t.Fatal(err)
	}
	writeFile(t, r.Path("c/x"), "x", true)
	syncPath(t, r.Path("c"))
	r.cut()
	wantGone(t, r.Path("a/f"))
	wantContent(t, r.Path("b/f3"), "f")
	wantGone(t, r.Path("c"))
}

func TestTmpfileLink(t *testing.T) {
	r := newRig(t, Options{})
	link := func(name, data string, syncFile bool) {
		f, err := os.OpenFile(r.Mnt, unix.O_TMPFILE|os.O_WRONLY, 0o600)
		if err != nil {
			t.Fatalf("O_TMPFILE: %v", err)
		}
		defer f.Close()
		f.WriteString(data)
		err = unix.Linkat(unix.AT_FDCWD, "/proc/self/fd/"+strconv.Itoa(int(f.Fd())), unix.AT_FDCWD, r.Path(name), unix.AT_SYMLINK_FOLLOW)
		if err != nil {
			t.Fatalf("linkat: %v", err)
		}
		if syncFile {
			if err := f.Sync(); err != nil {
				t.Fatal(err)
			}
		}
	}
	link("body", "body bytes", true)
	link("nodata", "lost", false)
	wantContent(t, r.Path("nodata"), "lost")
	syncPath(t, r.Mnt)
	link("noname", "lost", true)
	r.cut()
	wantContent(t, r.Path("body"), "body bytes")
	wantContent(t, r.Path("nodata"), "")
	wantGone(t, r.Path("noname"))
}

func TestNoTmpfile(t *testing.T) {
	r := newRig(t, Options{NoTmpfile: true})
	_, err := os.OpenFile(r.Mnt, unix.O_TMPFILE|os.O_WRONLY, 0o600)
	if !errors.Is(err, unix.EOPNOTSUPP) {
		t.Fatalf("O_TMPFILE with NoTmpfile: %v, want EOPNOTSUPP", err)
	}
}

// The file system is served by this test process, so a page fault on a
// mapping of one of its files must never happen here: the faulting thread
// cannot reach a Go safe point, a garbage collection then waits for it while
// the goroutines that would answer the fault stay stopped, and the process
// deadlocks. Tests that mmap (bbolt does) run their client in a child
// process, as the power-cut loop runs spoold.

// childEnv selects the child's role; childArg is its path argument.
const childEnv, childArg = "LAZYFS_TEST_CHILD", "LAZYFS_TEST_PATH"

// runChild runs role in a child process of this test binary and returns its
// output; a child failing fails the test.
func runChild(t *testing.T, role, path string) string {
	t.Helper()
	cmd := exec.Command(os.Args[0], "-test.run=^TestChild$", "-test.v")
	cmd.Env = append(os.Environ(), childEnv+"="+role, childArg+"="+path)
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("child %s: %v\n%s", role, err, out)
	}
	return string(out)
}

// TestChild is the child's body; it does nothing in a normal run.
func TestChild(t *testing.T) {
	path := os.Getenv(childArg)
	switch os.Getenv(childEnv) {
	case "":
		t.Skip("only run as a child of the mmap and bbolt tests")
	case "mmap":
		childMmap(t, path)
	case "bolt-write":
		childBolt(t, path, true)
	case "bolt-check":
		childBolt(t, path, false)
	default:
		t.Fatalf("unknown child role %q", os.Getenv(childEnv))
	}
}

// TestMmapSeesPwrite is bbolt's access pattern: a read-only shared mapping
// that must see what pwrite wrote (through the page cache), also after the
// file grew.
func TestMmapSeesPwrite(t *testing.T) {
	r := newRig(t, Options{})
	runChild(t, "mmap", r.Path("db"))
}

func childMmap(t *testing.T, path string) {
	f, err := os.OpenFile(path, os.O_CREATE|os.O_RDWR, 0o600)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if err := f.Truncate(4 * pageSize); err != nil {
		t.Fatal(err)
	}
	m, err := unix.Mmap(int(f.Fd()), 0, 8*pageSize, unix.PROT_READ, unix.MAP_SHARED)
	if err != nil {
		t.Fatal(err)
	}
	defer unix.Munmap(m)
	if m[pageSize] != 0 {
		t.Fatal("fresh page not zero")
	}
	if _, err := f.WriteAt([]byte("hello"), pageSize); err != nil {
		t.Fatal(err)
	}
	if got := string(m[pageSize : pageSize+5]); got != "hello" {
		t.Fatalf("mapping sees %q after pwrite", got)
	}
	if err := f.Truncate(8 * pageSize); err != nil {
		t.Fatal(err)
	}
	if _, err := f.WriteAt([]byte("grown"), 6*pageSize); err != nil {
		t.Fatal(err)
	}
	if got := string(m[6*pageSize : 6*pageSize+5]); got != "grown" {
		t.Fatalf("mapping sees %q after growth", got)
	}
}

// TestBoltCommitsSurvive runs bbolt on the mount: every committed
// transaction survives a cut once the file's creation was made durable.
func TestBoltCommitsSurvive(t *testing.T) {
	r := newRig(t, Options{})
	runChild(t, "bolt-write", r.Path("x.db"))
	r.cut()
	runChild(t, "bolt-check", r.Path("x.db"))
}

func childBolt(t *testing.T, path string, write bool) {
	db, err := bolt.Open(path, 0o600, &bolt.Options{FreelistType: bolt.FreelistMapType, NoFreelistSync: true})
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	if write {
		// bbolt does not fsync the directory that holds its new file.
		syncPath(t, filepath.Dir(path))
		val := bytes.Repeat([]byte("v"), 3000)
		for i := range 200 {
			err := db.Update(func(tx *bolt.Tx) error {
				b, err := tx.CreateBucketIfNotExists([]byte("b"))
				if err != nil {
					return err
				}
				return b.Put([]byte(strconv.Itoa(i)), val)
			})
			if err != nil {
				t.Fatal(err)
			}
		}
		// A last write that is never committed.
		db.Update(func(tx *bolt.Tx) error {
			tx.Bucket([]byte("b")).Put([]byte("x"), val)
			return errors.New("rolled back")
		})
		return
	}
	err = db.View(func(tx *bolt.Tx) error {
		b := tx.Bucket([]byte("b"))
		if b == nil {
			return errors.New("bucket lost")
		}
		if n := b.Stats().KeyN; n != 200 {
			return fmt.Errorf("have %d keys, want 200", n)
		}
		for err := range tx.Check() {
			return err
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
}

func TestUnixSocket(t *testing.T) {
	r := newRig(t, Options{})
	fd, err := unix.Socket(unix.AF_UNIX, unix.SOCK_STREAM, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer unix.Close(fd)
	if err := unix.Bind(fd, &unix.SockaddrUnix{Name: r.Path("s.sock")}); err != nil {
		t.Fatalf("bind on the mount: %v", err)
	}
	if err := unix.Listen(fd, 1); err != nil {
		t.Fatal(err)
	}
	c, err := unix.Socket(unix.AF_UNIX, unix.SOCK_STREAM, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer unix.Close(c)
	if err := unix.Connect(c, &unix.SockaddrUnix{Name: r.Path("s.sock")}); err != nil {
		t.Fatalf("connect on the mount: %v", err)
	}
}
