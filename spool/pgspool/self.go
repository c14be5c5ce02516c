package pgspool

// Node is the name this node records its heartbeat under (Options.Node):
// spoolctl status marks it among the nodes sharing the spool.
func (s *Spool) Node() string { return s.opts.Node }
