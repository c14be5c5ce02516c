package delivery

import (
	"bufio"
	"context"
	"crypto/sha256"
	"encoding/base64"
	"fmt"
	"io"
	"math/rand/v2"
	"os"
	"os/exec"
	"runtime"
	"runtime/debug"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/spoold/spoold/spool"
)

// graphScanMB is the scan TestGraphLargeMessageMemory sends: Microsoft's
// default message size limit, as a PDF.
const graphScanMB = 35

// TestGraphLargeMessageMemory sends a 35 MB scan through the Graph draft
// path in a child process (a clean peak RSS) and asserts that its peak
// RSS rose by less than 16 MB: the attachment is streamed from the spooled
// body, never held. The figure includes the fake Graph server and the
// spool's ingest, which run in the same process.
func TestGraphLargeMessageMemory(t *testing.T) {
	if os.Getenv("SPOOLD_GRAPH_MEM_CHILD") == "1" {
		graphMemChild(t)
		return
	}
	if raceEnabled {
		t.Skip("memory is not measured under the race detector")
	}
	if testing.Short() {
		t.Skip("sends 35 MB")
	}
	cmd := exec.Command(os.Args[0], "-test.run=^TestGraphLargeMessageMemory$", "-test.v")
	cmd.Env = append(os.Environ(), "SPOOLD_GRAPH_MEM_CHILD=1")
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("child: %v\n%s", err, out)
	}
	var rss, heap int64
	for _, line := range strings.Split(string(out), "\n") {
		if rest, ok := strings.CutPrefix(strings.TrimSpace(line), "GRAPHMEM "); ok {
			fmt.Sscanf(rest, "rss_rise=%d heap_rise=%d", &rss, &heap)
		}
	}
	if rss == 0 && heap == 0 {
		t.Fatalf("child reported no figures:\n%s", out)
	}
	t.Logf("%d MB scan through the Graph draft path: peak RSS rose %.1f MB, peak heap in use rose %.1f MB", graphScanMB, float64(rss)/(1<<20), float64(heap)/(1<<20))
	if rss >= 16<<20 {
		t.Errorf("peak RSS rose %.1f MB sending a %d MB scan; want under 16 MB", float64(rss)/(1<<20), graphScanMB)
	}
}

func graphMemChild(t *testing.T) {
	h := newGraphHarness(t, nil)
	h.g.SetKeepData(false)
	runtime.GC()
	debug.FreeOSMemory()
	base := procStatus(t, "VmRSS")
	// Writing 5 to clear_refs resets the peak RSS to the current RSS
	// (proc(5)), so VmHWM measures from here.
	if err := os.WriteFile("/proc/self/clear_refs", []byte("5"), 0); err != nil {
		t.Logf("cannot reset the peak RSS (%v): the figure includes the set-up", err)
	}
	var ms runtime.MemStats
	runtime.ReadMemStats(&ms)
	heapBase := int64(ms.HeapInuse)
	var heapPeak atomic.Int64
	stop := make(chan struct{})
	sampled := make(chan struct{})
	go func() {
		defer close(sampled)
		tk := time.NewTicker(5 * time.Millisecond)
		defer tk.Stop()
		for {
			var m runtime.MemStats
			runtime.ReadMemStats(&m)
			if v := int64(m.HeapInuse); v > heapPeak.Load() {
				heapPeak.Store(v)
			}
			select {
			case <-stop:
				return
			case <-tk.C:
			}
		}
	}()
	body, sum := scanStream(graphScanMB * 1000 * 1000)
	id, err := h.sp.Enqueue(context.Background(), spool.EnqueueRequest{From: "alice@office.example", To: []string{"bob@dest.example"},
		Account: "m365", Source: spool.Source{Kind: spool.SourceScan}}, body)
	if err != nil {
		t.Fatal(err)
	}
	realWait(t, h.sp, id, func(m *spool.Message) bool { return m.State == spool.StateDelivered })
	close(stop)
	<-sampled
	peak := procStatus(t, "VmHWM")
	sent := h.g.Sent()
	if len(sent) != 1 || len(sent[0].Attachments) != 1 || sent[0].Attachments[0].Sum != sum() {
		t.Fatalf("the scan did not arrive whole: %+v", sent)
	}
	fmt.Printf("GRAPHMEM rss_rise=%d heap_rise=%d\n", peak-base, heapPeak.Load()-heapBase)
}

// procStatus reads a /proc/self/status field in bytes.
func procStatus(t *testing.T, key string) int64 {
	t.Helper()
	f, err := os.Open("/proc/self/status")
	if err != nil {
		t.Skipf("no /proc: %v", err)
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		if rest, ok := strings.CutPrefix(sc.Text(), key+":"); ok {
			kb, err := strconv.ParseInt(strings.TrimSuffix(strings.TrimSpace(rest), " kB"), 10, 64)
			if err != nil {
				t.Fatalf("%s: %v", key, err)
			}
			return kb << 10
		}
	}
	t.Fatalf("no %s in /proc/self/status", key)
	return 0
}

// scanStream generates a scanner's message with a PDF of size random
// bytes, without holding it: a reader, and the PDF's SHA-256 once read.
func scanStream(size int) (io.Reader, func() [32]byte) {
	pr, pw := io.Pipe()
	h := sha256.New()
	go func() {
		bw := bufio.NewWriterSize(pw, 64<<10)
		bw.WriteString("From: Scanner <alice@office.example>\r\nTo: bob@dest.example\r\nSubject: Scan 0043\r\nMIME-Version: 1.0\r\n" +
			"Content-Type: multipart/mixed; boundary=\"b1\"\r\n\r\n--b1\r\nContent-Type: text/plain\r\n\r\nYour scan is attached.\r\n" +
			"--b1\r\nContent-Type: application/pdf; name=\"scan-0043.pdf\"\r\nContent-Transfer-Encoding: base64\r\n" +
			"Content-Disposition: attachment; filename=\"scan-0043.pdf\"\r\n\r\n")
		enc := base64.NewEncoder(base64.StdEncoding, &lineWriter{w: bw})
		rng := rand.NewChaCha8([32]byte{1})
		block := make([]byte, 57*1024)
		for left := size; left > 0; left -= len(block) {
			b := block[:min(len(block), left)]
			rng.Read(b)
			h.Write(b)
			enc.Write(b)
		}
		enc.Close()
		bw.WriteString("\r\n--b1--\r\n")
		pw.CloseWithError(bw.Flush())
	}()
	return pr, func() (s [32]byte) { copy(s[:], h.Sum(nil)); return s }
}

// lineWriter breaks base64 into 76-character lines.
type lineWriter struct {
	w   io.Writer
	col int
}

func (l *lineWriter) Write(p []byte) (int, error) {
	n := len(p)
	for len(p) > 0 {
		k := min(76-l.col, len(p))
		if _, err := l.w.Write(p[:k]); err != nil {
			return 0, err
		}
		p, l.col = p[k:], l.col+k
		if l.col == 76 {
			l.w.Write([]byte("\r\n"))
			l.col = 0
		}
	}
	return n, nil
}
