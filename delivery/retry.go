package delivery

import (
	"math"
	"time"

	"github.com/cenkalti/backoff/v4"

	"github.com/spoold/spoold/configs/field"
)

// Jitter of RetryPolicy and OutagePolicy. A zero Jitter is "not set" and
// takes DefaultJitter (so a YAML file that leaves it out and one that says
// "jitter: 0" mean the same); NoJitter ("jitter: -1") turns jitter off. The
// two policies share this rule through backoffShape.
const (
	DefaultJitter = 0.2
	NoJitter      = -1.0
)

// maxMultiplier bounds a schedule's growth; a larger value is a typo.
const maxMultiplier = 100

// backoffShape is the part RetryPolicy and OutagePolicy share: one home for
// their defaults and their checks, so the two cannot drift apart.
type backoffShape struct {
	first      time.Duration
	multiplier float64
	max        time.Duration
	jitter     float64
}

// withDefaults fills zero fields from def. A zero max is def's, or first
// when that is longer (a first delay of 2h with the default max of 1h means
// "every 2h", not an error).
func (b backoffShape) withDefaults(def backoffShape) backoffShape {
	if b.first == 0 {
		b.first = def.first
	}
	if b.multiplier == 0 {
		b.multiplier = def.multiplier
	}
	if b.max == 0 {
		b.max = max(def.max, b.first)
	}
	if b.jitter == 0 {
		b.jitter = def.jitter
	}
	return b
}

// validate adds the problems of a defaulted shape under the policy's keys.
func (b backoffShape) validate(ps *field.Problems, firstKey, maxKey string) {
	if b.first < 0 {
		ps.Add(firstKey, "%s is negative: want a duration, or 0 for the default", b.first)
	}
	if b.multiplier < 1 || b.multiplier > maxMultiplier || math.IsNaN(b.multiplier) {
		ps.Add("multiplier", "%v: want 1 to %d, or 0 for the default", b.multiplier, maxMultiplier)
	}
	if b.max < 0 {
		ps.Add(maxKey, "%s is negative: want a duration, or 0 for the default", b.max)
	} else if b.first > 0 && b.max < b.first {
		ps.Add(maxKey, "%s is shorter than %s %s", b.max, firstKey, b.first)
	}
	if b.jitter != NoJitter && (b.jitter < 0 || b.jitter > 1 || math.IsNaN(b.jitter)) {
		ps.Add("jitter", "%v: want a fraction from 0 to 1 (0 = the default %v), or -1 for no jitter", b.jitter, DefaultJitter)
	}
}

// RetryPolicy is the retry schedule of an account. Zero fields take the
// defaults noted (Postfix-like: first retry soon, doubling, capped, 5 days).
type RetryPolicy struct {
	First      time.Duration // first retry delay; default 1m
	Multiplier float64       // growth per attempt, 1..100; default 2
	Max        time.Duration // longest delay; default 1h (or First, if longer)
	Jitter     float64       // ± fraction, 0..1; default 0.2; NoJitter (-1) = none
	Lifetime   time.Duration // after this age the message is dead; default 5 days
}

// DefaultRetryPolicy returns the schedule of DESIGN.md section 5.
func DefaultRetryPolicy() RetryPolicy {
	return RetryPolicy{First: time.Minute, Multiplier: 2, Max: time.Hour, Jitter: DefaultJitter, Lifetime: 5 * 24 * time.Hour}
}

func (p RetryPolicy) shape() backoffShape {
	return backoffShape{first: p.First, multiplier: p.Multiplier, max: p.Max, jitter: p.Jitter}
}

// WithDefaults returns p with its zero fields set from DefaultRetryPolicy.
// It is idempotent and leaves out-of-range values for Validate.
func (p RetryPolicy) WithDefaults() RetryPolicy {
	def := DefaultRetryPolicy()
	s := p.shape().withDefaults(def.shape())
	p.First, p.Multiplier, p.Max, p.Jitter = s.first, s.multiplier, s.max, s.jitter
	if p.Lifetime == 0 {
		p.Lifetime = def.Lifetime
	}
	return p
}

// Validate reports what is wrong with p as it would run (defaults
// applied), keyed first, multiplier, max, jitter and lifetime.
func (p RetryPolicy) Validate() error {
	p = p.WithDefaults()
	var ps field.Problems
	p.shape().validate(&ps, "first", "max")
	if p.Lifetime < 0 {
		ps.Add("lifetime", "%s is negative: want a duration, or 0 for the default", p.Lifetime)
	}
	return ps.Err()
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
	p = p.WithDefaults() // New validated the engine's policies; other callers get the defaults at least
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
		p.Jitter = min(p.Jitter, 1) // never a negative delay
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
