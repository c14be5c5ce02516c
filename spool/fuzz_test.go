package spool

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"
	"unicode/utf8"
)

// FuzzEnqueueEnvelope feeds arbitrary envelopes (they come from SMTP clients
// and scan-folder paths) through Enqueue, Get, List and the account indexes:
// nothing panics, bad input is ErrInvalid, good input round-trips exactly.
func FuzzEnqueueEnvelope(f *testing.F) {
	f.Add("scanner@example.com", "bob@example.com", "outbox", "", "key")
	f.Add("", "a@x\r\nRCPT TO:<evil>", "m365", "b@x", "")
	f.Add("x", "a\x00", "a\x00b", "", "k\x00")
	f.Add("<>", "y@z", "acct\x01", "\xff\xfe", "")
	s, err := Open(f.TempDir(), Options{Logger: quietLogger(), RescueInterval: -1})
	if err != nil {
		f.Fatal(err)
	}
	f.Cleanup(func() {
		if err := s.Check(); err != nil {
			f.Error(err)
		}
		s.Close()
	})
	ctx := context.Background()
	seenKeys := map[string]string{}
	f.Fuzz(func(t *testing.T, from, to1, account, to2, key string) {
		to := []string{to1}
		if to2 != "" {
			to = append(to, to2)
		}
		r := EnqueueRequest{From: from, To: to, Account: account, IdempotencyKey: key}
		id, err := s.Enqueue(ctx, r, strings.NewReader("body"))
		bad := account == "" || strings.ContainsAny(account+from+to1+to2, "\r\n\x00") || to1 == "" || len(account) > 256 || len(key) > 512 ||
			!allUTF8(account, from, to1, to2, key)
		if bad {
			if !errors.Is(err, ErrInvalid) {
				t.Fatalf("bad envelope %+v: err %v, want ErrInvalid", r, err)
			}
			return
		}
		if err != nil {
			t.Fatalf("Enqueue(%+v): %v", r, err)
		}
		m, err := s.Get(ctx, id)
		if err != nil {
			t.Fatal(err)
		}
		if prev, reused := seenKeys[key]; key != "" && reused {
			if id != prev {
				t.Fatalf("key %q: got %s, first enqueue got %s", key, id, prev)
			}
		} else {
			seenKeys[key] = id
			if m.From != from || m.Account != account || len(m.Recipients) != len(to) || m.Recipients[0].Addr != to1 {
				t.Fatalf("round trip: got %+v for %+v", m, r)
			}
		}
		// With a reused key the message may belong to another account.
		account = m.Account
		if _, ok, err := s.NextDue(ctx, account); err != nil || !ok {
			t.Fatalf("NextDue(%q) = %v %v", account, ok, err)
		}
		accts, err := s.DueAccounts(ctx, time.Now().Add(time.Hour))
		if err != nil {
			t.Fatal(err)
		}
		found := false
		for _, a := range accts {
			found = found || a == account
		}
		if !found {
			t.Fatalf("DueAccounts %q misses %q", accts, account)
		}
		if _, err := s.List(ctx, Filter{Account: account}, from, 3); err != nil {
			t.Fatalf("List with arbitrary cursor: %v", err)
		}
	})
}

func allUTF8(ss ...string) bool {
	for _, s := range ss {
		if !utf8.ValidString(s) {
			return false
		}
	}
	return true
}
