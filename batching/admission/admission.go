// Package admission is nextact's admission policy as pure functions: what
// to do with a request (admit it into a free slot, queue it, or reject it
// with a reason and a Retry-After) from the scheduler's load and the last
// GPU sample, and the value types both sides share: priorities, decisions,
// reasons, the overload error and GPU telemetry samples.
//
// Every Submit is decided at once (it never blocks):
//
//   - admit: a slot is free; the request starts at the next step;
//   - queue: every slot is busy and the queue has room; the request waits,
//     highest Priority first, at most Config.MaxQueueWait;
//   - reject: an *OverloadError with a reason and a RetryAfter computed from
//     the current drain rate.
//
// The scheduler (package batching) owns the state this policy reads (its
// queue, the drain meter, eviction of lower priorities) and calls Decide
// and RetryAfter; runtime/nvml produces the GPU samples. Nothing here
// imports either.
package admission

import (
	"errors"
	"fmt"
	"math"
	"time"
)

// Priority is a request's class. Waiting requests are admitted highest class
// first, FIFO within a class. When the queue is full, a request takes the
// place of the newest waiting request of a lower class, which is dropped
// with ReasonPreempted.
type Priority int8

// Priority classes.
const (
	// PriorityLow is for bulk traffic such as load tests.
	PriorityLow Priority = -1
	// PriorityNormal is the default.
	PriorityNormal Priority = 0
	// PriorityHigh is for traffic that must not wait behind bulk traffic,
	// such as evaluation runs.
	PriorityHigh Priority = 1
)

func (p Priority) String() string {
	switch {
	case p < PriorityNormal:
		return "low"
	case p > PriorityNormal:
		return "high"
	default:
		return "normal"
	}
}

// ParsePriority reads "low", "normal" or "high".
func ParsePriority(s string) (Priority, error) {
	switch s {
	case "low":
		return PriorityLow, nil
	case "normal":
		return PriorityNormal, nil
	case "high":
		return PriorityHigh, nil
	}
	return PriorityNormal, fmt.Errorf("priority %q: want low, normal or high", s)
}

// Outcome is what admission did with a request.
type Outcome string

// Outcomes.
const (
	OutcomeAdmitted Outcome = "admitted" // straight into a free slot
	OutcomeQueued   Outcome = "queued"   // waits for a slot
	OutcomeRejected Outcome = "rejected" // refused; retry later
)

// Reasons of admission decisions. The server adds its own rejections
// (rate limits, draining) under the same Outcome.
const (
	ReasonSlotFree  = "slot_free"  // admitted
	ReasonSlotsBusy = "slots_busy" // queued
	// ReasonQueueFull: the wait queue is at capacity.
	ReasonQueueFull = "queue_full"
	// ReasonKVFull: tokens reserved by running and waiting requests would
	// exceed Config.KVOvercommit times the KV capacity.
	ReasonKVFull = "kv_full"
	// ReasonGPUMemory: GPU memory is above the high-water mark and the
	// request is longer than Config.ShortRequestTokens.
	ReasonGPUMemory = "gpu_memory"
	// ReasonGPUThrottled: a GPU is throttled (thermal or power) and the
	// request would have to wait.
	ReasonGPUThrottled = "gpu_throttled"
	// ReasonGPUStale: GPU telemetry is older than Config.StaleAfter
	// (counted as saturated) and the request would have to wait.
	ReasonGPUStale = "gpu_telemetry_stale"
	// ReasonQueueTimeout: the request waited longer than MaxQueueWait.
	ReasonQueueTimeout = "queue_timeout"
	// ReasonPreempted: a request of a higher priority took its queue place.
	ReasonPreempted = "preempted"
	// ReasonClosed: the scheduler is shutting down.
	ReasonClosed = "closed"
)

// ErrOverloaded matches every *OverloadError (errors.Is).
var ErrOverloaded = errors.New("overloaded")

// OverloadError is a request refused (or dropped from the queue) because the
// server is loaded; it may succeed after RetryAfter.
type OverloadError struct {
	Reason string
	// RetryAfter is a whole number of seconds, at least one.
	RetryAfter time.Duration
}

func (e *OverloadError) Error() string {
	return fmt.Sprintf("overloaded (%s): retry after %s", e.Reason, e.RetryAfter)
}

// Is makes errors.Is(err, ErrOverloaded) hold.
func (e *OverloadError) Is(target error) bool { return target == ErrOverloaded }

// Defaults of Config's zero fields.
const (
	DefaultMaxQueueWait       = 60 * time.Second
	DefaultKVOvercommit       = 4.0
	DefaultGPUMemoryHighWater = 0.95
	DefaultShortRequestTokens = 1024
	DefaultStaleAfter         = 5 * time.Second
	DefaultMaxRetryAfter      = 60 * time.Second
)

// Config holds the admission thresholds. Zero fields take the Default*
// values.
type Config struct {
	// MaxQueueWait bounds how long a request waits for a slot; one waiting
	// longer is dropped (ReasonQueueTimeout). Negative: no bound.
	MaxQueueWait time.Duration
	// KVOvercommit bounds the tokens reserved (prompt plus max_tokens of
	// every running and waiting request) to this multiple of the KV
	// capacity (slots x context per slot). At least 1.
	KVOvercommit float64
	// GPUMemoryHighWater is the fraction of a GPU's memory in use above
	// which only short requests are admitted. In (0, 1].
	GPUMemoryHighWater float64
	// ShortRequestTokens: a request of at most this many tokens (prompt
	// plus max_tokens) is short.
	ShortRequestTokens int
	// StaleAfter: a GPU sample older than this counts as saturated.
	StaleAfter time.Duration
	// IgnoreThrottle admits as if no GPU were throttled.
	IgnoreThrottle bool
	// MaxRetryAfter caps the Retry-After of rejections.
	MaxRetryAfter time.Duration
}

// WithDefaults returns c with its zero fields set to the Default* values.
func (c Config) WithDefaults() Config {
	if c.MaxQueueWait == 0 {
		c.MaxQueueWait = DefaultMaxQueueWait
	}
	if c.KVOvercommit == 0 {
		c.KVOvercommit = DefaultKVOvercommit
	}
	if c.GPUMemoryHighWater == 0 {
		c.GPUMemoryHighWater = DefaultGPUMemoryHighWater
	}
	if c.ShortRequestTokens == 0 {
		c.ShortRequestTokens = DefaultShortRequestTokens
	}
	if c.StaleAfter == 0 {
		c.StaleAfter = DefaultStaleAfter
	}
	if c.MaxRetryAfter == 0 {
		c.MaxRetryAfter = DefaultMaxRetryAfter
	}
	return c
}

// Validate reports the first field out of range (zero fields are valid:
// they take the defaults).
func (c Config) Validate() error {
	switch {
	case c.KVOvercommit != 0 && c.KVOvercommit < 1:
		return fmt.Errorf("KV overcommit must be at least 1, got %g", c.KVOvercommit)
	case c.GPUMemoryHighWater < 0 || c.GPUMemoryHighWater > 1:
		return fmt.Errorf("GPU memory high-water mark must be in (0, 1], got %g", c.GPUMemoryHighWater)
	case c.ShortRequestTokens < 0:
		return fmt.Errorf("short request tokens must not be negative, got %d", c.ShortRequestTokens)
	case c.StaleAfter < 0:
		return fmt.Errorf("GPU stale-after must not be negative, got %s", c.StaleAfter)
	case c.MaxRetryAfter < 0:
		return fmt.Errorf("max retry-after must not be negative, got %s", c.MaxRetryAfter)
	}
	return nil
}

// Load is the scheduler's load as admission sees it.
type Load struct {
	Slots, Running, Waiting, QueueSize int
	// ReservedTokens is prompt plus max_tokens of every running and waiting
	// request; CapacityTokens is slots x context per slot.
	ReservedTokens, CapacityTokens int
}

// Decision is one admission decision.
type Decision struct {
	Outcome  Outcome
	Reason   string
	Priority Priority
}

// Decide is the admission policy: need is the request's prompt plus
// max_tokens, gpuOK whether telemetry is available. The order: KV
// reservation over KVOvercommit x capacity rejects (kv_full); GPU memory
// above the high-water mark rejects requests longer than
// ShortRequestTokens (gpu_memory); a free slot admits; a throttled GPU or
// stale telemetry rejects what would have to wait (gpu_throttled,
// gpu_telemetry_stale); a queue with room queues; else queue_full.
func (c Config) Decide(need int, ld Load, gpu GPUSample, gpuOK bool, now time.Time) Decision {
	c = c.WithDefaults()
	reject := func(reason string) Decision { return Decision{Outcome: OutcomeRejected, Reason: reason} }
	// Summed as floats: a caller's need near the integer maximum must not
	// wrap into a small reservation.
	if float64(ld.ReservedTokens)+float64(need) > c.KVOvercommit*float64(ld.CapacityTokens) {
		return reject(ReasonKVFull)
	}
	saturated := ""
	if gpuOK {
		if need > c.ShortRequestTokens && gpu.MemoryFraction() >= c.GPUMemoryHighWater {
			return reject(ReasonGPUMemory)
		}
		switch {
		case now.Sub(gpu.At) > c.StaleAfter:
			saturated = ReasonGPUStale
		case !c.IgnoreThrottle && gpu.Throttled():
			saturated = ReasonGPUThrottled
		}
	}
	switch free := ld.Slots - ld.Running; {
	case ld.Waiting < free:
		return Decision{Outcome: OutcomeAdmitted, Reason: ReasonSlotFree}
	case saturated != "":
		return reject(saturated)
	case ld.Waiting < ld.QueueSize+free:
		return Decision{Outcome: OutcomeQueued, Reason: ReasonSlotsBusy}
	default:
		return reject(ReasonQueueFull)
	}
}

// DrainWindow is the span over which the scheduler measures its drain rate.
const DrainWindow = 10 * time.Second

// Drain is how fast requests, and the tokens they reserved, left the
// scheduler over the last DrainWindow.
type Drain struct {
	// Requests and Tokens are per second.
	Requests, Tokens float64
	// Observed is how long the rates were measured: the time since start,
	// at most DrainWindow.
	Observed time.Duration
}

// RetryAfter estimates when a refused request could get in: the time for
// the ahead waiting requests before it (and itself) to drain at the
// request rate, or for kv_full the excess reserved tokens (those over the
// overcommit bound, with this request's) at the token rate. With nothing
// drained: one second in the first window after start (nothing is known
// yet), else one request per DrainWindow (a stall). Whole seconds in [1s,
// MaxRetryAfter].
func (c Config) RetryAfter(reason string, ahead int, excessTokens float64, d Drain) time.Duration {
	c = c.WithDefaults()
	secs := 0.0
	switch {
	case d.Requests > 0:
		secs = float64(ahead+1) / d.Requests
	case d.Observed >= DrainWindow:
		secs = float64(ahead+1) * DrainWindow.Seconds()
	}
	if reason == ReasonKVFull && d.Tokens > 0 {
		secs = max(excessTokens, 1) / d.Tokens
	}
	r := time.Duration(math.Ceil(min(secs, c.MaxRetryAfter.Seconds()))) * time.Second
	return max(r, time.Second)
}
