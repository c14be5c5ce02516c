package configs

import (
	"path/filepath"
)

// The daemon-wide keys (data_dir, log, http, admin) have their defaults
// here, set before decoding so that an explicit empty value is kept
// (http.listen: "" turns the listener off). Every other default belongs to
// the subsystem that uses it (its options' WithDefaults); a key it owns
// stays zero here, and spoold -print-config shows the value it runs with.

const (
	// DefaultHTTPListen is http.listen when absent.
	DefaultHTTPListen = "127.0.0.1:8925"
	// MB is 10^6 bytes, the unit providers state their limits in.
	MB = 1000 * 1000
)

func (c *Config) setDefaults() {
	c.DataDir = "./data"
	c.Log = Log{Level: LogInfo, Format: LogFormatAuto}
	c.HTTP.Listen = DefaultHTTPListen
}

// derive fills the daemon-wide defaults that depend on other keys.
func (c *Config) derive() {
	if c.Admin.Socket == "" {
		c.Admin.Socket = filepath.Join(c.DataDir, "spoold.sock")
	}
}
