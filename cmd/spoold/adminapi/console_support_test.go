package adminapi

import (
	"context"
	"strings"
	"testing"

	"github.com/spoold/spoold/cmd/spoold/adminapi/wire"
	"github.com/spoold/spoold/spool"
)

// TestSearchFiltersAndPages: the console's search finds messages by
// sender, recipient, ID and subject (read from the body), filters by
// source, pages newest first, and refuses bad parameters.
func TestSearchFiltersAndPages(t *testing.T) {
	e := newEnv(t, Options{})
	ctx := context.Background()
	var ids []string
	for i := range 6 {
		kind := spool.SourceSMTP
		if i%2 == 1 {
			kind = spool.SourceScan
		}
		subj := "Invoice"
		if i == 4 {
			subj = "Quarterly Report"
		}
		id, err := e.sp.Enqueue(ctx, spool.EnqueueRequest{
			From: "printer@example.com", To: []string{"user" + string(rune('a'+i)) + "@example.com"}, Account: "m365",
			Source: spool.Source{Kind: kind},
		}, strings.NewReader("Subject: "+subj+"\r\n\r\nbody\r\n"))
		if err != nil {
			t.Fatal(err)
		}
		ids = append(ids, id)
	}
	got := func(req wire.SearchRequest) []string {
		t.Helper()
		var out []string
		for pages := 0; ; pages++ {
			if pages > 20 {
				t.Fatal("paging does not end")
			}
			resp, err := e.c.Search(ctx, req)
			if err != nil {
				t.Fatal(err)
			}
			for _, m := range resp.Messages {
				out = append(out, m.ID)
			}
			if resp.Next == "" {
				return out
			}
			req.Cursor = resp.Next
		}
	}
	eq := func(name string, a []string, b ...string) {
		t.Helper()
		if strings.Join(a, ",") != strings.Join(b, ",") {
			t.Errorf("%s: got %v, want %v", name, a, b)
		}
	}
	eq("subject", got(wire.SearchRequest{Query: "quarterly"}), ids[4])
	eq("recipient", got(wire.SearchRequest{Query: "USERC@"}), ids[2])
	eq("id", got(wire.SearchRequest{Query: ids[5]}), ids[5])
	eq("scan, newest first, pages of 1", got(wire.SearchRequest{Source: "scan", Order: wire.OrderNewest, Limit: 1}), ids[5], ids[3], ids[1])
	eq("text and state", got(wire.SearchRequest{Query: "invoice", State: wire.StateQueued, Limit: 2}), ids[0], ids[1], ids[2], ids[3], ids[5])
	resp, err := e.c.Search(ctx, wire.SearchRequest{Query: "quarterly"})
	if err != nil || len(resp.Messages) != 1 || resp.Messages[0].Subject != "Quarterly Report" {
		t.Fatalf("search result view: %+v %v", resp, err)
	}
	_, err = e.c.Search(ctx, wire.SearchRequest{Source: "fax"})
	wantCode(t, err, wire.CodeInvalidArgument, "unknown source")
	_, err = e.c.Search(ctx, wire.SearchRequest{Order: "sideways"})
	wantCode(t, err, wire.CodeInvalidArgument, "unknown order")

	w, err := e.c.Waiting(ctx)
	if err != nil || w.Accounts["m365"] != 6 {
		t.Fatalf("waiting: %+v %v", w, err)
	}
	// fakeInfo has no scan files or config: a clear "needs the daemon".
	_, err = e.c.ScanFiles(ctx, "", 0)
	wantCode(t, err, wire.CodeUnavailable, "running daemon")
	_, err = e.c.Config(ctx)
	wantCode(t, err, wire.CodeUnavailable, "running daemon")
}
