package batching

import (
	"errors"
	"fmt"
	"slices"

	"go.uber.org/zap"
)

// sequence is one request's state inside the scheduler.
type sequence struct {
	req     Request
	h       *Handle
	sampler *sampler
	text    textState
	slot    int32

	// tokens is the prompt followed by every generated token (sampled or
	// forced by the constraint); the first nPast are in the engine's KV.
	// The tail not yet in the KV is fed at the next steps: one token while
	// decoding, chunks while reading the prompt or a forced run.
	tokens    []int32
	owned     bool // tokens no longer aliases req.Prompt
	promptLen int
	// kv is how the slot's KV starts; cached counts the prompt tokens
	// reused from it.
	kv     kvPlan
	cached int
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
}

func (q *sequence) pending() int { return len(q.tokens) - q.nPast }

// extend appends generated tokens, copying the caller's prompt first.
func (q *sequence) extend(toks ...int32) {
	if !q.owned {
		q.tokens = append(make([]int32, 0, len(q.tokens)+len(toks)+64), q.tokens...)
		q.owned = true
	}
	q.tokens = append(q.tokens, toks...)
}

// loop owns the engine. It never blocks on a caller.
func (s *Scheduler) loop() {
	defer close(s.done)
	for {
		select {
		case <-s.quit:
			s.shutdownAll()
			return
		default:
		}
		active, closing := s.admit()
		if active == 0 {
			if closing {
				return
			}
			select {
			case <-s.wake:
			case <-s.quit:
			}
			continue
		}
		s.step()
	}
}

// admit drops cancelled requests, moves queued ones into free slots and
// reports how many slots are busy.
func (s *Scheduler) admit() (active int, closing bool) {
	for _, q := range s.slots {
		if q != nil && q.h.ctx.Err() != nil {
			s.finish(q, FinishCancelled, nil)
		}
	}
	now := s.now()
	s.mu.Lock()
	kept := s.queue[:0]
	var cancelled, admitted, overdue []*sequence
	for _, q := range s.queue {
		if q.h.ctx.Err() != nil {
			cancelled = append(cancelled, q)
			continue
		}
		if s.overdue(q, now) { // admission: the maximum queue wait
			overdue = append(overdue, q)
			continue
		}
		kept = append(kept, q)
	}
	clear(s.queue[len(kept):])
	s.queue = kept
	for s.running < len(s.slots) && len(s.queue) > 0 {
		q := s.queue[0]
		s.queue[0] = nil
		s.queue = s.queue[1:]
		i, plan := s.pickSlot(q.req.Prompt)
		q.slot, q.kv = int32(i), plan
		s.slots[i] = q
		s.running++
		q.tokens, q.promptLen = q.req.Prompt, len(q.req.Prompt)
		admitted = append(admitted, q)
		s.started(q, now) // admission: KV reservation, queue time
	}
	active, closing = s.running, s.closing
	s.mu.Unlock()
	s.drop(overdue, ReasonQueueTimeout, now)
	for _, q := range cancelled {
		q.h.finish("", FinishCancelled, nil, Usage{PromptTokens: len(q.req.Prompt)})
	}
	for _, q := range admitted {
		if err := s.startKV(q); err != nil {
			s.finish(q, FinishError, err)
			active--
			continue
		}
		if q.req.Constraint == nil {
			continue
		}
		q.extend(s.takeForced(q)...) // a grammar may start with a literal
		if f, ok := q.req.Constraint.(Forcer); ok && f.Done() {
			s.finish(q, FinishStop, nil)
			active--
		}
	}
	return active - s.endFull(), closing
}

// endFull ends, with FinishLength, every running sequence whose next token
// to feed would not fit its slot's context (a constraint forced more than
// max_tokens leaves room for), so no step ever carries a position the
// engine refuses and fails its step-mates with it. It returns how many it
// ended.
func (s *Scheduler) endFull() int {
	n := 0
	for _, q := range s.slots {
		if q != nil && len(q.tokens) > s.cfg.CtxPerSlot {
			s.finish(q, FinishLength, nil)
			n++
		}
	}
	return n
}

// plan fills the batch: first one token for every decoding sequence, then
// chunks of prompts and forced runs, round-robin, until the step's token
// budget is spent. Logits are asked for the last token of a sequence's
// tail; those sequences are listed in s.sampled, in slot order.
//
// It reads only the slots and the budget, and writes only the batch, the
// owners and each sequence's logitRow: the shape of the pure planner
// (slots, budget -> step) that later work extracts.
func (s *Scheduler) plan() {
	b := &s.batch
	b.Reset()
	s.owners = s.owners[:0]
	for _, q := range s.slots {
		if q == nil {
			continue
		}
		q.logitRow = -1
		if q.pending() == 1 {
			q.logitRow = b.Len()
			b.Add(q.tokens[q.nPast], int32(q.nPast), q.slot, true)
			s.owners = append(s.owners, q)
		}
	}
	budget := s.cfg.StepTokens - b.Len()
	n := len(s.slots)
	for k := 0; k < n && budget > 0; k++ {
		q := s.slots[(s.rr+k)%n]
		if q == nil || q.pending() < 2 {
			continue
		}
		end := min(len(q.tokens), q.nPast+budget)
		for p := q.nPast; p < end; p++ {
			last := p == len(q.tokens)-1
			if last {
				q.logitRow = b.Len()
			}
			b.Add(q.tokens[p], int32(p), q.slot, last)
			s.owners = append(s.owners, q)
		}
		budget -= end - q.nPast
	}
	s.rr = (s.rr + 1) % n
	s.sampled = s.sampled[:0]
	for _, q := range s.slots {
		if q != nil && q.logitRow >= 0 {
			s.sampled = append(s.sampled, q)
		}
	}
}

// step runs one engine step and hands out its results.
//
// Decode may return while the device still computes (CUDA: the logits are
// synchronised when first read). Everything the next step needs that does
// not depend on this step's tokens is done in that window, before the
// logits are read: dropping cancelled and overdue requests, admitting
// queued ones into free slots and setting up their KV (prefix reuse,
// forced openings). Only then are the logits read and sampled.
func (s *Scheduler) step() {
	s.plan()
	if err := s.decode(); err != nil {
		s.failBatch(err)
		return
	}
	s.mu.Lock()
	s.steps++
	s.mu.Unlock()
	// Advance positions: every batch entry is now in its sequence's KV.
	for _, q := range s.owners {
		q.nPast++
	}
	s.admit() // overlaps the device's compute of this step
	s.sampleAll()
}

// decode calls the engine, turning a panic in Go-side engine code into an
// error so the loop keeps serving.
func (s *Scheduler) decode() (err error) {
	defer func() {
		if r := recover(); r != nil {
			err = fmt.Errorf("engine panic: %v", r)
		}
	}()
	return s.engine.Decode(&s.batch)
}

func (s *Scheduler) logits(row int) (l []float32, err error) {
	defer func() {
		if r := recover(); r != nil {
			err = fmt.Errorf("engine panic: %v", r)
		}
	}()
	return s.engine.Logits(row)
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

// finish is the one place a running sequence leaves its slot.
func (s *Scheduler) finish(q *sequence, reason FinishReason, err error) {
	text := ""
	if reason == FinishStop || reason == FinishLength {
		text = q.held + q.text.flush()
	}
	s.release(q, reason)
	s.slots[q.slot] = nil
	s.mu.Lock()
	s.running--
	s.mu.Unlock()
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
