package authtest

import (
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"net/http"
	"net/url"
	"strings"
	"testing"
)

var noFollow = &http.Client{CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}

func authorize(t *testing.T, s *Server, challenge string) url.Values {
	t.Helper()
	q := url.Values{"response_type": {"code"}, "client_id": {"c"}, "redirect_uri": {"http://127.0.0.1/cb"}, "state": {"st"}}
	if challenge != "" {
		q.Set("code_challenge", challenge)
		q.Set("code_challenge_method", "S256")
	}
	resp, err := noFollow.Get(s.AuthURL() + "?" + q.Encode())
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	loc, err := url.Parse(resp.Header.Get("Location"))
	if err != nil || resp.StatusCode != http.StatusFound {
		t.Fatalf("authorize answered %d %q", resp.StatusCode, resp.Header.Get("Location"))
	}
	if loc.Query().Get("state") != "st" {
		t.Fatalf("state not echoed: %v", loc)
	}
	return loc.Query()
}

func post(t *testing.T, s *Server, form url.Values) (int, map[string]any) {
	t.Helper()
	resp, err := http.PostForm(s.TokenURL(), form)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var m map[string]any
	_ = json.NewDecoder(resp.Body).Decode(&m)
	return resp.StatusCode, m
}

func challenge(v string) string {
	sum := sha256.Sum256([]byte(v))
	return base64.RawURLEncoding.EncodeToString(sum[:])
}

func TestPKCEEnforced(t *testing.T) {
	s := New("c", "a@x.com")
	defer s.Close()
	if q := authorize(t, s, ""); q.Get("error") != "invalid_request" || q.Get("code") != "" {
		t.Fatalf("no challenge: %v", q)
	}
	q := authorize(t, s, challenge("right-verifier"))
	form := url.Values{"grant_type": {GrantAuthCode}, "client_id": {"c"}, "code": {q.Get("code")}, "redirect_uri": {"http://127.0.0.1/cb"}, "code_verifier": {"wrong"}}
	if st, m := post(t, s, form); st != http.StatusBadRequest || m["error"] != "invalid_grant" {
		t.Fatalf("wrong verifier: %d %v", st, m)
	}
	q = authorize(t, s, challenge("right-verifier"))
	form.Set("code", q.Get("code"))
	form.Set("code_verifier", "right-verifier")
	st, m := post(t, s, form)
	if st != http.StatusOK || m["refresh_token"] == nil || m["id_token"] == nil {
		t.Fatalf("right verifier: %d %v", st, m)
	}
	if st, _ := post(t, s, form); st != http.StatusBadRequest {
		t.Fatal("a code was redeemed twice")
	}
	if s.Calls("token:"+GrantAuthCode) != 3 || s.Calls("authorize") != 3 {
		t.Fatal("counters")
	}
}

func TestRefreshReuseRevokesFamily(t *testing.T) {
	s := New("c", "a@x.com")
	defer s.Close()
	q := authorize(t, s, challenge("v"))
	_, m := post(t, s, url.Values{"grant_type": {GrantAuthCode}, "client_id": {"c"}, "code": {q.Get("code")}, "redirect_uri": {"http://127.0.0.1/cb"}, "code_verifier": {"v"}})
	rt1, _ := m["refresh_token"].(string)
	refresh := func(rt string) (int, map[string]any) {
		return post(t, s, url.Values{"grant_type": {GrantRefresh}, "client_id": {"c"}, "refresh_token": {rt}})
	}
	st, m := refresh(rt1)
	rt2, _ := m["refresh_token"].(string)
	if st != http.StatusOK || rt2 == "" || rt2 == rt1 {
		t.Fatalf("rotation: %d %v", st, m)
	}
	if st, m := refresh(rt1); st != http.StatusBadRequest || m["error"] != "invalid_grant" {
		t.Fatalf("reuse: %d %v", st, m)
	}
	if st, _ := refresh(rt2); st != http.StatusBadRequest {
		t.Fatal("the family survived a reuse")
	}
}

func TestSetTokenError(t *testing.T) {
	s := New("c", "u@x.example")
	defer s.Close()
	s.SetClientSecret("sec")
	s.SetTokenError(http.StatusBadRequest, "invalid_grant", "AADSTS53003: Access has been blocked by Conditional Access policies.")
	form := url.Values{"grant_type": {GrantClientCredentials}, "client_id": {"c"}, "client_secret": {"sec"}, "scope": {"x"}}
	status, body := post(t, s, form)
	if status != http.StatusBadRequest || body["error"] != "invalid_grant" || !strings.HasPrefix(body["error_description"].(string), "AADSTS53003:") {
		t.Fatalf("answer %d %v", status, body)
	}
	s.SetTokenError(0, "", "")
	if status, body := post(t, s, form); status != http.StatusOK || body["access_token"] == nil {
		t.Fatalf("after clearing: %d %v", status, body)
	}
}
