package main

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"
)

// newHTTPHandler serves the daemon's HTTP endpoints: /metrics, /healthz
// (the process is up), /readyz (spool open and listeners up: ready reports
// why not) and /oauth2/callback (the OAuth authorization-code redirect).
func newHTTPHandler(reg *prometheus.Registry, ready func() error, oauthCallback http.Handler) http.Handler {
	mux := http.NewServeMux()
	mux.Handle("GET /metrics", promhttp.HandlerFor(reg, promhttp.HandlerOpts{}))
	mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Content-Type", "text/plain; charset=utf-8")
		fmt.Fprintln(w, "ok")
	})
	mux.HandleFunc("GET /readyz", func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Content-Type", "text/plain; charset=utf-8")
		if err := ready(); err != nil {
			w.WriteHeader(http.StatusServiceUnavailable)
			fmt.Fprintln(w, "not ready:", err)
			return
		}
		fmt.Fprintln(w, "ready")
	})
	if oauthCallback != nil {
		mux.Handle("/oauth2/callback", oauthCallback)
	}
	return mux
}

// httpBindError is http.listen's address refusing to bind.
type httpBindError struct {
	addr string
	err  error
}

func (e *httpBindError) Error() string { return fmt.Sprintf("http: listen %s: %v", e.addr, e.err) }
func (e *httpBindError) Unwrap() error { return e.err }

// httpServer runs the HTTP endpoints on their own listener.
type httpServer struct {
	srv *http.Server
	ln  net.Listener
	log *slog.Logger
}

func startHTTP(addr string, h http.Handler, log *slog.Logger) (*httpServer, error) {
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return nil, &httpBindError{addr: addr, err: err}
	}
	s := &httpServer{
		srv: &http.Server{Handler: h, ReadHeaderTimeout: 10 * time.Second, IdleTimeout: 60 * time.Second},
		ln:  ln,
		log: log,
	}
	go func() {
		if err := s.srv.Serve(ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
			log.Error("http: serve", "addr", addr, "err", err)
		}
	}()
	log.Info("http listening", "addr", ln.Addr().String())
	return s, nil
}

func (s *httpServer) Addr() net.Addr { return s.ln.Addr() }

func (s *httpServer) Shutdown(ctx context.Context) error { return s.srv.Shutdown(ctx) }
