package main

import (
	"bufio"
	"bytes"
	"context"
	"crypto/tls"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/spoold/spoold/configs"
)

// loopbackConfig rewrites a shipped config to run inside a test: every
// address on 127.0.0.1 with a free port, every path in dir, secrets from
// the test's own files.
func loopbackConfig(t *testing.T, src, dir string) string {
	t.Helper()
	src = strings.ReplaceAll(src, "/etc/spoold/", exampleSecrets(t)+"/")
	src = strings.ReplaceAll(src, "/var/lib/spoold", filepath.Join(dir, "data"))
	src = strings.ReplaceAll(src, "./data", filepath.Join(dir, "data"))
	src = regexp.MustCompile(`(?m)^(\s*listen:) \S+`).ReplaceAllString(src, "$1 127.0.0.1:0")
	// The test connects from loopback, which the examples' office networks
	// do not include.
	src = strings.ReplaceAll(src, "allowed_networks: [", "allowed_networks: [127.0.0.0/8, ")
	src = regexp.MustCompile(`(?m)^(\s*allowed_networks:.*\n)(\s+)- `).ReplaceAllString(src, "$1$2- 127.0.0.0/8\n$2- ")
	n := 0
	src = regexp.MustCompile(`(?m)^(\s*-?\s*path:) \S+`).ReplaceAllStringFunc(src, func(m string) string {
		n++
		p := filepath.Join(dir, fmt.Sprintf("scans%d", n))
		if err := os.MkdirAll(p, 0o750); err != nil {
			t.Fatal(err)
		}
		return m[:strings.Index(m, "path:")] + "path: " + p
	})
	return src
}

// ehloSize reads the SIZE a listener advertises, over TLS when the
// listener's mode needs it.
func ehloSize(t *testing.T, addr string, mode configs.ListenerTLS) int64 {
	t.Helper()
	var conn net.Conn
	var err error
	if mode == configs.ListenerTLSImplicit {
		conn, err = tls.Dial("tcp", addr, &tls.Config{InsecureSkipVerify: true})
	} else {
		conn, err = net.Dial("tcp", addr)
	}
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	_ = conn.SetDeadline(time.Now().Add(10 * time.Second))
	r := bufio.NewReader(conn)
	readReply := func() []string {
		var lines []string
		for {
			line, err := r.ReadString('\n')
			if err != nil {
				t.Fatalf("reading from %s: %v", addr, err)
			}
			lines = append(lines, strings.TrimRight(line, "\r\n"))
			if len(line) < 4 || line[3] != '-' {
				return lines
			}
		}
	}
	readReply() // greeting
	fmt.Fprintf(conn, "EHLO consistency.test\r\n")
	for _, l := range readReply() {
		if v, ok := strings.CutPrefix(l[4:], "SIZE "); ok {
			n, err := strconv.ParseInt(v, 10, 64)
			if err != nil {
				t.Fatalf("SIZE %q: %v", v, err)
			}
			return n
		}
	}
	t.Fatalf("%s advertises no SIZE", addr)
	return 0
}

// TestRunningDaemonMatchesPrintConfig: for the embedded default and every
// shipped example, what the started daemon does is what -print-config
// says: the SIZE each listener advertises, each account's connection cap
// and each scan folder's quiet period.
func TestRunningDaemonMatchesPrintConfig(t *testing.T) {
	t.Setenv("M365_CLIENT_SECRET", "from-env")
	t.Setenv("GOOGLE_CLIENT_SECRET", "from-env")
	names := []string{"(embedded default)", "gmail.yaml", "m365-app-only.yaml", "m365-delegated.yaml", "m365-graph.yaml", "m365-usgov.yaml", "relay-password.yaml", "spoold.example.yaml"}
	for _, name := range names {
		t.Run(name, func(t *testing.T) {
			src := string(configs.Default())
			if name != "(embedded default)" {
				data, err := os.ReadFile(filepath.Join("..", "..", "configs", name))
				if err != nil {
					t.Fatal(err)
				}
				src = string(data)
			}
			dir := t.TempDir()
			path := filepath.Join(dir, "spoold.yaml")
			writeFile(t, path, loopbackConfig(t, src, dir))

			var printed, stderr bytes.Buffer
			if code := run([]string{"-config", path, "-print-config"}, &printed, &stderr); code != exitOK {
				t.Fatalf("-print-config: exit %d: %s", code, stderr.String())
			}
			p, err := loadPlan(path)
			if err != nil {
				t.Fatal(err)
			}
			// Nothing may leave the machine: delivery stays paused.
			p.cfg.Delivery.Paused = true
			d, err := startDaemon(context.Background(), p, path, slog.New(slog.NewTextHandler(io.Discard, nil)), new(slog.LevelVar))
			if err != nil {
				t.Fatal(err)
			}
			defer d.shutdown()

			addrs := map[string]net.Addr{}
			if d.smtp != nil {
				addrs = d.smtp.Addrs()
			}
			for i, l := range p.cfg.SMTPListeners {
				key := fmt.Sprintf("smtp_listeners[%d].max_message_size", i)
				want := printedInt(t, printed.Bytes(), key)
				if got := ehloSize(t, addrs[l.Name].String(), l.TLS); got != want {
					t.Errorf("listener %s advertises SIZE %d; -print-config says %s: %d", l.Name, got, key, want)
				}
			}
			states := d.engine.AccountStates()
			for i, a := range p.cfg.Accounts {
				key := fmt.Sprintf("accounts[%d].max_connections", i)
				want := printedInt(t, printed.Bytes(), key)
				found := false
				for _, st := range states {
					if st.Name == a.Name {
						found = true
						if int64(st.ConnLimit) != want {
							t.Errorf("account %s opens up to %d connections; -print-config says %s: %d", a.Name, st.ConnLimit, key, want)
						}
					}
				}
				if !found {
					t.Errorf("account %s is not running", a.Name)
				}
			}
			if d.scans != nil {
				for i, f := range d.scans.Folders() {
					key := fmt.Sprintf("scan_folders[%d].quiet_period", i)
					want, err := time.ParseDuration(fmt.Sprint(valueAt(t, printed.Bytes(), key)))
					if err != nil {
						t.Fatalf("%s: %v", key, err)
					}
					if f.QuietPeriod != want {
						t.Errorf("scan folder %s waits %s; -print-config says %s: %s", f.Name, f.QuietPeriod, key, want)
					}
				}
			}
		})
	}
}

func printedInt(t *testing.T, printed []byte, key string) int64 {
	t.Helper()
	v := valueAt(t, printed, key)
	n, err := strconv.ParseInt(fmt.Sprint(v), 10, 64)
	if err != nil {
		t.Fatalf("%s = %v: %v", key, v, err)
	}
	return n
}
