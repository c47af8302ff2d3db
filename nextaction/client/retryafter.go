package client

import "time"

// ParseRetryAfter reads a Retry-After header value, delay seconds or an
// HTTP date (relative to now), as a duration; anything else is 0. It is
// how APIError.RetryAfter is read, for callers that speak to other
// OpenAI-compatible servers.
func ParseRetryAfter(v string, now time.Time) time.Duration { return retryAfter(v, now) }
