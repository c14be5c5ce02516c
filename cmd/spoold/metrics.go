package main

import (
	"context"
	"log/slog"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/spoold/spoold/spool"
)

// queueStats is what the queue-depth collector needs from the spool.
type queueStats interface {
	Stats(ctx context.Context) (map[spool.State]int, error)
}

// queueCollector exports the spool's per-state counts at scrape time. The
// counts are kept transactionally in the database, so a scrape is one small
// read transaction, not a scan of the queue.
type queueCollector struct {
	q      queueStats
	log    *slog.Logger
	depth  *prometheus.Desc
	uptime *prometheus.Desc
	start  time.Time
}

func newQueueCollector(q queueStats, log *slog.Logger, start time.Time) *queueCollector {
	return &queueCollector{
		q:      q,
		log:    log,
		start:  start,
		depth:  prometheus.NewDesc("spoold_queue_messages", "Messages in the spool by state.", []string{"state"}, nil),
		uptime: prometheus.NewDesc("spoold_uptime_seconds", "Seconds since the daemon started.", nil, nil),
	}
}

func (c *queueCollector) Describe(ch chan<- *prometheus.Desc) {
	ch <- c.depth
	ch <- c.uptime
}

func (c *queueCollector) Collect(ch chan<- prometheus.Metric) {
	ch <- prometheus.MustNewConstMetric(c.uptime, prometheus.GaugeValue, time.Since(c.start).Seconds())
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	stats, err := c.q.Stats(ctx)
	if err != nil {
		c.log.Warn("metrics: reading queue stats", "err", err)
		return
	}
	for _, st := range spool.States {
		ch <- prometheus.MustNewConstMetric(c.depth, prometheus.GaugeValue, float64(stats[st]), string(st))
	}
}
