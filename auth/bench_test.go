package auth_test

import (
	"context"
	"testing"
)

// BenchmarkAccessTokenCached measures the hot path delivery takes for every
// connection: a valid token from memory, many goroutines at once.
func BenchmarkAccessTokenCached(b *testing.B) {
	e := newEnv(b)
	m := e.start()
	if _, err := e.browserLogin(testAccount); err != nil {
		b.Fatal(err)
	}
	ctx := context.Background()
	b.ReportAllocs()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			if _, err := m.AccessToken(ctx, testAccount); err != nil {
				b.Error(err)
				return
			}
		}
	})
}
