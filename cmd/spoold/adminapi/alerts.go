package adminapi

import (
	"context"
	"net/http"

	"github.com/spoold/spoold/cmd/spoold/adminapi/wire"
)

// AlertControl is implemented by a daemon's Info that runs the alerter
// (spoolctl alerts, spoolctl alerts test); offline mode has none.
type AlertControl interface {
	Alerts() wire.AlertsResponse
	// TestAlerts sends a test alert through every channel and waits for
	// each channel's result (each bounded by its own timeout).
	TestAlerts(ctx context.Context) wire.AlertTestResponse
}

func (s *Service) alertControl() (AlertControl, error) {
	ac, ok := s.info.(AlertControl)
	if !ok {
		return nil, apiErrorf(wire.CodeUnavailable, "alerts need the running daemon (not --spool)")
	}
	return ac, nil
}

func (s *Service) alerts(*http.Request) (any, error) {
	ac, err := s.alertControl()
	if err != nil {
		return nil, err
	}
	return ac.Alerts(), nil
}

func (s *Service) testAlerts(r *http.Request) (any, error) {
	ac, err := s.alertControl()
	if err != nil {
		return nil, err
	}
	res := ac.TestAlerts(r.Context())
	s.log.Info("test alert sent", "channels", len(res.Results))
	return res, nil
}
