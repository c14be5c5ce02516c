package wire

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"strconv"
	"time"
)

// baseURL is a placeholder host: every request goes to the unix socket.
const baseURL = "http://spoold"

// Client calls the admin API over the daemon's unix socket. Every method
// takes a context; deadlines come from it. Errors are *APIError (the daemon
// answered) or *DialError (it could not be reached).
type Client struct {
	socket string
	hc     *http.Client
}

// NewClient returns a Client for the socket at socketPath.
func NewClient(socketPath string) *Client {
	d := &net.Dialer{Timeout: 5 * time.Second}
	return NewClientDialer(socketPath, func(ctx context.Context, socket string) (net.Conn, error) {
		return d.DialContext(ctx, "unix", socket)
	})
}

// NewClientDialer is NewClient with a custom dial function, called with the
// socket path (tests, in-process serving).
func NewClientDialer(socketPath string, dial func(ctx context.Context, socket string) (net.Conn, error)) *Client {
	tr := &http.Transport{
		DialContext:     func(ctx context.Context, _, _ string) (net.Conn, error) { return dial(ctx, socketPath) },
		MaxIdleConns:    2,
		IdleConnTimeout: 30 * time.Second,
	}
	return &Client{socket: socketPath, hc: &http.Client{Transport: tr}}
}

// Socket returns the socket path the client talks to.
func (c *Client) Socket() string { return c.socket }

// CloseIdleConnections releases pooled connections.
func (c *Client) CloseIdleConnections() { c.hc.CloseIdleConnections() }

// do sends a request and returns the response on 2xx; the caller closes it.
func (c *Client) do(ctx context.Context, method, path string, in any) (*http.Response, error) {
	var body io.Reader
	if in != nil {
		b, err := json.Marshal(in)
		if err != nil {
			return nil, fmt.Errorf("encoding the request: %w", err)
		}
		body = bytes.NewReader(b)
	}
	req, err := http.NewRequestWithContext(ctx, method, baseURL+path, body)
	if err != nil {
		return nil, fmt.Errorf("building request %s %s: %w", method, path, err)
	}
	if in != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	resp, err := c.hc.Do(req)
	if err != nil {
		if ctxErr := ctx.Err(); errors.Is(ctxErr, context.Canceled) {
			return nil, fmt.Errorf("interrupted while waiting for spoold (%s %s): %w", method, path, ctxErr)
		} else if ctxErr != nil {
			return nil, fmt.Errorf("no answer from spoold at %s in time (%s %s; a longer --timeout may help): %w", c.socket, method, path, ctxErr)
		}
		var op *net.OpError
		if errors.As(err, &op) && op.Op == "dial" {
			return nil, &DialError{Socket: c.socket, Err: err}
		}
		return nil, fmt.Errorf("talking to spoold at %s (%s %s): %w", c.socket, method, path, err)
	}
	if resp.StatusCode/100 == 2 {
		return resp, nil
	}
	defer resp.Body.Close()
	return nil, decodeError(resp)
}

// decodeError reads the JSON error envelope, or makes one from a non-JSON answer.
func decodeError(resp *http.Response) error {
	b, _ := io.ReadAll(io.LimitReader(resp.Body, 64<<10))
	var eb ErrorBody
	if err := json.Unmarshal(b, &eb); err == nil && eb.Error != nil && eb.Error.Code != "" {
		eb.Error.Status = resp.StatusCode
		return eb.Error
	}
	code := CodeInternal
	switch resp.StatusCode {
	case http.StatusNotFound, http.StatusMethodNotAllowed:
		code = CodeNotFound
	case http.StatusBadRequest:
		code = CodeInvalidArgument
	case http.StatusServiceUnavailable, http.StatusBadGateway, http.StatusGatewayTimeout:
		code = CodeUnavailable
	}
	msg := string(bytes.TrimSpace(b))
	if len(msg) > 200 {
		msg = msg[:200]
	}
	return &APIError{Code: code, Status: resp.StatusCode, Message: fmt.Sprintf("spoold answered %s: %s", resp.Status, msg)}
}

func (c *Client) call(ctx context.Context, method, path string, in, out any) error {
	resp, err := c.do(ctx, method, path, in)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	if out == nil {
		_, _ = io.Copy(io.Discard, resp.Body)
		return nil
	}
	if err := json.NewDecoder(resp.Body).Decode(out); err != nil {
		return fmt.Errorf("spoold's answer to %s %s is not what this spoolctl expects (versions differ?): %w", method, path, err)
	}
	return nil
}

func esc(s string) string { return url.PathEscape(s) }

// Status returns the daemon's status.
func (c *Client) Status(ctx context.Context) (StatusResponse, error) {
	var out StatusResponse
	return out, c.call(ctx, http.MethodGet, "/v1/status", nil, &out)
}

// List returns one page of messages.
func (c *Client) List(ctx context.Context, req ListRequest) (ListResponse, error) {
	q := url.Values{}
	if req.State != "" {
		q.Set("state", string(req.State))
	}
	if req.Account != "" {
		q.Set("account", req.Account)
	}
	if req.OlderThan > 0 {
		q.Set("older_than", req.OlderThan.String())
	}
	if req.Cursor != "" {
		q.Set("cursor", req.Cursor)
	}
	if req.Limit > 0 {
		q.Set("limit", strconv.Itoa(req.Limit))
	}
	path := "/v1/messages"
	if len(q) > 0 {
		path += "?" + q.Encode()
	}
	var out ListResponse
	return out, c.call(ctx, http.MethodGet, path, nil, &out)
}

// Get returns one message.
func (c *Client) Get(ctx context.Context, id string) (MessageView, error) {
	var out MessageView
	return out, c.call(ctx, http.MethodGet, "/v1/messages/"+esc(id), nil, &out)
}

// Body streams a message's raw RFC 5322 body; the caller closes it.
func (c *Client) Body(ctx context.Context, id string) (io.ReadCloser, error) {
	resp, err := c.do(ctx, http.MethodGet, "/v1/messages/"+esc(id)+"/body", nil)
	if err != nil {
		return nil, err
	}
	return resp.Body, nil
}

// Hold holds a message with an optional reason.
func (c *Client) Hold(ctx context.Context, id, reason string) (MessageView, error) {
	var out MessageView
	return out, c.call(ctx, http.MethodPost, "/v1/messages/"+esc(id)+"/hold", HoldRequest{Reason: reason}, &out)
}

// Release releases a held message.
func (c *Client) Release(ctx context.Context, id string) (MessageView, error) {
	var out MessageView
	return out, c.call(ctx, http.MethodPost, "/v1/messages/"+esc(id)+"/release", nil, &out)
}

// Requeue moves a dead or held message back to queued with attempts reset.
func (c *Client) Requeue(ctx context.Context, id string) (MessageView, error) {
	var out MessageView
	return out, c.call(ctx, http.MethodPost, "/v1/messages/"+esc(id)+"/requeue", nil, &out)
}

// Flush makes a queued or deferred message due now.
func (c *Client) Flush(ctx context.Context, id string) (MessageView, error) {
	var out MessageView
	return out, c.call(ctx, http.MethodPost, "/v1/messages/"+esc(id)+"/flush", nil, &out)
}

// Delete removes a message and its body.
func (c *Client) Delete(ctx context.Context, id string) error {
	return c.call(ctx, http.MethodDelete, "/v1/messages/"+esc(id), nil, nil)
}

// FlushAll makes every deferred message (of account; "" = all) due now.
func (c *Client) FlushAll(ctx context.Context, account string) (CountResponse, error) {
	var out CountResponse
	return out, c.call(ctx, http.MethodPost, "/v1/flush", FlushRequest{Account: account}, &out)
}

// RequeueAll requeues every message in state (dead or held), of account if set.
func (c *Client) RequeueAll(ctx context.Context, state State, account string) (CountResponse, error) {
	var out CountResponse
	return out, c.call(ctx, http.MethodPost, "/v1/requeue", RequeueRequest{State: state, Account: account}, &out)
}

// Purge deletes messages in state last updated more than olderThan ago.
func (c *Client) Purge(ctx context.Context, state State, olderThan time.Duration) (CountResponse, error) {
	var out CountResponse
	req := PurgeRequest{State: state, OlderThanSeconds: int64(olderThan / time.Second)}
	return out, c.call(ctx, http.MethodPost, "/v1/purge", req, &out)
}

// PurgeCount counts the messages Purge would delete, deleting nothing.
func (c *Client) PurgeCount(ctx context.Context, state State, olderThan time.Duration) (CountResponse, error) {
	var out CountResponse
	req := PurgeRequest{State: state, OlderThanSeconds: int64(olderThan / time.Second), DryRun: true}
	return out, c.call(ctx, http.MethodPost, "/v1/purge", req, &out)
}

// Reload makes the daemon re-read its configuration file and returns the
// outcome; a refused configuration is ReloadInfo.OK false with the problems,
// not an error.
func (c *Client) Reload(ctx context.Context) (ReloadInfo, error) {
	var out ReloadInfo
	return out, c.call(ctx, http.MethodPost, "/v1/reload", nil, &out)
}

// Accounts lists the configured accounts and their health.
func (c *Client) Accounts(ctx context.Context) (AccountsResponse, error) {
	var out AccountsResponse
	return out, c.call(ctx, http.MethodGet, "/v1/accounts", nil, &out)
}

// Account returns one account.
func (c *Client) Account(ctx context.Context, name string) (AccountInfo, error) {
	var out AccountInfo
	return out, c.call(ctx, http.MethodGet, "/v1/accounts/"+esc(name), nil, &out)
}

// StartLogin starts an interactive login (mode browser, paste or device).
func (c *Client) StartLogin(ctx context.Context, account, mode string) (LoginStart, error) {
	var out LoginStart
	return out, c.call(ctx, http.MethodPost, "/v1/accounts/"+esc(account)+"/login", LoginRequest{Mode: mode}, &out)
}

// CompletePaste finishes a paste-mode login with the redirected URL.
func (c *Client) CompletePaste(ctx context.Context, loginID, redirectedURL string) (AccountInfo, error) {
	var out AccountInfo
	return out, c.call(ctx, http.MethodPost, "/v1/logins/"+esc(loginID)+"/paste", PasteRequest{RedirectedURL: redirectedURL}, &out)
}

// WaitLogin long-polls until a browser or device login finishes.
func (c *Client) WaitLogin(ctx context.Context, loginID string) (AccountInfo, error) {
	var out AccountInfo
	return out, c.call(ctx, http.MethodGet, "/v1/logins/"+esc(loginID)+"/wait", nil, &out)
}

// Logout forgets an account's grant.
func (c *Client) Logout(ctx context.Context, account string) error {
	return c.call(ctx, http.MethodPost, "/v1/accounts/"+esc(account)+"/logout", nil, nil)
}

// SetDeliveryPaused pauses (true) or resumes (false) delivery; ingest goes on.
func (c *Client) SetDeliveryPaused(ctx context.Context, paused bool) (DeliveryState, error) {
	path := "/v1/delivery/resume"
	if paused {
		path = "/v1/delivery/pause"
	}
	var out DeliveryState
	return out, c.call(ctx, http.MethodPost, path, nil, &out)
}

// TestSend sends a test message now through account to the address to.
func (c *Client) TestSend(ctx context.Context, account, to string) (TestSendResult, error) {
	var out TestSendResult
	return out, c.call(ctx, http.MethodPost, "/v1/accounts/"+esc(account)+"/test-send", TestSendRequest{To: to}, &out)
}
