package console

import (
	"context"
	"fmt"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"sync"
	"sync/atomic"
	"testing"

	"github.com/spoold/spoold/cmd/spoold/adminapi"
	"github.com/spoold/spoold/spool"
)

// BenchmarkQueuePage measures the server time of the queue page (the whole
// console request: session, the admin service in process, the spool, the
// template) with 10, 1,000 and 100,000 queued messages (a page shows 50):
// the first page, a page from a cursor in the middle of the queue, and a
// text search. Paging walks the state index from the cursor, so a full page
// costs the same at 1,000 and 100,000; a search examines at most a bounded
// number of messages per page.
func BenchmarkQueuePage(b *testing.B) {
	for _, n := range []int{10, 1000, 100_000} {
		b.Run(fmt.Sprintf("queued=%d", n), func(b *testing.B) {
			c, mid := benchConsole(b, n)
			cookie := benchSession(b, c)
			for _, page := range []struct{ name, query string }{
				{"first", "state=queued"},
				{"middle", "state=queued&cursor=" + url.QueryEscape(mid)},
				{"search", "q=" + url.QueryEscape("invoice 7")},
			} {
				b.Run(page.name, func(b *testing.B) {
					b.ReportAllocs()
					for b.Loop() {
						req := httptest.NewRequest(http.MethodGet, "/queue?"+page.query, nil)
						req.AddCookie(cookie)
						rec := httptest.NewRecorder()
						c.ServeHTTP(rec, req)
						if rec.Code != http.StatusOK || !strings.Contains(rec.Body.String(), `id="messages"`) {
							b.Fatalf("queue page: %d", rec.Code)
						}
					}
				})
			}
		})
	}
}

// benchConsole fills a spool with n queued messages (every 100th has
// "Invoice 7..." in its subject) and returns a console over it and the ID
// in the middle of the queue.
func benchConsole(b *testing.B, n int) (*Console, string) {
	b.Helper()
	sp, err := spool.Open(b.TempDir(), spool.Options{RescueInterval: -1, Logger: slog.New(slog.DiscardHandler)})
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { sp.Close() })
	ids := make([]string, n)
	var next atomic.Int64
	var wg sync.WaitGroup
	ctx := context.Background()
	for range 64 { // concurrent callers share the spool's commits
		wg.Go(func() {
			for {
				i := int(next.Add(1)) - 1
				if i >= n {
					return
				}
				subj := fmt.Sprintf("Scan %d", i)
				if i%100 == 0 {
					subj = fmt.Sprintf("Invoice 7%d", i)
				}
				kind := spool.SourceSMTP
				if i%2 == 1 {
					kind = spool.SourceScan
				}
				id, err := sp.Enqueue(ctx, spool.EnqueueRequest{From: "mfd@example.com", To: []string{fmt.Sprintf("user%d@example.com", i%500)},
					Account: "m365", Source: spool.Source{Kind: kind}}, strings.NewReader("Subject: "+subj+"\r\nFrom: mfd@example.com\r\n\r\nscan\r\n"))
				if err != nil {
					b.Error(err)
					return
				}
				ids[i] = id
			}
		})
	}
	wg.Wait()
	if b.Failed() {
		b.FailNow()
	}
	p, err := sp.List(ctx, spool.Filter{State: spool.StateQueued}, "", n/2)
	if err != nil || len(p.Messages) == 0 {
		b.Fatalf("listing: %v", err)
	}
	svc := adminapi.NewService(sp, &fakeAccounts{status: "ok", done: make(chan struct{})}, fakeInfo{}, adminapi.Options{Logger: slog.New(slog.DiscardHandler)})
	c, err := New(svc.Handler(), Options{Listen: "127.0.0.1:8925", Logger: slog.New(slog.DiscardHandler)})
	if err != nil {
		b.Fatal(err)
	}
	return c, p.Messages[len(p.Messages)-1].ID
}

// benchSession is the loopback session every request of the benchmark
// reuses, as a browser does.
func benchSession(b *testing.B, c *Console) *http.Cookie {
	rec := httptest.NewRecorder()
	c.ServeHTTP(rec, httptest.NewRequest(http.MethodGet, "/queue", nil))
	for _, ck := range rec.Result().Cookies() {
		if ck.Name == sessionCookie {
			return ck
		}
	}
	b.Fatal("no session cookie")
	return nil
}
