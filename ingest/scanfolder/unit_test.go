package scanfolder

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"slices"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/emersion/go-message/mail"

	"github.com/spoold/spoold/spool"
)

func TestPageCounterAcrossChunks(t *testing.T) {
	pdf := sample(t, "sample.pdf")
	for chunk := 1; chunk <= len(pdf); chunk += 7 {
		sum, _, pages, err := scanPass(&chunkReader{b: pdf, n: chunk}, int64(len(pdf)))
		if err != nil || pages != 2 || len(sum) != 64 {
			t.Fatalf("chunk %d: pages %d err %v", chunk, pages, err)
		}
	}
	if _, _, pages, _ := scanPass(bytes.NewReader(sample(t, "sample.jpg")), int64(len(sample(t, "sample.jpg")))); pages != 0 {
		t.Errorf("JPEG has %d pages, want 0 (unknown)", pages)
	}
	// A file that grew or shrank between stat and read is "changed".
	if _, _, _, err := scanPass(bytes.NewReader(pdf), int64(len(pdf)-1)); err != errFileChanged {
		t.Errorf("grown file: %v", err)
	}
	if _, _, _, err := scanPass(bytes.NewReader(pdf), int64(len(pdf)+1)); err != errFileChanged {
		t.Errorf("shrunk file: %v", err)
	}
}

type chunkReader struct {
	b []byte
	n int
}

func (c *chunkReader) Read(p []byte) (int, error) {
	if len(c.b) == 0 {
		return 0, io.EOF
	}
	k := copy(p[:min(len(p), c.n)], c.b)
	c.b = c.b[k:]
	return k, nil
}

func TestContentType(t *testing.T) {
	cases := []struct {
		name string
		head []byte
		want string
	}{
		{"a.PDF", nil, "application/pdf"},
		{"a.tif", nil, "image/tiff"},
		{"a.JPEG", nil, "image/jpeg"},
		{"noext", []byte("%PDF-1.4"), "application/pdf"},
		{"noext", []byte{0xff, 0xd8, 0xff, 0xe0}, "image/jpeg"},
		{"noext", []byte{0, 1, 2, 3, 0xfe}, "application/octet-stream"},
	}
	for _, c := range cases {
		if got := contentType(c.name, c.head); got != c.want {
			t.Errorf("contentType(%q) = %q, want %q", c.name, got, c.want)
		}
	}
}

func TestEncodedSizeIsAnUpperBound(t *testing.T) {
	for _, n := range []int{1, 57, 1000, 100_000} {
		file := bytes.Repeat([]byte{0xAB}, n)
		text := strings.Repeat("é", 300)
		hdr := msgHeader{from: mail.Address{Name: "A Long Display Name", Address: "a@example.com"}, to: []string{"b@example.com"},
			subject: strings.Repeat("Subject ", 40), date: time.Unix(0, 0), messageID: "x@y"}
		var b bytes.Buffer
		if err := writeScanMessage(&b, hdr, text, "a file name that is fairly long.pdf", "application/pdf", bytes.NewReader(file)); err != nil {
			t.Fatal(err)
		}
		est := encodedSize(int64(n), len(text))
		if int64(b.Len()) > est || est > int64(b.Len())+headerOverhead+3*int64(len(text)) {
			t.Errorf("n=%d: actual %d, estimate %d", n, b.Len(), est)
		}
	}
}

func TestCheckAddress(t *testing.T) {
	good := []string{"alice@example.com", "a.b+tag@sub.example.org", "ü@bücher.example"}
	bad := []string{"", "alice", "@example.com", "alice@", "Alice <alice@example.com>", "a@b.com\r\nBcc: c@d",
		"a b@example.com", "a@example.com.", "a@.example.com", "a@b,c@d", strings.Repeat("a", 250) + "@b.com", "a\x00@b.com"}
	for _, a := range good {
		if _, err := checkAddress(a); err != nil {
			t.Errorf("%q refused: %v", a, err)
		}
	}
	for _, a := range bad {
		if _, err := checkAddress(a); err == nil {
			t.Errorf("%q accepted", a)
		}
	}
}

func TestParseSidecarStrict(t *testing.T) {
	bad := map[string]string{
		"unknown field": `{"to":"a@b.example","bcc":"c@d.example"}`,
		"trailing":      `{"to":"a@b.example"} x`,
		"crlf subject":  `{"subject":"a\r\nb"}`,
		"bad address":   `{"to":["not an address"]}`,
		"long subject":  `{"subject":"` + strings.Repeat("x", maxSubjectLen+1) + `"}`,
		"nul body":      `{"body":"a\u0000b"}`,
		"not json":      `to: a@b.example`,
		"to number":     `{"to":5}`,
	}
	for name, s := range bad {
		if _, err := ParseSidecar([]byte(s)); err == nil {
			t.Errorf("%s: accepted %s", name, s)
		}
	}
	sc, err := ParseSidecar([]byte(`{"to":"a@b.example","cc":["c@d.example","e@f.example"],"subject":"S","body":"line1\r\nline2\n"}`))
	if err != nil || !slices.Equal(sc.To, []string{"a@b.example"}) || len(sc.Cc) != 2 || sc.Subject != "S" {
		t.Errorf("good sidecar: %+v, %v", sc, err)
	}
}

func TestIgnoredNames(t *testing.T) {
	for _, n := range []string{".x.pdf", "~$doc.pdf", "a.TMP", "a.pdf.part", "a.pdf.json"} {
		if !ignoredName(n) {
			t.Errorf("%q not ignored", n)
		}
	}
	for _, n := range []string{"a.pdf", "scan 1.tiff", "json.pdf"} {
		if ignoredName(n) {
			t.Errorf("%q ignored", n)
		}
	}
	for _, p := range []string{"processed/a.pdf", "failed/x/a.pdf", ".git/a.pdf", "u@x.com/.cache/a.pdf"} {
		if !ignoredPath(p) {
			t.Errorf("%q not ignored", p)
		}
	}
	if ignoredPath("u@x.com/processed/a.pdf") {
		t.Error("a user's own processed/ subfolder is not the folder's processed/")
	}
}

// benchEnqueuer records when each path was committed.
type benchEnqueuer struct {
	Enqueuer
	done chan string
}

func (b *benchEnqueuer) Enqueue(ctx context.Context, req spool.EnqueueRequest, body io.Reader) (string, error) {
	id, err := b.Enqueuer.Enqueue(ctx, req, body)
	if err == nil {
		b.done <- req.Source.Path
	}
	return id, err
}

// discardSpool is the cheapest Enqueuer: reads the body, keeps keys only.
type discardSpool struct{ *fakeSpool }

func (d discardSpool) Enqueue(ctx context.Context, req spool.EnqueueRequest, body io.Reader) (string, error) {
	if _, err := io.Copy(io.Discard, body); err != nil {
		return "", err
	}
	return "x", nil
}

func benchEnq(b *testing.B, real bool) Enqueuer {
	if !real {
		return discardSpool{newFakeSpool()}
	}
	s := openSpool(b, b.TempDir())
	b.Cleanup(func() { s.Close() })
	return s
}

// BenchmarkStableToEnqueue measures, per file, the time from the end of its
// quiet period (last write + QuietPeriod) to Enqueue returning; it reports
// p50/p99 in ms. Quiet period 200ms.
func BenchmarkStableToEnqueue(b *testing.B) {
	for _, real := range []bool{false, true} {
		b.Run(map[bool]string{false: "fake", true: "spool"}[real], func(b *testing.B) {
			be := &benchEnqueuer{Enqueuer: benchEnq(b, real), done: make(chan string, 16)}
			env := start(b, be, func(c *FolderConfig) { c.AfterSuccess = AfterDelete }, nil)
			quiet := 200 * time.Millisecond
			var lat []time.Duration
			data := append(bytes.Repeat([]byte("%PDF-1.4 "), 10_000), "\n%%EOF\n"...) // ~90 KB
			b.ResetTimer()
			for i := 0; i < b.N; i++ {
				rel := fmt.Sprintf("b@example.com/s%06d.pdf", i)
				env.write(rel, data)
				written := time.Now()
				select {
				case got := <-be.done:
					if got != rel {
						b.Fatalf("got %s, want %s", got, rel)
					}
				case <-time.After(waitLong):
					b.Fatal("timeout")
				}
				lat = append(lat, time.Since(written)-quiet)
			}
			b.StopTimer()
			sort.Slice(lat, func(i, j int) bool { return lat[i] < lat[j] })
			b.ReportMetric(float64(lat[len(lat)/2].Microseconds())/1000, "p50-ms")
			b.ReportMetric(float64(lat[(len(lat)*99)/100].Microseconds())/1000, "p99-ms")
		})
	}
}

// BenchmarkBurst1000 drops 1,000 small files at once and reports files/s
// from the end of the quiet period to the last Enqueue.
func BenchmarkBurst1000(b *testing.B) {
	for _, real := range []bool{false, true} {
		b.Run(map[bool]string{false: "fake", true: "spool"}[real], func(b *testing.B) {
			for i := 0; i < b.N; i++ {
				be := &benchEnqueuer{Enqueuer: benchEnq(b, real), done: make(chan string, 1000)}
				dir := b.TempDir()
				// Files are written before Start so the burst is timed from
				// one common moment: the initial rescan plus the quiet period.
				for j := 0; j < 1000; j++ {
					p := filepath.Join(dir, fmt.Sprintf("u%d@example.com", j%10), fmt.Sprintf("f%04d.pdf", j))
					os.MkdirAll(filepath.Dir(p), 0o755)
					os.WriteFile(p, []byte(fmt.Sprintf("%%PDF-1.4 burst %d\n%%%%EOF\n", j)), 0o644)
				}
				quiet := 200 * time.Millisecond
				t0 := time.Now()
				env := startIn(b, dir, be, nil, nil)
				for j := 0; j < 1000; j++ {
					select {
					case <-be.done:
					case <-time.After(60 * time.Second):
						b.Fatalf("only %d of 1000 enqueued", j)
					}
				}
				elapsed := time.Since(t0) - quiet
				env.w.Close()
				b.ReportMetric(1000/elapsed.Seconds(), "files/s")
			}
		})
	}
}

// Reported defect (issue 15): a sidecar typo got no did-you-mean although
// the config checker has one.
func TestSidecarUnknownKeySuggests(t *testing.T) {
	for _, c := range []struct{ json, want string }{
		{`{"subjet":"Report"}`, `unknown key "subjet" (did you mean "subject"?)`},
		{`{"to":"a@b.example","CC ":"c@d.example"}`, `unknown key "CC " (did you mean "cc"?)`},
		{`{"recipients":"a@b.example"}`, `unknown key "recipients": known keys are to, cc, subject, body`},
	} {
		_, err := ParseSidecar([]byte(c.json))
		if err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%s: error %v, want it to contain %q", c.json, err, c.want)
		}
	}
}
