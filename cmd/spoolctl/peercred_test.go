package main

import (
	"context"
	"log/slog"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"

	"github.com/spoold/spoold/cmd/spoold/adminapi"
	"github.com/spoold/spoold/cmd/spoold/adminapi/peertest"
	"github.com/spoold/spoold/spool"
	"github.com/spoold/spoold/spool/spooltest"
)

// TestSpoolctlAsRealUsers builds spoolctl, creates a read-only and an admin
// group with a user each (and a user in neither), and runs spoolctl as each
// against a socket that checks peer credentials: what each may do, what a
// refusal says, and the exit codes.
func TestSpoolctlAsRealUsers(t *testing.T) {
	if testing.Short() {
		t.Skip("builds spoolctl and creates users; skipped in -short")
	}
	pu := peertest.Create(t, "sct")
	roGroup, admGroup, reader, admin, stranger := pu.ReadGroup, pu.AdminGroup, pu.Reader, pu.Admin, pu.Stranger

	binDir := shortTempDir(t)
	bin := filepath.Join(binDir, "spoolctl")
	if out, err := exec.Command("go", "build", "-o", bin, ".").CombinedOutput(); err != nil {
		t.Fatalf("go build: %v\n%s", err, out)
	}
	os.Chmod(binDir, 0o755)

	clk := &clock{now: t0}
	sp := spooltest.OpenTemp(t, testSpoolOptions(clk))
	id, err := sp.Enqueue(context.Background(), spool.EnqueueRequest{From: "a@example.com", To: []string{"b@example.com"}, Account: "m365"},
		strings.NewReader("Subject: s\r\n\r\nbody\r\n"))
	if err != nil {
		t.Fatal(err)
	}
	svc := adminapi.NewService(sp, nil, fakeInfo{}, adminapi.Options{Clock: clk.Now, Logger: slog.New(slog.DiscardHandler)})
	sockDir := shortTempDir(t)
	os.Chmod(sockDir, 0o755)
	sock := filepath.Join(sockDir, "spoold.sock")
	ln, err := adminapi.Listen(sock, 0o666, "")
	if err != nil {
		t.Fatal(err)
	}
	srv, err := adminapi.NewSocketServer(svc.Handler(), adminapi.Access{ReadGroup: roGroup, AdminGroup: admGroup}, slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan struct{})
	go func() { defer close(done); _ = srv.Serve(ln) }()
	t.Cleanup(func() { srv.Close(); <-done })

	as := func(name string, args ...string) (int, string) {
		t.Helper()
		u, err := user.Lookup(name)
		if err != nil {
			t.Fatal(err)
		}
		uid, _ := strconv.Atoi(u.Uid)
		gid, _ := strconv.Atoi(u.Gid)
		cmd := exec.Command(bin, append([]string{"--socket", sock}, args...)...)
		cmd.Env = []string{"PATH=/usr/bin:/bin"}
		cmd.Dir = binDir
		cmd.SysProcAttr = &syscall.SysProcAttr{Credential: &syscall.Credential{Uid: uint32(uid), Gid: uint32(gid), Groups: []uint32{}}}
		out, err := cmd.CombinedOutput()
		if ee, ok := err.(*exec.ExitError); ok {
			return ee.ExitCode(), string(out)
		}
		if err != nil {
			t.Fatal(err)
		}
		return 0, string(out)
	}
	cases := []struct {
		user string
		args []string
		code int
		want string
	}{
		{reader, []string{"status"}, 0, "Queue:"},
		{reader, []string{"show", id}, 0, id},
		{reader, []string{"hold", id}, 1, "permission denied: " + reader + " is not in the admin group " + admGroup + ", which this needs (admin.admin_group): ask to be added with `usermod -aG " + admGroup + " " + reader + "`"},
		{reader, []string{"audit"}, 1, "is not in the admin group " + admGroup},
		{stranger, []string{"status"}, 1, stranger + " is in neither group that may use spoold's admin socket: this needs " + roGroup + " (read-only, admin.read_group) or " + admGroup},
		{admin, []string{"hold", id, "--reason", "checking"}, 0, ""},
		{admin, []string{"audit"}, 0, admin},
	}
	for _, c := range cases {
		code, out := as(c.user, c.args...)
		if code != c.code || !strings.Contains(out, c.want) {
			t.Errorf("%s: spoolctl %s: exit %d, want %d with %q:\n%s", c.user, strings.Join(c.args, " "), code, c.code, c.want, out)
		}
	}
	es, _ := sp.AuditList(context.Background(), t0.Add(-1), 0)
	if len(es) != 1 || es[0].User != admin || es[0].Action != "hold" || es[0].Detail != "reason=checking" {
		t.Fatalf("audit: %+v (want only the admin's hold)", es)
	}
}
