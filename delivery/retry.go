package delivery

import (
	"math"
	"time"

	"github.com/cenkalti/backoff/v4"
)

// RetryPolicy is the retry schedule of an account. Zero fields take the
// defaults noted (Postfix-like: first retry soon, doubling, capped, 5 days).
type RetryPolicy struct {
	First      time.Duration // first retry delay; default 1m
	Multiplier float64       // growth per attempt; default 2
	Max        time.Duration // longest delay; default 1h
	Jitter     float64       // ± fraction, 0..1; default 0.2 (negative = none)
	Lifetime   time.Duration // after this age the message is dead; default 5 days
}

// DefaultRetryPolicy returns the schedule of DESIGN.md section 5.
func DefaultRetryPolicy() RetryPolicy {
	return RetryPolicy{First: time.Minute, Multiplier: 2, Max: time.Hour, Jitter: 0.2, Lifetime: 5 * 24 * time.Hour}
}

func (p RetryPolicy) withDefaults() RetryPolicy {
	def := DefaultRetryPolicy()
	if p.First <= 0 {
		p.First = def.First
	}
	if p.Multiplier < 1 || math.IsNaN(p.Multiplier) || math.IsInf(p.Multiplier, 0) {
		p.Multiplier = def.Multiplier
	}
	if p.Max <= 0 {
		p.Max = def.Max
	}
	if p.Max < p.First {
		p.Max = p.First
	}
	switch {
	case p.Jitter == 0:
		p.Jitter = def.Jitter
	case p.Jitter < 0 || math.IsNaN(p.Jitter):
		p.Jitter = 0
	case p.Jitter > 1:
		p.Jitter = 1
	}
	if p.Lifetime <= 0 {
		p.Lifetime = def.Lifetime
	}
	return p
}

// fixedClock pins the backoff's clock; we never use its elapsed-time limit.
type fixedClock struct{ t time.Time }

func (c fixedClock) Now() time.Time { return c.t }

// NextRetry is the retry schedule as a pure function. attempts is the stored
// attempt count including the attempt that just failed (>= 1); created is the
// message's creation time; rnd returns a value in [0,1) for the jitter.
//
// The base delay is the attempts-th interval of an exponential backoff built
// fresh from p (cenkalti/backoff/v4 parameters, no jitter, no MaxElapsedTime),
// so a restart computes the same schedule. The jitter is applied with rnd.
// The next attempt never lies past created+Lifetime: the last try happens at
// the end of the lifetime, and a failure at or after it is expired.
func NextRetry(p RetryPolicy, attempts int, created, now time.Time, rnd func() float64) (next time.Time, expired bool) {
	p = p.withDefaults()
	deadline := created.Add(p.Lifetime)
	if !now.Before(deadline) {
		return time.Time{}, true
	}
	if attempts < 1 {
		attempts = 1
	}
	b := &backoff.ExponentialBackOff{
		InitialInterval:     p.First,
		RandomizationFactor: 0,
		Multiplier:          p.Multiplier,
		MaxInterval:         p.Max,
		MaxElapsedTime:      0,
		Stop:                backoff.Stop,
		Clock:               fixedClock{now},
	}
	b.Reset()
	d := p.First
	for i := 0; i < attempts; i++ {
		d = b.NextBackOff()
		if d >= p.Max {
			d = p.Max
			break
		}
	}
	if p.Jitter > 0 && rnd != nil {
		r := rnd()
		if r < 0 || r >= 1 || math.IsNaN(r) {
			r = 0.5
		}
		// Same formula as backoff's randomization: uniform in [d-δ, d+δ].
		delta := p.Jitter * float64(d)
		d = time.Duration(float64(d) - delta + r*2*delta)
	}
	if d < time.Second {
		d = time.Second
	}
	next = now.Add(d)
	if next.After(deadline) {
		next = deadline
	}
	return next, false
}
