package wire

import "time"

// NodeInfo is one spoold node sharing a PostgreSQL spool, as the spool's
// node table records it (StatusResponse.Nodes).
type NodeInfo struct {
	Name    string    `json:"name"`
	Started time.Time `json:"started"`
	// Heartbeat is refreshed by the node's rescuer (every 30 s); a node
	// not seen for minutes is stopped or cut off from the database.
	Heartbeat time.Time `json:"heartbeat"`
	// Self is the node that answered.
	Self bool `json:"self,omitempty"`
}
