package scanfolder

import (
	"errors"
	"fmt"

	"github.com/prometheus/client_golang/prometheus"
)

// Results counted in spoold_scan_files_total.
const (
	resultEnqueued  = "enqueued"  // committed to the spool
	resultDuplicate = "duplicate" // already committed before (crash between commit and move)
	resultFailed    = "failed"    // moved to failed/
	resultRetry     = "retry"     // left in place to retry (unreadable, spool error, changed while read)
)

type metrics struct {
	files   *prometheus.CounterVec
	latency *prometheus.HistogramVec
}

func newMetrics(reg prometheus.Registerer) (*metrics, error) {
	m := &metrics{
		files: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "spoold_scan_files_total",
			Help: "Scan folder files handled, by folder and result (enqueued, duplicate, failed, retry).",
		}, []string{"folder", "result"}),
		latency: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name:    "spoold_scan_enqueue_seconds",
			Help:    "Time from a scan file being found stable to its message being committed.",
			Buckets: []float64{.01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10, 30},
		}, []string{"folder"}),
	}
	if reg == nil {
		return m, nil
	}
	for _, c := range []prometheus.Collector{m.files, m.latency} {
		if err := reg.Register(c); err != nil {
			var are prometheus.AlreadyRegisteredError
			if errors.As(err, &are) {
				// A second Watcher in the same process (tests, re-init) shares the series.
				switch existing := are.ExistingCollector.(type) {
				case *prometheus.CounterVec:
					m.files = existing
					continue
				case *prometheus.HistogramVec:
					m.latency = existing
					continue
				}
			}
			return nil, fmt.Errorf("scanfolder: registering metrics: %w", err)
		}
	}
	return m, nil
}
