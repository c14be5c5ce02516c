package delivery

import (
	"strings"
	"testing"

	"github.com/spoold/spoold/delivery/smtpfake"
	"github.com/spoold/spoold/spool"
)

// TestChunkingSameMessage: an upstream offering CHUNKING (RFC 3030) gets the
// body in BDAT chunks, one without it gets DATA, and both receive the same
// bytes: lines starting with a dot, a lone dot, and a body spanning several
// chunks, and bare LFs, which both turn into CRLF.
func TestChunkingSameMessage(t *testing.T) {
	if bdatChunkSize == 0 {
		// Off in production (see bdatChunkSize); the path stays tested.
		bdatChunkSize = 256 << 10
		t.Cleanup(func() { bdatChunkSize = 0 })
	}
	body := simpleBody + ".leading dot\r\n.\r\n..\r\nbare\nLF\n.dot after a bare LF\r\n" + strings.Repeat("0123456789 line of a scanned PDF's base64\r\n", 3*bdatChunkSize/44) + "last line\r\n"
	var got []string
	for _, tc := range []struct {
		name       string
		noChunking bool
	}{{"offered", false}, {"not offered", true}} {
		t.Run(tc.name, func(t *testing.T) {
			h := newHarness(t, hopt{
				up:      smtpfake.Options{TLS: "implicit", NoChunking: tc.noChunking},
				account: func(a *AccountConfig) { a.TLS = "implicit"; a.MaxConnections = 1 },
			})
			id := h.sp.add(spool.EnqueueRequest{From: "alice@office.example", To: []string{"bob@dest.example"}, Account: "m365",
				Source: spool.Source{Kind: spool.SourceSMTP}}, body)
			h.waitState(id, spool.StateDelivered)
			msgs := h.up.Messages()
			if len(msgs) != 1 {
				t.Fatalf("upstream got %d messages, want 1", len(msgs))
			}
			got = append(got, string(msgs[0].Data))
			bdat, data := h.up.Commands("BDAT"), h.up.Commands("DATA")
			if tc.noChunking && (bdat != 0 || data != 1) {
				t.Errorf("%d BDAT, %d DATA; want DATA only", bdat, data)
			}
			if !tc.noChunking && (bdat < 3 || data != 0) {
				t.Errorf("%d BDAT, %d DATA; want several BDAT chunks and no DATA", bdat, data)
			}
		})
	}
	if len(got) == 2 && got[0] != got[1] {
		t.Errorf("BDAT delivered %d bytes, DATA %d; want the same message", len(got[0]), len(got[1]))
	}
	if len(got) == 2 && !strings.Contains(got[0], "\r\n.leading dot\r\n.\r\n..\r\n") {
		t.Errorf("the upstream did not get the dot lines unchanged")
	}
	for i, g := range got {
		if !strings.Contains(g, "\r\nbare\r\nLF\r\n.dot after a bare LF\r\n") {
			t.Errorf("message %d: bare LFs not sent as CRLF", i+1)
		}
	}
}
