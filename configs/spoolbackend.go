package configs

// SpoolBackend is spool.backend: where the queue lives.
type SpoolBackend string

// Spool backends.
const (
	// SpoolBBolt is the embedded spool in <data_dir>/spool.db: one node.
	SpoolBBolt SpoolBackend = "bbolt"
	// SpoolPostgres is a PostgreSQL database several nodes share (spool.dsn).
	SpoolPostgres SpoolBackend = "postgres"
)

func (SpoolBackend) values() []string { return []string{"", "bbolt", "postgres"} }
