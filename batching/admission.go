package batching

import (
	"time"

	"github.com/nextact/nextact/batching/admission"
)

// The scheduler's side of admission: the state the pure policy of package
// admission reads (the queue, the reservations, the drain meter) and what
// it does with a decision (enqueue by priority, evict a lower priority,
// drop requests that waited too long). A request that can never fit
// (prompt plus max_tokens over a slot's context) is a *RequestError,
// refused before admission is consulted.

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
	Priority admission.Priority
	Finish   FinishReason
	Err      error
	Usage    Usage
	Timing   Timing
}

// Observer is told every admission decision and every accepted request's
// end, for metrics. MUST be goroutine-safe and MUST NOT block: Submit and
// the loop call it.
type Observer interface {
	Decided(d admission.Decision)
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

// drainBuckets is how many one-second buckets drainMeter keeps.
const drainBuckets = int64(admission.DrainWindow / time.Second)

// drainMeter measures how fast requests, and the tokens they reserved,
// leave the scheduler (finished, cancelled or dropped).
type drainMeter struct {
	since time.Time
	sec   [drainBuckets]int64
	reqs  [drainBuckets]float64
	toks  [drainBuckets]float64
}

func (m *drainMeter) add(now time.Time, toks int) {
	t := now.Unix()
	i := t % drainBuckets
	if m.sec[i] != t {
		m.sec[i], m.reqs[i], m.toks[i] = t, 0, 0
	}
	m.reqs[i]++
	m.toks[i] += float64(toks)
}

// rates returns requests and tokens per second over the window (over at
// least one second), and how long was observed since start, at most the
// window.
func (m *drainMeter) rates(now time.Time) admission.Drain {
	t := now.Unix()
	var reqs, toks float64
	for i, s := range m.sec {
		if s > t-drainBuckets && s <= t {
			reqs += m.reqs[i]
			toks += m.toks[i]
		}
	}
	span := min(max(now.Sub(m.since), 0), admission.DrainWindow)
	per := max(span.Seconds(), 1)
	return admission.Drain{Requests: reqs / per, Tokens: toks / per, Observed: span}
}

// retryAfterLocked is admission's Retry-After for a request refused now
// for reason, with need tokens of its own.
func (s *Scheduler) retryAfterLocked(reason string, need int, now time.Time) time.Duration {
	excess := float64(s.reserved) + float64(need) - s.adm.KVOvercommit*float64(s.cfg.Slots*s.cfg.CtxPerSlot)
	return s.adm.RetryAfter(reason, len(s.queue), excess, s.drain.rates(now))
}

func (s *Scheduler) loadLocked() admission.Load {
	return admission.Load{
		Slots: s.cfg.Slots, Running: s.running, Waiting: len(s.queue), QueueSize: s.cfg.QueueSize,
		ReservedTokens: s.reserved, CapacityTokens: s.cfg.Slots * s.cfg.CtxPerSlot,
	}
}

func (s *Scheduler) gpuSnapshot() (admission.GPUSample, bool) {
	if s.cfg.GPU == nil {
		return admission.GPUSample{}, false
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
func (s *Scheduler) evictLocked(p admission.Priority) *sequence {
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

// startedLocked records that q left the queue to run (with a slot, or
// complete without one).
func (s *Scheduler) startedLocked(q *sequence, now time.Time) {
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
		s.observe(admission.Decision{Outcome: admission.OutcomeRejected, Reason: reason, Priority: q.req.Priority})
		q.h.finish("", FinishRejected, &admission.OverloadError{Reason: reason, RetryAfter: retry}, Usage{PromptTokens: len(q.req.Prompt)})
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

func (s *Scheduler) observe(d admission.Decision) {
	if s.cfg.Observer != nil {
		s.cfg.Observer.Decided(d)
	}
}
