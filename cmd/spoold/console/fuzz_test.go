package console

import (
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"testing"
)

// FuzzRequests feeds the console what a browser (or anyone reaching the
// listener) can send: any query string on the queue and message pages, and
// any form on the queue action with a valid CSRF token. Nothing may panic,
// and every answer is a page, a redirect or a refusal, never a server error.
func FuzzRequests(f *testing.F) {
	f.Add("state=queued&q=invoice&cursor=01ABC&order=newest", "op=hold&id=x", "01ABC")
	f.Add("state=bogus&source=fax&order=up&limit=-1", "one=delete:%00&confirm=yes", "../../etc")
	f.Add("q="+strings.Repeat("a", 300), "op=flush&id=&id=&return=//evil.example", "%2e%2e")
	e := newEnv(f, Options{Listen: "127.0.0.1:8925"})
	_, page := e.get(f, "/queue")
	tok := csrfOf(f, page)
	f.Fuzz(func(t *testing.T, query, form, id string) {
		for _, path := range []string{"/queue?" + query, "/messages/" + url.PathEscape(id), "/messages/" + url.PathEscape(id) + "/eml", "/scans?" + query} {
			req, err := http.NewRequest(http.MethodGet, e.srv.URL+path, nil)
			if err != nil {
				continue
			}
			resp, err := e.c.Do(req)
			if err != nil {
				t.Fatal(err)
			}
			resp.Body.Close()
			if resp.StatusCode >= 500 && resp.StatusCode != http.StatusBadGateway {
				t.Fatalf("GET %s: %d", path, resp.StatusCode)
			}
		}
		vals, err := url.ParseQuery(form)
		if err != nil {
			return
		}
		vals.Set("csrf", tok)
		rec := httptest.NewRecorder()
		req := httptest.NewRequest(http.MethodPost, "/queue/action", strings.NewReader(vals.Encode()))
		req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
		for _, ck := range e.c.Jar.Cookies(mustURL(e.srv.URL)) {
			req.AddCookie(ck)
		}
		e.srv.Config.Handler.ServeHTTP(rec, req)
		if rec.Code >= 500 {
			t.Fatalf("POST /queue/action %q: %d", form, rec.Code)
		}
		if loc := rec.Header().Get("Location"); loc != "" && (!strings.HasPrefix(loc, "/") || strings.HasPrefix(loc, "//")) {
			t.Fatalf("POST /queue/action %q redirects off the console: %q", form, loc)
		}
	})
}

func mustURL(s string) *url.URL {
	u, err := url.Parse(s)
	if err != nil {
		panic(err)
	}
	return u
}
