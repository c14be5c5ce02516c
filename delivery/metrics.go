package delivery

import (
	"errors"
	"fmt"

	"github.com/prometheus/client_golang/prometheus"
)

type metrics struct {
	attempts *prometheus.CounterVec
	duration *prometheus.HistogramVec
	inflight prometheus.Gauge
	// Upstream outages (outage.go).
	upstreamDown *prometheus.GaugeVec
	probes       *prometheus.CounterVec
	// Daily recipient budgets and fallback routes (budget.go).
	budgetUsed *prometheus.GaugeVec
	budgetHeld *prometheus.GaugeVec
	fallback   *prometheus.CounterVec
}

func newMetrics(reg prometheus.Registerer) (*metrics, error) {
	m := &metrics{
		attempts: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "spoold_delivery_attempts_total",
			Help: "Delivery attempts by account, result (delivered, partial, deferred, dead, postponed) and error class (none without an error).",
		}, []string{"account", "result", "class"}),
		duration: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name:    "spoold_delivery_duration_seconds",
			Help:    "Time from enqueue to delivery.",
			Buckets: []float64{0.1, 0.5, 1, 5, 15, 60, 300, 900, 3600, 4 * 3600, 24 * 3600, 5 * 24 * 3600},
		}, []string{"account"}),
		inflight: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "spoold_delivery_inflight",
			Help: "Messages being sent right now.",
		}),
		upstreamDown: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "spoold_delivery_upstream_down",
			Help: "1 while the account is upstream_down (connection-level failures in a row; its messages wait and one probe connection checks the upstream), else 0.",
		}, []string{"account"}),
		probes: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "spoold_delivery_upstream_probes_total",
			Help: "Probe connections of upstream_down accounts by result (up, down, error: could not log in).",
		}, []string{"account", "result"}),
		budgetUsed: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "spoold_delivery_recipients_24h",
			Help: "Recipients the account sent to in the last 24 hours, for accounts with a daily_recipient_limit.",
		}, []string{"account"}),
		budgetHeld: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "spoold_delivery_budget_held",
			Help: "1 while the account's mail waits because the next message would pass its daily_recipient_limit, else 0.",
		}, []string{"account"}),
		fallback: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "spoold_delivery_fallback_messages_total",
			Help: "Messages of a held account delivered through its fallback account (via).",
		}, []string{"account", "via"}),
	}
	for _, c := range []prometheus.Collector{m.attempts, m.duration, m.inflight, m.upstreamDown, m.probes, m.budgetUsed, m.budgetHeld, m.fallback} {
		if err := reg.Register(c); err != nil {
			var are prometheus.AlreadyRegisteredError
			if errors.As(err, &are) {
				return nil, fmt.Errorf("delivery: registering metrics (one engine per registry): %w", err)
			}
			return nil, fmt.Errorf("delivery: registering metrics: %w", err)
		}
	}
	return m, nil
}

// classNone is the class label of an attempt without an error: an empty
// label value reads as a missing label in PromQL and as class="" on
// /metrics.
const classNone = "none"

func (m *metrics) attempt(account, result, class string) {
	if class == "" {
		class = classNone
	}
	m.attempts.WithLabelValues(account, result, class).Inc()
}

// nonEmpty returns key/value log attributes without the pairs whose value
// is an empty string, so a line never shows key="".
func nonEmpty(kv ...any) []any {
	out := kv[:0:0]
	for i := 0; i+1 < len(kv); i += 2 {
		if s, ok := kv[i+1].(string); ok && s == "" {
			continue
		}
		out = append(out, kv[i], kv[i+1])
	}
	return out
}
