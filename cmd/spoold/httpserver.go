package main

import (
	"context"
	"crypto/subtle"
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"net/netip"
	"strings"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/spoold/spoold/cmd/spoold/console"
)

// newHTTPHandler serves the daemon's HTTP endpoints: /metrics, /healthz
// (the process is up), /readyz (spool open and listeners up: ready reports
// why not), /oauth2/callback (the OAuth authorization-code redirect) and,
// when ui is not nil, the web console at /. A metricsToken, when set, is
// the bearer token /metrics requires from clients not on loopback.
func newHTTPHandler(reg *prometheus.Registry, ready func() error, oauthCallback, ui http.Handler, metricsToken string) http.Handler {
	mux := http.NewServeMux()
	mux.Handle("GET /metrics", requireToken(metricsToken, promhttp.HandlerFor(reg, promhttp.HandlerOpts{})))
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
	if ui != nil {
		mux.Handle("/", ui)
	}
	return mux
}

// requireToken asks clients that are not on loopback for
// "Authorization: Bearer <token>" (RFC 6750 section 2.1); a local scraper
// needs none. An empty token requires nothing.
func requireToken(token string, h http.Handler) http.Handler {
	if token == "" {
		return h
	}
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if host, _, err := net.SplitHostPort(r.RemoteAddr); err == nil {
			if ip, err := netip.ParseAddr(host); err == nil && ip.Unmap().IsLoopback() {
				h.ServeHTTP(w, r)
				return
			}
		}
		got, ok := strings.CutPrefix(r.Header.Get("Authorization"), "Bearer ")
		if !ok || subtle.ConstantTimeCompare([]byte(strings.TrimSpace(got)), []byte(token)) != 1 {
			w.Header().Set("WWW-Authenticate", `Bearer realm="spoold metrics"`)
			http.Error(w, "/metrics needs the bearer token of http.metrics_token", http.StatusUnauthorized)
			return
		}
		h.ServeHTTP(w, r)
	})
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
	ui  *console.Console // the web console; nil when off
}

// startHTTP listens on addr and serves h, over TLS when tc is not nil.
func startHTTP(addr string, h http.Handler, tc *tls.Config, log *slog.Logger) (*httpServer, error) {
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return nil, &httpBindError{addr: addr, err: err}
	}
	if tc != nil {
		ln = tls.NewListener(ln, tc)
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
	log.Info("http listening", "addr", ln.Addr().String(), "tls", tc != nil)
	return s, nil
}

func (s *httpServer) Addr() net.Addr { return s.ln.Addr() }

func (s *httpServer) Shutdown(ctx context.Context) error { return s.srv.Shutdown(ctx) }
