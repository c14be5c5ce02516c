package alerts

import "github.com/prometheus/client_golang/prometheus"

type metrics struct {
	raised *prometheus.CounterVec
	sent   *prometheus.CounterVec
	failed *prometheus.CounterVec
}

// newMetrics creates the alert counters, every channel at 0 so that a
// rate() sees the first failure; reg nil keeps them unexported (tests).
func newMetrics(reg prometheus.Registerer, chans []channel) *metrics {
	m := &metrics{
		raised: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "spoold_alerts_raised_total",
			Help: "Alerts raised (a condition started, or a one-off notice), by kind."}, []string{"kind"}),
		sent: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "spoold_alerts_sent_total",
			Help: "Alert notifications delivered, by channel."}, []string{"channel"}),
		failed: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "spoold_alerts_failed_total",
			Help: "Failed attempts to deliver an alert notification, by channel (each is retried with backoff)."}, []string{"channel"}),
	}
	for _, ch := range chans {
		m.sent.WithLabelValues(ch.name())
		m.failed.WithLabelValues(ch.name())
	}
	if reg != nil {
		reg.MustRegister(m.raised, m.sent, m.failed)
	}
	return m
}
