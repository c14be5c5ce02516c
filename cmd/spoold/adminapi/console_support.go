package adminapi

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"strconv"
	"strings"

	"github.com/spoold/spoold/cmd/spoold/adminapi/wire"
	"github.com/spoold/spoold/spool"
)

// The endpoints in this file serve the web console's pages (search, waiting
// counts, scan folder files, the effective configuration); the socket serves
// them too, so the console never needs a path the CLI cannot take.

// ScanFiles is implemented by a daemon's Info that watches scan folders:
// the files they finished with, and a retry for a failed one.
type ScanFiles interface {
	ScanFiles(ctx context.Context, folder string, limit int) (wire.ScanFilesResponse, error)
	// RetryScanFile moves failed/<path> of folder back into the folder.
	// Errors wrap ErrNotFound (no such folder or file) or
	// ErrInvalidArgument (a path outside failed/).
	RetryScanFile(ctx context.Context, folder, path string) (wire.ScanFile, error)
}

// EffectiveConfig is implemented by a daemon's Info that can print the
// configuration it runs, every secret redacted (spoold -print-config).
type EffectiveConfig interface {
	EffectiveConfig() (path string, yaml []byte, err error)
}

// matchingLister is the spool's ListMatching (the daemon's and offline
// spool both have it).
type matchingLister interface {
	ListMatching(ctx context.Context, f spool.Filter, opts spool.ListOptions, cursor string, limit int) (spool.Page, error)
}

// waitingCounter is the spool's per-account count of waiting messages.
type waitingCounter interface {
	WaitingByAccount(ctx context.Context) (map[string]int, error)
}

// Search bounds: a text search examines at most searchScan messages per
// request (reading the subject costs a file open), so a page of a 100,000
// message queue answers in bounded time; searchBatch is how many records
// one spool read transaction hands over.
const (
	searchScan  = 2000
	searchBatch = 250
	maxScanList = 200
)

// registerConsoleSupport adds this file's endpoints to the service's mux.
func (s *Service) registerConsoleSupport(mux *http.ServeMux) {
	mux.HandleFunc("GET /v1/search", s.handle(s.search))
	mux.HandleFunc("GET /v1/waiting", s.handle(s.waiting))
	mux.HandleFunc("GET /v1/scan-files", s.handle(s.scanFiles))
	mux.HandleFunc("POST /v1/scan-files/retry", s.handle(s.write(s.retryScanFile)))
	mux.HandleFunc("GET /v1/config", s.handle(s.config))
}

func parseSearch(r *http.Request) (wire.SearchRequest, error) {
	q := r.URL.Query()
	req := wire.SearchRequest{
		State: wire.State(q.Get("state")), Account: q.Get("account"), Source: q.Get("source"),
		Query: strings.TrimSpace(q.Get("q")), Order: q.Get("order"), Cursor: q.Get("cursor"),
	}
	if req.State != "" && !spoolState(req.State).Valid() {
		return req, apiErrorf(wire.CodeInvalidArgument, "unknown state %q (want one of %s)", req.State, statesList())
	}
	switch spool.SourceKind(req.Source) {
	case "", spool.SourceSMTP, spool.SourceScan, spool.SourceNotice, spool.SourceAdmin:
	default:
		return req, apiErrorf(wire.CodeInvalidArgument, "unknown source %q (want smtp, scan, notice or admin)", req.Source)
	}
	switch req.Order {
	case "", wire.OrderOldest, wire.OrderNewest:
	default:
		return req, apiErrorf(wire.CodeInvalidArgument, "unknown order %q (want oldest or newest)", req.Order)
	}
	if len(req.Query) > 256 {
		return req, apiErrorf(wire.CodeInvalidArgument, "search text is longer than 256 characters")
	}
	if v := q.Get("limit"); v != "" {
		n, err := strconv.Atoi(v)
		if err != nil || n < 0 {
			return req, apiErrorf(wire.CodeInvalidArgument, "bad limit %q: want a non-negative integer", v)
		}
		req.Limit = n
	}
	if req.Limit == 0 {
		req.Limit = 50
	}
	req.Limit = min(req.Limit, 500)
	return req, nil
}

// search is List with the source and text filters. Without text it is one
// bounded index walk; with text it walks candidate batches, checking the
// envelope first and the subject (from the body) only when that did not
// match, until the page is full or searchScan messages were examined.
func (s *Service) search(r *http.Request) (any, error) {
	req, err := parseSearch(r)
	if err != nil {
		return nil, err
	}
	ml, ok := s.q.(matchingLister)
	if !ok {
		return nil, apiErrorf(wire.CodeUnavailable, "this spool cannot search")
	}
	ctx := r.Context()
	now := s.clock()
	f := spool.Filter{State: spoolState(req.State), Account: req.Account}
	opts := spool.ListOptions{Newest: req.Order == wire.OrderNewest}
	if req.Source != "" {
		opts.Match = func(m *spool.Message) bool { return string(m.Source.Kind) == req.Source }
	}
	resp := wire.SearchResponse{Messages: []wire.MessageView{}, Now: now}
	if req.Query == "" {
		page, err := ml.ListMatching(ctx, f, withScanBound(f, opts), req.Cursor, req.Limit)
		if err != nil {
			return nil, fmt.Errorf("searching messages: %w", err)
		}
		for _, m := range page.Messages {
			resp.Messages = append(resp.Messages, s.view(m, now))
		}
		resp.Next, resp.Scanned = page.Next, len(page.Messages)
		resp.Partial = page.Next != "" && len(page.Messages) < req.Limit
		return resp, nil
	}
	needle := strings.ToLower(req.Query)
	cursor := req.Cursor
	for resp.Scanned < searchScan {
		batch := min(searchBatch, searchScan-resp.Scanned)
		page, err := ml.ListMatching(ctx, f, opts, cursor, batch)
		if err != nil {
			return nil, fmt.Errorf("searching messages: %w", err)
		}
		for _, m := range page.Messages {
			resp.Scanned++
			if !envelopeMatches(m, needle) && !strings.Contains(strings.ToLower(s.subject(m.ID)), needle) {
				continue
			}
			resp.Messages = append(resp.Messages, s.view(m, now))
			if len(resp.Messages) == req.Limit {
				resp.Next = m.ID
				return resp, nil
			}
		}
		if page.Next == "" {
			return resp, nil
		}
		cursor = page.Next
		if err := ctx.Err(); err != nil {
			return nil, fmt.Errorf("searching messages: %w", err)
		}
	}
	resp.Next, resp.Partial = cursor, true
	return resp, nil
}

// withScanBound bounds a filtered walk (by source or account), so a value
// that few messages have cannot make one page walk the whole queue.
func withScanBound(f spool.Filter, o spool.ListOptions) spool.ListOptions {
	if o.Match != nil || f.Account != "" {
		o.MaxScan = searchScan * 10 // metadata only: no file opens
	}
	return o
}

func envelopeMatches(m *spool.Message, needle string) bool {
	if strings.Contains(strings.ToLower(m.ID), needle) || strings.Contains(strings.ToLower(m.From), needle) {
		return true
	}
	for _, rc := range m.Recipients {
		if strings.Contains(strings.ToLower(rc.Addr), needle) {
			return true
		}
	}
	return false
}

func (s *Service) waiting(r *http.Request) (any, error) {
	wc, ok := s.q.(waitingCounter)
	if !ok {
		return nil, apiErrorf(wire.CodeUnavailable, "this spool cannot count waiting messages per account")
	}
	m, err := wc.WaitingByAccount(r.Context())
	if err != nil {
		return nil, fmt.Errorf("counting waiting messages: %w", err)
	}
	return wire.WaitingResponse{Accounts: m}, nil
}

func (s *Service) scanFilesBackend() (ScanFiles, error) {
	sf, ok := s.info.(ScanFiles)
	if !ok {
		return nil, apiErrorf(wire.CodeUnavailable, "scan folder files need the running daemon")
	}
	return sf, nil
}

func (s *Service) scanFiles(r *http.Request) (any, error) {
	sf, err := s.scanFilesBackend()
	if err != nil {
		return nil, err
	}
	limit := 50
	if v := r.URL.Query().Get("limit"); v != "" {
		n, err := strconv.Atoi(v)
		if err != nil || n < 0 {
			return nil, apiErrorf(wire.CodeInvalidArgument, "bad limit %q: want a non-negative integer", v)
		}
		limit = min(max(n, 1), maxScanList)
	}
	return sf.ScanFiles(r.Context(), r.URL.Query().Get("folder"), limit)
}

func (s *Service) retryScanFile(r *http.Request) (any, error) {
	sf, err := s.scanFilesBackend()
	if err != nil {
		return nil, err
	}
	var req wire.ScanRetryRequest
	if err := decode(r, &req); err != nil {
		return nil, err
	}
	if req.Folder == "" || req.Path == "" {
		return nil, apiErrorf(wire.CodeInvalidArgument, "folder and path are required")
	}
	f, err := sf.RetryScanFile(r.Context(), req.Folder, req.Path)
	switch {
	case errors.Is(err, ErrNotFound):
		return nil, apiErrorf(wire.CodeNotFound, "%v", err)
	case errors.Is(err, ErrInvalidArgument):
		return nil, apiErrorf(wire.CodeInvalidArgument, "%v", err)
	case err != nil:
		return nil, fmt.Errorf("retrying scan %s in folder %s: %w", req.Path, req.Folder, err)
	}
	s.log.Info("failed scan put back for another try", "folder", req.Folder, "path", req.Path)
	return f, nil
}

func (s *Service) config(*http.Request) (any, error) {
	ec, ok := s.info.(EffectiveConfig)
	if !ok {
		return nil, apiErrorf(wire.CodeUnavailable, "the effective configuration needs the running daemon")
	}
	path, y, err := ec.EffectiveConfig()
	if err != nil {
		return nil, fmt.Errorf("printing the effective configuration: %w", err)
	}
	return wire.ConfigResponse{Path: path, YAML: string(y)}, nil
}
