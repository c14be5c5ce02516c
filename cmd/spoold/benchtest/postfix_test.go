//go:build linux

package benchtest

import (
	"bufio"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

var flagPostfix = flag.String("bench.postfix", "", "directory holding the postfix and postconf commands (default: PATH, then /usr/sbin)")

// The Postfix reference relay: a throwaway instance with its own
// config_directory, queue_directory and data_directory under a temporary
// directory, listening on a free loopback port and relaying everything to
// the benchmark's sink. It never reads or writes /etc/postfix or
// /var/spool/postfix, so a system Postfix (running or not) is untouched.
//
// Its master runs in the foreground as a child of the test process (no
// `postfix start`, which detaches it); on a normal end it gets SIGTERM and
// then the rest of its process group SIGKILL. A parent-death signal cannot
// cover a killed test binary: the kernel clears it when the master switches
// its effective IDs to mail_owner to take its lock. So a watchdog shell in
// a process group of its own (a Ctrl-C does not reach it) holds the read
// end of a pipe from the test process and, when the test process dies and
// the pipe closes, stops the master's process group.
//
// Durability is Postfix's default, comparable to spoold's fsync before 250:
// cleanup fsyncs each queue file before smtpd answers 250 after DATA.
// Everything else that is not about loopback relaying keeps its default too
// (in_flow_delay 1s, the connection cache, qmgr's scheduling).

// postfixTools locates postfix and postconf, and says why Postfix cannot be
// benchmarked here when it cannot.
type postfixTools struct {
	postfix, postconf string
}

func findPostfix() (postfixTools, error) {
	look := func(name string) (string, error) {
		if *flagPostfix != "" {
			p := filepath.Join(*flagPostfix, name)
			if _, err := os.Stat(p); err != nil {
				return "", fmt.Errorf("-bench.postfix %s has no %s", *flagPostfix, name)
			}
			return p, nil
		}
		if p, err := exec.LookPath(name); err == nil {
			return p, nil
		}
		// Non-root PATHs often lack /usr/sbin, where Debian puts both.
		p := filepath.Join("/usr/sbin", name)
		if _, err := os.Stat(p); err != nil {
			return "", fmt.Errorf("%s not found in PATH or /usr/sbin; install Postfix (Debian: apt-get install postfix, "+
				"choosing \"No configuration\") or point -bench.postfix at its directory", name)
		}
		return p, nil
	}
	var t postfixTools
	var err error
	if t.postfix, err = look("postfix"); err != nil {
		return t, err
	}
	if t.postconf, err = look("postconf"); err != nil {
		return t, err
	}
	if os.Geteuid() != 0 {
		return t, errors.New("Postfix's master must run as root (it binds, then runs its daemons as mail_owner); " +
			"run the benchmark as root to compare with Postfix")
	}
	return t, nil
}

type postfixRelay struct {
	dir      string // instance root: etc/, queue/, data/, maillog
	smtpAddr string
	cmd      *exec.Cmd
	exited   chan struct{}
	waitErr  error
	stopOnce sync.Once

	watchdog   *exec.Cmd
	watchdogIn io.WriteCloser // closes when the test process dies
}

func (p *postfixRelay) name() string { return "postfix" }
func (p *postfixRelay) addr() string { return p.smtpAddr }
func (p *postfixRelay) rootPID() int { return p.cmd.Process.Pid }

func (p *postfixRelay) alive() error {
	select {
	case <-p.exited:
		return fmt.Errorf("benchtest: Postfix's master exited: %v\n%s", p.waitErr, p.logTail())
	default:
		return nil
	}
}

func (p *postfixRelay) logTail() string {
	b, _ := os.ReadFile(filepath.Join(p.dir, "maillog"))
	if len(b) > 4000 {
		b = b[len(b)-4000:]
	}
	return string(b)
}

// postfixMainCF is main.cf for the instance rooted at dir.
func postfixMainCF(dir string, sinkPort int) string {
	return fmt.Sprintf(`# Written by spoold's benchtest: Postfix as a loopback reference relay.
compatibility_level = 2
config_directory = %[1]s/etc
queue_directory = %[1]s/queue
data_directory = %[1]s/data
myhostname = relay.bench.invalid
mydomain = bench.invalid
myorigin = $myhostname
biff = no
append_dot_mydomain = no

# Loopback only; no local delivery: everything goes to the sink.
inet_interfaces = 127.0.0.1
inet_protocols = ipv4
mynetworks = 127.0.0.0/8
mydestination =
local_recipient_maps =
local_transport = error:local delivery disabled
alias_maps =
alias_database =
relay_domains =
relayhost = [127.0.0.1]:%[2]d
smtpd_relay_restrictions = permit_mynetworks, reject_unauth_destination
smtp_dns_support_level = disabled
smtp_tls_security_level = none
smtpd_tls_security_level = none

# As many upstream sessions as spoold's sink account (-bench.conns), and
# room for every client.
default_process_limit = %[3]d
default_destination_concurrency_limit = %[4]d
message_size_limit = 67108864

# There may be no syslog: log through postlogd to a file in the instance.
maillog_file = %[1]s/maillog
maillog_file_prefixes = %[1]s
`, dir, sinkPort, max(100, 2*maxClients()), *flagConns)
}

// postfixMasterCF is master.cf: one smtpd on addr and the services a relay
// uses, none chrooted (a chroot needs files copied into the queue
// directory).
func postfixMasterCF(addr string) string {
	return addr + ` inet n - n - - smtpd
pickup    unix  n - n 60 1 pickup
cleanup   unix  n - n -  0 cleanup
qmgr      unix  n - n 300 1 qmgr
rewrite   unix  - - n -  - trivial-rewrite
bounce    unix  - - n -  0 bounce
defer     unix  - - n -  0 bounce
trace     unix  - - n -  0 bounce
verify    unix  - - n -  1 verify
flush     unix  n - n 1000? 0 flush
proxymap  unix  - - n -  - proxymap
smtp      unix  - - n -  - smtp
relay     unix  - - n -  - smtp
showq     unix  n - n -  - showq
error     unix  - - n -  - error
retry     unix  - - n -  - error
discard   unix  - - n -  - discard
anvil     unix  - - n -  1 anvil
scache    unix  - - n -  1 scache
postlog   unix-dgram n - n - 1 postlogd
`
}

// startPostfix creates an instance under -bench.dir relaying to the sink on
// sinkPort, starts its master and waits for its 220 greeting. It is stopped
// when tb ends.
func startPostfix(tb testing.TB, t postfixTools, sinkPort int) *postfixRelay {
	tb.Helper()
	dir, err := os.MkdirTemp(*flagDir, "pfx-")
	if err != nil {
		tb.Fatalf("benchtest: Postfix instance dir: %v", err)
	}
	tb.Cleanup(func() { _ = os.RemoveAll(dir) })
	// Postfix's daemons run as mail_owner and must traverse the instance
	// directory to reach queue/ (MkdirTemp makes it 0700).
	if err := os.Chmod(dir, 0o755); err != nil {
		tb.Fatalf("benchtest: Postfix instance dir: %v", err)
	}
	p := &postfixRelay{dir: dir, smtpAddr: fmt.Sprintf("127.0.0.1:%d", freePort(tb)), exited: make(chan struct{})}
	for _, sub := range []string{"etc", "queue"} {
		if err := os.Mkdir(filepath.Join(dir, sub), 0o755); err != nil {
			tb.Fatalf("benchtest: Postfix instance dir: %v", err)
		}
	}
	etc := filepath.Join(dir, "etc")
	if err := os.WriteFile(filepath.Join(etc, "main.cf"), []byte(postfixMainCF(dir, sinkPort)), 0o644); err != nil {
		tb.Fatalf("benchtest: writing Postfix's main.cf: %v", err)
	}
	if err := os.WriteFile(filepath.Join(etc, "master.cf"), []byte(postfixMasterCF(p.smtpAddr)), 0o644); err != nil {
		tb.Fatalf("benchtest: writing Postfix's master.cf: %v", err)
	}
	if v, err := exec.Command(t.postconf, "-c", etc, "-h", "mail_version").Output(); err == nil {
		theSuite.mu.Lock()
		theSuite.pfVer = strings.TrimSpace(string(v))
		theSuite.mu.Unlock()
	}
	daemonDir, err := exec.Command(t.postconf, "-c", etc, "-h", "daemon_directory").Output()
	if err != nil {
		tb.Fatalf("benchtest: postconf -c %s -h daemon_directory: %v\n%s", etc, err, p.logTail())
	}
	master := filepath.Join(strings.TrimSpace(string(daemonDir)), "master")
	// `postfix check` creates the queue's subdirectories with their owners
	// and modes (post-install create-missing) and checks the configuration.
	if out, err := exec.Command(t.postfix, "-c", etc, "check").CombinedOutput(); err != nil {
		tb.Fatalf("benchtest: postfix -c %s check: %v\n%s%s", etc, err, out, p.logTail())
	}
	p.cmd = exec.Command(master, "-c", etc)
	if err := p.cmd.Start(); err != nil {
		tb.Fatalf("benchtest: starting Postfix's master: %v", err)
	}
	go func() {
		p.waitErr = p.cmd.Wait()
		close(p.exited)
	}()
	tb.Cleanup(func() { p.stop(tb) })
	p.startWatchdog(tb)
	waitFor(tb, p, "Postfix's 220 greeting on "+p.smtpAddr, 30*time.Second, func() bool { return greets(p.smtpAddr) })
	return p
}

// startWatchdog starts the shell that stops the master's process group
// (its PID: the master makes itself a session leader) and removes the
// instance if the test process dies before stop.
func (p *postfixRelay) startWatchdog(tb testing.TB) {
	tb.Helper()
	// dash's kill takes no "--"; "-PID" is the process group. SIGKILL only
	// if the group outlives 5 s of SIGTERM; then the instance is removed.
	const script = `read -r _; kill -TERM "-$1" 2>/dev/null
for i in 1 2 3 4 5; do kill -0 "-$1" 2>/dev/null || break; sleep 1; done
kill -0 "-$1" 2>/dev/null && kill -KILL "-$1"
rm -rf "$2"`
	w := exec.Command("/bin/sh", "-c", script, "benchtest-postfix-watchdog", strconv.Itoa(p.cmd.Process.Pid), p.dir)
	w.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	in, err := w.StdinPipe()
	if err != nil {
		tb.Fatalf("benchtest: Postfix watchdog: %v", err)
	}
	if err := w.Start(); err != nil {
		tb.Fatalf("benchtest: starting the Postfix watchdog: %v", err)
	}
	p.watchdog, p.watchdogIn = w, in
}

// greets reports whether an SMTP server on addr answers with 220.
func greets(addr string) bool {
	c, err := net.DialTimeout("tcp", addr, time.Second)
	if err != nil {
		return false
	}
	defer c.Close()
	_ = c.SetDeadline(time.Now().Add(5 * time.Second))
	line, err := bufio.NewReader(c).ReadString('\n')
	if err != nil || !strings.HasPrefix(line, "220") {
		return false
	}
	_, _ = c.Write([]byte("QUIT\r\n"))
	return true
}

// stop sends the master SIGTERM (it stops its daemons and exits), kills it
// after 20 s, and then kills whatever is left of its process group: the
// master made itself a session leader, so the group ID is its PID.
func (p *postfixRelay) stop(tb testing.TB) {
	// Once only: a second group kill could hit a new group that reused the PID.
	p.stopOnce.Do(func() { p.stopNow(tb) })
}

func (p *postfixRelay) stopNow(tb testing.TB) {
	pid := p.cmd.Process.Pid
	select {
	case <-p.exited:
	default:
		_ = p.cmd.Process.Signal(syscall.SIGTERM)
		select {
		case <-p.exited:
		case <-time.After(20 * time.Second):
			_ = p.cmd.Process.Kill()
			<-p.exited
			tb.Errorf("benchtest: Postfix's master did not stop within 20s of SIGTERM; killed")
		}
	}
	if syscall.Kill(-pid, 0) == nil {
		_ = syscall.Kill(-pid, syscall.SIGKILL)
	}
	// The watchdog goes first, so that closing its pipe cannot make it
	// signal a process group that reused the PID.
	if p.watchdog != nil {
		_ = p.watchdog.Process.Kill()
		_ = p.watchdog.Wait()
		_ = p.watchdogIn.Close()
	}
}

// queued returns the number of files in Postfix's queues (0 when every
// message has been delivered and removed).
func (p *postfixRelay) queued() int {
	n := 0
	for _, q := range []string{"maildrop", "incoming", "active", "deferred", "hold"} {
		_ = filepath.WalkDir(filepath.Join(p.dir, "queue", q), func(_ string, e os.DirEntry, err error) error {
			if err == nil && !e.IsDir() {
				n++
			}
			return nil
		})
	}
	return n
}
