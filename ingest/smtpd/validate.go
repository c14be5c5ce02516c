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
	cfgs, err := normalizeListeners(listeners, dataDir)
	if err != nil {
		return err
	}
	var errs []error
	for _, cfg := range cfgs {
		if cfg.CertFile != "" {
			if _, err := tls.LoadX509KeyPair(cfg.CertFile, cfg.KeyFile); err != nil {
				errs = append(errs, fmt.Errorf("smtpd: listener %q: loading certificate %s: %w", cfg.Name, cfg.CertFile, err))
			}
		}
	}
	return errors.Join(errs...)
}

// normalizeListeners fills every listener's defaults and validates it, and
// refuses a name used twice; it returns every problem.
func normalizeListeners(listeners []ListenerConfig, dataDir string) ([]ListenerConfig, error) {
	var errs []error
	var out []ListenerConfig
	seen := map[string]bool{}
	for _, lc := range listeners {
		cfg, err := lc.normalize(dataDir)
		switch {
		case err != nil:
			errs = append(errs, err)
		case seen[cfg.Name]:
			errs = append(errs, fmt.Errorf("smtpd: listener %q configured twice", cfg.Name))
		default:
			seen[cfg.Name] = true
			out = append(out, cfg)
		}
	}
	return out, errors.Join(errs...)
}
