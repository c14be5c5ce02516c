package pgspool_test

import (
	"bytes"
	"context"
	"fmt"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/spoold/spoold/spool"
	"github.com/spoold/spoold/spool/pgspool"
	"github.com/spoold/spoold/spool/pgspool/pgtest"
)

// BenchmarkEnqueue measures durable enqueues of 4 KB bodies with 1, 16 and
// 64 concurrent callers, as spool's BenchmarkEnqueue does for bbolt (each
// commit waits for the WAL flush; PostgreSQL shares flushes between
// concurrent commits).
func BenchmarkEnqueue(b *testing.B) {
	cluster := pgtest.Start(b)
	body := bytes.Repeat([]byte("0123456789abcdef"), 256) // 4 KB
	r := spool.EnqueueRequest{From: "scanner@example.com", To: []string{"a@example.com"}, Account: "bench"}
	for _, conc := range []int{1, 16, 64} {
		b.Run(fmt.Sprintf("conc=%d", conc), func(b *testing.B) {
			s := openBench(b, cluster.NewSchema(b), int32(conc))
			ctx := context.Background()
			var next atomic.Int64
			var wg sync.WaitGroup
			b.SetBytes(int64(len(body)))
			b.ResetTimer()
			start := time.Now()
			for g := 0; g < conc; g++ {
				wg.Add(1)
				go func() {
					defer wg.Done()
					for next.Add(1) <= int64(b.N) {
						if _, err := s.Enqueue(ctx, r, bytes.NewReader(body)); err != nil {
							b.Error(err)
							return
						}
					}
				}()
			}
			wg.Wait()
			b.ReportMetric(float64(b.N)/time.Since(start).Seconds(), "msgs/s")
		})
	}
}

func openBench(b *testing.B, dsn string, conns int32) *pgspool.Spool {
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	s, err := pgspool.Open(ctx, pgspool.Options{DSN: dsn, RescueInterval: -1, Logger: quiet, MaxConns: conns + 2})
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { s.Close() })
	return s
}
