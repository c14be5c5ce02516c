package main

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"time"

	"github.com/spoold/spoold/cmd/spoold/adminapi/wire"
	"github.com/spoold/spoold/configs"
	"github.com/spoold/spoold/configs/field"
	"github.com/spoold/spoold/spool"
	"github.com/spoold/spoold/spool/pgspool"
)

// spoolBackendPlan is the spool's backend part of the plan: bbolt in the
// data directory (p.spool) or a PostgreSQL database shared by nodes (pg).
type spoolBackendPlan struct {
	kind configs.SpoolBackend // bbolt or postgres, never ""
	pg   pgspool.Options      // with postgres: DSN, node, lease, retention
}

// planSpoolBackend converts spool.backend, spool.dsn and spool.node; the
// lease and retention are p.spool's, so both backends run the same ones.
func planSpoolBackend(cfg *configs.Config, p *plan) field.Problems {
	var ps field.Problems
	p.backend.kind = cmp.Or(cfg.Spool.Backend, configs.SpoolBBolt)
	if p.backend.kind != configs.SpoolPostgres {
		if cfg.Spool.DSN != "" {
			p.warnings = append(p.warnings, "spool.dsn is set but spool.backend is bbolt: the spool is "+cfg.DataDir+"/spool.db and the database is not used; set spool.backend: postgres to use it")
		}
		return nil
	}
	node := cfg.Spool.Node
	if node == "" {
		node, _ = os.Hostname()
	}
	p.backend.pg = pgspool.Options{
		DSN:                cfg.Spool.DSN.Reveal(),
		Node:               node,
		LeaseDuration:      p.spool.LeaseDuration,
		DeliveredRetention: p.spool.DeliveredRetention,
	}.WithDefaults()
	ps.Merge("spool", p.backend.pg.Validate())
	return ps
}

// openSpool opens the configured backend. A database that cannot be
// reached stops the start with an error saying so rather than waiting in
// the background: a node that cannot store mail can only answer 4xx, the
// admin sees the reason at once (systemd's Restart= tries again), and the
// other nodes keep the site's mail flowing meanwhile.
func openSpool(ctx context.Context, p *plan, bbolt spool.Options, log *slog.Logger) (spool.Backend, error) {
	if p.backend.kind != configs.SpoolPostgres {
		sp, err := spool.Open(p.cfg.DataDir, bbolt)
		if err != nil {
			return nil, err // not a typed nil in the interface
		}
		return sp, nil
	}
	o := p.backend.pg
	o.Logger, o.Enqueued = log, bbolt.Enqueued
	ctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	sp, err := pgspool.Open(ctx, o)
	if errors.Is(err, spool.ErrUnavailable) || errors.Is(err, context.DeadlineExceeded) {
		return nil, fmt.Errorf("spool: the PostgreSQL database of spool.dsn cannot be reached: %w; start the database or fix spool.dsn (host, port, user), then start spoold again", err)
	}
	if err != nil {
		return nil, fmt.Errorf("spool: opening the PostgreSQL spool: %w", err)
	}
	log.Info("spool on PostgreSQL", "component", "spool", "node", o.Node)
	return sp, nil
}

// Nodes implements adminapi.NodeLister: the nodes sharing a PostgreSQL
// spool and their last heartbeat (none for the embedded spool).
func (i daemonInfo) Nodes(ctx context.Context) ([]wire.NodeInfo, error) {
	sp, ok := i.d.spool.(*pgspool.Spool)
	if !ok {
		return nil, nil
	}
	nodes, err := sp.Nodes(ctx)
	if err != nil {
		return nil, err
	}
	self := sp.Node()
	out := make([]wire.NodeInfo, 0, len(nodes))
	for _, n := range nodes {
		out = append(out, wire.NodeInfo{Name: n.Name, Started: n.Started, Heartbeat: n.Heartbeat, Self: n.Name == self})
	}
	return out, nil
}

// syncSharedAuth keeps this node's view of the accounts' grants current on
// a PostgreSQL spool: a sign-in through another node (spoolctl auth login
// there) is seen here within sharedAuthEvery, and the mail this node
// parked for it goes out.
func (d *daemon) syncSharedAuth(ctx context.Context) {
	if _, ok := d.spool.(*pgspool.Spool); !ok {
		return
	}
	go everySharedSync(ctx, d.auth.SyncShared)
}

// everySharedSync runs sync every sharedAuthEvery, each run bounded by
// that period, until ctx ends: the re-reads of what other nodes changed.
func everySharedSync(ctx context.Context, sync func(context.Context)) {
	t := time.NewTicker(sharedAuthEvery)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
			c, cancel := context.WithTimeout(ctx, sharedAuthEvery)
			sync(c)
			cancel()
		}
	}
}

// sharedAuthEvery is how often a node re-reads the shared grants: two
// small reads per account.
const sharedAuthEvery = 5 * time.Second
