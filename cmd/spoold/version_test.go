package main

import (
	"context"
	"log/slog"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/spoold/spoold/spool"
)

type noStats struct{}

func (noStats) Stats(context.Context) (map[spool.State]int, error) { return nil, nil }

// A test binary carries no -X stamp: the version falls back to the
// toolchain's build info and is never empty.
func TestVersionWithoutStamp(t *testing.T) {
	b := readBuildInfo()
	if b.Version == "" || b.Go == "" || b.Platform == "" {
		t.Fatalf("readBuildInfo() = %+v", b)
	}
	if v := version(); !strings.HasPrefix(v, b.Version) {
		t.Fatalf("version() = %q, want prefix %q", v, b.Version)
	}
}

func TestBuildInfoMetric(t *testing.T) {
	c := newQueueCollector(noStats{}, slog.New(slog.DiscardHandler), time.Now())
	c.buildInfo = buildInfo{Version: "1.2.3", Commit: "abc", Date: "2026-01-02T03:04:05Z", Go: "go1.26", Platform: "linux/arm64"}
	reg := prometheus.NewPedanticRegistry()
	reg.MustRegister(c)
	want := `# HELP spoold_build_info Build of the running spoold (value 1): version, commit, build date, Go version, platform.
# TYPE spoold_build_info gauge
spoold_build_info{commit="abc",date="2026-01-02T03:04:05Z",goversion="go1.26",platform="linux/arm64",version="1.2.3"} 1
`
	if err := testutil.GatherAndCompare(reg, strings.NewReader(want), "spoold_build_info"); err != nil {
		t.Fatal(err)
	}
}
