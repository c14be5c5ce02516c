package adminapi

import (
	"context"

	"github.com/spoold/spoold/cmd/spoold/adminapi/wire"
)

// NodeLister is implemented by a daemon whose spool several nodes share
// (spool.backend postgres): status then lists the nodes and their last
// heartbeat.
type NodeLister interface {
	Nodes(ctx context.Context) ([]wire.NodeInfo, error)
}

// addNodes fills resp.Nodes when the daemon has them; a failure to read
// them is reported beside the queue, not instead of it.
func (s *Service) addNodes(ctx context.Context, resp *wire.StatusResponse) {
	nl, ok := s.info.(NodeLister)
	if !ok {
		return
	}
	nodes, err := nl.Nodes(ctx)
	if err != nil {
		resp.NodesError = err.Error()
		return
	}
	resp.Nodes = nodes
}
