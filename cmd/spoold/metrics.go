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
	// build is spoold_build_info: always 1, labelled with the build's
	// version, commit, build date and Go version, so dashboards and alerts
	// can tell which build each daemon runs. It lives in this collector
	// because, like uptime, it describes the running process.
	build     *prometheus.Desc
	buildInfo buildInfo
}

func newQueueCollector(q queueStats, log *slog.Logger, start time.Time) *queueCollector {
	return &queueCollector{
		q:      q,
		log:    log,
		start:  start,
		depth:  prometheus.NewDesc("spoold_queue_messages", "Messages in the spool by state.", []string{"state"}, nil),
		uptime: prometheus.NewDesc("spoold_uptime_seconds", "Seconds since the daemon started.", nil, nil),
		build: prometheus.NewDesc("spoold_build_info", "Build of the running spoold (value 1): version, commit, build date, Go version, platform.",
			[]string{"version", "commit", "date", "goversion", "platform"}, nil),
		buildInfo: readBuildInfo(),
	}
}

func (c *queueCollector) Describe(ch chan<- *prometheus.Desc) {
	ch <- c.depth
	ch <- c.uptime
	ch <- c.build
}

func (c *queueCollector) Collect(ch chan<- prometheus.Metric) {
	ch <- prometheus.MustNewConstMetric(c.uptime, prometheus.GaugeValue, time.Since(c.start).Seconds())
	b := c.buildInfo
	ch <- prometheus.MustNewConstMetric(c.build, prometheus.GaugeValue, 1, b.Version, b.Commit, b.Date, b.Go, b.Platform)
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

// newEnqueuedCounter is spoold_enqueued_total by source; the spool's
// Options.Enqueued hook counts it once per committed message.
func newEnqueuedCounter(reg prometheus.Registerer) *prometheus.CounterVec {
	c := prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "spoold_enqueued_total", Help: "Messages enqueued into the spool, by source.",
	}, []string{"source"})
	reg.MustRegister(c)
	return c
}
