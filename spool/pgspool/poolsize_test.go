package pgspool

import (
	"strings"
	"testing"
)

// TestPoolSizeFromTheDSN: pool_max_conns in spool.dsn sizes the pool (it
// was overwritten with 16 without a word); without it the pool has 16;
// a size the caller gives wins; a bad value is refused without quoting
// the DSN, which holds the password.
func TestPoolSizeFromTheDSN(t *testing.T) {
	for _, c := range []struct {
		dsn      string
		explicit int32
		want     int32
	}{
		{"host=/run/db dbname=spoold password=s3cret", 0, defaultPoolSize},
		{"host=/run/db dbname=spoold password=s3cret pool_max_conns=5", 0, 5},
		{"postgres://spoold:s3cret@db.example.org/spoold?pool_max_conns=40&sslmode=verify-full", 0, 40},
		{"host=/run/db dbname=spoold pool_max_conns=5", 7, 7},
	} {
		cfg, err := poolConfig(Options{DSN: c.dsn, MaxConns: c.explicit}.WithDefaults())
		if err != nil {
			t.Fatalf("%q: %v", c.dsn, err)
		}
		if cfg.MaxConns != c.want {
			t.Errorf("%q (explicit %d): pool of %d, want %d", c.dsn, c.explicit, cfg.MaxConns, c.want)
		}
		if _, ok := cfg.ConnConfig.RuntimeParams["pool_max_conns"]; ok {
			t.Errorf("%q: pool_max_conns would be sent to the server as a setting", c.dsn)
		}
		if cfg.ConnConfig.RuntimeParams["synchronous_commit"] != "on" {
			t.Errorf("%q: synchronous_commit is not forced on", c.dsn)
		}
	}
	for _, bad := range []string{"host=/run/db password=s3cret pool_max_conns=0", "host=/run/db password=s3cret pool_max_conns=many"} {
		_, err := poolConfig(Options{DSN: bad}.WithDefaults())
		if err == nil {
			t.Errorf("%q accepted", bad)
		} else if strings.Contains(err.Error(), "s3cret") {
			t.Errorf("the error quotes the password: %v", err)
		}
	}
}
