package smtpd

import (
	"crypto/tls"
	"errors"
	"fmt"
)

// ValidateListeners checks listener configs exactly as New does (defaults,
// limits, access rules, the certificate files) without binding a port or
// writing a self-signed certificate, so spoold -check and a reload refuse
// what start-up would.
func ValidateListeners(listeners []ListenerConfig, dataDir string) error {
	var errs []error
	seen := map[string]bool{}
	for _, lc := range listeners {
		cfg, err := lc.normalize(dataDir)
		if err != nil {
			errs = append(errs, err)
			continue
		}
		if seen[cfg.Name] {
			errs = append(errs, fmt.Errorf("smtpd: listener %q configured twice", cfg.Name))
			continue
		}
		seen[cfg.Name] = true
		if cfg.CertFile != "" {
			if _, err := tls.LoadX509KeyPair(cfg.CertFile, cfg.KeyFile); err != nil {
				errs = append(errs, fmt.Errorf("smtpd: listener %q: loading certificate %s: %w", cfg.Name, cfg.CertFile, err))
			}
		}
	}
	return errors.Join(errs...)
}
