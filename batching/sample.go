package batching

import (
	"fmt"
	"sync"
	"sync/atomic"
)

// maxSampleWorkers bounds Config.SampleWorkers.
const maxSampleWorkers = 1024

// draw is the outcome of sampling one sequence in a step, written by the
// sampling phase and read by the apply phase.
type draw struct {
	logits []float32 // the engine's view, valid until the next Decode
	tok    int32
	err    error
}

// sampleAll samples every sequence that got logits in the step just
// decoded, in two phases:
//
//   - sampling, in parallel on up to Config.SampleWorkers goroutines: each
//     sequence's row is read where the engine left it and its token drawn
//     under its own sampler and constraint. A sequence's sampler,
//     constraint and row are its own, so sequences are independent; this
//     phase touches nothing shared (no handle, slot or s.mu).
//   - applying, on the loop goroutine in slot order: tokens are counted,
//     handed to constraints, emitted, and sequences finished, so what is
//     observable (emit order, finish order, metrics) does not depend on the
//     workers.
//
// Every view is dropped before sampleAll returns: none outlives the step.
func (s *Scheduler) sampleAll() {
	work := s.work[:0]
	for _, q := range s.sampled {
		if s.slots[q.slot] != q { // ended while the step computed (cancelled)
			continue
		}
		// The engine is the loop's alone: views are taken here, serially.
		q.draw = draw{}
		q.draw.logits, q.draw.err = s.logits(q.logitRow)
		if q.draw.err != nil {
			q.draw.err = fmt.Errorf("read logits: %w", q.draw.err)
		}
		work = append(work, q)
	}
	fanOut(len(s.scratch), len(work), func(w, i int) { s.drawSafe(work[i], &s.scratch[w]) })
	for _, q := range work {
		d := q.draw
		q.draw = draw{}
		s.apply(q, d)
	}
	clear(work)
	s.work = work[:0]
}

// fanOut calls fn(w, i) for every i in [0, n) on up to workers goroutines
// (the caller's among them; w in [0, workers) names the goroutine, for its
// scratch memory) and returns once every call has returned. Goroutines
// live for one call only: no pool outlives it.
func fanOut(workers, n int, fn func(w, i int)) {
	nw := min(workers, n)
	if nw <= 1 {
		for i := range n {
			fn(0, i)
		}
		return
	}
	var next atomic.Int64
	run := func(w int) {
		for {
			i := int(next.Add(1)) - 1
			if i >= n {
				return
			}
			fn(w, i)
		}
	}
	var wg sync.WaitGroup
	wg.Add(nw - 1)
	for w := 1; w < nw; w++ {
		go func() {
			defer wg.Done()
			run(w)
		}()
	}
	run(0)
	wg.Wait()
}

// drawSafe samples q's next token from q.draw.logits into q.draw, with a
// worker's scratch memory, turning
// a panic in a constraint into that sequence's error (a worker's panic
// would otherwise end the process).
func (s *Scheduler) drawSafe(q *sequence, sc *sampleScratch) {
	if q.draw.err != nil {
		return
	}
	defer func() {
		if r := recover(); r != nil {
			q.draw.err = fmt.Errorf("sampling panic: %v", r)
		}
	}()
	q.draw.tok, q.draw.err = s.drawToken(q, q.draw.logits, sc)
}

// drawToken samples the next token, under q's constraint if it has one.
// It touches only q's own state and row.
func (s *Scheduler) drawToken(q *sequence, logits []float32, sc *sampleScratch) (int32, error) {
	c := q.req.Constraint
	if c == nil {
		return q.sampler.sample(logits, sc), nil
	}
	remaining := q.req.MaxTokens - q.generated
	if a, ok := c.(Allower); ok {
		if tok := q.sampler.sample(logits, sc); a.Allows(tok, remaining) {
			return tok, nil
		}
	}
	if err := c.Mask(logits, remaining); err != nil {
		return 0, err
	}
	return q.sampler.sample(logits, sc), nil
}

// apply hands out q's sampled token and decides whether q goes on. Loop
// goroutine only.
func (s *Scheduler) apply(q *sequence, d draw) {
	if d.err != nil {
		s.finish(q, FinishError, d.err)
		return
	}
	tok := d.tok
	q.generated++
	if q.req.Constraint != nil {
		s.acceptConstrained(q, tok)
		return
	}
	if s.vocab.IsEOG(tok) {
		s.finish(q, FinishStop, nil)
		return
	}
	out, stopped := q.text.push(s.vocab.Piece(tok))
	q.h.emit(out)
	switch {
	case stopped:
		s.finish(q, FinishStop, nil)
	case q.generated >= q.req.MaxTokens:
		s.finish(q, FinishLength, nil)
	default:
		q.extend(tok)
	}
}

// acceptConstrained hands tok to the constraint, then whatever it forces;
// the constraint, not end-of-generation tokens or stop strings, decides
// when the output is complete.
func (s *Scheduler) acceptConstrained(q *sequence, tok int32) {
	done, err := q.req.Constraint.Accept(tok)
	if err != nil {
		s.finish(q, FinishError, err)
		return
	}
	// Text forced at admission (a grammar's opening) goes out with the
	// first sampled token, so the first text marks the end of prefill.
	text := q.held
	if !s.vocab.IsEOG(tok) {
		text += s.vocab.Piece(tok)
	}
	q.held = ""
	forced := s.takeForced(q)
	q.h.emit(text + q.held)
	q.held = ""
	switch {
	case done:
		s.finish(q, FinishStop, nil)
	case q.generated >= q.req.MaxTokens:
		s.finish(q, FinishLength, nil)
	default:
		q.extend(tok)
		q.extend(forced...)
	}
}

// takeForced counts the tokens a Forcer constraint requires next and adds
// their text to q.held, which the caller emits.
func (s *Scheduler) takeForced(q *sequence) []int32 {
	f, ok := q.req.Constraint.(Forcer)
	if !ok {
		return nil
	}
	forced := f.Forced()
	for _, t := range forced {
		q.held += s.vocab.Piece(t)
	}
	q.generated += len(forced)
	return forced
}
