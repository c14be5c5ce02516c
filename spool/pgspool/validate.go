package pgspool

import (
	"unicode"

	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/spoold/spoold/configs/field"
)

// Validate checks the options a config sets (spool.dsn, spool.node),
// keyed by their YAML keys under spool. It never quotes the DSN: it may
// hold a password.
func (o Options) Validate() field.Problems {
	var ps field.Problems
	if o.DSN == "" {
		ps.Add("dsn", "required with backend postgres: a PostgreSQL connection string such as \"host=db.example.org dbname=spoold user=spoold\" (the password in dsn_file or ~/.pgpass)")
	} else if _, err := pgxpool.ParseConfig(o.DSN); err != nil {
		// pgx's parse errors can quote the string, password included.
		ps.Add("dsn", "is not a valid PostgreSQL connection string (keyword=value pairs or a postgres:// URL)")
	}
	if len(o.Node) > 64 {
		ps.Add("node", "is %d bytes; at most 64", len(o.Node))
	}
	for _, r := range o.Node {
		if !unicode.IsPrint(r) || unicode.IsSpace(r) {
			ps.Add("node", "must be printable without spaces (it names this node in spoolctl status and in leases)")
			break
		}
	}
	return ps
}
