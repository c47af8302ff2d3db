package server

import (
	"fmt"
	"math"
	"sync"
	"time"
)

// rateLimitError is a request over its client's rate (429).
type rateLimitError struct{ retryAfter time.Duration }

func (e *rateLimitError) Error() string {
	return fmt.Sprintf("rate limit exceeded: retry after %s", e.retryAfter)
}

// maxBuckets bounds the limiter's memory: past it, buckets that refilled
// completely (clients idle long enough to be forgotten) are dropped.
const maxBuckets = 10000

// rateLimiter is a token bucket per client: rate requests per second, up to
// burst at once. Goroutine-safe.
type rateLimiter struct {
	now     func() time.Time
	mu      sync.Mutex
	buckets map[string]*bucket
}

type bucket struct {
	tokens float64
	last   time.Time
	rate   float64
	burst  float64
}

func newRateLimiter(now func() time.Time) *rateLimiter {
	return &rateLimiter{now: now, buckets: map[string]*bucket{}}
}

// burstFor is the bucket size: burst, or the rate rounded up (at least 1).
func burstFor(rate float64, burst int) float64 {
	if burst > 0 {
		return float64(burst)
	}
	return max(1, math.Ceil(rate))
}

// allow takes a token from id's bucket. When none is left it reports when
// one will be, in whole seconds (at least one). rate <= 0 allows all.
func (l *rateLimiter) allow(id string, rate float64, burst int) (bool, time.Duration) {
	if rate <= 0 {
		return true, 0
	}
	now := l.now()
	size := burstFor(rate, burst)
	l.mu.Lock()
	defer l.mu.Unlock()
	b := l.buckets[id]
	if b == nil {
		if len(l.buckets) >= maxBuckets {
			l.pruneLocked(now)
		}
		b = &bucket{tokens: size, last: now}
		l.buckets[id] = b
	}
	b.rate, b.burst = rate, size
	b.tokens = min(size, b.tokens+now.Sub(b.last).Seconds()*rate)
	b.last = now
	if b.tokens >= 1 {
		b.tokens--
		return true, 0
	}
	wait := (1 - b.tokens) / rate
	return false, time.Duration(math.Ceil(wait)) * time.Second
}

func (l *rateLimiter) pruneLocked(now time.Time) {
	for id, b := range l.buckets {
		if b.tokens+now.Sub(b.last).Seconds()*b.rate >= b.burst {
			delete(l.buckets, id)
		}
	}
}
