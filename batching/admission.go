package batching

import (
	"errors"
	"fmt"
	"math"
	"time"
)

// Admission: every Submit is decided at once (it never blocks) from the
// scheduler's own load and, when telemetry is available, the GPUs':
//
//   - admit: a slot is free; the request starts at the next step;
//   - queue: every slot is busy and the queue has room; the request waits,
//     highest Priority first, at most AdmissionConfig.MaxQueueWait;
//   - reject: an *OverloadError with a reason and a RetryAfter computed from
//     the current drain rate.
//
// A request that can never fit (prompt plus max_tokens over a slot's
// context) is a *RequestError, refused before admission is consulted.

// Priority is a request's class. Waiting requests are admitted highest class
// first, FIFO within a class. When the queue is full, a request takes the
// place of the newest waiting request of a lower class, which ends with
// FinishRejected (ReasonPreempted).
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
	// exceed AdmissionConfig.KVOvercommit times the KV capacity.
	ReasonKVFull = "kv_full"
	// ReasonGPUMemory: GPU memory is above the high-water mark and the
	// request is longer than AdmissionConfig.ShortRequestTokens.
	ReasonGPUMemory = "gpu_memory"
	// ReasonGPUThrottled: a GPU is throttled (thermal or power) and the
	// request would have to wait.
	ReasonGPUThrottled = "gpu_throttled"
	// ReasonGPUStale: GPU telemetry is older than AdmissionConfig.StaleAfter
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

// Is makes errors.Is(err, ErrOverloaded) hold, and errors.Is(err,
// ErrQueueFull) for ReasonQueueFull.
func (e *OverloadError) Is(target error) bool {
	return target == ErrOverloaded || (target == ErrQueueFull && e.Reason == ReasonQueueFull)
}

// Defaults of AdmissionConfig's zero fields.
const (
	DefaultMaxQueueWait       = 60 * time.Second
	DefaultKVOvercommit       = 4.0
	DefaultGPUMemoryHighWater = 0.95
	DefaultShortRequestTokens = 1024
	DefaultStaleAfter         = 5 * time.Second
	DefaultMaxRetryAfter      = 60 * time.Second
)

// AdmissionConfig holds the admission thresholds. Zero fields take the
// Default* values.
type AdmissionConfig struct {
	// MaxQueueWait bounds how long a request waits for a slot; one waiting
	// longer ends with FinishRejected (ReasonQueueTimeout). Negative: no
	// bound.
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

func (c AdmissionConfig) withDefaults() AdmissionConfig {
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

func (c AdmissionConfig) validate() error {
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

// GPUDevice is one GPU as the telemetry last saw it.
type GPUDevice struct {
	Index       int
	UUID        string
	Name        string
	MemoryUsed  uint64 // bytes
	MemoryTotal uint64 // bytes
	// Utilization is the fraction of the last sample period the GPU was
	// busy, 0 to 1.
	Utilization  float64
	TemperatureC float64
	PowerW       float64
	// ClockEventReasons is NVML's bitmask of why clocks are held down.
	ClockEventReasons uint64
	// ThermalThrottle and PowerThrottle classify ClockEventReasons: thermal
	// slowdowns, and hardware slowdowns or power brakes. A software power
	// cap, the normal state of a GPU at full load, is neither.
	ThermalThrottle bool
	PowerThrottle   bool
}

// MemoryFraction is the fraction of the device's memory in use.
func (d GPUDevice) MemoryFraction() float64 {
	if d.MemoryTotal == 0 {
		return 0
	}
	return float64(d.MemoryUsed) / float64(d.MemoryTotal)
}

// GPUSample is every GPU at one moment.
type GPUSample struct {
	// At is when the sample was taken.
	At      time.Time
	Devices []GPUDevice
}

// MemoryFraction is the highest fraction of memory in use over the devices.
func (g GPUSample) MemoryFraction() float64 {
	f := 0.0
	for _, d := range g.Devices {
		f = max(f, d.MemoryFraction())
	}
	return f
}

// Throttled reports whether any device is thermally or power throttled.
func (g GPUSample) Throttled() bool {
	for _, d := range g.Devices {
		if d.ThermalThrottle || d.PowerThrottle {
			return true
		}
	}
	return false
}

// GPUSignals gives the latest GPU sample. ok is false when telemetry is
// unavailable (no driver, no GPU): admission then uses the scheduler's own
// signals alone. MUST be goroutine-safe and cheap: it is called on every
// Submit and every metrics scrape, so it returns a cached sample.
type GPUSignals interface {
	Snapshot() (s GPUSample, ok bool)
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

// Decide is the admission policy, a pure function: need is the request's
// prompt plus max_tokens, gpuOK whether telemetry is available. The order:
// KV reservation over KVOvercommit x capacity rejects (kv_full); GPU memory
// above the high-water mark rejects requests longer than
// ShortRequestTokens (gpu_memory); a free slot admits; a throttled GPU or
// stale telemetry rejects what would have to wait (gpu_throttled,
// gpu_telemetry_stale); a queue with room queues; else queue_full.
func (c AdmissionConfig) Decide(need int, ld Load, gpu GPUSample, gpuOK bool, now time.Time) Decision {
	c = c.withDefaults()
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

// Timing is when a request passed each stage; zero for stages it never
// reached.
type Timing struct {
	Submitted  time.Time
	Admitted   time.Time // got a slot
	FirstToken time.Time // first text handed to the caller
	Finished   time.Time
}

// Report is a finished request, as an Observer sees it.
type Report struct {
	Priority Priority
	Finish   FinishReason
	Err      error
	Usage    Usage
	Timing   Timing
}

// Observer is told every admission decision and every accepted request's
// end, for metrics. MUST be goroutine-safe and MUST NOT block: Submit and
// the loop call it.
type Observer interface {
	Decided(d Decision)
	Finished(r Report)
}

// admissionState is a sequence's admission bookkeeping, guarded by the
// scheduler's mu.
type admissionState struct {
	queuedAt   time.Time
	admittedAt time.Time
	reserve    int // prompt plus max_tokens
	started    bool
}

// drainWindow is how many one-second buckets drainMeter keeps.
const drainWindow = 10

// drainMeter measures how fast requests, and the tokens they reserved,
// leave the scheduler (finished, cancelled or dropped).
type drainMeter struct {
	since time.Time
	sec   [drainWindow]int64
	reqs  [drainWindow]float64
	toks  [drainWindow]float64
}

func (m *drainMeter) add(now time.Time, toks int) {
	t := now.Unix()
	i := t % drainWindow
	if m.sec[i] != t {
		m.sec[i], m.reqs[i], m.toks[i] = t, 0, 0
	}
	m.reqs[i]++
	m.toks[i] += float64(toks)
}

// rates returns requests and tokens per second over the window (over at
// least one second), and the seconds observed since start, at most the
// window.
func (m *drainMeter) rates(now time.Time) (reqs, toks, span float64) {
	t := now.Unix()
	for i, s := range m.sec {
		if s > t-drainWindow && s <= t {
			reqs += m.reqs[i]
			toks += m.toks[i]
		}
	}
	span = min(max(now.Sub(m.since).Seconds(), 0), drainWindow)
	per := max(span, 1)
	return reqs / per, toks / per, span
}

// retryAfterLocked estimates when a refused request could get in: the time
// for the waiting requests ahead of it (and itself) to drain at the rate of
// the last 10 s, or for kv_full the excess reserved tokens at the token
// rate. With nothing drained: one second in the first window after start
// (nothing is known yet), else one request per window (a stall). Whole
// seconds in [1s, MaxRetryAfter].
func (s *Scheduler) retryAfterLocked(reason string, need int, now time.Time) time.Duration {
	reqRate, tokRate, span := s.drain.rates(now)
	secs := 0.0
	switch {
	case reqRate > 0:
		secs = float64(len(s.queue)+1) / reqRate
	case span >= drainWindow:
		secs = float64(len(s.queue)+1) * drainWindow
	}
	if reason == ReasonKVFull && tokRate > 0 {
		excess := float64(s.reserved) + float64(need) - s.adm.KVOvercommit*float64(s.cfg.Slots*s.cfg.CtxPerSlot)
		secs = max(excess, 1) / tokRate
	}
	d := time.Duration(math.Ceil(min(secs, s.adm.MaxRetryAfter.Seconds()))) * time.Second
	return max(d, time.Second)
}

func (s *Scheduler) loadLocked() Load {
	return Load{
		Slots: s.cfg.Slots, Running: s.running, Waiting: len(s.queue), QueueSize: s.cfg.QueueSize,
		ReservedTokens: s.reserved, CapacityTokens: s.cfg.Slots * s.cfg.CtxPerSlot,
	}
}

func (s *Scheduler) gpuSnapshot() (GPUSample, bool) {
	if s.cfg.GPU == nil {
		return GPUSample{}, false
	}
	return s.cfg.GPU.Snapshot()
}

// enqueueLocked inserts q after every waiting request of its priority or
// higher: the queue is ordered by priority, FIFO within a class.
func (s *Scheduler) enqueueLocked(q *sequence) {
	i := len(s.queue)
	for i > 0 && s.queue[i-1].req.Priority < q.req.Priority {
		i--
	}
	s.queue = append(s.queue, nil)
	copy(s.queue[i+1:], s.queue[i:])
	s.queue[i] = q
}

// evictLocked removes and returns the newest waiting request of the lowest
// priority when that priority is below p, or nil.
func (s *Scheduler) evictLocked(p Priority) *sequence {
	n := len(s.queue)
	if n == 0 || s.queue[n-1].req.Priority >= p {
		return nil
	}
	v := s.queue[n-1]
	s.queue[n-1] = nil
	s.queue = s.queue[:n-1]
	return v
}

// overdue reports whether q waited longer than the maximum queue wait.
func (s *Scheduler) overdue(q *sequence, now time.Time) bool {
	return s.adm.MaxQueueWait > 0 && now.Sub(q.adm.queuedAt) > s.adm.MaxQueueWait
}

// started records that q got a slot; called by admit under mu.
func (s *Scheduler) started(q *sequence, now time.Time) {
	q.adm.started, q.adm.admittedAt = true, now
	s.runningReserved += q.adm.reserve
}

// drop ends waiting requests that admission removed from the queue.
func (s *Scheduler) drop(qs []*sequence, reason string, now time.Time) {
	if len(qs) == 0 {
		return
	}
	s.mu.Lock()
	retry := s.retryAfterLocked(reason, 0, now)
	s.mu.Unlock()
	for _, q := range qs {
		s.observe(Decision{Outcome: OutcomeRejected, Reason: reason, Priority: q.req.Priority})
		q.h.finish("", FinishRejected, &OverloadError{Reason: reason, RetryAfter: retry}, Usage{PromptTokens: len(q.req.Prompt)})
	}
}

// released is the Handle's end hook: every accepted request passes here
// once, however it ended, before its caller is woken.
func (s *Scheduler) released(q *sequence, c Chunk, firstText time.Time) {
	now := s.now()
	s.mu.Lock()
	s.reserved -= q.adm.reserve
	if q.adm.started {
		s.runningReserved -= q.adm.reserve
	}
	s.drain.add(now, q.adm.reserve)
	t := Timing{Submitted: q.adm.queuedAt, Admitted: q.adm.admittedAt, FirstToken: firstText, Finished: now}
	s.mu.Unlock()
	if s.cfg.Observer != nil {
		s.cfg.Observer.Finished(Report{Priority: q.req.Priority, Finish: c.Finish, Err: c.Err, Usage: c.Usage, Timing: t})
	}
}

func (s *Scheduler) observe(d Decision) {
	if s.cfg.Observer != nil {
		s.cfg.Observer.Decided(d)
	}
}
