// Package peertest creates the throwaway users and groups that tests of the
// admin socket's peer-credential checks run clients as. It needs root and
// the shadow tools; without them the test is skipped with the reason.
package peertest

import (
	"fmt"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"testing"
)

// Users names what Create made: a read-only group with Reader in it, an
// admin group with Admin in it, and Stranger in neither.
type Users struct {
	ReadGroup, AdminGroup   string
	Reader, Admin, Stranger string
}

// Create adds the groups and users, named prefix plus a per-process
// suffix, and removes them when the test ends.
func Create(t *testing.T, prefix string) Users {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("creating users needs root (CI runs this as root)")
	}
	for _, tool := range []string{"useradd", "groupadd", "userdel", "groupdel"} {
		if _, err := exec.LookPath(tool); err != nil {
			t.Skipf("this machine cannot create users: %s not found", tool)
		}
	}
	run := func(args ...string) error {
		if out, err := exec.Command(args[0], args[1:]...).CombinedOutput(); err != nil {
			return fmt.Errorf("%s: %v: %s", strings.Join(args, " "), err, out)
		}
		return nil
	}
	n := strconv.Itoa(os.Getpid() % 100000)
	u := Users{ReadGroup: prefix + "ro" + n, AdminGroup: prefix + "adm" + n,
		Reader: prefix + "r" + n, Admin: prefix + "a" + n, Stranger: prefix + "s" + n}
	if err := run("groupadd", u.ReadGroup); err != nil {
		t.Skipf("this machine forbids creating groups: %v", err)
	}
	t.Cleanup(func() { run("groupdel", u.ReadGroup) })
	if err := run("groupadd", u.AdminGroup); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { run("groupdel", u.AdminGroup) })
	for name, group := range map[string]string{u.Reader: u.ReadGroup, u.Admin: u.AdminGroup, u.Stranger: ""} {
		args := []string{"useradd", "--no-create-home", "--shell", "/usr/sbin/nologin"}
		if group != "" {
			args = append(args, "-G", group)
		}
		if err := run(append(args, name)...); err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { run("userdel", name) })
	}
	return u
}
