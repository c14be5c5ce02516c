package smtpd

import (
	"crypto/tls"
	"time"
)

// SelfSignedCertificate returns the self-signed certificate the SMTP
// listeners persist in dir (creating it on first use), so the daemon's HTTP
// listener serves the same one instead of keeping a second: an admin who
// trusted it once trusts both. created reports a new certificate.
func SelfSignedCertificate(dir, hostname string) (cert tls.Certificate, created bool, err error) {
	return loadOrCreateSelfSigned(dir, hostname, time.Now())
}
