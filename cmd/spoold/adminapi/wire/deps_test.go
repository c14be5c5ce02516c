package wire_test

import (
	"os/exec"
	"strings"
	"testing"
)

// forbidden reports whether the wire package must not link dep, directly
// or through anything it imports: wire is what spoolctl talks to the daemon
// with, and the daemon's storage (the spool and its bbolt backend) and the
// admin API's server side stay on the daemon's side (DESIGN.md section 2).
func forbidden(dep string) bool {
	for _, tree := range []string{"github.com/spoold/spoold/spool", "go.etcd.io/bbolt"} {
		if dep == tree || strings.HasPrefix(dep, tree+"/") {
			return true
		}
	}
	return dep == "github.com/spoold/spoold/cmd/spoold/adminapi"
}

func TestNoSpoolDeps(t *testing.T) {
	goBin, err := exec.LookPath("go")
	if err != nil {
		t.Skip("no go command to list dependencies with")
	}
	out, err := exec.Command(goBin, "list", "-deps", ".").CombinedOutput()
	if err != nil {
		t.Fatalf("go list -deps: %v\n%s", err, out)
	}
	deps := strings.Fields(string(out))
	if len(deps) == 0 || deps[len(deps)-1] != "github.com/spoold/spoold/cmd/spoold/adminapi/wire" {
		t.Fatalf("go list -deps .: unexpected output %q", out)
	}
	for _, dep := range deps {
		if forbidden(dep) {
			t.Errorf("package wire depends on %s", dep)
		}
	}
}
