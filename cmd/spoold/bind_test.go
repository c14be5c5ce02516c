package main

import (
	"bytes"
	"fmt"
	"net"
	"path/filepath"
	"strings"
	"testing"
)

// TestBindErrorNamesTheKey: an address another program holds is reported
// with the config key to change, not only as "address already in use".
func TestBindErrorNamesTheKey(t *testing.T) {
	busy, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer busy.Close()
	taken := busy.Addr().String()
	for _, tc := range []struct{ name, smtp, http, want string }{
		{"smtp listener", taken, "127.0.0.1:0", "smtp_listeners[0].listen: cannot listen on " + taken},
		{"http listener", "127.0.0.1:0", taken, "http.listen: cannot listen on " + taken},
	} {
		t.Run(tc.name, func(t *testing.T) {
			dir := t.TempDir()
			path := filepath.Join(dir, "spoold.yaml")
			writeFile(t, path, fmt.Sprintf(`data_dir: %s/data
http:
  listen: %s
smtp_listeners:
  - name: local
    listen: %s
    allowed_networks: [127.0.0.1]
accounts:
  - name: outbox
    transport: file
routes:
  default: outbox
`, dir, tc.http, tc.smtp))
			var out, errOut bytes.Buffer
			if code := run([]string{"-config", path}, &out, &errOut); code != exitFailure {
				t.Fatalf("exit %d, want %d: %s", code, exitFailure, errOut.String())
			}
			for _, want := range []string{tc.want, "another program (or another spoold) already listens there"} {
				if !strings.Contains(errOut.String(), want) {
					t.Errorf("output lacks %q:\n%s", want, errOut.String())
				}
			}
		})
	}
}
