package main

import (
	"fmt"
	"regexp"
	"strings"
	"time"
)

// helpFlag is one flag of `spoold -h` (flag.PrintDefaults).
type helpFlag struct {
	Name, Arg, Usage string
}

// A one-letter flag without an argument has its usage on the same line,
// after a tab.
var helpFlagLine = regexp.MustCompile(`^  -([^\s=]+)(?: (\S+))?(?:\t(.*))?$`)

// parseFlagHelp reads the flag package's PrintDefaults format:
//
//	-name type
//	  	usage, possibly over several lines
func parseFlagHelp(help string) ([]helpFlag, error) {
	// spoold -h says what spoold is before its flags; the page has its own
	// NAME and DESCRIPTION, so only the flags are taken.
	if _, after, ok := strings.Cut(help, "\nFlags:\n"); ok {
		help = after
	}
	var flags []helpFlag
	for _, line := range strings.Split(strings.TrimRight(help, "\n"), "\n") {
		switch {
		case strings.HasPrefix(line, "Usage of "):
		case strings.HasPrefix(line, "    \t"):
			if len(flags) == 0 {
				return nil, fmt.Errorf("usage text before any flag: %q", line)
			}
			f := &flags[len(flags)-1]
			f.Usage = strings.TrimSpace(f.Usage + "\n" + strings.TrimPrefix(line, "    \t"))
		case helpFlagLine.MatchString(line):
			m := helpFlagLine.FindStringSubmatch(line)
			flags = append(flags, helpFlag{Name: m[1], Arg: m[2], Usage: m[3]})
		default:
			return nil, fmt.Errorf("unexpected line in spoold -h: %q", line)
		}
	}
	if len(flags) == 0 {
		return nil, fmt.Errorf("no flags in spoold -h output %q", help)
	}
	return flags, nil
}

// roff escapes text for a man page line.
func roff(s string) string {
	s = strings.ReplaceAll(s, `\`, `\e`)
	s = strings.ReplaceAll(s, "-", `\-`)
	var b strings.Builder
	for _, line := range strings.Split(s, "\n") {
		if strings.HasPrefix(line, ".") || strings.HasPrefix(line, "'") {
			b.WriteString(`\&`)
		}
		b.WriteString(line)
		b.WriteString("\n")
	}
	return b.String()
}

// spooldManPage is spoold(8): the OPTIONS section is spoold's own flag set
// as `spoold -h` prints it; the rest is the product contract (DESIGN.md
// section 1) and the packaged layout.
func spooldManPage(help, version string, date time.Time) ([]byte, error) {
	flags, err := parseFlagHelp(help)
	if err != nil {
		return nil, err
	}
	var b strings.Builder
	fmt.Fprintf(&b, ".TH \"SPOOLD\" \"8\" %q %q \"spoold manual\"\n", date.Format("Jan 2006"), "spoold "+version)
	b.WriteString(".nh\n.ad l\n")
	b.WriteString(".SH NAME\nspoold \\- durable mail spooler: SMTP and scan folder to Microsoft 365, Gmail or a relay\n")
	b.WriteString(".SH SYNOPSIS\n.B spoold\n")
	for _, f := range flags {
		if f.Arg != "" {
			fmt.Fprintf(&b, "[\\fB\\-%s\\fR \\fI%s\\fR]\n", roffArg(f.Name), roffArg(f.Arg))
		} else {
			fmt.Fprintf(&b, "[\\fB\\-%s\\fR]\n", roffArg(f.Name))
		}
	}
	b.WriteString(".SH DESCRIPTION\n")
	b.WriteString(roff("spoold accepts mail from office devices (SMTP submission from printers and scanners, files dropped into a scan folder), " +
		"stores every message durably, and delivers it upstream (Microsoft 365, Gmail or any SMTP relay) with OAuth2 tokens it refreshes itself, " +
		"retrying with backoff and dead-lettering what cannot be delivered."))
	b.WriteString(".PP\n")
	b.WriteString(roff("Without -config spoold runs its embedded default configuration (spoold -print-default-config prints it). " +
		"The installed package runs it as the spoold user under systemd: systemctl enable --now spoold. " +
		"spoolctl(8) inspects and repairs the queue while the daemon runs."))
	b.WriteString(".SH OPTIONS\n")
	for _, f := range flags {
		b.WriteString(".TP\n")
		if f.Arg != "" {
			fmt.Fprintf(&b, "\\fB\\-%s\\fR \\fI%s\\fR\n", roffArg(f.Name), roffArg(f.Arg))
		} else {
			fmt.Fprintf(&b, "\\fB\\-%s\\fR\n", roffArg(f.Name))
		}
		b.WriteString(roff(f.Usage))
	}
	b.WriteString(".SH SIGNALS\n.TP\n.B SIGHUP\n")
	b.WriteString(roff("Reload the configuration; changes that need a restart are logged."))
	b.WriteString(".TP\n.BR SIGTERM \", \" SIGINT\n")
	b.WriteString(roff("Stop accepting, let deliveries in flight finish (delivery.shutdown_timeout), close the spool and exit 0."))
	b.WriteString(".SH EXIT STATUS\n.TP\n.B 0\nSuccess.\n.TP\n.B 1\n")
	b.WriteString(roff("Runtime failure (the systemd unit restarts it)."))
	b.WriteString(".TP\n.B 2\n")
	b.WriteString(roff("Usage or configuration error; -check lists every problem as file:line: key: reason."))
	b.WriteString(".SH FILES\n")
	for _, f := range [][2]string{
		{"/etc/spoold/spoold.yaml", "The configuration (kept on package upgrades)."},
		{"/etc/spoold/spoold.env", "Optional environment for ${ENV} references in the configuration (mode 0600)."},
		{"/var/lib/spoold", "The data directory: spool.db, messages/, outbox/, tls/."},
		{"/run/spoold/spoold.sock", "The admin socket spoolctl talks to."},
		{"/usr/share/doc/spoold/examples", "Example configurations; spoold.example.yaml shows every key."},
	} {
		fmt.Fprintf(&b, ".TP\n.I %s\n", roffArg(f[0]))
		b.WriteString(roff(f[1]))
	}
	b.WriteString(".SH SEE ALSO\n.BR spoolctl (8),\n.BR systemctl (1),\n.BR journalctl (1)\n")
	return []byte(b.String()), nil
}

// roffArg escapes a single word used inside a font request.
func roffArg(s string) string {
	return strings.ReplaceAll(strings.ReplaceAll(s, `\`, `\e`), "-", `\-`)
}
