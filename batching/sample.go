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
	s.scorePrompts()
	work := s.work[:0]
	for _, q := range s.sampled {
		if s.slots[q.slot] != q { // ended while the step computed (cancelled)
			continue
		}
		// The engine is the loop's alone: views are taken here, serially.
		q.draw = draw{}
		q.draw.err = s.contain("engine", func() (err error) {
			q.draw.logits, err = s.engine.Logits(q.logitRow)
			return err
		})
		if q.draw.err != nil {
			q.draw.err = fmt.Errorf("read logits: %w", q.draw.err)
		}
		work = append(work, q)
	}
	fanOut(len(s.scratch), len(work), func(w, i int) {
		q := work[i]
		if q.draw.err == nil {
			q.draw.err = s.contain("sampling", func() (err error) {
				q.draw.tok, err = s.drawLogged(q, q.draw.logits, &s.scratch[w])
				return err
			})
		}
	})
	for _, q := range work {
		d := q.draw
		q.draw = draw{}
		if !s.afterPrompt(q, d) {
			s.apply(q, d)
		}
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

// drawToken samples the next token, under q's constraint if it has one.
// It touches only q's own state and row. Penalties and logit biases change
// the row first (penalty.go). With an Allower and no top-k, top-p or
// min-p cut, the token is drawn from the row first and the row masked
// only when the constraint refuses it (rejection sampling: conditioning
// softmax(logits/T) on the allowed set gives the masked distribution). A
// cut is taken over the allowed tokens, which rejection cannot give, so
// with one the row is masked first.
func (s *Scheduler) drawToken(q *sequence, logits []float32, sc *sampleScratch) (int32, error) {
	q.pen.apply(logits)
	c := q.req.Constraint
	if c == nil {
		return q.sampler.sample(logits, sc)
	}
	remaining := q.req.MaxTokens - q.generated
	if a, ok := c.(Allower); ok && !q.sampler.cuts(len(logits)) {
		tok, err := q.sampler.sample(logits, sc)
		if err != nil || a.Allows(tok, remaining) {
			return tok, err
		}
	}
	if err := c.Mask(logits, remaining); err != nil {
		return 0, err
	}
	return q.sampler.sample(logits, sc)
}

// apply hands out q's sampled token and ends q when it is done, failed,
// or the work for its token (constraint, stop strings, emitting) panicked.
// Loop goroutine only.
func (s *Scheduler) apply(q *sequence, d draw) {
	end, err := FinishError, d.err
	if err == nil {
		err = s.contain("token", func() (err error) {
			end, err = s.take(q, d.tok)
			return err
		})
		if err != nil {
			end = FinishError
		}
	}
	if end != NotFinished {
		s.finish(q, end, err)
	}
}

// take counts tok, hands it to q's constraint or stop strings, emits its
// text and says whether q ends, and why.
func (s *Scheduler) take(q *sequence, tok int32) (FinishReason, error) {
	q.generated++
	q.pen.seen(tok)
	if q.req.Constraint != nil {
		return s.acceptConstrained(q, tok)
	}
	if s.vocab.IsEOG(tok) {
		return FinishStop, nil
	}
	out, stopped := q.text.push(s.vocab.Piece(tok))
	return emitToken(q, tok, out, stopped), nil
}

// emitToken emits out, the text tok made safe, with tok's logprobs when
// asked, and says whether q ends: stop (a stop string, a complete
// output), its length reached, or neither (tok then joins its tokens).
func emitToken(q *sequence, tok int32, out string, stop bool) FinishReason {
	q.h.emitWith(out, q.lp.take())
	switch {
	case stop:
		return FinishStop
	case q.generated >= q.req.MaxTokens:
		return FinishLength
	}
	q.extend(tok)
	return NotFinished
}

// acceptConstrained hands tok to the constraint, then whatever it forces;
// the constraint, not end-of-generation tokens or stop strings, decides
// when the output is complete.
func (s *Scheduler) acceptConstrained(q *sequence, tok int32) (FinishReason, error) {
	if q.lp.oneByOne {
		return s.acceptOneByOne(q, tok)
	}
	done, err := q.req.Constraint.Accept(tok)
	if err != nil {
		return FinishError, err
	}
	// Text forced at the start (a grammar's opening) goes out with the
	// first sampled token, so the first text marks the end of prefill.
	text := q.held
	if !s.vocab.IsEOG(tok) {
		text += s.vocab.Piece(tok)
	}
	q.held = ""
	forced := s.takeForced(q)
	// Through the text state, which holds back a character split across
	// tokens (a constrained request has no stop strings there).
	out, _ := q.text.push(text + q.held)
	q.held = ""
	end := emitToken(q, tok, out, done)
	if end == NotFinished {
		q.extend(forced...)
	}
	return end, nil
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
		q.pen.seen(t)
	}
	q.generated += len(forced)
	return forced
}
