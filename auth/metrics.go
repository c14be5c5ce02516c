package auth

import (
	"errors"
	"fmt"

	"github.com/prometheus/client_golang/prometheus"
)

// Refresh results, the "result" label of spoold_token_refreshes_total.
const (
	resultOK            = "ok"
	resultNeedsReauth   = "needs_reauth"
	resultMisconfigured = "misconfigured"
	resultTransient     = "transient"
	resultStoreError    = "store_error"
)

// metrics is nil-safe: a Manager without a Registerer records nothing.
type metrics struct {
	refreshes *prometheus.CounterVec
	health    *prometheus.GaugeVec
}

func newMetrics(reg prometheus.Registerer) (*metrics, error) {
	if reg == nil {
		return nil, nil
	}
	mt := &metrics{
		refreshes: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "spoold_token_refreshes_total",
			Help: "OAuth2 token requests (refresh, client credentials, JWT bearer) by account and result.",
		}, []string{"account", "result"}),
		health: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "spoold_account_health",
			Help: "1 for the account's current health status (ok, needs_reauth, misconfigured, refresh_failing, pending), 0 for the others.",
		}, []string{"account", "status"}),
	}
	var err error
	if mt.refreshes, err = register(reg, mt.refreshes); err != nil {
		return nil, err
	}
	if mt.health, err = register(reg, mt.health); err != nil {
		return nil, err
	}
	return mt, nil
}

// register reuses an identical collector already registered (a second
// Manager after a restart within one process, as tests do).
func register[C prometheus.Collector](reg prometheus.Registerer, c C) (C, error) {
	if err := reg.Register(c); err != nil {
		var are prometheus.AlreadyRegisteredError
		if errors.As(err, &are) {
			if existing, ok := are.ExistingCollector.(C); ok {
				return existing, nil
			}
		}
		return c, fmt.Errorf("registering auth metrics: %w", err)
	}
	return c, nil
}

func (mt *metrics) refresh(account, result string) {
	if mt != nil {
		mt.refreshes.WithLabelValues(account, result).Inc()
	}
}

func (mt *metrics) setHealth(account string, st Status) {
	if mt == nil {
		return
	}
	for _, s := range statuses {
		v := 0.0
		if s == st {
			v = 1
		}
		mt.health.WithLabelValues(account, string(s)).Set(v)
	}
}

func (mt *metrics) forget(account string) {
	if mt != nil {
		mt.refreshes.DeletePartialMatch(prometheus.Labels{"account": account})
		mt.health.DeletePartialMatch(prometheus.Labels{"account": account})
	}
}
