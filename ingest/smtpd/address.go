package smtpd

import (
	"errors"
	"fmt"
	"net/netip"
	"strings"
)

// checkAddress validates an envelope address as go-smtp hands it over
// (local@domain, brackets removed). Only dot-atom local parts are accepted:
// go-smtp drops the quotes of a quoted local part, so storing it would change
// the address.
func checkAddress(addr string) error {
	if len(addr) > 254 {
		return errors.New("address longer than 254 characters")
	}
	at := strings.LastIndexByte(addr, '@')
	if at < 0 {
		return errors.New("address has no @domain")
	}
	local, domain := addr[:at], addr[at+1:]
	if err := checkLocalPart(local); err != nil {
		return err
	}
	return checkDomain(domain)
}

func checkLocalPart(local string) error {
	if local == "" {
		return errors.New("empty local part")
	}
	if len(local) > 64 {
		return errors.New("local part longer than 64 characters")
	}
	if local[0] == '.' || local[len(local)-1] == '.' || strings.Contains(local, "..") {
		return errors.New("local part has a misplaced dot")
	}
	for i := 0; i < len(local); i++ {
		if !isAtext(local[i]) && local[i] != '.' {
			return fmt.Errorf("local part contains %q", local[i])
		}
	}
	return nil
}

// isAtext reports whether c is an RFC 5322 atext character.
func isAtext(c byte) bool {
	switch {
	case 'a' <= c && c <= 'z', 'A' <= c && c <= 'Z', '0' <= c && c <= '9':
		return true
	}
	return strings.IndexByte("!#$%&'*+-/=?^_`{|}~", c) >= 0
}

// checkDomain accepts an ASCII host name or an address literal ([1.2.3.4],
// [IPv6:...]).
func checkDomain(d string) error {
	if d == "" {
		return errors.New("empty domain")
	}
	if d[0] == '[' {
		if d[len(d)-1] != ']' {
			return errors.New("unterminated address literal")
		}
		lit := d[1 : len(d)-1]
		if v6, ok := cutPrefixFold(lit, "IPv6:"); ok {
			if a, err := netip.ParseAddr(v6); err == nil && a.Is6() {
				return nil
			}
			return errors.New("bad IPv6 address literal")
		}
		if a, err := netip.ParseAddr(lit); err == nil && a.Is4() {
			return nil
		}
		return errors.New("bad address literal")
	}
	if len(d) > 253 {
		return errors.New("domain longer than 253 characters")
	}
	for _, label := range strings.Split(d, ".") {
		if label == "" || len(label) > 63 {
			return errors.New("domain has an empty or over-long label")
		}
		if label[0] == '-' || label[len(label)-1] == '-' {
			return errors.New("domain label starts or ends with a hyphen")
		}
		for i := 0; i < len(label); i++ {
			c := label[i]
			if !('a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || '0' <= c && c <= '9' || c == '-') {
				return fmt.Errorf("domain contains %q", c)
			}
		}
	}
	return nil
}

func cutPrefixFold(s, prefix string) (string, bool) {
	if len(s) < len(prefix) || !strings.EqualFold(s[:len(prefix)], prefix) {
		return s, false
	}
	return s[len(prefix):], true
}

// domainOf returns the lower-cased domain of an address ("" for the null sender).
func domainOf(addr string) string {
	at := strings.LastIndexByte(addr, '@')
	if at < 0 {
		return ""
	}
	return strings.ToLower(addr[at+1:])
}

func domainAllowed(list []string, addr string) bool {
	if len(list) == 0 {
		return true
	}
	d := domainOf(addr)
	for _, a := range list {
		if a == d {
			return true
		}
	}
	return false
}
