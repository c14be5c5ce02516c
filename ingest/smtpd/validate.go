package smtpd

import (
	"crypto/tls"
	"fmt"
	"net"
	"net/netip"
	"strconv"
	"strings"

	"github.com/spoold/spoold/configs/field"
)

// ValidateListeners checks listener configs exactly as New does (defaults,
// limits, access rules, names and addresses used twice, the certificate
// files) without
// binding a port or writing a self-signed certificate, so spoold -check and
// a reload refuse what start-up would. The error is nil or field.Problems
// keyed "[i].<yaml key>" by the listener's index, for the caller to merge
// under smtp_listeners.
func ValidateListeners(listeners []ListenerConfig, dataDir string) error {
	cfgs, ps := prepareListeners(listeners, dataDir)
	for i, cfg := range cfgs {
		if cfg.CertFile == "" || cfg.KeyFile == "" || hasKey(ps, i, "cert_file", "key_file") {
			continue // missing or unreadable files are reported already
		}
		if _, err := tls.LoadX509KeyPair(cfg.CertFile, cfg.KeyFile); err != nil {
			ps.Add(field.Index("", i)+".cert_file", "loading certificate %s: %v", cfg.CertFile, err)
		}
	}
	return ps.Err()
}

// prepareListeners fills every listener's defaults and validates it, with
// the checks that need the whole list (names used twice) or the data dir.
// It returns the configs with defaults, index for index, and every problem.
func prepareListeners(listeners []ListenerConfig, dataDir string) ([]ListenerConfig, field.Problems) {
	var ps field.Problems
	out := make([]ListenerConfig, len(listeners))
	seen := map[string]bool{}
	for i, lc := range listeners {
		cfg := lc.WithDefaults()
		out[i] = cfg
		lps := cfg.problems()
		if cfg.Name != "" {
			if seen[cfg.Name] {
				lps.Add("name", "duplicate listener name %q", field.Clip(cfg.Name))
			}
			seen[cfg.Name] = true
		}
		if j := overlapping(out[:i], cfg.Addr); j >= 0 {
			lps.Add("listen", "%s is also listened on by listener %q (%s): give each listener its own port",
				cfg.Addr, field.Clip(out[j].Name), out[j].Addr)
		}
		if cfg.TLS != TLSNone && cfg.CertFile == "" && dataDir == "" {
			lps.Add("tls", "tls %s without cert_file needs a data dir for the self-signed certificate", cfg.TLS)
		}
		ps.Merge(field.Index("", i), lps)
	}
	return out, ps
}

// overlapping returns the index of the first listener in earlier whose
// address cannot be bound together with addr, or -1. A wildcard host (empty,
// 0.0.0.0 or ::) takes its port on every address, both families included
// (a dual-stack [::] socket holds 0.0.0.0 too); port 0 picks a free port
// and never conflicts. Host names are compared as written: start-up
// resolves them, -check does not.
func overlapping(earlier []ListenerConfig, addr string) int {
	host, port, ok := splitListen(addr)
	if !ok {
		return -1
	}
	for j, e := range earlier {
		h, p, ok := splitListen(e.Addr)
		if !ok || p != port {
			continue
		}
		if h == host || h == "*" || host == "*" {
			return j
		}
	}
	return -1
}

// splitListen returns a listen address's canonical host ("*" for a
// wildcard) and port; ok is false for port 0 and for an address Validate
// refuses anyway.
func splitListen(addr string) (host string, port int, ok bool) {
	if field.HostPort(addr) != "" {
		return "", 0, false
	}
	h, p, _ := net.SplitHostPort(addr)
	port, err := strconv.Atoi(p)
	if err != nil || port == 0 {
		return "", 0, false
	}
	if h == "" {
		return "*", port, true
	}
	if ip, err := netip.ParseAddr(h); err == nil {
		if ip.IsUnspecified() {
			return "*", port, true
		}
		return ip.Unmap().String(), port, true
	}
	return strings.ToLower(h), port, true
}

// hasKey reports whether ps has a problem for listener i under one of keys.
func hasKey(ps field.Problems, i int, keys ...string) bool {
	prefix := field.Index("", i) + "."
	for _, p := range ps {
		for _, k := range keys {
			if p.Key == prefix+k || strings.HasPrefix(p.Key, prefix+k+".") {
				return true
			}
		}
	}
	return false
}

// listenersError is New's error for invalid configs: the problems, still
// reachable with errors.As.
func listenersError(ps field.Problems) error {
	return fmt.Errorf("smtpd: invalid listener configuration:\n%w", ps)
}
