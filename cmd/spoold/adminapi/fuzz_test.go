package adminapi

import (
	"context"
	"encoding/json"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/spoold/spoold/cmd/spoold/adminapi/wire"
	"github.com/spoold/spoold/spool"
	"github.com/spoold/spoold/spool/spooltest"
)

// FuzzHandler feeds arbitrary requests to every endpoint: the socket is the
// daemon's outside. No input may panic, and every error answer is the JSON
// envelope with a known code.
func FuzzHandler(f *testing.F) {
	f.Add("GET", "/v1/messages", "state=dead&limit=5&older_than=1h", "")
	f.Add("POST", "/v1/purge", "", `{"state":"dead","older_than_seconds":-5}`)
	f.Add("POST", "/v1/messages/01TEST0001/hold", "", `{"reason":"x"}`)
	f.Add("DELETE", "/v1/messages/..%2F..%2Fetc", "", "")
	f.Add("GET", "/v1/messages/01TEST0001/body", "", "")
	f.Add("POST", "/v1/accounts/m365/login", "", `{"mode":"device"}`)
	f.Add("POST", "/v1/requeue", "", `{"state":"held","account":"m365"}`)
	f.Add("POST", "/v1/accounts/m365/test-send", "", `{"to":"a@b\r\nRCPT"}`)
	clk := &clock{now: t0}
	sp := spooltest.OpenTemp(f, spool.Options{Clock: clk.Now, RescueInterval: -1, Logger: slog.New(slog.DiscardHandler),
		NewID: func(time.Time) string { return "01TEST0001" }})
	if _, err := sp.Enqueue(context.Background(), spool.EnqueueRequest{From: "a@example.com", To: []string{"b@example.com"}, Account: "m365"},
		strings.NewReader("Subject: x\r\n\r\nhi\r\n")); err != nil {
		f.Fatal(err)
	}
	acc := &fakeAccounts{accounts: []wire.AccountInfo{{Name: "m365", Status: "ok"}}}
	h := NewService(sp, acc, fakeInfo{}, Options{Clock: clk.Now, Logger: slog.New(slog.DiscardHandler)}).Handler()
	known := map[string]bool{wire.CodeNotFound: true, wire.CodeWrongState: true, wire.CodeLeaseLost: true, wire.CodeInvalidArgument: true,
		wire.CodeUnavailable: true, wire.CodeNeedsReauth: true, wire.CodeUnknownAccount: true, wire.CodeReadOnly: true, wire.CodeInternal: true}
	f.Fuzz(func(t *testing.T, method, path, query, body string) {
		switch method {
		case "GET", "POST", "DELETE", "PUT":
		default:
			method = "GET"
		}
		u := &url.URL{Path: "/" + strings.TrimLeft(path, "/"), RawQuery: query}
		req, err := http.NewRequest(method, "http://spoold"+u.RequestURI(), strings.NewReader(body))
		if err != nil {
			return
		}
		// The wait endpoint blocks for a finished login; bound it.
		ctx, cancel := context.WithTimeout(context.Background(), 100*time.Millisecond)
		defer cancel()
		rec := httptest.NewRecorder()
		h.ServeHTTP(rec, req.WithContext(ctx))
		if rec.Code/100 == 2 || rec.Code == http.StatusMethodNotAllowed || rec.Code == http.StatusMovedPermanently ||
			rec.Code == http.StatusTemporaryRedirect || rec.Code == http.StatusPermanentRedirect {
			return
		}
		var eb wire.ErrorBody
		if err := json.Unmarshal(rec.Body.Bytes(), &eb); err != nil || eb.Error == nil || !known[eb.Error.Code] {
			t.Fatalf("%s %s: status %d body %q", method, u, rec.Code, rec.Body.String())
		}
		if httpStatus(eb.Error.Code) != rec.Code {
			t.Fatalf("%s %s: code %s with status %d", method, u, eb.Error.Code, rec.Code)
		}
	})
}
