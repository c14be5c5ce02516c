package wire

import (
	"context"
	"net/http"
	"net/url"
	"strconv"
	"time"
)

// The endpoints the web console adds (the socket serves them too):
//
//	GET    /v1/search?state=&account=&source=&q=&order=&cursor=&limit=   SearchResponse
//	GET    /v1/waiting                      WaitingResponse (queued+deferred per account)
//	GET    /v1/scan-files?folder=&limit=    ScanFilesResponse
//	POST   /v1/scan-files/retry             ScanRetryRequest -> ScanFile
//	GET    /v1/config                       ConfigResponse (effective, secrets redacted)

// Search orders.
const (
	OrderOldest = "oldest" // ID order, the default
	OrderNewest = "newest"
)

// SearchRequest selects messages for GET /v1/search: List's filters plus
// the source and a text search over ID, sender, recipients and subject.
type SearchRequest struct {
	State   State
	Account string
	Source  string // smtp, scan, notice, admin; "" = any
	Query   string // case-insensitive substring; "" = any
	Order   string // OrderOldest or OrderNewest
	Cursor  string
	Limit   int
}

// SearchResponse is one page of a search. A text search examines a bounded
// number of messages per request: when it stops there, Partial is true,
// Messages may be fewer than asked (or none) and Next continues the search.
type SearchResponse struct {
	Messages []MessageView `json:"messages"`
	Next     string        `json:"next,omitempty"`
	Partial  bool          `json:"partial,omitempty"`
	Scanned  int           `json:"scanned"`
	Now      time.Time     `json:"now"`
}

// WaitingResponse counts the messages waiting to be sent (queued and
// deferred) per account.
type WaitingResponse struct {
	Accounts map[string]int `json:"accounts"`
}

// ScanFile is a file a scan folder finished with: sent (in processed/) or
// failed (in failed/, with the reason spoold wrote next to it).
type ScanFile struct {
	Folder string    `json:"folder"`
	Path   string    `json:"path"` // relative to processed/ or failed/
	Failed bool      `json:"failed"`
	Reason string    `json:"reason,omitempty"`
	Size   int64     `json:"size"`
	Time   time.Time `json:"time"`
}

// ScanFilesResponse lists the most recent processed and failed files.
type ScanFilesResponse struct {
	Files []ScanFile `json:"files"`
	// Errors name folders whose processed/ or failed/ could not be read.
	Errors []string `json:"errors,omitempty"`
}

// ScanRetryRequest is the body of POST /v1/scan-files/retry: the failed
// file goes back into its folder and is taken like a new scan.
type ScanRetryRequest struct {
	Folder string `json:"folder"`
	Path   string `json:"path"`
}

// ConfigResponse is the configuration the daemon runs, as YAML, every
// secret replaced by "[redacted]" (spoold -print-config).
type ConfigResponse struct {
	Path string `json:"path,omitempty"`
	YAML string `json:"yaml"`
}

// Search returns one page of a search.
func (c *Client) Search(ctx context.Context, req SearchRequest) (SearchResponse, error) {
	q := url.Values{}
	set := func(k, v string) {
		if v != "" {
			q.Set(k, v)
		}
	}
	set("state", string(req.State))
	set("account", req.Account)
	set("source", req.Source)
	set("q", req.Query)
	set("order", req.Order)
	set("cursor", req.Cursor)
	if req.Limit > 0 {
		q.Set("limit", strconv.Itoa(req.Limit))
	}
	path := "/v1/search"
	if len(q) > 0 {
		path += "?" + q.Encode()
	}
	var out SearchResponse
	return out, c.call(ctx, http.MethodGet, path, nil, &out)
}

// Waiting counts the waiting messages per account.
func (c *Client) Waiting(ctx context.Context) (WaitingResponse, error) {
	var out WaitingResponse
	return out, c.call(ctx, http.MethodGet, "/v1/waiting", nil, &out)
}

// ScanFiles lists the most recent processed and failed scan files (of one
// folder if folder is set), newest first.
func (c *Client) ScanFiles(ctx context.Context, folder string, limit int) (ScanFilesResponse, error) {
	q := url.Values{}
	if folder != "" {
		q.Set("folder", folder)
	}
	if limit > 0 {
		q.Set("limit", strconv.Itoa(limit))
	}
	path := "/v1/scan-files"
	if len(q) > 0 {
		path += "?" + q.Encode()
	}
	var out ScanFilesResponse
	return out, c.call(ctx, http.MethodGet, path, nil, &out)
}

// RetryScanFile puts a failed scan back into its folder.
func (c *Client) RetryScanFile(ctx context.Context, folder, path string) (ScanFile, error) {
	var out ScanFile
	return out, c.call(ctx, http.MethodPost, "/v1/scan-files/retry", ScanRetryRequest{Folder: folder, Path: path}, &out)
}

// Config returns the effective configuration, secrets redacted.
func (c *Client) Config(ctx context.Context) (ConfigResponse, error) {
	var out ConfigResponse
	return out, c.call(ctx, http.MethodGet, "/v1/config", nil, &out)
}

// NewClientTransport returns a Client whose requests go through rt instead
// of the unix socket: the web console calls the service's handler in the
// same process, so it runs exactly the code the socket runs. name stands in
// for the socket path in errors.
func NewClientTransport(name string, rt http.RoundTripper) *Client {
	return &Client{socket: name, hc: &http.Client{Transport: rt}}
}
