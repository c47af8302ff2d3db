package batching

import (
	"errors"
	"fmt"
	"slices"
	"time"

	"go.uber.org/zap"

	"github.com/nextact/nextact/batching/admission"
)

// sequence is one request's state inside the scheduler.
type sequence struct {
	req     Request
	h       *Handle
	sampler *sampler
	pen     *penalties // nil without penalties or biases
	text    textState
	// slot is the slot the sequence runs in, or -1 (waiting, or ended
	// without one).
	slot int32
	// passed counts the continuing steps that went ahead of this waiting
	// request (admission.go).
	passed int

	// tokens is the prompt followed by every generated token (sampled or
	// forced by the constraint); the first nPast are in the engine's KV.
	// The tail not yet in the KV is fed at the next steps: one token while
	// decoding, chunks while reading the prompt or a forced run.
	tokens    []int32
	owned     bool // tokens no longer aliases req.Prompt
	promptLen int
	// complete: the constraint completed on the tokens it forced at the
	// start (set in Submit); the request ends without a slot.
	complete bool
	// kv is how the slot's KV starts; cached counts the prompt tokens
	// reused from it.
	kv     kvPlan
	cached int
	// host is the host tier's entry kv.restore restores.
	host *hostEntry
	// held is forced text not yet emitted (see acceptConstrained).
	held      string
	nPast     int
	generated int
	// logitRow is the batch entry whose logits belong to this sequence in
	// the current step, or -1.
	logitRow int
	// draw is this step's sample (sample.go): written by one sampling
	// worker, then read by the loop once the workers are done.
	draw draw
	// adm is admission's bookkeeping (admission.go), guarded by s.mu.
	adm admissionState
	// lp is the logprobs' bookkeeping (logprobs.go).
	lp logprobState
}

// extend appends generated tokens, copying the caller's prompt first.
func (q *sequence) extend(toks ...int32) {
	if !q.owned {
		q.tokens = append(make([]int32, 0, len(q.tokens)+len(toks)+64), q.tokens...)
		q.owned = true
	}
	q.tokens = append(q.tokens, toks...)
}

// open takes the tokens a Forcer constraint requires at the start (a
// grammar's opening literal, or the whole of an all-literal output),
// before the request is queued: they are counted as generated and fed
// after the prompt, and their text goes out with the first sampled token.
func (s *Scheduler) open(q *sequence) {
	if s.openLogprobs(q) {
		return
	}
	q.extend(s.takeForced(q)...)
	if f, ok := q.req.Constraint.(Forcer); ok {
		q.complete = f.Done()
	}
}

// loop owns the engine. It never blocks on a caller, and it sleeps only
// when a plan has nothing to do: nothing runs and nothing waits.
func (s *Scheduler) loop() {
	defer close(s.done)
	for {
		select {
		case <-s.quit:
			s.shutdownAll()
			return
		default:
		}
		p, closing := s.planNext(phaseStep)
		if p.idle() {
			if closing {
				return
			}
			select {
			case <-s.wake:
			case <-s.quit:
			}
			continue
		}
		if !s.applyPlan(p) || !s.buildBatch(p) {
			continue // the plan ended sequences, or nothing is left to feed: plan again
		}
		s.step(p)
	}
}

// planNext builds the view of a phase, plans it, and takes the waiting
// requests the plan seats or ends off the queue. On the way it drops
// waiting requests that were cancelled or waited too long (admission). It
// also reports whether the scheduler is closing.
func (s *Scheduler) planNext(ph phase) (*stepPlan, bool) {
	v, p := &s.view, &s.plans[ph]
	v.phase, v.budget, v.ctx, v.rr = ph, s.cfg.StepTokens, s.cfg.CtxPerSlot, s.rr
	v.hostTier = s.host != nil
	free := 0
	for i, q := range s.slots {
		sv := &v.slots[i]
		if q != nil {
			*sv = slotView{running: true, tokens: len(q.tokens), fed: q.nPast, cancelled: q.h.ctx.Err() != nil}
			continue
		}
		r := s.resident[i]
		*sv = slotView{resident: r.n, lastUse: r.lastUse, dirty: r.dirty}
		free++
	}
	now := s.now()
	s.mu.Lock()
	cancelled, overdue := s.sweepLocked(now)
	v.queue, s.waiting, s.hostPicks = v.queue[:0], s.waiting[:0], s.hostPicks[:0]
	need := 0
	for _, q := range s.queue {
		w := waitingView{prompt: q.promptLen, forced: len(q.tokens) - q.promptLen, complete: q.complete}
		if ok, _ := w.slotless(v.ctx); !ok {
			if need == free {
				break
			}
			reuse := !q.req.EchoLogprobs // echo computes every prompt position
			if s.index != nil && reuse {
				w.matches = s.matchBuf(need)
				s.index.match(q.req.Prompt, w.matches)
			}
			if s.host != nil {
				var e *hostEntry
				if reuse {
					e, w.host = s.host.match(q.req.Prompt)
				}
				s.hostPicks = append(s.hostPicks, e)
			}
			need++
		} else if s.host != nil {
			s.hostPicks = append(s.hostPicks, nil)
		}
		v.queue = append(v.queue, w)
		s.waiting = append(s.waiting, q)
	}
	plan(v, p)
	s.takeLocked(p, now)
	closing := s.closing
	s.mu.Unlock()
	s.drop(overdue, admission.ReasonQueueTimeout, now)
	for _, q := range cancelled {
		q.h.finish("", FinishCancelled, nil, Usage{PromptTokens: len(q.req.Prompt)})
	}
	if ph == phaseStep {
		s.rr = p.rr
	}
	return p, closing
}

// sweepLocked takes waiting requests that were cancelled or waited longer
// than the maximum queue wait off the queue; the caller ends them once mu
// is released.
func (s *Scheduler) sweepLocked(now time.Time) (cancelled, overdue []*sequence) {
	kept := s.queue[:0]
	for _, q := range s.queue {
		switch {
		case q.h.ctx.Err() != nil:
			cancelled = append(cancelled, q)
		case s.overdue(q, now):
			overdue = append(overdue, q)
		default:
			kept = append(kept, q)
		}
	}
	clear(s.queue[len(kept):])
	s.queue = kept
	return cancelled, overdue
}

// takeLocked takes the requests p seats or ends off the head of the
// queue (the view's queue is that head, in order) and puts the seated
// ones in their slots.
func (s *Scheduler) takeLocked(p *stepPlan, now time.Time) {
	if len(p.seat)+len(p.leave) == 0 {
		return
	}
	taken := s.takenBuf[:0]
	for range s.waiting {
		taken = append(taken, false)
	}
	for _, d := range p.leave {
		q := s.waiting[d.queue]
		taken[d.queue] = true
		s.startedLocked(q, now)
	}
	for _, st := range p.seat {
		q := s.waiting[st.queue]
		taken[st.queue] = true
		q.slot, q.kv = st.slot, st.kv
		if st.kv.restore {
			q.host = s.hostPicks[st.queue]
		}
		s.slots[st.slot] = q
		s.running++
		s.startedLocked(q, now)
	}
	kept := s.queue[:0]
	for i, q := range s.queue {
		if i >= len(taken) || !taken[i] {
			kept = append(kept, q)
		}
	}
	clear(s.queue[len(kept):])
	s.queue = kept
	s.takenBuf = taken
}

// matchBuf returns the k-th scratch row of prefix matches, one per slot.
func (s *Scheduler) matchBuf(k int) []int {
	for len(s.matches) <= k {
		s.matches = append(s.matches, make([]int, len(s.slots)))
	}
	return s.matches[k]
}

// applyPlan carries out p's ends, departures and seating (in that order)
// and reports whether the plan goes on to a step: false when it ended
// sequences, which changes what the rest of a plan would be.
func (s *Scheduler) applyPlan(p *stepPlan) bool {
	defer clear(s.waiting)
	for _, e := range p.end {
		s.finish(s.slots[e.slot], e.reason, nil)
	}
	if len(p.end) > 0 {
		return false
	}
	for _, d := range p.leave {
		s.finish(s.waiting[d.queue], d.reason, nil)
	}
	for _, st := range p.seat {
		q := s.slots[st.slot]
		if s.index != nil {
			s.index.set(st.slot, q.req.Prompt)
		}
		if err := s.contain("KV setup", func() error { return s.startKV(q) }); err != nil {
			s.finish(q, FinishError, err)
		}
	}
	return true
}

// buildBatch fills the batch from p's feeds and lists the sequences to
// sample after the step. Feeds of a sequence that ended while it was
// seated (its KV setup failed), or whose KV started with fewer tokens than
// planned, are left out; it reports whether anything is left to feed.
func (s *Scheduler) buildBatch(p *stepPlan) bool {
	b := &s.batch
	b.Reset()
	s.owners = s.owners[:0]
	clear(s.scoring)
	s.scoring = s.scoring[:0]
	for _, q := range s.slots {
		if q != nil {
			q.logitRow = -1
		}
	}
	for _, f := range p.feeds {
		q := s.slots[f.slot]
		if q == nil || f.from != q.nPast {
			// Ended while seated, or its KV started shorter than planned
			// (a host entry gone or refused): fed from the next plan on.
			continue
		}
		n := s.scoreFeed(q, f)
		for pos := f.from; pos < f.from+n; pos++ {
			last := f.logits && n == f.n && pos == f.from+f.n-1
			if last {
				q.logitRow = b.Len()
			}
			score := s.scorePosition(q, pos, b.Len())
			b.Add(q.tokens[pos], int32(pos), q.slot, last || score)
			s.owners = append(s.owners, q)
		}
	}
	s.sampled = s.sampled[:0]
	for _, i := range p.sample {
		if q := s.slots[i]; q != nil && q.logitRow >= 0 {
			s.sampled = append(s.sampled, q)
		}
	}
	return b.Len() > 0
}

// step runs one engine step and hands out its results.
//
// Decode may return while the device still computes (CUDA: the logits are
// synchronised when first read). When the plan asks, arrivals are admitted
// in that window, before the logits are read: requests cancelled or
// overdue meanwhile are dropped, and new ones take free slots with their
// KV set up (prefix reuse), to be fed from the next step. Only then are
// the logits read and sampled.
func (s *Scheduler) step(p *stepPlan) {
	if err := s.contain("engine", func() error { return s.engine.Decode(&s.batch) }); err != nil {
		s.failBatch(err)
		return
	}
	s.mu.Lock()
	s.steps++
	s.mu.Unlock()
	// Advance positions: every batch entry is now in its sequence's KV.
	for _, q := range s.owners {
		q.nPast++
		if q.nPast == q.promptLen {
			q.h.markPrefilled()
		}
	}
	if p.prepare {
		for { // overlaps the device's compute of this step
			pp, _ := s.planNext(phasePrepare)
			if s.applyPlan(pp) {
				break
			}
		}
	}
	s.sampleAll()
}

// failBatch ends the sequences of a failed step with the engine's error:
// only the one a *SeqError names (the engine evaluated nothing, so its
// step-mates run again at the next step), else every one in the batch.
func (s *Scheduler) failBatch(err error) {
	s.log.Error("engine step failed", zap.Error(err), zap.Int("tokens", s.batch.Len()))
	var se *SeqError
	if errors.As(err, &se) && se.Seq >= 0 && int(se.Seq) < len(s.slots) {
		if q := s.slots[se.Seq]; q != nil && slices.Contains(s.owners, q) {
			s.finish(q, FinishError, fmt.Errorf("engine: %w", err))
			return
		}
	}
	seen := map[*sequence]bool{}
	for _, q := range s.owners {
		if !seen[q] {
			seen[q] = true
			s.finish(q, FinishError, fmt.Errorf("engine: %w", err))
		}
	}
}

// finish is the one place a sequence that left the queue ends: it leaves
// its slot, if it has one, and its handle gets the end.
func (s *Scheduler) finish(q *sequence, reason FinishReason, err error) {
	text := ""
	if reason == FinishStop || reason == FinishLength {
		text = q.held + q.text.flush()
	}
	if q.slot >= 0 {
		s.release(q, reason)
		s.slots[q.slot] = nil
		s.mu.Lock()
		s.running--
		s.mu.Unlock()
	}
	q.h.finish(text, reason, err, Usage{PromptTokens: q.promptLen, CompletionTokens: q.generated, CachedTokens: q.cached})
}

// shutdownAll ends every queued and running request with FinishShutdown.
func (s *Scheduler) shutdownAll() {
	for _, q := range s.slots {
		if q != nil {
			s.finish(q, FinishShutdown, ErrClosed)
		}
	}
	s.mu.Lock()
	queued := s.queue
	s.queue = nil
	s.mu.Unlock()
	for _, q := range queued {
		q.h.finish("", FinishShutdown, ErrClosed, Usage{PromptTokens: len(q.req.Prompt)})
	}
}
