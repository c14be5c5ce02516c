package main

import (
	"context"
	"errors"
	"net"
	"os"
	"path/filepath"
	"testing"
)

func TestFindSocket(t *testing.T) {
	cases := []struct {
		name   string
		env    string
		exist  []string
		expect string
	}{
		{"nothing: the quick start path, as before", "", nil, defaultSocket},
		{"quick start running", "", []string{defaultSocket}, defaultSocket},
		{"installed daemon", "", []string{systemSocket}, systemSocket},
		{"both: the working directory's wins", "", []string{systemSocket, defaultSocket}, defaultSocket},
		{"environment wins", "/srv/x.sock", []string{systemSocket, defaultSocket}, "/srv/x.sock"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			getenv := func(k string) string {
				if k == "SPOOLD_SOCKET" {
					return c.env
				}
				return ""
			}
			exists := func(p string) bool {
				for _, e := range c.exist {
					if e == p {
						return true
					}
				}
				return false
			}
			if got, _ := findSocket(getenv, exists); got != c.expect {
				t.Fatalf("findSocket = %q, want %q", got, c.expect)
			}
		})
	}
}

// End to end through Main: without --socket, spoolctl dials the socket
// findSocket picks from the working directory; --socket overrides it.
func TestSocketDefaultDialed(t *testing.T) {
	dir := t.TempDir()
	t.Chdir(dir)
	if err := os.Mkdir(filepath.Join(dir, "data"), 0o700); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "data", "spoold.sock"), nil, 0o600); err != nil {
		t.Fatal(err)
	}
	var dialed []string
	d := func() *deps {
		return &deps{Dial: func(_ context.Context, socket string) (net.Conn, error) {
			dialed = append(dialed, socket)
			return nil, errors.New("refused by the test")
		}}
	}
	runCLI(t, d(), "status")
	runCLI(t, d(), "--socket", "/elsewhere.sock", "status")
	if len(dialed) == 0 || dialed[0] != defaultSocket || dialed[len(dialed)-1] != "/elsewhere.sock" {
		t.Fatalf("dialed %q, want %s first and /elsewhere.sock last", dialed, defaultSocket)
	}
}
