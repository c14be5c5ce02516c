package smtpd

import (
	"crypto/tls"
	"fmt"
	"strings"

	"github.com/spoold/spoold/configs/field"
)

// ValidateListeners checks listener configs exactly as New does (defaults,
// limits, access rules, names used twice, the certificate files) without
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
				lps.Add("name", "duplicate listener name %q", clip(cfg.Name))
			}
			seen[cfg.Name] = true
		}
		if cfg.TLS != TLSNone && cfg.CertFile == "" && dataDir == "" {
			lps.Add("tls", "tls %s without cert_file needs a data dir for the self-signed certificate", cfg.TLS)
		}
		ps.Merge(field.Index("", i), lps)
	}
	return out, ps
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
